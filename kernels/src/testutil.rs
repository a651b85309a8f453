//! Test helpers shared by every kernel family: time-seeded RNG (printed; override with
//! `GIDD_TEST_SEED`), the SIMD levels this CPU can run, edge-value inputs, ulp distances,
//! and tolerance or bit-exact checks that report the seed on failure.

use crate::simd::Level;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A fresh seed per run, or `GIDD_TEST_SEED` to replay one. Printed, so the output cargo
/// shows for a failing test always names the seed that replays it.
pub(crate) fn seed() -> u64 {
    if let Some(s) = std::env::var("GIDD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("GIDD_TEST_SEED={s} (from the environment)");
        return s;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed);
    // Tests started in the same nanosecond still get distinct seeds.
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let c = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let s = t ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    eprintln!("GIDD_TEST_SEED={s}");
    s
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

/// The f32 values kernels most often get wrong: NaN, both infinities, both zeros,
/// subnormals (the smallest of either sign), the extremes and exact halves (rounding ties).
pub(crate) const EDGE_F32: [f32; 16] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    0.0,
    -0.0,
    1e-40,
    -1e-45,
    f32::MIN_POSITIVE,
    f32::MAX,
    f32::MIN,
    1.0,
    -1.0,
    0.5,
    -2.5,
    3.5,
    1e30,
];

/// `n` values uniform in `[-a, a)` with about one in eight replaced by an [`EDGE_F32`].
pub(crate) fn with_edges(rng: &mut StdRng, n: usize, a: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            if rng.random_range(0..8) == 0 {
                EDGE_F32[rng.random_range(0..EDGE_F32.len())]
            } else {
                rng.random_range(-a..a)
            }
        })
        .collect()
}

pub(crate) fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

pub(crate) fn to_bf16(x: &[f32]) -> Vec<bf16> {
    x.iter().map(|&v| bf16::from_f32(v)).collect()
}

/// The values f16 kernels most often get wrong beyond [`EDGE_F32`]'s: the largest finite
/// (65504), the first value that rounds to inf (65520, a tie) and one just below it, the
/// smallest normal, subnormals (the smallest, a rounding tie between the two smallest, one
/// that flushes to zero) and a tie of normal rounding.
pub(crate) const EDGE_F16: [f32; 10] = [
    65504.0,
    65520.0,
    65519.0,
    -70000.0,
    6.103_515_6e-5,
    5.960_464_5e-8,
    8.940_697e-8,
    2.0e-8,
    -3.0e-6,
    1.000_488_3,
];

/// `x` rounded to f16 (ties to even), with one in six values replaced by an [`EDGE_F16`].
pub(crate) fn to_f16_with_edges(rng: &mut StdRng, x: &[f32]) -> Vec<f16> {
    x.iter()
        .map(|&v| {
            let v = if rng.random_range(0..6) == 0 {
                EDGE_F16[rng.random_range(0..EDGE_F16.len())]
            } else {
                v
            };
            f16::from_f32(v)
        })
        .collect()
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
/// `got` may be f32, bf16, f16 or f64: all widen exactly.
#[track_caller]
pub(crate) fn assert_close_by<G: Copy + Into<f64>>(
    what: &str,
    seed: u64,
    got: &[G],
    want: &[f64],
    tol: impl Fn(usize, f64) -> f64,
) {
    assert_eq!(got.len(), want.len(), "{what}: length (seed {seed})");
    let mut worst: Option<(usize, f64, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g: f64 = g.into();
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
            got[i].into(),
            want[i]
        );
    }
}

/// An element whose exact bit pattern a test can compare (copies must preserve NaN
/// payloads and the sign of zero).
pub(crate) trait Bits: Copy + std::fmt::Debug {
    fn bits(self) -> u64;
}

macro_rules! bits {
    ($($t:ty => $f:expr),* $(,)?) => {
        $(impl Bits for $t {
            fn bits(self) -> u64 {
                $f(self)
            }
        })*
    };
}
bits!(
    f32 => |x: f32| x.to_bits() as u64,
    f64 => |x: f64| x.to_bits(),
    bf16 => |x: bf16| x.to_bits() as u64,
    f16 => |x: f16| x.to_bits() as u64,
    i32 => |x: i32| x as u32 as u64,
    i64 => |x: i64| x as u64,
    u32 => |x: u32| x as u64,
    u8 => |x: u8| x as u64,
);

/// Checks `got` and `want` are equal bit for bit; panics with the seed and the first
/// differing element otherwise.
#[track_caller]
pub(crate) fn assert_same_bits<T: Bits>(what: &str, seed: u64, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: length (seed {seed})");
    if let Some(i) = (0..got.len()).find(|&i| got[i].bits() != want[i].bits()) {
        panic!(
            "{what}: element {i} of {}: got {:?} want {:?}; \
             seed {seed} (rerun with GIDD_TEST_SEED={seed})",
            got.len(),
            got[i],
            want[i]
        );
    }
}
