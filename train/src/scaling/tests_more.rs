//! Tests of the Huber fits, the direct frontier, the M-N conversion and the bits/byte
//! conversion against synthetic data with known answers.

#![allow(clippy::unwrap_used)] // tests may unwrap

use super::numeric::{huber_cost, huber_line, log_grid};
use super::synth::normal;
use super::*;
use rand::SeedableRng;

/// Power-law data y = 3·x^0.5 at 30 budgets with 2% log noise, two of them pushed off by
/// e^6 and e^-6 (a diverged run, a mislogged one) a tenth of the range in from each end.
fn outlier_data(seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let x = log_grid(1e10, 1e14, 30);
    let mut y: Vec<f64> = x
        .iter()
        .map(|&x| 3.0 * x.powf(0.5) * (0.02 * normal(&mut rng)).exp())
        .collect();
    y[3] *= 6f64.exp();
    y[26] *= (-6f64).exp();
    (x, y)
}

/// Huber's influence per outlier is bounded by δ = 1 (in ln y) where least squares' grows
/// with the residual (6 here): numpy's IRLS on the same design gives exponent errors
/// <= 0.040 for Huber and >= 0.19 for least squares over 20 seeds.
#[test]
fn huber_beats_least_squares_on_a_power_law_with_outliers() {
    for seed in 0..20 {
        let (x, y) = outlier_data(seed);
        let hub = power_law(&x, &y, 50, seed, 1.0).unwrap();
        let ls = power_law(&x, &y, 50, seed, f64::INFINITY).unwrap();
        let (eh, el) = ((hub.exponent - 0.5).abs(), (ls.exponent - 0.5).abs());
        if seed == 0 {
            eprintln!(
                "exponent: huber {:.4}, least squares {:.4} (true 0.5)",
                hub.exponent, ls.exponent
            );
        }
        assert!(eh < 0.06, "seed {seed}: huber exponent {}", hub.exponent);
        assert!(
            el > 0.12,
            "seed {seed}: least squares exponent {}",
            ls.exponent
        );
        assert!(
            eh < el / 3.0,
            "seed {seed}: huber {eh} vs least squares {el}"
        );
    }
}

#[test]
fn huber_line_minimizes_the_huber_loss_and_is_ols_without_outliers() {
    let (x, y) = outlier_data(3);
    let (lx, ly): (Vec<f64>, Vec<f64>) = x.iter().zip(&y).map(|(a, b)| (a.ln(), b.ln())).unzip();
    let f = huber_line(&lx, &ly, 1.0).unwrap();
    let cost = |c: f64, k: f64| {
        let r: Vec<f64> = lx.iter().zip(&ly).map(|(a, b)| b - c - k * a).collect();
        huber_cost(&r, 1.0)
    };
    let best = cost(f.intercept, f.slope);
    // the loss is convex: every nearby line costs more
    for (dc, dk) in [
        (1e-3, 0.0),
        (-1e-3, 0.0),
        (0.0, 1e-4),
        (0.0, -1e-4),
        (1e-3, -1e-4),
    ] {
        assert!(cost(f.intercept + dc, f.slope + dk) > best);
    }
    // clean data: every residual inside the threshold, so Huber is least squares
    let clean: Vec<f64> = lx.iter().map(|a| 1.1 + 0.5 * a + 0.01 * a.sin()).collect();
    let h = huber_line(&lx, &clean, 1.0).unwrap();
    let o = numeric::ols(&lx, &clean).unwrap();
    assert!((h.slope - o.slope).abs() < 1e-12 && (h.intercept - o.intercept).abs() < 1e-10);
}

#[test]
fn huber_surface_resists_outlier_rows() {
    let s = synth::Synth::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (mut m, mut d, mut l) = (vec![], vec![], vec![]);
    for &mm in &log_grid(1e6, 1e9, 7) {
        for &dd in &log_grid(1e8, 1e11, 7) {
            m.push(mm);
            d.push(dd);
            l.push(s.loss(mm, dd) * (0.002 * normal(&mut rng)).exp());
        }
    }
    // four rows off by e^±5 (diverged or mislogged runs). Huber bounds each one's pull at
    // δ = 1 in ln L, least squares lets it grow with the residual: measured clean-row RMS
    // ln error 0.058 (Huber) vs 0.281 (least squares)
    for (i, f) in [(3, 5.0), (17, -5.0), (30, 5.0), (44, -5.0)] {
        l[i] *= f64::exp(f);
    }
    let hub = fit_surface(&m, &d, &l, 1.0).unwrap();
    let ls = fit_surface(&m, &d, &l, f64::INFINITY).unwrap();
    // how well each fit predicts the clean rows (the surface's use), RMS of ln error
    let outliers = [3, 17, 30, 44];
    let clean_rms = |f: &Surface| {
        let e: Vec<f64> = (0..l.len())
            .filter(|i| !outliers.contains(i))
            .map(|i| (f.at(m[i], d[i]) / s.loss(m[i], d[i])).ln())
            .collect();
        (e.iter().map(|v| v * v).sum::<f64>() / e.len() as f64).sqrt()
    };
    let (rh, rl) = (clean_rms(&hub), clean_rms(&ls));
    eprintln!(
        "clean-row RMS ln error: huber {rh:.4}, least squares {rl:.4}; alpha {:.3}/{:.3}, beta {:.3}/{:.3} (true {}, {})",
        hub.alpha, ls.alpha, hub.beta, ls.beta, s.alpha, s.beta
    );
    assert!(rh < 0.08, "{hub:?}");
    assert!(rl > 3.0 * rh, "{ls:?}");
}

fn flop_row(n: f64, c: f64, loss: f64) -> FlopRow {
    FlopRow {
        noise: "masked".into(),
        run: format!("n{n}"),
        n,
        m: 6.0 * n,
        c,
        batch: 8,
        lr: 1.0,
        steps: 1e4,
        tokens: c / (6.0 * n),
        loss,
    }
}

#[test]
fn direct_frontier_recovers_the_minimum_envelope() {
    // at each budget the best of three sizes lies exactly on L = 30·C^-0.05; the others
    // are worse, and budgets outside the window must not enter the fit
    let mut rows = vec![];
    for &c in &log_grid(1e15, 1e20, 11) {
        let best = 30.0 * c.powf(-0.05);
        rows.push(flop_row(1e6, c, best * 1.03));
        rows.push(flop_row(4e6, c, best));
        rows.push(flop_row(16e6, c, best * 1.01));
    }
    rows.push(flop_row(1e6, 1e21, 0.1)); // outside [lo, hi]
                                         // (the window's edges a hair outside the first and last budget: log_grid's rounding)
    let f = direct_frontier(&rows, 0.999e15, 1.001e20, 200, 0, 1.0).unwrap();
    assert!((f.law.exponent + 0.05).abs() < 1e-9, "{:?}", f.law);
    assert!((f.law.coef / 30.0 - 1.0).abs() < 1e-7);
    assert_eq!(f.points.len(), 12);
    assert_eq!(f.used.iter().filter(|u| **u).count(), 11);
    assert!(direct_frontier(&rows[..6], 0.999e15, 1.001e20, 10, 0, 1.0).is_err());
}

#[test]
fn conversion_law_of_known_ladders() {
    // Method 2 is exactly M = 6N; a made-up law M = 40·N^1.1 is recovered exactly
    let ladder: Vec<(f64, f64)> = crate::sweep::accounting::LADDER
        .iter()
        .map(|&(l, d)| {
            let n = crate::sweep::accounting::n_params(l, d);
            (n, crate::sweep::accounting::flops_per_token_6n(l, d))
        })
        .collect();
    let six = conversion_law(&ladder).unwrap();
    assert!((six.slope - 1.0).abs() < 1e-12 && (six.intercept - 6f64.ln()).abs() < 1e-9);
    let made: Vec<(f64, f64)> = log_grid(1e5, 1e9, 6)
        .into_iter()
        .map(|n| (n, 40.0 * n.powf(1.1)))
        .collect();
    let k = conversion_law(&made).unwrap();
    assert!(
        (k.slope - 1.1).abs() < 1e-12 && (k.at(1e7) / (40.0 * 1e7f64.powf(1.1)) - 1.0).abs() < 1e-9
    );
    assert!((k.inverse(k.at(3e6)) / 3e6 - 1.0).abs() < 1e-9);
    // Method 1 on the paper's ladder at T = 2048: attention adds less than M grows with N
    let m1: Vec<(f64, f64)> = crate::sweep::accounting::LADDER
        .iter()
        .map(|&(l, d)| {
            (
                crate::sweep::accounting::n_params(l, d),
                crate::sweep::accounting::flops_per_token(l, d, 2048),
            )
        })
        .collect();
    let k1 = conversion_law(&m1).unwrap();
    assert!(k1.slope > 0.8 && k1.slope < 1.0 && k1.r2 > 0.99, "{k1:?}");
    assert!(conversion_law(&made[..1]).is_err());
}

#[test]
fn bits_per_byte_matches_the_reference_factor() {
    // the reference's plots multiply nats/token by 0.34124 = 1/(ln 2 · 4.228 bytes/token)
    let bpt = 1.0 / (0.34124 * std::f64::consts::LN_2);
    assert!((bits_per_byte(2.5, bpt) - 2.5 * 0.34124).abs() < 1e-12);
    assert_eq!(common_bytes_per_token(&[None, None]).unwrap(), None);
    let m = common_bytes_per_token(&[Some(4.0), None, Some(4.1)]).unwrap();
    assert!((m.unwrap() - 4.05).abs() < 1e-12);
    let e = common_bytes_per_token(&[Some(4.0), Some(4.5)]).unwrap_err();
    assert!(e.contains("--bytes_per_token"), "{e}");
}
