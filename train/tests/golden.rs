//! Every case in ../shared/golden passes `gidd audit` in f32 and f64; in bf16 the logits
//! and loss stay within the bf16 tolerance.

use gidd_engine::DType;
use std::path::PathBuf;

fn golden_cases() -> Option<Vec<PathBuf>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden");
    if !root.exists() {
        eprintln!(
            "SKIPPED: {} not found; the golden audit tests need ../shared next to the repo",
            root.display()
        );
        return None;
    }
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("golden.safetensors").exists())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no golden cases under {}",
        root.display()
    );
    Some(cases)
}

/// f32, and f64 (the audit precision: what remains is the reference's own f32 rounding).
#[test]
fn every_golden_case_passes_in_f32_and_f64() {
    let Some(cases) = golden_cases() else { return };
    for (case, dtype) in cases
        .iter()
        .flat_map(|c| [(c, DType::F32), (c, DType::F64)])
    {
        let rows = gidd_train::audit::audit(case, &case.join("golden.safetensors"), dtype)
            .expect("audit runs");
        let table = gidd_train::audit::format_table(&rows);
        eprintln!("{} ({dtype})\n{table}", case.display());
        assert!(
            rows.len() > 20,
            "{}: too few quantities audited",
            case.display()
        );
        assert!(
            rows.iter().all(|r| r.pass),
            "{}: audit failed\n{table}",
            case.display()
        );
        assert!(
            rows.iter().any(|r| r.quantity == "generate.output"),
            "generation not audited"
        );
    }
}

#[test]
fn golden_logits_and_loss_within_bf16_tolerance() {
    let Some(cases) = golden_cases() else { return };
    for case in cases {
        let rows = gidd_train::audit::audit(&case, &case.join("golden.safetensors"), DType::BF16)
            .expect("audit runs");
        for name in ["logits", "loss", "kl_loss", "hidden_states.1"] {
            let r = rows
                .iter()
                .find(|r| r.quantity == name)
                .unwrap_or_else(|| panic!("{name} not audited"));
            assert!(
                r.pass && r.rel_l2 <= 2e-2,
                "{}: bf16 {name} rel err {}",
                case.display(),
                r.rel_l2
            );
            // bf16 must actually differ from f32: the dtype reached the kernels.
            assert!(
                r.rel_l2 > 1e-6,
                "{}: bf16 {name} is bitwise f32-like ({}): bf16 path not taken",
                case.display(),
                r.rel_l2
            );
        }
    }
}
