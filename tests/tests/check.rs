//! `gidd check`, the op conformance suite built into the binary: it passes on the cpu
//! executor (its f32, bf16 and f16 kernels against their f64 twins, fused kernels against their
//! decompositions, exact checks against the host), on XLA when a PJRT plugin is installed
//! and on wgpu when a Vulkan adapter is (its f64 rows UNSUPPORTED); its table covers every
//! family of ops and the golden audit; bad flags are refused. That a wrong result fails its row is tested inside the module
//! (train/src/check/tests.rs: an executor that corrupts one element of one output).

#![allow(clippy::unwrap_used)] // tests may unwrap

use gidd_tests::{gidd, golden_case, wgpu_available, xla_available};
use std::process::Output;

fn check(args: &[&str]) -> (Output, String) {
    let o = gidd().arg("check").args(args).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    (o, out)
}

/// The summary line's (passed, failed, unsupported).
fn summary(out: &str) -> (usize, usize, usize) {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or_else(|| panic!("no summary line in:\n{out}"));
    let n: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .take(3)
        .map(|t| t.parse().unwrap())
        .collect();
    (n[0], n[1], n[2])
}

/// Rows of the table whose op column starts with `op` and whose value column is `value`.
fn rows<'a>(out: &'a str, op: &str, value: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.starts_with(op) && l.split_whitespace().any(|w| w == value))
        .collect()
}

fn assert_passes(o: &Output, out: &str, what: &str) {
    let (pass, fail, unsup) = summary(out);
    assert!(
        o.status.success() && fail == 0 && pass > 300,
        "{what}: {pass} passed, {fail} failed, {unsup} unsupported\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn check_passes_on_the_cpu_and_covers_every_family() {
    for seed in ["0", "12345"] {
        let (o, out) = check(&["--backend", "cpu", "--seed", seed]);
        assert_passes(&o, &out, &format!("gidd check --backend cpu --seed {seed}"));
        assert!(out.contains(&format!("seed {seed}")), "the seed is printed");
        let (_, _, unsup) = summary(&out);
        assert_eq!(unsup, 0, "the cpu runs f64 programs");
        for (op, value) in [
            ("exp", "edge"),
            ("pow", "grad"),
            ("compare (all six)", "edge"),
            ("select", "grad"),
            ("broadcast_in_dim", "grad"),
            ("concatenate", "grad"),
            ("dot_general [b,k,m,2]x[2,b,k,n]", "grad"),
            ("reduce max [1]", "edge"),
            ("gather", "grad"),
            ("scatter_add", "grad"),
            ("softmax", "grad"),
            ("log_softmax", "grad"),
            ("rms_norm", "grad"),
            ("rope", "grad"),
            ("attention bias slot", "grad"),
            ("attention all masked", "grad"),
            ("diffusion_kl shift -1000", "grad"),
            ("shiftrightlogical", "exact"),
            ("convert", "exact"),
            ("iota", "exact"),
            ("philox uniform_rows", "exact"),
            ("logits", "golden"),
            ("grad.logits", "golden"),
        ] {
            let r = rows(&out, op, value);
            assert!(!r.is_empty(), "no {value} row for {op}:\n{out}");
            assert!(r.iter().all(|l| l.contains("PASS")), "{r:?}");
        }
        // float checks run in f32, bf16, f16 and f64
        for dt in ["f32", "bf16", "f16", "f64"] {
            assert!(
                rows(&out, "softmax", "fwd").iter().any(|l| l.contains(dt)),
                "no {dt} softmax row"
            );
        }
    }
}

#[test]
fn quick_runs_fewer_checks_and_the_golden_dir_can_be_named() {
    let (o, out) = check(&["--backend", "cpu", "--quick"]);
    assert_passes(&o, &out, "gidd check --quick");
    let (_, full) = check(&["--backend", "cpu"]);
    assert!(summary(&out).0 < summary(&full).0, "--quick is not smaller");
    assert!(rows(&out, "attention all masked", "fwd").is_empty());

    let case = golden_case("unif-small");
    let (o, out) = check(&[
        "--backend",
        "cpu",
        "--quick",
        "--golden",
        case.to_str().unwrap(),
    ]);
    assert_passes(&o, &out, "gidd check --golden unif-small");
    assert!(rows(&out, "logits", "golden")
        .iter()
        .any(|l| l.contains("unif-small")));

    let o = gidd()
        .args(["check", "--golden", "no/such/dir"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/dir"));
}

#[test]
fn check_passes_on_xla() {
    if !xla_available("check_passes_on_xla") {
        return;
    }
    let (o, out) = check(&["--backend", "xla"]);
    assert_passes(&o, &out, "gidd check --backend xla");
    assert!(out.contains("gidd check: xla"), "{out}");
}

#[test]
fn check_passes_on_wgpu_with_f64_unsupported() {
    if !wgpu_available("check_passes_on_wgpu_with_f64_unsupported") {
        return;
    }
    let (o, out) = check(&["--backend", "wgpu", "--quick"]);
    assert_passes(&o, &out, "gidd check --backend wgpu");
    // wgpu has no f64: every such program is refused at load, and said so, not failed
    let (_, _, unsup) = summary(&out);
    assert!(unsup > 0, "{out}");
    // table rows (a result column) of a dtype
    let rows = |dt: &str| -> Vec<String> {
        out.lines()
            .filter(|l| {
                l.contains(&format!(" {dt} "))
                    && (l.contains("  PASS") || l.contains("  FAIL") || l.contains("  UNSUPPORTED"))
            })
            .map(str::to_string)
            .collect()
    };
    let f64_rows = rows("f64");
    assert!(!f64_rows.is_empty());
    assert!(
        f64_rows.iter().all(|l| l.contains("UNSUPPORTED")),
        "{f64_rows:?}"
    );
    // f16 runs (packed like bf16): every f16 row passes, but for those whose program holds an
    // f64 value too (the convert chain through f64), refused for the f64
    let f16_rows = rows("f16");
    assert!(f16_rows.iter().any(|l| l.contains("  PASS")), "{out}");
    assert!(
        f16_rows
            .iter()
            .all(|l| l.contains("  PASS") || (l.contains("UNSUPPORTED") && l.contains("f64"))),
        "{f16_rows:?}"
    );
}
