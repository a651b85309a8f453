//! The cuda executor's generated elementwise-chain kernels for the model's real programs
//! (the tiny preset's training step in f32 and bf16, its noise draws, a generation step):
//! every module assembles with ptxas for sm_80 and sm_90a with no warning and no spill, and
//! fusing cuts the launches. Skips loudly without ptxas (engine/cuda/tests/common).
//! Their semantics are checked by gidd-cuda's interpreter tests (src/tests_chain.rs).

#[path = "../../engine/cuda/tests/common/mod.rs"]
mod common;

use gidd_train::check::ptx::{dump, plan, programs};

#[test]
fn chain_modules_of_real_programs_assemble_without_spills() {
    let Some(ptxas) = common::ptxas("cuda chains: generated modules of the tiny programs assemble")
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("gidd-chains-{}", std::process::id()));
    let plans = dump(&dir).expect("dump");
    let mut failures = vec![];
    let mut seen = std::collections::BTreeSet::new();
    println!(
        "{:<16} {:>8} {:>8} {:>7} {:>8}",
        "program", "one/op", "fused", "chains", "modules"
    );
    for p in &plans {
        println!(
            "{:<16} {:>8} {:>8} {:>7} {:>8}",
            p.name,
            p.unfused,
            p.fused,
            p.chains,
            p.modules.len()
        );
        for g in &p.modules {
            if !seen.insert(g.entry) {
                continue;
            }
            let file = dir.join(format!("{}.ptx", g.entry));
            for arch in ["sm_80", "sm_90a"] {
                let (ok, out) = common::assemble(&ptxas, &file, arch);
                if !ok {
                    failures.push(format!("{} for {arch}:\n{out}\n{}", g.entry, g.text));
                    continue;
                }
                for w in out.lines().filter(|l| l.contains("warning")) {
                    failures.push(format!("{} for {arch}: {w}", g.entry));
                }
                for u in common::parse(&out) {
                    let spills = u.spill_stores + u.spill_loads;
                    if spills > 0 {
                        failures.push(format!(
                            "{} for {arch}: {} spills {spills} bytes",
                            g.entry, u.function
                        ));
                    }
                }
            }
        }
    }
    println!(
        "{} distinct generated modules assembled for sm_80 and sm_90a",
        seen.len()
    );
    assert!(failures.is_empty(), "ptxas:\n{}", failures.join("\n"));
    // every hand-written module was written too
    assert!(dir.join("elementwise_float.ptx").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fusing_cuts_the_launches_of_the_training_step() {
    for (name, p) in programs().expect("programs") {
        let pp = plan(&name, &p).expect("plan");
        eprintln!(
            "{name}: {} launches one per op, {} fused ({} chains)",
            pp.unfused, pp.fused, pp.chains
        );
        assert!(pp.chains > 0, "{name}: no chain");
        assert!(pp.fused < pp.unfused, "{name}: fusing did not cut launches");
    }
}
