//! exp and ln written with arithmetic and bit casts only, so loops over slices
//! that call them vectorise. Accuracy: a few ulp over the ranges the loss uses
//! (tested against f64 in tests.rs).

const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
const LOG2E: f32 = std::f32::consts::LOG2_E;

/// e^x; exactly 0 below -87.3 (where the result would be subnormal), +inf above 88.7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(-87.3, 88.7);
    let n = (xc * LOG2E).round();
    let r = xc - n * LN2_HI - n * LN2_LO;
    // e^r on [-ln2/2, ln2/2], Taylor to r^7 (relative error < 1e-8 there)
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // n is integral and within [-126, 128]: adding 1.5 * 2^23 puts it in the low significand
    // bits, an exact conversion that vectorises (`n as i32` saturates and tests NaN lane by
    // lane, in scalar code). A NaN x keeps the old scale of 1, so its result keeps its bits.
    let ni = (n + 12_582_912.0).to_bits() as i32 - 0x4B40_0000;
    let scale = if n.is_nan() {
        1.0
    } else {
        f32::from_bits(((ni + 127) as u32) << 23)
    };
    let y = p * scale;
    if x < -87.3 {
        0.0
    } else if x > 88.7 {
        f32::INFINITY
    } else {
        y
    }
}

/// ln(y) for finite y > 0 (callers floor y at f32::MIN_POSITIVE first).
#[inline(always)]
pub fn ln(y: f32) -> f32 {
    let bits = y.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0); // |t| <= 0.1716
    let t2 = t * t;
    let s = t * (2.0 + t2 * (2.0 / 3.0 + t2 * (2.0 / 5.0 + t2 * (2.0 / 7.0 + t2 * (2.0 / 9.0)))));
    e as f32 * LN2_HI + (s + e as f32 * LN2_LO)
}

/// Sum of a slice with 16 partial sums (vectorises; f32 partials, f64 total).
#[inline(always)]
pub fn sum(xs: &[f32]) -> f64 {
    let mut acc = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().map(|&a| a as f64).sum::<f64>() + rest.iter().map(|&a| a as f64).sum::<f64>()
}

/// Max of a slice and `init` with 16 partial maxima (vectorises); NaN entries are ignored,
/// as `f32::max` ignores them, so the order of the partials does not change the result.
#[inline(always)]
pub fn max(xs: &[f32], init: f32) -> f32 {
    let mut acc = [init; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    rest.iter().chain(&acc).fold(init, |a, &y| a.max(y))
}

#[cfg(test)]
mod tests {
    /// [`super::exp`] with the exponent taken by a saturating cast, the form the bit trick
    /// replaced: the two agree on every input tried, bit for bit.
    fn exp_cast(x: f32) -> f32 {
        let xc = x.clamp(-87.3, 88.7);
        let n = (xc * super::LOG2E).round();
        let r = xc - n * super::LN2_HI - n * super::LN2_LO;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0
                        + r * (1.0 / 24.0
                            + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
        let y = p * f32::from_bits((((n as i32) + 127) as u32) << 23);
        if x < -87.3 {
            0.0
        } else if x > 88.7 {
            f32::INFINITY
        } else {
            y
        }
    }

    #[test]
    fn exp_matches_the_cast_form_bit_for_bit() {
        let mut r = crate::testutil::rng(crate::testutil::seed());
        let edges = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            -87.3,
            -87.299_99,
            88.7,
            88.699_99,
            88.4,
            -1e-45,
            1e30,
        ];
        let random = (0..2_000_000).map(|i| {
            use rand::Rng;
            if i % 2 == 0 {
                f32::from_bits(r.random())
            } else {
                r.random_range(-100.0f32..100.0)
            }
        });
        for x in edges.into_iter().chain(random) {
            let (a, b) = (super::exp(x), exp_cast(x));
            assert_eq!(a.to_bits(), b.to_bits(), "exp({x:e}): {a:e} vs {b:e}");
        }
    }
}
