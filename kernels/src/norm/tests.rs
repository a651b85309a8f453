//! Randomized tests of the RMSNorm kernels against the f64 reference, and a finite-difference
//! check of the reference backward.

use super::cpu;
use super::reference::{rms_norm_bwd_f64, rms_norm_fwd_f64};
use crate::testutil::{assert_close_by, levels, rng, seed, to_f64, uniform};
use rand::rngs::StdRng;
use rand::Rng;

/// f32 unit roundoff.
const EPS: f64 = f32::EPSILON as f64 / 2.0;
/// Central-difference step and tolerance for the f64 gradcheck: truncation error is
/// O(h^2 |f'''|) ~ 1e-10 and cancellation O(eps64 |f| / h) ~ 1e-10 at these sizes.
const FD_STEP: f64 = 1e-5;
const FD_TOL: f64 = 1e-7;

fn shapes(r: &mut StdRng) -> Vec<(usize, usize)> {
    let mut s: Vec<(usize, usize)> = [1, 2, 3, 7, 8, 15, 16, 17, 33, 64, 100, 768, 3072, 4097]
        .iter()
        .map(|&n| (r.random_range(1..=9), n))
        .collect();
    s.extend((0..4).map(|_| (r.random_range(1..=5), r.random_range(1..=2000))));
    s.push((64, 1031)); // the rayon path
    s.push((300, 257)); // rayon with several dw blocks per chunk
    s
}

struct Case {
    eps: f32,
    x: Vec<f32>,
    w: Vec<f32>,
}

fn case(r: &mut StdRng, rows: usize, n: usize) -> Case {
    let a = [0.01f32, 1.0, 100.0][r.random_range(0..3)];
    let mut x = uniform(r, rows * n, a);
    if r.random_range(0..4) == 0 {
        let i = r.random_range(0..rows);
        x[i * n..(i + 1) * n].fill(0.0); // a zero row: r = eps^-1/2
    }
    let w = uniform(r, n, 1.0);
    let eps = [1e-6f32, 1e-5][r.random_range(0..2)];
    Case { eps, x, w }
}

/// Relative error of a row's f32 sum of squares (lane-wise, ~sqrt(n) eps typical) and rsqrt.
fn rstd_rel(n: usize) -> f64 {
    EPS * (4.0 + 2.0 * (n as f64).sqrt())
}

#[test]
fn rms_norm_fwd_matches_reference_at_every_level() {
    let seed = seed();
    let mut r = rng(seed);
    for (rows, n) in shapes(&mut r) {
        let c = case(&mut r, rows, n);
        let (want, want_r) = rms_norm_fwd_f64(rows, n, c.eps as f64, &to_f64(&c.x), &to_f64(&c.w));
        let mut base: Option<Vec<f64>> = None;
        for level in levels() {
            let ctx = format!("{level:?} rows {rows} n {n}");
            let (mut y, mut rs) = (vec![f32::NAN; rows * n], vec![f32::NAN; rows]);
            cpu::rms_norm_fwd(level, rows, n, c.eps, &c.x, &c.w, &mut y, &mut rs);
            // y = (x r) g: the error of r plus two roundings.
            let tol = |_: usize, w: f64| w.abs() * (rstd_rel(n) + 3.0 * EPS) + 1e-38;
            assert_close_by(&format!("rms y {ctx}"), seed, &y, &want, tol);
            assert_close_by(&format!("rms rstd {ctx}"), seed, &rs, &want_r, |_, w| {
                w * rstd_rel(n)
            });
            match &base {
                None => base = Some(to_f64(&y)),
                Some(b) => assert_close_by(&format!("rms y {ctx} vs portable"), seed, &y, b, tol),
            }
        }
    }
}

#[test]
fn rms_norm_bwd_matches_reference_at_every_level() {
    let seed = seed();
    let mut r = rng(seed);
    for (rows, n) in shapes(&mut r) {
        let c = case(&mut r, rows, n);
        let dy = uniform(&mut r, rows * n, 1.0);
        let (x64, w64, dy64) = (to_f64(&c.x), to_f64(&c.w), to_f64(&dy));
        let (want_dx, want_dw) = rms_norm_bwd_f64(rows, n, c.eps as f64, &x64, &w64, &dy64);
        let (_, r64) = rms_norm_fwd_f64(rows, n, c.eps as f64, &x64, &w64);
        // Scales of the terms that round: |r g dy| and |x| r^3 sum|dy g x| / n per element.
        let term = |i: usize| {
            let (row, j) = (i / n, i % n);
            let rr = r64[row];
            let a: f64 = (0..n)
                .map(|k| (dy64[row * n + k] * (1.0 + w64[k]) * x64[row * n + k]).abs())
                .sum();
            (rr * (1.0 + w64[j]) * dy64[i]).abs() + x64[i].abs() * rr.powi(3) * a / n as f64
        };
        let terms: Vec<f64> = (0..rows * n).map(term).collect();
        // rstd, the f32 dot a and the fused update all round: ~4x the rstd error on each term.
        let tol_dx = |i: usize, _: f64| 4.0 * rstd_rel(n) * terms[i] + 1e-38;
        let sum_abs: Vec<f64> = (0..n)
            .map(|j| {
                (0..rows)
                    .map(|i| (dy64[i * n + j] * x64[i * n + j] * r64[i]).abs())
                    .sum()
            })
            .collect();
        // dw: each term rounds a few times; f32 sums over <= 32-row blocks, then f64.
        let tol_dw = |j: usize, _: f64| (rstd_rel(n) + 40.0 * EPS) * sum_abs[j] + 1e-38;
        for level in levels() {
            let ctx = format!("{level:?} rows {rows} n {n}");
            let (mut y, mut rs) = (vec![0.0; rows * n], vec![0.0; rows]);
            cpu::rms_norm_fwd(level, rows, n, c.eps, &c.x, &c.w, &mut y, &mut rs);
            let (mut dx, mut dw) = (vec![f32::NAN; rows * n], vec![f32::NAN; n]);
            cpu::rms_norm_bwd(level, rows, n, &c.x, &c.w, &rs, &dy, &mut dx, &mut dw);
            assert_close_by(&format!("rms dx {ctx}"), seed, &dx, &want_dx, tol_dx);
            assert_close_by(&format!("rms dw {ctx}"), seed, &dw, &want_dw, tol_dw);
        }
    }
}

#[test]
fn rms_norm_reference_backward_matches_finite_differences() {
    let seed = seed();
    let mut r = rng(seed);
    for _ in 0..4 {
        let (rows, n) = (r.random_range(1..=3), r.random_range(1..=9));
        let eps = 1e-3;
        let x: Vec<f64> = (0..rows * n).map(|_| r.random_range(-1.0..1.0)).collect();
        let w: Vec<f64> = (0..n).map(|_| r.random_range(-1.0..1.0)).collect();
        let dy: Vec<f64> = (0..rows * n).map(|_| r.random_range(-1.0..1.0)).collect();
        let loss = |x: &[f64], w: &[f64]| -> f64 {
            let (y, _) = rms_norm_fwd_f64(rows, n, eps, x, w);
            y.iter().zip(&dy).map(|(a, b)| a * b).sum()
        };
        let (dx, dw) = rms_norm_bwd_f64(rows, n, eps, &x, &w, &dy);
        for i in 0..rows * n {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += FD_STEP;
            xm[i] -= FD_STEP;
            let fd = (loss(&xp, &w) - loss(&xm, &w)) / (2.0 * FD_STEP);
            assert!(
                (fd - dx[i]).abs() <= FD_TOL * (1.0 + fd.abs()),
                "dx[{i}] {} vs fd {fd}; seed {seed}",
                dx[i]
            );
        }
        for j in 0..n {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[j] += FD_STEP;
            wm[j] -= FD_STEP;
            let fd = (loss(&x, &wp) - loss(&x, &wm)) / (2.0 * FD_STEP);
            assert!(
                (fd - dw[j]).abs() <= FD_TOL * (1.0 + fd.abs()),
                "dw[{j}] {} vs fd {fd}; seed {seed}",
                dw[j]
            );
        }
    }
}
