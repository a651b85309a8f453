//! Recovery tests of `gidd fit` on synthetic data with known answers.

#![allow(clippy::unwrap_used)] // tests may unwrap

use super::numeric::log_grid;
use super::synth::{normal, to_jsonl, Synth};
use super::*;
use rand::SeedableRng;
use std::path::Path;

fn rel(got: f64, want: f64) -> f64 {
    ((got - want) / want).abs()
}

fn curve_points(e: f64, a: f64, b: f64, lo: f64, hi: f64, sd: f64, seed: u64) -> Vec<(f64, f64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    log_grid(lo, hi, 200)
        .into_iter()
        .map(|s| (s, e + a * s.powf(-b) + sd * normal(&mut rng)))
        .collect()
}

#[test]
fn curve_fit_recovers_noiseless_parameters() {
    // Toy scale, and the paper's scale (s in 2000..80000, the reference's start far off).
    for (e, a, b, lo, hi, min) in [
        (2.0, 30.0, 0.4, 10.0, 20000.0, 100.0),
        (2.2, 5.0, 0.3, 500.0, 80000.0, 2000.0),
        (3.1, 800.0, 0.7, 1.0, 5000.0, 50.0),
    ] {
        let c = fit_curve(&curve_points(e, a, b, lo, hi, 0.0, 0), min).unwrap();
        let worst = rel(c.e, e).max(rel(c.a, a)).max(rel(c.b, b));
        eprintln!(
            "noiseless ({e}, {a}, {b}): worst rel error {worst:.2e} ({} start)",
            c.start
        );
        assert!(worst < 1e-6, "{c:?}");
    }
}

#[test]
fn curve_fit_on_noisy_history_is_close() {
    // 0.005 nats of noise on ~170 points: E within 0.05 nats, the loss at the last step
    // within 0.003 (what the iso-FLOP tables read off the curve).
    let (e, a, b) = (2.0, 30.0, 0.4);
    for seed in 0..5 {
        let pts = curve_points(e, a, b, 10.0, 20000.0, 0.005, seed);
        let c = fit_curve(&pts, 100.0).unwrap();
        let at_end = (c.at(20000.0) - (e + a * 20000f64.powf(-b))).abs();
        eprintln!(
            "noisy seed {seed}: E {:.4} A {:.3} b {:.4}, |dL(end)| {at_end:.2e}",
            c.e, c.a, c.b
        );
        assert!((c.e - e).abs() < 0.05 && at_end < 3e-3, "{c:?}");
    }
    assert!(fit_curve(&pts_few(), 100.0).is_err());
}

fn pts_few() -> Vec<(f64, f64)> {
    (0..15).map(|i| (i as f64 * 10.0, 3.0)).collect()
}

/// Flags for synthetic data: no paper-scale windows.
fn toy_args(budgets: Vec<f64>) -> FitArgs {
    let mut a = FitArgs::new("synthetic".into());
    a.min_step = Some(100.0);
    a.budget_grid = budgets;
    a.select_min_steps = Some(0.0);
    a.select_max_steps = Some(f64::INFINITY);
    a.loss_cap = Some(f64::INFINITY);
    a.c_lo = Some(0.0);
    a.c_hi = Some(f64::INFINITY);
    a.bootstrap = 200;
    a.no_plots = true;
    a
}

/// A ladder of 8 sizes and budgets whose true optimum M*(C) stays well inside it.
pub(super) fn synthetic_sweep(s: &Synth) -> (Vec<Run>, Vec<f64>) {
    let runs = s.ladder(
        "masked",
        -1000.0,
        &[64, 96, 128, 160, 192, 256, 320, 384],
        32,
        10_000_000,
    );
    let truth = Surface {
        a: s.a,
        alpha: s.alpha,
        b: s.b,
        beta: s.beta,
        e: s.e,
        rmse_log: 0.0,
        points: 0,
    };
    let ms: Vec<f64> = runs.iter().map(|r| r.flops_per_token).collect();
    let (m_lo, m_hi) = (ms[0], ms[ms.len() - 1]);
    // M*(C) = G·C^(β/(α+β)): invert at 3·m_lo and m_hi/3.
    let (g, _, _) = truth.optimal(1.0);
    let c_of = |m: f64| (m / g).powf((s.alpha + s.beta) / s.beta);
    (runs, log_grid(c_of(3.0 * m_lo), c_of(m_hi / 3.0), 12))
}

#[test]
fn synthetic_sweep_recovers_compute_optimal_exponents_and_surface() {
    let s = Synth::default();
    let (runs, budgets) = synthetic_sweep(&s);
    let a = analyze(&Results { runs }, &toy_args(budgets));
    assert!(a.skipped.is_empty(), "{:?}", a.skipped);
    let m1 = &a.noises[0].methods[0];
    let truth = Surface {
        a: s.a,
        alpha: s.alpha,
        b: s.b,
        beta: s.beta,
        e: s.e,
        rmse_log: 0.0,
        points: 0,
    };
    // Parabola vertices against the closed-form optimum of the true surface.
    let mut worst_m = 0f64;
    for o in &m1.sq.optima {
        assert!(o.convex, "{o:?}");
        let (m, _, l) = truth.optimal(o.c);
        worst_m = worst_m.max(rel(o.m, m));
        assert!(rel(o.loss, l) < 5e-3, "L* {o:?} vs {l}");
    }
    let (em, ed) = truth.exponents();
    let law_m = &m1.sq.laws["M"];
    let law_d = &m1.sq.laws["D"];
    eprintln!(
        "vertex M* worst rel error {worst_m:.3}; M* exponent {:.4} (true {em:.4}), D* {:.4} (true {ed:.4}), sum {:.4}",
        law_m.exponent,
        law_d.exponent,
        law_m.exponent + law_d.exponent
    );
    assert!(worst_m < 0.15, "vertex M* off by {worst_m}");
    assert!((law_m.exponent - em).abs() < 0.02);
    assert!((law_d.exponent - ed).abs() < 0.02);
    assert!((law_m.exponent + law_d.exponent - 1.0).abs() < 0.01);
    let f = m1.surface.as_ref().unwrap();
    let worst = [
        rel(f.a, s.a),
        rel(f.alpha, s.alpha),
        rel(f.b, s.b),
        rel(f.beta, s.beta),
        rel(f.e, s.e),
    ]
    .into_iter()
    .fold(0f64, f64::max);
    eprintln!("surface {f:?}: worst rel error {worst:.2e}");
    assert!(worst < 1e-4);
    let (fm, fd) = f.exponents();
    assert!((fm - em).abs() < 1e-5 && (fd - ed).abs() < 1e-5);
    // The allocation's L* is the surface's minimum on M·D = K.
    let k = a.budgets[5];
    let (m, d, l) = f.optimal(k);
    for t in [0.9, 1.1] {
        assert!(f.at(m * t, d / t) > l);
    }
}

#[test]
fn bootstrap_interval_covers_the_true_exponent_at_its_nominal_rate() {
    let (draws, truth) = (100, 0.5);
    let mut covered = 0;
    for k in 0..draws {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + k);
        let x = log_grid(1e10, 1e14, 20);
        let y: Vec<f64> = x
            .iter()
            .map(|&x| 3.0 * x.powf(truth) * (0.05 * normal(&mut rng)).exp())
            .collect();
        let law = power_law(&x, &y, 300, k, 1.0).unwrap();
        if law.exponent_ci[0] <= truth && truth <= law.exponent_ci[1] {
            covered += 1;
        }
    }
    let rate = covered as f64 / draws as f64;
    eprintln!("bootstrap 95% coverage of the exponent: {rate:.2} over {draws} draws");
    assert!((0.85..=1.0).contains(&rate), "coverage {rate}");
}

fn row(n: f64, loss: f64) -> FlopRow {
    FlopRow {
        noise: "masked".into(),
        run: format!("n{n}"),
        n,
        m: 6.0 * n,
        c: 1e15,
        batch: 8,
        lr: 1.0,
        steps: 1e15 / (6.0 * n * 8.0 * 256.0),
        tokens: 1e15 / (6.0 * n),
        loss,
    }
}

#[test]
fn concave_and_extrapolated_iso_flops_warn_instead_of_giving_numbers() {
    let ns = [1e6, 2e6, 4e6, 8e6, 16e6];
    let mid = 4e6f64.ln();
    let concave: Vec<FlopRow> = ns
        .iter()
        .map(|&n| row(n, 3.0 - 0.01 * (n.ln() - mid).powi(2)))
        .collect();
    let mut w = Vec::new();
    let o = sq_optima(&concave, "test", &mut w);
    assert!(!o[0].convex && o[0].d.is_nan(), "{o:?}");
    assert!(w.iter().any(|w| w.contains("not convex")), "{w:?}");
    // Convex but still falling at the largest size: the vertex lies beyond the ladder.
    let edge: Vec<FlopRow> = ns
        .iter()
        .map(|&n| row(n, 3.0 + 0.01 * (n.ln() - 1e8f64.ln()).powi(2)))
        .collect();
    let mut w = Vec::new();
    let o = sq_optima(&edge, "test", &mut w);
    assert!(o[0].convex && !o[0].in_range, "{o:?}");
    assert!(
        w.iter().any(|w| w.contains("outside the measured")),
        "{w:?}"
    );
}

#[test]
fn results_errors_name_the_line_and_key() {
    let s = Synth::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let good = to_jsonl(&s.run("masked", -1000.0, (2, 64), 8, 1.0, 1000, 0.0, &mut rng));
    let p = Path::new("r.jsonl");
    assert_eq!(
        Results::parse(p, &format!("{good}\n\n{good}\n"))
            .unwrap()
            .runs
            .len(),
        2
    );
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v.as_object_mut().unwrap().remove("n_params");
    let e = Results::parse(p, &format!("{good}\n{v}\n"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 2") && e.contains("n_params") && e.contains("missing"),
        "{e}"
    );
    v["n_params"] = serde_json::json!("many");
    let e = Results::parse(p, &format!("{v}\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1") && e.contains("n_params"), "{e}");
    let e = Results::parse(p, "\n").unwrap_err().to_string();
    assert!(e.contains("no runs"), "{e}");
    let e = Results::parse(p, "{not json").unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("not JSON"), "{e}");
}

#[test]
fn cooldown_factor_of_paired_runs() {
    let s = Synth {
        noise_sd: 1e-4,
        ..Synth::default()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut runs = Vec::new();
    for (d, b) in [(64, 8), (64, 16), (128, 8), (128, 16)] {
        for cd in [0.0, 0.2] {
            runs.push(s.run("masked", -1000.0, (d / 32, d), b, 1.0, 5000, cd, &mut rng));
        }
    }
    let c = batch::cooldown(&runs).unwrap();
    eprintln!(
        "cooldown ratio {:.5} ± {:.5} ({} pairs)",
        c.ratio, c.ci99, c.pairs
    );
    assert_eq!(c.pairs, 4);
    assert!((c.ratio - 1.02).abs() < 1e-3 && c.ci99 < 1e-3);
    assert!(batch::cooldown(&runs[..1]).is_err());
}

/// Iso-loss rows whose tokens are exactly quadratic in ln B around B*_tok = k·D^0.8, and
/// iso-FLOP rows whose ln loss is quadratic in ln lr around η* = 0.01·(B·T)^0.34: the
/// vertex extraction and both OLS laws must return those slopes.
#[test]
fn batch_and_lr_laws_recover_their_slopes() {
    let (seq, k_b, k_eta) = (256.0, 0.8, 0.34);
    let b_star = |d: f64| 3e-3 * d.powf(k_b);
    let batches = [8u64, 16, 32, 64, 128, 256, 512];
    let mut loss_rows = Vec::new();
    for (i, d_min) in log_grid(1e8, 1e11, 8).into_iter().enumerate() {
        for &b in &batches {
            let u = (b as f64 * seq / b_star(d_min)).ln();
            loss_rows.push(LossRow {
                noise: "masked".into(),
                run: format!("b{b}"),
                n: 1e6,
                batch: b,
                lr: 1.0,
                target_loss: 3.0 - 0.1 * i as f64,
                steps: 0.0,
                tokens: d_min * (0.05 * u * u).exp(),
                flops: 0.0,
            });
        }
    }
    let refs: Vec<&LossRow> = loss_rows.iter().collect();
    let (law, pts) = batch::batch_law(&refs, seq, 1024).unwrap();
    eprintln!(
        "B* slope {:.6} ± {:.2e}, {} vertices",
        law.slope,
        law.slope_ci99,
        pts.len()
    );
    assert!((law.slope - k_b).abs() < 1e-9 && law.r2 > 0.999999);
    let m = 1e7;
    let mut flop_rows = Vec::new();
    for c in log_grid(1e15, 1e17, 5) {
        for &b in &batches {
            let eta = 0.01 * (b as f64 * seq).powf(k_eta);
            for lr in log_grid(eta / 4.0, eta * 3.0, 5) {
                flop_rows.push(FlopRow {
                    noise: "masked".into(),
                    run: format!("b{b}-lr{lr}"),
                    n: 1e6,
                    m,
                    c,
                    batch: b,
                    lr,
                    steps: 0.0,
                    tokens: c / m,
                    loss: (1.0 + 0.02 * (lr / eta).ln().powi(2)).exp(),
                });
            }
        }
    }
    let refs: Vec<&FlopRow> = flop_rows.iter().collect();
    let (eta, _) = batch::lr_law(&refs, seq, &law).unwrap();
    eprintln!(
        "eta* slope {:.6} ± {:.2e} over {} points",
        eta.slope, eta.slope_ci99, eta.points
    );
    assert!((eta.slope - k_eta).abs() < 1e-6, "{eta:?}");
    // Two batch sizes only: B* cannot be located, a message instead of a number.
    let few: Vec<&LossRow> = loss_rows.iter().filter(|r| r.batch <= 16).collect();
    assert!(batch::batch_law(&few, seq, 1024)
        .unwrap_err()
        .contains("need 3"));
}
