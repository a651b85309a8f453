//! The vector `exp` and `tanh` of every SIMD level (and their scalar twins) against f64.

use super::vector;
use crate::testutil::{levels, rng, seed, ulp_dist};
use rand::Rng;

/// The polynomial exp is within this many ulp of the correctly rounded result (measured ~1).
const EXP_MAX_ULP: u64 = 2;
/// The rational tanh: ~1 ulp of approximation error plus the f32 evaluation of two
/// polynomials (cancellation in the alternating numerator near saturation) and a division;
/// measured 4 (|x| < 1) to 6 ulp (|x| -> 7.9, where 1 ulp = 6e-8 absolute). For softcapped
/// attention scores that is c * 4e-7 absolute, below the f32 error of the q.k dot itself.
const TANH_MAX_ULP: u64 = 8;
/// Beyond the clamp (|x| > 7.905) tanh returns 1 - 2.7e-7 instead of rounding to 1.
const TANH_SAT_ABS: f64 = 3e-7;

fn exp_inputs(rng: &mut impl Rng) -> Vec<f32> {
    let mut x = vec![
        f32::NEG_INFINITY,
        f32::INFINITY,
        f32::NAN,
        0.0,
        -0.0,
        88.72,
        88.7228,
        88.73,
        89.0,
        100.0,
        -87.33,
        -87.34,
        -100.0,
        -103.0,
        -103.98,
        -104.0,
        -1e30,
        f32::MIN,
        f32::MAX,
        1e-30,
        -1e-30,
        f32::MIN_POSITIVE,
    ];
    // A dense sweep over the interesting range, including the subnormal outputs below -87.3.
    let n = 400_000;
    x.extend((0..n).map(|i| -110.0 + 200.0 * i as f32 / n as f32));
    x.extend((0..100_000).map(|_| rng.random_range(-1.0f32..1.0)));
    x.extend((0..100_000).map(|_| rng.random_range(-89.0f32..89.0)));
    x
}

#[test]
fn exp_matches_f64_within_ulps() {
    let seed = seed();
    let x = exp_inputs(&mut rng(seed));
    let want: Vec<f32> = x.iter().map(|&v| (v as f64).exp() as f32).collect();
    let scalar: Vec<f32> = x.iter().map(|&v| vector::exp_f32(v)).collect();
    let mut outs = vec![("scalar exp_f32", scalar)];
    for level in levels() {
        let mut y = vec![0.0; x.len()];
        vector::map_slice(level, &x, &mut y, false);
        outs.push((["portable", "avx2", "avx512"][level as usize], y));
    }
    for (name, y) in outs {
        let worst = (0..x.len())
            .map(|i| ulp_dist(y[i], want[i]))
            .max()
            .unwrap_or(0);
        eprintln!("{name}: exp max error {worst} ulp");
        for i in 0..x.len() {
            let d = ulp_dist(y[i], want[i]);
            assert!(
                d <= EXP_MAX_ULP,
                "{name}: exp({:e}) = {:e}, want {:e} ({d} ulp); seed {seed}",
                x[i],
                y[i],
                want[i]
            );
        }
    }
}

#[test]
fn tanh_matches_f64() {
    let seed = seed();
    let mut r = rng(seed);
    let mut x: Vec<f32> = vec![
        0.0,
        -0.0,
        1e-38,
        -1e-30,
        1e-10,
        7.9,
        7.91,
        -8.0,
        20.0,
        1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    x.extend((0..200_000).map(|_| r.random_range(-12.0f32..12.0)));
    x.extend((0..50_000).map(|_| r.random_range(-0.01f32..0.01)));
    let want: Vec<f32> = x.iter().map(|&v| (v as f64).tanh() as f32).collect();
    let scalar: Vec<f32> = x.iter().map(|&v| vector::tanh_f32(v)).collect();
    let mut outs = vec![("scalar tanh_f32", scalar)];
    for level in levels() {
        let mut y = vec![0.0; x.len()];
        vector::map_slice(level, &x, &mut y, true);
        outs.push((["portable", "avx2", "avx512"][level as usize], y));
    }
    for (name, y) in &outs {
        for (lo, hi) in [(0.0, 1.0), (1.0, 3.0), (3.0, 7.9)] {
            let worst = (0..x.len())
                .filter(|&i| x[i].abs() >= lo && x[i].abs() <= hi)
                .map(|i| ulp_dist(y[i], want[i]))
                .max();
            eprintln!("{name}: tanh max error {worst:?} ulp on {lo} <= |x| <= {hi}");
        }
    }
    for (name, y) in outs {
        for i in 0..x.len() {
            let ok = if x[i].abs() <= 7.9 {
                ulp_dist(y[i], want[i]) <= TANH_MAX_ULP
            } else if x[i].is_nan() {
                y[i].is_nan()
            } else {
                (y[i] as f64 - want[i] as f64).abs() <= TANH_SAT_ABS && y[i].abs() <= 1.0
            };
            assert!(
                ok,
                "{name}: tanh({:e}) = {:e}, want {:e}; seed {seed}",
                x[i], y[i], want[i]
            );
        }
    }
}
