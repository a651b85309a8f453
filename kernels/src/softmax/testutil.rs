//! Shared test helpers: time-seeded RNG (override with `GIDD_TEST_SEED`), the SIMD levels
//! this CPU can run, ulp distances and tolerance checks that report the seed on failure.

use crate::simd::Level;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A fresh seed per run (printed by every failing check), or `GIDD_TEST_SEED` to replay one.
pub(crate) fn seed() -> u64 {
    if let Some(s) = std::env::var("GIDD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed);
    // Tests started in the same nanosecond still get distinct seeds.
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let c = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    t ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

pub(crate) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Every SIMD level this CPU supports (the portable path always).
pub(crate) fn levels() -> Vec<Level> {
    [Level::Scalar, Level::Avx2Fma, Level::Avx512]
        .into_iter()
        .filter(|&l| l <= crate::simd::level())
        .collect()
}

/// `n` values uniform in `[-a, a)`.
pub(crate) fn uniform(rng: &mut StdRng, n: usize, a: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-a..a)).collect()
}

pub(crate) fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Distance in units in the last place between two f32 (0 for equal, including both NaN).
pub(crate) fn ulp_dist(a: f32, b: f32) -> u64 {
    if a.is_nan() && b.is_nan() {
        return 0;
    }
    if a.is_nan() || b.is_nan() {
        return u64::MAX;
    }
    let key = |x: f32| {
        let b = x.to_bits() as i64;
        if b & 0x8000_0000 != 0 {
            -(b & 0x7fff_ffff)
        } else {
            b
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// Checks `|got - want| <= tol(index, want)` element-wise (NaN must match NaN, infinities
/// must be equal); panics with the seed, the context and the worst element otherwise.
#[track_caller]
pub(crate) fn assert_close_by(
    what: &str,
    seed: u64,
    got: &[f32],
    want: &[f64],
    tol: impl Fn(usize, f64) -> f64,
) {
    assert_eq!(got.len(), want.len(), "{what}: length (seed {seed})");
    let mut worst: Option<(usize, f64, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let t = tol(i, w);
        let bad = if w.is_nan() || g.is_nan() {
            !(w.is_nan() && g.is_nan())
        } else if w.is_infinite() || g.is_infinite() {
            g != w
        } else {
            (g - w).abs() > t
        };
        if bad {
            let excess = if (g - w).is_nan() || t == 0.0 {
                f64::INFINITY
            } else {
                (g - w).abs() / t
            };
            if worst.is_none_or(|(_, e, _)| excess > e) {
                worst = Some((i, excess, t));
            }
        }
    }
    if let Some((i, e, t)) = worst {
        panic!(
            "{what}: mismatch at {i}: got {} want {} (error {e:.2}x the tolerance {t:e}); \
             seed {seed} (rerun with GIDD_TEST_SEED={seed})",
            got[i], want[i]
        );
    }
}
