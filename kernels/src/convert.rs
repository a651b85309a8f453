//! bf16 <-> f32 conversions and bit views, written so the compiler vectorises them:
//! `half`'s per-value conversions branch and run one element at a time. Rounding is to
//! nearest even and NaN stays quiet, bit for bit `half`.

use half::bf16;

/// The bit patterns of a bf16 slice.
pub fn bf16_bits(x: &[bf16]) -> &[u16] {
    // SAFETY: bf16 is a repr(transparent) u16: same size, alignment and validity.
    unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u16, x.len()) }
}

/// `x` widened to f32 (exact: bf16 is the top half of an f32), bit for bit `half::bf16::to_f32`.
#[inline(always)]
pub fn bf16_to_f32(x: bf16) -> f32 {
    let b = x.to_bits() as u32;
    f32::from_bits(if b & 0x7fff > 0x7f80 {
        (b | 0x40) << 16
    } else {
        b << 16
    })
}

/// The bf16 nearest to `x` (ties to even), bit for bit `half::bf16::from_f32`.
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> bf16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    let nan = ((b >> 16) | 0x40) as u16;
    bf16::from_bits(if b & 0x7fff_ffff > 0x7f80_0000 {
        nan
    } else {
        rounded
    })
}

/// dst[i] = f32_to_bf16(src[i]).
pub fn f32_to_bf16_slice(src: &[f32], dst: &mut [bf16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32_to_bf16(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every class of input against `half`'s scalar reference: random bit patterns (all
    /// exponents, NaN payloads, subnormals), ties, and the edges around the largest finite.
    #[test]
    fn conversions_equal_half_bit_for_bit() {
        let mut s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut xs: Vec<f32> = (0..200_000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                f32::from_bits(s as u32)
            })
            .collect();
        for b in [
            0u32,
            0x8000_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0x7f80_0001,
            0xffff_ffff,
            0x7f7f_ffff,
            0x7f7f_8000,
            0x7f7f_7fff,
            0x3f80_8000,
            0x3f81_8000,
            0x0000_8000,
            0x0001_8000,
            0x0000_0001,
        ] {
            xs.push(f32::from_bits(b));
        }
        let mut got = vec![bf16::ZERO; xs.len()];
        f32_to_bf16_slice(&xs, &mut got);
        for h in 0..=u16::MAX {
            let x = bf16::from_bits(h);
            assert_eq!(bf16_to_f32(x).to_bits(), x.to_f32().to_bits(), "{h:#06x}");
        }
        for (x, g) in xs.iter().zip(&got) {
            assert_eq!(
                g.to_bits(),
                bf16::from_f32(*x).to_bits(),
                "{x:e} ({:#010x})",
                x.to_bits()
            );
        }
    }
}
