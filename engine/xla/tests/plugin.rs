//! Plugin discovery and loading fail with errors that say what is wrong and what
//! to do; PJRT errors name their call; the executor checks its inputs.

mod common;

use gidd_engine::{DType, Executor, Graph, HostTensor, Program};
use gidd_xla::pjrt::{check_api_version, Api};
use gidd_xla::{find_plugin, load_plugin, CompileOptions, XlaError};
use std::path::{Path, PathBuf};

#[test]
fn missing_plugin_says_where_to_get_one() {
    let p = Path::new("/nonexistent/pjrt_c_api_cpu_plugin.so");
    let e = find_plugin(Some(p)).expect_err("a missing file is not a plugin");
    assert!(matches!(e, XlaError::PluginNotFound { .. }), "{e:?}");
    let msg = e.to_string();
    for want in [
        "/nonexistent/pjrt_c_api_cpu_plugin.so",
        "install-plugin.sh",
        "lammps-jax-pjrt-cpu",
        "GIDD_PJRT_PLUGIN",
    ] {
        assert!(msg.contains(want), "message lacks {want:?}: {msg}");
    }
    let e = load_plugin(p).expect_err("missing");
    assert!(matches!(e, XlaError::PluginNotFound { .. }), "{e:?}");
}

#[test]
fn a_library_without_get_pjrt_api_is_refused() {
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file());
    let Some(libm) = libm else {
        eprintln!("SKIPPED: no libm.so.6 to load as a non-plugin");
        return;
    };
    let e = load_plugin(&libm).expect_err("libm is not a PJRT plugin");
    assert!(
        matches!(
            e,
            XlaError::SymbolMissing {
                symbol: "GetPjrtApi",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("is not a PJRT plugin"), "{e}");
}

#[test]
fn a_file_that_is_no_library_is_refused() {
    let e = load_plugin(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("Cargo.toml")
            .as_path(),
    )
    .expect_err("Cargo.toml is not a shared library");
    assert!(matches!(e, XlaError::PluginLoad { .. }), "{e:?}");
}

/// A fake PJRT_Api table: struct_size, extension, PJRT_Api_Version{size, ext, major, minor}.
fn fake_table(major: i32, minor: i32, functions: usize) -> Vec<u64> {
    let mut t = vec![0u64; 5 + functions];
    t[0] = (40 + 8 * functions) as u64;
    t[2] = 24;
    t[4] = (major as u32 as u64) | ((minor as u32 as u64) << 32);
    t
}

#[test]
fn other_api_versions_are_refused() {
    assert!(check_api_version(0, 115).is_ok());
    assert!(
        check_api_version(0, 200).is_ok(),
        "newer minors only append"
    );
    assert!(check_api_version(0, 93).is_err());
    assert!(check_api_version(1, 0).is_err());
    for (major, minor) in [(1, 0), (0, 54), (2, 115)] {
        let t = fake_table(major, minor, 138);
        // SAFETY: the table is readable for its struct_size and outlives `from_raw`.
        let e = unsafe { Api::from_raw(t.as_ptr() as *const _, PathBuf::from("fake.so")) }
            .err()
            .unwrap_or_else(|| panic!("{major}.{minor} accepted"));
        assert!(matches!(e, XlaError::ApiVersion { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{major}.{minor}")) && msg.contains("0.x with x >= 94"),
            "{msg}"
        );
    }
}

#[test]
fn a_table_without_a_function_names_it() {
    let t = fake_table(0, 115, 2);
    // SAFETY: as above.
    let api = unsafe { Api::from_raw(t.as_ptr() as *const _, PathBuf::from("short.so")) }
        .unwrap_or_else(|e| panic!("{e}"));
    let e = api.attributes().expect_err("slot 4 is beyond the table");
    assert!(e.to_string().contains("PJRT_Plugin_Attributes"), "{e}");
    assert!(
        matches!(
            e,
            XlaError::FunctionMissing {
                index: 4,
                available: 2,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn compile_options_are_never_empty() {
    assert_eq!(
        CompileOptions::default().to_proto(),
        [0x1a, 0x04, 0x20, 0x01, 0x28, 0x01]
    );
    assert_eq!(
        CompileOptions {
            num_partitions: 4,
            shardy: false
        }
        .to_proto(),
        [0x1a, 0x06, 0x20, 0x01, 0x28, 0x04, 0x30, 0x01]
    );
    assert_eq!(
        CompileOptions {
            num_partitions: 4,
            shardy: true
        }
        .to_proto(),
        [0x1a, 0x09, 0x20, 0x01, 0x28, 0x04, 0x30, 0x01, 0x98, 0x01, 0x01]
    );
}

#[test]
fn pjrt_errors_name_the_call_and_inputs_are_checked() {
    let Some(x) = common::xla() else { return };
    assert!(x.name().starts_with("xla (cpu"), "{}", x.name());
    let e = match x.client().compile(
        "func.func @main() { stablehlo.bogus }",
        &CompileOptions::default(),
    ) {
        Err(e) => e,
        Ok(_) => panic!("bogus MLIR compiled"),
    };
    let msg = e.to_string();
    assert!(
        msg.contains("PJRT_Client_Compile") && msg.contains("stablehlo.bogus"),
        "{msg}"
    );

    let g = Graph::new();
    let a = g.input("a", &[2, 3], DType::F32);
    let p = Program::compile(&[a.exp().unwrap_or_else(|e| panic!("{e}"))], &["a"])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lp = x.load(&p).unwrap_or_else(|e| panic!("{e}"));
    let wrong = x
        .upload(&HostTensor::zeros(DType::F32, vec![3, 2]))
        .unwrap_or_else(|e| panic!("{e}"));
    let e = x.run(&mut lp, &[&wrong]).expect_err("shape mismatch");
    assert!(e.to_string().contains("program input 0 (a)"), "{e}");
    let e = x.run(&mut lp, &[]).expect_err("count mismatch");
    assert!(e.to_string().contains("expects 1 inputs"), "{e}");
}
