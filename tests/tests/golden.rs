//! Every golden case (tests/golden) passes `gidd audit` in f32 and f64, with the optimizer
//! rows (the trainer's update program on the reference's LaProp run) and the likelihood rows
//! (`gidd eval --requests`'s code on the reference's draws) present; in bf16 and f16 the
//! logits and loss stay within the dtype's tolerance and the whole audit passes, gradients
//! and likelihood terms within their measured bound.

use gidd_engine::CpuExecutor;
use gidd_engine::DType;
use gidd_tests::golden_cases;

/// f32, and f64 (the audit precision: what remains is the reference's own f32 rounding).
#[test]
fn every_golden_case_passes_in_f32_and_f64() {
    let cases = golden_cases();
    for (case, dtype) in cases
        .iter()
        .flat_map(|c| [(c, DType::F32), (c, DType::F64)])
    {
        let rows =
            gidd_train::audit::audit(&CpuExecutor, case, &case.join("golden.safetensors"), dtype)
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
        assert_optim_and_likelihood_rows(&rows, case);
    }
}

/// The optimizer and likelihood rows are there: every parameter after each of the 6
/// updates, both learning rates, the groups; every level's terms and the totals.
fn assert_optim_and_likelihood_rows(rows: &[gidd_train::audit::Row], case: &std::path::Path) {
    let has = |q: &str| rows.iter().any(|r| r.quantity == q);
    let count = |prefix: &str| {
        rows.iter()
            .filter(|r| r.quantity.starts_with(prefix))
            .count()
    };
    for q in [
        "optim.hyperparameters",
        "optim.groups",
        "optim.lr.bulk",
        "optim.lr.aux",
        "optim.step1.lm_head.weight",
        "optim.step6.model.norm.weight",
        "lik.level_log_snr",
        "lik.labels",
        "lik.nlls.level0",
        "lik.nlls.level5",
        "lik.mean_nlls",
        "lik.total_nll",
        "lik.avg_nll",
        "lik.ppl",
    ] {
        assert!(has(q), "{}: {q} not audited", case.display());
    }
    let params = rows
        .iter()
        .filter(|r| r.quantity.starts_with("grad.") && r.quantity != "grad.logits")
        .count();
    assert_eq!(
        count("optim.step"),
        6 * params,
        "{}: one row per parameter per update",
        case.display()
    );
    assert_eq!(
        count("lik.nlls.level"),
        6,
        "{}: one row per level",
        case.display()
    );
}

#[test]
fn golden_logits_and_loss_within_bf16_tolerance() {
    half_audit_passes(DType::BF16, 2e-2);
}

/// f16 as bf16 above, with the bar on the logits and losses scaled by the ratio of their
/// epsilons (2^-11 against 2^-8): 2e-2 / 8 = 2.5e-3.
#[test]
fn golden_logits_and_loss_within_f16_tolerance() {
    half_audit_passes(DType::F16, 2.5e-3);
}

/// The audit of every golden case in a 16-bit float: the logits and losses within `bar`
/// (and not f32's bits: the dtype reached the kernels), and every row within its f32
/// tolerance plus 2 x its measured rounding.
fn half_audit_passes(dtype: DType, bar: f64) {
    let cases = golden_cases();
    for case in cases {
        let rows =
            gidd_train::audit::audit(&CpuExecutor, &case, &case.join("golden.safetensors"), dtype)
                .expect("audit runs");
        for name in ["logits", "loss", "kl_loss", "hidden_states.1"] {
            let r = rows
                .iter()
                .find(|r| r.quantity == name)
                .unwrap_or_else(|| panic!("{name} not audited"));
            assert!(
                r.pass && r.rel_l2 <= bar,
                "{}: {dtype} {name} rel err {}",
                case.display(),
                r.rel_l2
            );
            // the result must actually differ from f32: the dtype reached the kernels.
            assert!(
                r.rel_l2 > 1e-6,
                "{}: {dtype} {name} is bitwise f32-like ({}): {dtype} path not taken",
                case.display(),
                r.rel_l2
            );
        }
        // The whole audit passes (`gidd audit --dtype bf16|f16` exits 0): every model
        // quantity and likelihood term within its f32 tolerance + 2 x its measured rounding
        // (ours vs f64 of our own computation, plus f32 vs f64 for the reference's side).
        let table = gidd_train::audit::format_table(&rows);
        eprintln!("{} ({dtype})\n{table}", case.display());
        assert!(
            rows.iter().all(|r| r.pass),
            "{}: {dtype} audit failed\n{table}",
            case.display()
        );
        for r in rows.iter().filter(|r| r.quantity.starts_with("grad.")) {
            assert!(
                r.note.starts_with("bound: ours"),
                "{}: {} has no measured bound",
                case.display(),
                r.quantity
            );
        }
    }
}

/// The WSD schedule's edges as the reference builds it (train.py: `int(steps x fraction)`
/// cooldown, `optax.join_schedules` with boundaries [warmup, steps - cooldown], so the later
/// boundary wins where they overlap, and the cooldown count stops at its length). The
/// optimizer golden files cover warmup, constant and cooldown on one setting; these are the
/// corners it does not reach.
#[test]
fn wsd_schedule_edges_follow_the_reference() {
    let oo = |warmup: usize, cooldown: f64, steps: usize| gidd_train::trainer::optim::OptimOpts {
        laprop: true,
        lr: 1.0,
        aux_lr_factor: 0.02,
        beta1: 0.9,
        beta2: 0.99,
        adam_eps: 1e-8,
        weight_decay: 0.0,
        ln_wd: 0.0,
        bias_wd: 0.0,
        hidden: 8,
        layers: 1,
        warmup_steps: warmup,
        cooldown_steps: cooldown,
        max_steps: steps,
    };
    // A fraction is truncated, as int() does: 0.1 x 1005 = 100.5 -> 100 (not 101).
    assert_eq!(oo(10, 0.1, 1005).cooldown_len(), 100);
    assert_eq!(oo(10, 0.29, 100).cooldown_len(), 28); // 28.999999999999996 in f64, as in Python
    assert_eq!(oo(10, 7.0, 100).cooldown_len(), 7);
    // Warmup 8 overlapping a cooldown of 5 in 10 steps: the cooldown takes over at k = 5.
    let o = oo(8, 5.0, 10);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
    assert!(close(o.lr_factor(4), 0.5));
    assert!(close(o.lr_factor(5), 1.0));
    assert!(close(o.lr_factor(6), 1.0 - (0.2f64).sqrt()));
    assert!(close(o.lr_factor(10), 0.0));
    assert!(
        close(o.lr_factor(12), 0.0),
        "past the end the factor stays 0"
    );
    // No cooldown: constant to the end and past it.
    assert!(close(oo(2, 0.0, 6).lr_factor(7), 1.0));
    // Update k + 1 uses lr(k) and betas debiased at k + 1 (0 at the first update).
    let s = oo(2, 0.0, 6).step_scalars(0);
    assert_eq!((s[0], s[1], s[2], s[3]), (0.0, 0.0, 0.0, 0.0));
}
