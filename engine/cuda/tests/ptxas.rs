//! Every PTX module assembles with ptxas for each of its targets (sm_80 modules also for
//! sm_90a, the GPUs they run on first), with no warning; the resource report (registers,
//! shared memory, spills) is printed as a table; a spill in a GEMM module fails the test; and
//! sm_90a modules are refused for plain sm_90 (their `a` features are not portable).
//! This is the GPU-free check of the PTX: syntax, types, register allocation. Whether the
//! kernels compute the right numbers is for a GPU (`gidd check --backend cuda`).

mod common;

use common::{assemble, parse};
use gidd_kernels::ptx::{Arch, Module, MODULES};
use std::path::PathBuf;

fn write_module(m: &Module) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gidd-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(m.file_name());
    std::fs::write(&path, m.source).expect("writing a module");
    path
}

#[test]
fn every_module_assembles_and_gemms_do_not_spill() {
    let Some(ptxas) = common::ptxas("ptxas: every module assembles") else {
        return;
    };
    let mut failures = vec![];
    println!(
        "{:<26} {:<7} {:<18} {:>5} {:>7} {:>6} {:>7}",
        "module", "arch", "kernel", "regs", "smem B", "stack", "spill B"
    );
    for m in MODULES {
        let file = write_module(m);
        for arch in m.arch.check_targets() {
            let (ok, out) = assemble(&ptxas, &file, arch);
            if !ok {
                failures.push(format!("{} for {arch}:\n{out}", m.name));
                continue;
            }
            for w in out.lines().filter(|l| l.contains("warning")) {
                failures.push(format!("{} for {arch}: {w}", m.name));
            }
            for u in parse(&out) {
                let spills = u.spill_stores + u.spill_loads;
                if u.entry {
                    println!(
                        "{:<26} {:<7} {:<18} {:>5} {:>7} {:>6} {:>7}",
                        m.name, arch, u.function, u.registers, u.smem, u.stack, spills
                    );
                }
                if m.no_spills && spills > 0 {
                    failures.push(format!(
                        "{} for {arch}: {} spills {} bytes (stores {}, loads {}): GEMM kernels must not spill",
                        m.name, u.function, spills, u.spill_stores, u.spill_loads
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "ptxas:\n{}", failures.join("\n"));
}

#[test]
fn sm90a_modules_are_refused_for_sm_90() {
    let Some(ptxas) = common::ptxas("ptxas: sm_90a modules refused for sm_90") else {
        return;
    };
    let hopper: Vec<&Module> = MODULES.iter().filter(|m| m.arch == Arch::Sm90a).collect();
    assert!(!hopper.is_empty(), "no sm_90a module to check");
    for m in hopper {
        let (ok, out) = assemble(&ptxas, &write_module(m), "sm_90");
        assert!(
            !ok,
            "{}: ptxas -arch=sm_90 accepted an sm_90a module",
            m.name
        );
        assert!(
            out.contains("cannot be compiled for architecture 'sm_90'"),
            "{}: unexpected refusal: {out}",
            m.name
        );
    }
}
