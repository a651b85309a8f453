//! Randomized tests of the RoPE kernel against the f64 reference, plus the reference
//! backward checked by finite differences (and as the exact adjoint).

use super::cpu;
use super::reference::{rope_bwd_f64, rope_fwd_f64};
use crate::testutil::{assert_close_by, levels, rng, seed, to_f64, uniform};
use rand::rngs::StdRng;
use rand::Rng;

/// f32 unit roundoff.
const EPS: f64 = f32::EPSILON as f64 / 2.0;
/// f64 gradcheck tolerance: rope is linear, so central differences are exact up to
/// cancellation (~eps64 |loss| / h).
const FD_STEP: f64 = 1e-4;
const FD_TOL: f64 = 1e-8;

struct Case {
    rows: usize,
    heads: usize,
    d: usize,
    x: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// Tables built like the model's: angle = pos * theta^(-2j/d) at random positions.
fn case(r: &mut StdRng, rows: usize, heads: usize, d: usize) -> Case {
    let half = d / 2;
    let mut cos = vec![0.0; rows * half];
    let mut sin = vec![0.0; rows * half];
    for i in 0..rows {
        let pos = r.random_range(0..2048) as f64;
        for j in 0..half {
            let a = pos * 10000f64.powf(-2.0 * j as f64 / d as f64);
            cos[i * half + j] = a.cos() as f32;
            sin[i * half + j] = a.sin() as f32;
        }
    }
    let x = uniform(r, rows * heads * d, 3.0);
    Case {
        rows,
        heads,
        d,
        x,
        cos,
        sin,
    }
}

fn shapes(r: &mut StdRng) -> Vec<(usize, usize, usize)> {
    let mut s: Vec<(usize, usize, usize)> = [2, 4, 6, 16, 30, 32, 34, 64, 66, 128, 130, 256]
        .iter()
        .map(|&d| (r.random_range(1..=7), r.random_range(1..=5), d))
        .collect();
    s.extend((0..4).map(|_| {
        (
            r.random_range(1..=9),
            r.random_range(1..=9),
            2 * r.random_range(1..=70),
        )
    }));
    s.push((300, 12, 64)); // the rayon path
    s
}

#[test]
fn rope_fwd_and_bwd_match_reference_at_every_level() {
    let seed = seed();
    let mut r = rng(seed);
    for (rows, heads, d) in shapes(&mut r) {
        let c = case(&mut r, rows, heads, d);
        let (x64, c64, s64) = (to_f64(&c.x), to_f64(&c.cos), to_f64(&c.sin));
        let half = d / 2;
        // Each output is x_a c -/+ x_b s: a product and a (fused or not) multiply-add, at most
        // 3 roundings, each bounded by (|x1| + |x2|)(|c| + |s|) eps.
        let tol = |i: usize, _: f64| {
            let (row, j) = (i / (heads * d), i % d % half);
            let base = i - i % d;
            let (cc, ss) = (c64[row * half + j], s64[row * half + j]);
            3.0 * EPS * (x64[base + j].abs() + x64[base + half + j].abs()) * (cc.abs() + ss.abs())
                + 1e-38
        };
        let want = rope_fwd_f64(c.rows, c.heads, c.d, &x64, &c64, &s64);
        let want_b = rope_bwd_f64(c.rows, c.heads, c.d, &x64, &c64, &s64);
        for level in levels() {
            let ctx = format!("{level:?} rows {rows} heads {heads} d {d}");
            let mut o = vec![f32::NAN; x64.len()];
            cpu::rope(level, rows, heads, d, &c.x, &c.cos, &c.sin, 1.0, &mut o);
            assert_close_by(&format!("rope fwd {ctx}"), seed, &o, &want, tol);
            let mut b = vec![f32::NAN; x64.len()];
            cpu::rope(level, rows, heads, d, &c.x, &c.cos, &c.sin, -1.0, &mut b);
            assert_close_by(&format!("rope bwd {ctx}"), seed, &b, &want_b, tol);
        }
        // The public entry points are the same kernel.
        let (mut a, mut b) = (vec![0.0; x64.len()], vec![0.0; x64.len()]);
        super::rope_fwd(rows, heads, d, &c.x, &c.cos, &c.sin, &mut a);
        cpu::rope(
            crate::simd::level(),
            rows,
            heads,
            d,
            &c.x,
            &c.cos,
            &c.sin,
            1.0,
            &mut b,
        );
        assert_eq!(a, b, "seed {seed}");
        super::rope_bwd(rows, heads, d, &c.x, &c.cos, &c.sin, &mut a);
        cpu::rope(
            crate::simd::level(),
            rows,
            heads,
            d,
            &c.x,
            &c.cos,
            &c.sin,
            -1.0,
            &mut b,
        );
        assert_eq!(a, b, "seed {seed}");
    }
}

#[test]
fn rope_reference_backward_matches_finite_differences() {
    let seed = seed();
    let mut r = rng(seed);
    for _ in 0..4 {
        let (rows, heads, d) = (
            r.random_range(1..=3),
            r.random_range(1..=3),
            2 * r.random_range(1..=5),
        );
        let c = case(&mut r, rows, heads, d);
        let (x, cs, sn) = (to_f64(&c.x), to_f64(&c.cos), to_f64(&c.sin));
        let w: Vec<f64> = (0..x.len()).map(|_| r.random_range(-1.0..1.0)).collect();
        let loss = |x: &[f64]| -> f64 {
            rope_fwd_f64(rows, heads, d, x, &cs, &sn)
                .iter()
                .zip(&w)
                .map(|(a, b)| a * b)
                .sum()
        };
        let g = rope_bwd_f64(rows, heads, d, &w, &cs, &sn);
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += FD_STEP;
            xm[i] -= FD_STEP;
            let fd = (loss(&xp) - loss(&xm)) / (2.0 * FD_STEP);
            assert!(
                (fd - g[i]).abs() <= FD_TOL * (1.0 + fd.abs()),
                "dx[{i}] {} vs fd {fd}; seed {seed}",
                g[i]
            );
        }
        // bwd(fwd(x)) = x: the rotation is orthogonal when cos^2 + sin^2 = 1.
        let back = rope_bwd_f64(
            rows,
            heads,
            d,
            &rope_fwd_f64(rows, heads, d, &x, &cs, &sn),
            &cs,
            &sn,
        );
        let tol = 1e-6; // the f32 tables satisfy cos^2 + sin^2 = 1 only to ~1e-7
        assert!(
            back.iter().zip(&x).all(|(a, b)| (a - b).abs() <= tol * 3.0),
            "seed {seed}"
        );
    }
}
