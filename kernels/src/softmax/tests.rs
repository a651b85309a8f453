//! Randomized tests of the softmax kernels against the f64 reference.

use super::cpu;
use super::reference::{log_softmax_f64, softmax_bwd_f64, softmax_f64};
use crate::testutil::{assert_close_by, levels, rng, seed, to_f64, uniform};
use rand::rngs::StdRng;
use rand::Rng;

/// f32 unit roundoff.
const EPS: f64 = f32::EPSILON as f64 / 2.0;

/// Row lengths that hit every tail case of 8- and 16-lane loops, plus a parallel-size case.
fn shapes(r: &mut StdRng) -> Vec<(usize, usize)> {
    let mut s: Vec<(usize, usize)> = [
        1, 2, 3, 5, 8, 15, 16, 17, 31, 32, 33, 63, 65, 127, 255, 1000, 4097,
    ]
    .iter()
    .map(|&n| (r.random_range(1..=9), n))
    .collect();
    s.extend((0..6).map(|_| (r.random_range(1..=5), r.random_range(1..=3000))));
    s.push((64, 1031)); // 66K elements: the rayon path
    s.push((1, 1));
    s
}

/// Inputs of random scale with some -inf entries, one all -inf row when `dead_row`.
fn logits(r: &mut StdRng, rows: usize, n: usize, dead_row: bool) -> Vec<f32> {
    let a = [0.1f32, 3.0, 30.0][r.random_range(0..3)];
    let mut x = uniform(r, rows * n, a);
    for v in x.iter_mut() {
        if r.random_range(0..10) == 0 {
            *v = f32::NEG_INFINITY;
        }
    }
    if dead_row {
        let row = r.random_range(0..rows);
        x[row * n..(row + 1) * n].fill(f32::NEG_INFINITY);
    }
    x
}

/// Per-row (max, ln-sum) of the f64 reference, for error bounds.
fn row_stats(n: usize, x: &[f64]) -> Vec<(f64, f64)> {
    x.chunks(n)
        .map(|row| {
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            (m, row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln())
        })
        .collect()
}

#[test]
fn softmax_and_log_softmax_match_reference_at_every_level() {
    let seed = seed();
    let mut r = rng(seed);
    for (rows, n) in shapes(&mut r) {
        let dead = r.random_range(0..3) == 0;
        let x = logits(&mut r, rows, n, dead);
        let x64 = to_f64(&x);
        let stats = row_stats(n, &x64);
        let (want, want_log) = (softmax_f64(rows, n, &x64), log_softmax_f64(rows, n, &x64));
        // Error sources: rounding of x - m (relative |x - m| eps in the exponent), exp (2 ulp),
        // the f32 lane-wise sum (~sqrt(n) eps typical, bounded generously) and the final scale.
        let sum_err = (6.0 + 2.0 * (n as f64).sqrt()) * EPS;
        let tol = |i: usize, w: f64| {
            let (m, _) = stats[i / n];
            w.abs() * (EPS * (4.0 + (x64[i] - m).abs()) + sum_err) + 1e-37
        };
        let tol_log = |i: usize, _w: f64| {
            let (m, ls) = stats[i / n];
            EPS * 4.0 * (x64[i].abs() + m.abs() + ls.abs() + 1.0) + sum_err
        };
        let mut base = None;
        for level in levels() {
            let ctx = format!("{level:?} rows {rows} n {n}");
            let mut y = vec![f32::NAN; rows * n];
            cpu::softmax_fwd(level, rows, n, &x, &mut y);
            assert_close_by(&format!("softmax {ctx}"), seed, &y, &want, tol);
            let mut yl = vec![f32::NAN; rows * n];
            cpu::log_softmax_fwd(level, rows, n, &x, &mut yl);
            assert_close_by(&format!("log_softmax {ctx}"), seed, &yl, &want_log, tol_log);
            // Every level agrees with the portable path to rounding.
            match &base {
                None => base = Some(to_f64(&y)),
                Some(b) => assert_close_by(&format!("softmax {ctx} vs portable"), seed, &y, b, tol),
            }
        }
    }
}

#[test]
fn softmax_bwd_matches_reference_at_every_level() {
    let seed = seed();
    let mut r = rng(seed);
    for (rows, n) in shapes(&mut r) {
        let x = to_f64(&logits(&mut r, rows, n, false));
        let y: Vec<f32> = softmax_f64(rows, n, &x).iter().map(|&v| v as f32).collect();
        let dy = uniform(&mut r, rows * n, 2.0);
        let (y64, dy64) = (to_f64(&y), to_f64(&dy));
        let want = softmax_bwd_f64(rows, n, &y64, &dy64);
        let dots: Vec<f64> = (0..rows)
            .map(|row| {
                (row * n..(row + 1) * n)
                    .map(|j| (y64[j] * dy64[j]).abs())
                    .sum()
            })
            .collect();
        // dx = y (dy - d): rounding of the f32 dot d (~sqrt(n) eps sum|y dy|), of the
        // difference and of the product.
        let tol = |i: usize, w: f64| {
            let d_err = (4.0 + 2.0 * (n as f64).sqrt()) * EPS * dots[i / n];
            EPS * 4.0 * w.abs() + y64[i] * (4.0 * EPS * dy64[i].abs() + d_err)
        };
        for level in levels() {
            let mut dx = vec![f32::NAN; rows * n];
            cpu::softmax_bwd(level, rows, n, &y, &dy, &mut dx);
            assert_close_by(
                &format!("softmax_bwd {level:?} rows {rows} n {n}"),
                seed,
                &dx,
                &want,
                tol,
            );
        }
    }
}

#[test]
fn all_neg_inf_row_is_nan_and_others_are_not() {
    for level in levels() {
        let x = [
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            1.0,
            f32::NEG_INFINITY,
            2.0,
        ];
        let mut y = [0.0; 6];
        cpu::softmax_fwd(level, 2, 3, &x, &mut y);
        assert!(y[..3].iter().all(|v| v.is_nan()), "{level:?}: {y:?}");
        assert_eq!(y[4], 0.0, "{level:?}");
        assert!((y[3] + y[5] - 1.0).abs() < 1e-6, "{level:?}: {y:?}");
        cpu::log_softmax_fwd(level, 2, 3, &x, &mut y);
        assert!(y[..3].iter().all(|v| v.is_nan()), "{level:?}: {y:?}");
        assert_eq!(y[4], f32::NEG_INFINITY, "{level:?}");
    }
    // The f64 reference agrees with the math.
    assert!(softmax_f64(1, 2, &[f64::NEG_INFINITY; 2])
        .iter()
        .all(|v| v.is_nan()));
}

#[test]
fn public_entry_points_use_the_detected_level() {
    let seed = seed();
    let mut r = rng(seed);
    let (rows, n) = (7, 77);
    let x = uniform(&mut r, rows * n, 5.0);
    let (mut a, mut b) = (vec![0.0; rows * n], vec![0.0; rows * n]);
    super::softmax_fwd(rows, n, &x, &mut a);
    cpu::softmax_fwd(crate::simd::level(), rows, n, &x, &mut b);
    assert_eq!(a, b, "seed {seed}");
}
