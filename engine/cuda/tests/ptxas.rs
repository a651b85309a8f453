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

/// Contiguous chains of each dtype mix, planned vectorized (16-byte accesses: 4 f32, 8 bf16,
/// 2 i64, and the narrower accesses of a mixed chain), assemble for sm_80 and sm_90a with no
/// warning and no spill.
#[test]
#[allow(clippy::unwrap_used)]
fn vectorized_chain_modules_assemble_without_spills() {
    use gidd_engine::op::BinaryOp;
    use gidd_engine::{rewrite, DType, Graph, Program};
    let Some(ptxas) = common::ptxas("ptxas: vectorized chain modules assemble") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("gidd-ptxas-vec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut failures = vec![];
    let mut lanes_seen = std::collections::BTreeSet::new();
    let cases = [
        (DType::F32, None),
        (DType::BF16, None),
        (DType::BF16, Some(DType::F32)),
        (DType::F32, Some(DType::I64)),
        (DType::BF16, Some(DType::I32)),
    ];
    for (d, extra) in cases {
        let g = Graph::new();
        let x = g.input("x", &[4, 64], d);
        let y = g.input("y", &[4, 64], d);
        let s = g.input("s", &[], d).broadcast_to(&[4, 64]).unwrap();
        let z = x.mul(&y).unwrap().add(&s).unwrap().tanh().unwrap();
        let c = x.lt(&z).unwrap();
        let mut outs = vec![c.select(&z, &y).unwrap().exp().unwrap(), c];
        if let Some(e) = extra {
            let w = z.mul_scalar(100.0).unwrap().to(e).unwrap();
            let op = if e.is_float() {
                BinaryOp::Mul
            } else {
                BinaryOp::Xor
            };
            let v = w.binary(&w, op).unwrap().add(&w).unwrap();
            outs.push(v.clone());
            outs.push(v.to(d).unwrap().add(&x).unwrap());
        }
        let p = Program::compile(&outs, &["x", "y", "s"]).expect("compile");
        let low = rewrite::lower_for(&p, &gidd_cuda::fused::supports).expect("lower");
        let plan = gidd_cuda::lower::plan_with(&low, true, true).expect("plan");
        let modules = gidd_cuda::chain::modules_of(&plan);
        for m in modules.iter().filter(|m| m.text.contains("vectorized:")) {
            let lanes = m
                .text
                .split("vectorized: ")
                .nth(1)
                .and_then(|t| t.split(' ').next());
            lanes_seen.insert(lanes.unwrap_or("?").to_string());
            let file = dir.join(format!("{}.ptx", m.entry));
            std::fs::write(&file, &m.text).expect("writing a module");
            for arch in ["sm_80", "sm_90a"] {
                let (ok, out) = assemble(&ptxas, &file, arch);
                if !ok {
                    failures.push(format!("{} for {arch}:\n{out}\n{}", m.entry, m.text));
                    continue;
                }
                for w in out.lines().filter(|l| l.contains("warning")) {
                    failures.push(format!("{} for {arch}: {w}", m.entry));
                }
                for u in parse(&out) {
                    let spills = u.spill_stores + u.spill_loads;
                    println!(
                        "{d} {extra:?} {arch}: {} regs, {spills} spill B",
                        u.registers
                    );
                    if spills > 0 {
                        failures.push(format!("{} for {arch}: {spills} spill bytes", m.entry));
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "ptxas:\n{}", failures.join("\n"));
    // f32 (4 lanes), bf16 alone (8) and with i64 (2) were all generated
    for l in ["2", "4", "8"] {
        assert!(
            lanes_seen.contains(l),
            "no {l}-lane module among {lanes_seen:?}"
        );
    }
}
