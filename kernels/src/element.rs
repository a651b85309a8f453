//! The element types kernels store, with the one f64 round trip every dtype shares.

use half::{bf16, f16};

/// A storable element. `u8` is the storage of booleans (0 or 1).
pub trait Element: Copy + Send + Sync + Default + 'static {
    /// The value, widened (exact for every type here except i64 beyond 2^53).
    fn to_f64(self) -> f64;
    /// `x` in this type: floats round to nearest, integers truncate toward zero and
    /// saturate, `u8` (bool) is `x != 0`.
    fn from_f64(x: f64) -> Self;
}

macro_rules! element {
    ($($t:ty => ($to:expr, $from:expr)),* $(,)?) => {
        $(impl Element for $t {
            #[inline(always)]
            fn to_f64(self) -> f64 {
                $to(self)
            }
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                $from(x)
            }
        })*
    };
}
element!(
    f32 => (|x: f32| x as f64, |x: f64| x as f32),
    f64 => (|x: f64| x, |x: f64| x),
    bf16 => (bf16::to_f64, bf16::from_f64),
    f16 => (f16::to_f64, f16::from_f64),
    i32 => (|x: i32| x as f64, |x: f64| x as i32),
    u32 => (|x: u32| x as f64, |x: f64| x as u32),
    i64 => (|x: i64| x as f64, |x: f64| x as i64),
    u8 => (|x: u8| x as f64, |x: f64| u8::from(x != 0.0)),
);

/// A 16-bit float (bf16 or f16): stored rounded, computed in f32 (it widens exactly) and
/// rounded once to nearest even on store (f16: past 65504 to inf, below 2^-14 subnormal).
pub trait Half: Element + PartialOrd {
    fn to_f32(self) -> f32;
    fn from_f32(x: f32) -> Self;
    /// `dst[i] = from_f32(src[i])`, vectorised where the type allows.
    fn round_slice(src: &[f32], dst: &mut [Self]);
}

impl Half for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        crate::convert::bf16_to_f32(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        crate::convert::f32_to_bf16(x)
    }
    fn round_slice(src: &[f32], dst: &mut [Self]) {
        crate::convert::f32_to_bf16_slice(src, dst)
    }
}

impl Half for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn round_slice(src: &[f32], dst: &mut [Self]) {
        // half's slice conversion uses F16C where the CPU has it (same rounding)
        half::slice::HalfFloatSliceExt::convert_from_f32_slice(dst, src)
    }
}
