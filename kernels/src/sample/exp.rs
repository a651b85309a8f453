//! e^x in f64 for the sampler's softmax, written with arithmetic and bit casts only so the
//! loop over a row vectorises (libm's `exp` is one call per element: on the generation
//! benchmark, 128 rows x V 4096 per step, that was ~12% of the whole run).
//!
//! Within 2 ulp of the correctly rounded result for results >= 2^-1022 (tested against
//! libm); subnormal results may round twice. The same source is compiled per instruction
//! set (`simd_entry!`), with no FMA contraction in Rust, so every level gives the same bits.

use crate::simd::vector::{simd_entry, Simd};

/// ln 2 split so that n * LN2_HI is exact for |n| < 2^21 (fdlibm's constants).
const LN2_HI: f64 = 0.693_147_180_369_123_8; // 0x3FE62E42FEE00000
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10; // 0x3DEA39EF35793C76
const LOG2E: f64 = std::f64::consts::LOG2_E;
/// 1.5 * 2^52: adding it rounds a value below 2^51 to an integer held in the low bits.
const SHIFTER: f64 = 6_755_399_441_055_744.0;
/// Below this e^x is 0 in f64 (half the smallest subnormal), above the next it overflows.
const LOW: f64 = -745.2;
const HIGH: f64 = 709.79;

/// e^x: 0 for x <= -745.2 (and -inf), +inf above 709.79, NaN for NaN.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    // (a NaN stays NaN through the clamp and is answered at the end)
    let xc = x.clamp(LOW, HIGH);
    let t = xc * LOG2E + SHIFTER;
    let n = t - SHIFTER; // round(x / ln2), ties to even
    let r = xc - n * LN2_HI - n * LN2_LO; // |r| <= ln2 / 2
                                          // e^r by Taylor to r^13: the first term left out is below 5e-18 relative there
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // n in [-1075, 1024] as an integer from t's low bits (an `as` cast saturates and
    // tests NaN lane by lane); 2^n applied as 2^h * 2^(n-h), each factor a normal number,
    // so subnormal results and results near the overflow edge come out right.
    let ni = (t.to_bits() as i64).wrapping_sub(SHIFTER.to_bits() as i64);
    let h = ni >> 1;
    let s1 = f64::from_bits(((h + 1023) as u64) << 52);
    let s2 = f64::from_bits(((ni - h + 1023) as u64) << 52);
    let y = p * s1 * s2;
    if x.is_nan() {
        x
    } else if x < LOW {
        0.0
    } else if x > HIGH {
        f64::INFINITY
    } else {
        y
    }
}

/// Generic over the ISA only so that `simd_entry!` compiles it once per instruction set.
#[inline(always)]
unsafe fn exp_shifted<S: Simd>(x: &[f64], m: f64, out: &mut [f64]) {
    for (o, &y) in out.iter_mut().zip(x) {
        *o = exp(y - m);
    }
}

simd_entry!(
    /// out[i] = e^(x[i] - m), as [`exp`] computes it, on the given SIMD level.
    pub fn exp_shifted_at(x: &[f64], m: f64, out: &mut [f64]) => exp_shifted
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Level;

    #[test]
    fn ln2_split_is_fdlibms() {
        assert_eq!(LN2_HI.to_bits(), 0x3FE6_2E42_FEE0_0000);
        assert_eq!(LN2_LO.to_bits(), 0x3DEA_39EF_3579_3C76);
    }

    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn within_two_ulp_of_libm_and_exact_at_the_edges() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut worst = 0;
        for i in 0..2_000_000 {
            // the softmax's range (x - max <= 0) densely, the whole domain too
            let x = if i % 2 == 0 {
                -40.0 * next()
            } else {
                -708.0 + 1417.0 * next()
            };
            let (got, want) = (exp(x), x.exp());
            worst = worst.max(ulps(got, want));
            assert!(ulps(got, want) <= 2, "exp({x:e}) = {got:e}, libm {want:e}");
        }
        assert!(
            worst >= 1,
            "no rounding difference at all: the test does not test"
        );
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(-746.0), 0.0);
        assert_eq!(exp(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp(710.0), f64::INFINITY);
        assert!(exp(f64::NAN).is_nan());
        // the largest finite and the subnormal range keep libm's value to within rounding
        assert!(ulps(exp(709.78), 709.78f64.exp()) <= 2);
        for x in [-708.5, -720.0, -740.0, -745.0] {
            let (got, want) = (exp(x), f64::exp(x));
            assert!(
                (got - want).abs() <= 2.0 * f64::from_bits(1) + want * 4e-16,
                "exp({x}) = {got:e}, libm {want:e}"
            );
        }
    }

    #[test]
    fn every_simd_level_gives_the_same_bits() {
        let x: Vec<f64> = (0..4099)
            .map(|i| -30.0 + 0.013 * i as f64 + if i % 7 == 0 { -1e3 } else { 0.0 })
            .chain([f64::NEG_INFINITY, f64::NAN, 0.0, -0.0, 1e-300, 709.0])
            .collect();
        let mut want = vec![0.0; x.len()];
        exp_shifted_at(Level::Scalar, &x, 0.5, &mut want);
        for (w, &y) in want.iter().zip(&x) {
            let e = exp(y - 0.5);
            assert!(w.to_bits() == e.to_bits() || (w.is_nan() && e.is_nan()));
        }
        for level in [Level::Avx2Fma, Level::Avx512] {
            let mut got = vec![0.0; x.len()];
            exp_shifted_at(level, &x, 0.5, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                    "{level:?} element {i}: {g:e} vs {w:e}"
                );
            }
        }
    }
}
