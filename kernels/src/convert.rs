//! f32 -> bf16 rounding (round to nearest even, NaN kept quiet), written so the compiler
//! vectorises it: `half`'s per-value conversion branches and runs one element at a time.

use half::bf16;

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
    fn rounding_equals_half_bit_for_bit() {
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
