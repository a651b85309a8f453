//! A small f32 SIMD layer shared by the softmax, norm, rope and attention kernels.
//!
//! Kernels are written once, generic over [`Simd`], and compiled three times: for AVX-512
//! ([`Avx512`], 16 lanes), AVX2+FMA ([`Avx2`], 8 lanes) and a portable 8-lane array
//! ([`Portable`], plain Rust the compiler may auto-vectorise for the baseline ISA).
//! [`simd_entry!`] wraps a generic `#[inline(always)]` function in one
//! `#[target_feature]` function per ISA and dispatches on a [`Level`].
//!
//! The vector `exp` and `tanh` live here too, so every kernel uses the same approximations:
//! * `exp`: Cephes-style range reduction `x = n ln2 + r`, a degree-7 polynomial for `e^r` and
//!   a scale by `2^n` that produces subnormals and overflows to `inf` correctly; within 2 ulp of
//!   the correctly rounded result over the whole f32 range, `exp(-inf) = 0`, NaN propagates.
//! * `tanh`: Eigen's odd/even rational approximation on `[-7.905, 7.905]` (clamped outside);
//!   within a few ulp, monotone, `|tanh| < 1`.

use crate::simd::Level;

/// One f32 SIMD instruction set, as used by the kernels.
///
/// # Safety
/// Every method is `unsafe`: the caller guarantees the CPU supports the ISA (the [`simd_entry!`]
/// dispatch does) and that pointers are valid for `LANES` (or `n`) elements.
pub(crate) trait Simd: Copy {
    /// f32 lanes per vector.
    const LANES: usize;
    /// Register-block rows the attention microkernels use (bounded by the register file).
    const RMAX: usize;
    /// The dispatch level this backend implements (to re-enter [`simd_entry!`] functions).
    const LEVEL: Level;
    type V: Copy;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Loads the first `n <= LANES` lanes; the others are `fill`.
    unsafe fn load_part(p: *const f32, n: usize, fill: f32) -> Self::V;
    /// Stores the first `n <= LANES` lanes.
    unsafe fn store_part(p: *mut f32, n: usize, v: Self::V);
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise max; NaN in `b` propagates.
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c` (fused where the ISA has FMA).
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Lane `l` is `a[l]` if bit `l` of `bits` is set, else `b[l]`.
    unsafe fn select(bits: u32, a: Self::V, b: Self::V) -> Self::V;
    unsafe fn hsum(v: Self::V) -> f32;
    unsafe fn hmax(v: Self::V) -> f32;
    unsafe fn exp(x: Self::V) -> Self::V;
    unsafe fn tanh(x: Self::V) -> Self::V;
}

// ---- shared constants -------------------------------------------------------------------

/// Inputs below this give `exp = 0` (2^-150 rounds to zero); clamping keeps `n` finite.
const EXP_LO: f32 = -104.0;
/// Inputs above this overflow to `inf` (ln(f32::MAX) = 88.72).
const EXP_HI: f32 = 89.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a high part with few mantissa bits (exact `n * LN2_HI`) and the remainder.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes `expf` polynomial: e^r ~ 1 + r + r^2 (P0 r^5 + ... + P5), |r| <= ln2/2.
const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5, // Cephes' 5.0000001201e-1 rounds to 0.5 in f32
];

/// tanh clamp: beyond it the rational below has reached 1 - 3e-7.
const TANH_CLAMP: f32 = 7.905_311;
/// Eigen `generic_fast_tanh_float`: tanh x ~ x A(x^2) / B(x^2).
const TANH_A: [f32; 7] = [
    4.893_524_6e-3,
    6.372_619_3e-4,
    1.485_722_4e-5,
    5.122_297e-8,
    -8.604_672e-11,
    2.000_188e-13,
    -2.760_768_5e-16,
];
const TANH_B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];

/// Scalar version of the vector `exp` (same algorithm, unfused arithmetic).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(EXP_LO, EXP_HI);
    // Round to nearest with the 1.5 * 2^23 trick (|x log2e| < 2^22).
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * LOG2E + MAGIC) - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = EXP_P[0];
    for &c in &EXP_P[1..] {
        p = p * r + c;
    }
    let p = p * (r * r) + r + 1.0;
    // 2^n in two normal factors so subnormal results round once.
    let n = n as i32;
    let n1 = n >> 1;
    let n2 = n - n1;
    p * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23)
}

/// Scalar version of the vector `tanh`.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(-TANH_CLAMP, TANH_CLAMP);
    let x2 = x * x;
    let mut a = TANH_A[6];
    for &c in TANH_A[..6].iter().rev() {
        a = a * x2 + c;
    }
    let mut b = TANH_B[3];
    for &c in TANH_B[..3].iter().rev() {
        b = b * x2 + c;
    }
    x * (a / b)
}

// ---- portable ---------------------------------------------------------------------------

/// Eight f32 lanes in plain Rust: the fallback for CPUs without AVX2.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

const PL: usize = 8;

impl Simd for Portable {
    const LANES: usize = PL;
    const RMAX: usize = 3;
    const LEVEL: Level = Level::Scalar;
    type V = [f32; PL];
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        [x; PL]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        std::ptr::read_unaligned(p as *const [f32; PL])
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        std::ptr::write_unaligned(p as *mut [f32; PL], v)
    }
    #[inline(always)]
    unsafe fn load_part(p: *const f32, n: usize, fill: f32) -> Self::V {
        let mut v = [fill; PL];
        for (l, x) in v.iter_mut().enumerate().take(n) {
            *x = *p.add(l);
        }
        v
    }
    #[inline(always)]
    unsafe fn store_part(p: *mut f32, n: usize, v: Self::V) {
        for (l, x) in v.iter().enumerate().take(n) {
            *p.add(l) = *x;
        }
    }
    #[inline(always)]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] + b[l])
    }
    #[inline(always)]
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] - b[l])
    }
    #[inline(always)]
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] * b[l])
    }
    #[inline(always)]
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| if a[l] > b[l] { a[l] } else { b[l] })
    }
    #[inline(always)]
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|l| a[l] * b[l] + c[l])
    }
    #[inline(always)]
    unsafe fn select(bits: u32, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| if bits >> l & 1 != 0 { a[l] } else { b[l] })
    }
    #[inline(always)]
    unsafe fn hsum(v: Self::V) -> f32 {
        ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
    }
    #[inline(always)]
    unsafe fn hmax(v: Self::V) -> f32 {
        v.iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }
    #[inline(always)]
    unsafe fn exp(x: Self::V) -> Self::V {
        std::array::from_fn(|l| exp_f32(x[l]))
    }
    #[inline(always)]
    unsafe fn tanh(x: Self::V) -> Self::V {
        std::array::from_fn(|l| tanh_f32(x[l]))
    }
}

// ---- x86-64 -----------------------------------------------------------------------------

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// AVX-512F (16 lanes); uses `vscalefps` for the `2^n` scaling in `exp`.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512;

    impl Simd for Avx512 {
        const LANES: usize = 16;
        const RMAX: usize = 6;
        const LEVEL: Level = Level::Avx512;
        type V = __m512;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn load_part(p: *const f32, n: usize, fill: f32) -> __m512 {
            let k = ((1u32 << n) - 1) as __mmask16;
            _mm512_mask_loadu_ps(_mm512_set1_ps(fill), k, p)
        }
        #[inline(always)]
        unsafe fn store_part(p: *mut f32, n: usize, v: __m512) {
            let k = ((1u32 << n) - 1) as __mmask16;
            _mm512_mask_storeu_ps(p, k, v)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            _mm512_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            _mm512_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m512, b: __m512) -> __m512 {
            // MAXPS returns its second operand when either is NaN.
            _mm512_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn select(bits: u32, a: __m512, b: __m512) -> __m512 {
            _mm512_mask_blend_ps(bits as __mmask16, b, a)
        }
        #[inline(always)]
        unsafe fn hsum(v: __m512) -> f32 {
            _mm512_reduce_add_ps(v)
        }
        #[inline(always)]
        unsafe fn hmax(v: __m512) -> f32 {
            _mm512_reduce_max_ps(v)
        }
        #[inline(always)]
        unsafe fn exp(x: __m512) -> __m512 {
            let x = _mm512_min_ps(
                _mm512_set1_ps(EXP_HI),
                _mm512_max_ps(_mm512_set1_ps(EXP_LO), x),
            );
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
            );
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
            let mut p = _mm512_set1_ps(EXP_P[0]);
            for &c in &EXP_P[1..] {
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
            }
            let p = _mm512_fmadd_ps(
                p,
                _mm512_mul_ps(r, r),
                _mm512_add_ps(r, _mm512_set1_ps(1.0)),
            );
            _mm512_scalef_ps(p, n)
        }
        #[inline(always)]
        unsafe fn tanh(x: __m512) -> __m512 {
            let x = _mm512_min_ps(
                _mm512_set1_ps(TANH_CLAMP),
                _mm512_max_ps(_mm512_set1_ps(-TANH_CLAMP), x),
            );
            let x2 = _mm512_mul_ps(x, x);
            let mut a = _mm512_set1_ps(TANH_A[6]);
            for &c in TANH_A[..6].iter().rev() {
                a = _mm512_fmadd_ps(a, x2, _mm512_set1_ps(c));
            }
            let mut b = _mm512_set1_ps(TANH_B[3]);
            for &c in TANH_B[..3].iter().rev() {
                b = _mm512_fmadd_ps(b, x2, _mm512_set1_ps(c));
            }
            _mm512_mul_ps(x, _mm512_div_ps(a, b))
        }
    }

    /// AVX2 + FMA (8 lanes).
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2;

    #[inline(always)]
    unsafe fn mask8(n: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    #[inline(always)]
    unsafe fn pow2_8(n: __m256i) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            n,
            _mm256_set1_epi32(127),
        )))
    }

    impl Simd for Avx2 {
        const LANES: usize = 8;
        const RMAX: usize = 3;
        const LEVEL: Level = Level::Avx2Fma;
        type V = __m256;
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn load_part(p: *const f32, n: usize, fill: f32) -> __m256 {
            let m = mask8(n);
            _mm256_blendv_ps(
                _mm256_set1_ps(fill),
                _mm256_maskload_ps(p, m),
                _mm256_castsi256_ps(m),
            )
        }
        #[inline(always)]
        unsafe fn store_part(p: *mut f32, n: usize, v: __m256) {
            _mm256_maskstore_ps(p, mask8(n), v)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            _mm256_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            _mm256_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            _mm256_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn select(bits: u32, a: __m256, b: __m256) -> __m256 {
            let lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            let m =
                _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits as i32), lane), lane);
            _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m))
        }
        #[inline(always)]
        unsafe fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<1>(s, s)))
        }
        #[inline(always)]
        unsafe fn hmax(v: __m256) -> f32 {
            let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_max_ss(s, _mm_shuffle_ps::<1>(s, s)))
        }
        #[inline(always)]
        unsafe fn exp(x: __m256) -> __m256 {
            let x = _mm256_min_ps(
                _mm256_set1_ps(EXP_HI),
                _mm256_max_ps(_mm256_set1_ps(EXP_LO), x),
            );
            let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
            );
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
            let mut p = _mm256_set1_ps(EXP_P[0]);
            for &c in &EXP_P[1..] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
            }
            let p = _mm256_fmadd_ps(
                p,
                _mm256_mul_ps(r, r),
                _mm256_add_ps(r, _mm256_set1_ps(1.0)),
            );
            let ni = _mm256_cvtps_epi32(n);
            let n1 = _mm256_srai_epi32::<1>(ni);
            let n2 = _mm256_sub_epi32(ni, n1);
            _mm256_mul_ps(_mm256_mul_ps(p, pow2_8(n1)), pow2_8(n2))
        }
        #[inline(always)]
        unsafe fn tanh(x: __m256) -> __m256 {
            let x = _mm256_min_ps(
                _mm256_set1_ps(TANH_CLAMP),
                _mm256_max_ps(_mm256_set1_ps(-TANH_CLAMP), x),
            );
            let x2 = _mm256_mul_ps(x, x);
            let mut a = _mm256_set1_ps(TANH_A[6]);
            for &c in TANH_A[..6].iter().rev() {
                a = _mm256_fmadd_ps(a, x2, _mm256_set1_ps(c));
            }
            let mut b = _mm256_set1_ps(TANH_B[3]);
            for &c in TANH_B[..3].iter().rev() {
                b = _mm256_fmadd_ps(b, x2, _mm256_set1_ps(c));
            }
            _mm256_mul_ps(x, _mm256_div_ps(a, b))
        }
    }
}

/// Clamps a requested level to what this CPU supports (so forcing a level is always safe).
pub(crate) fn supported(level: Level) -> Level {
    level.min(crate::simd::level())
}

/// Defines `fn $name(level: Level, args..) -> ret` running the generic `$generic::<S>(args..)`
/// compiled for the ISA of `level` (clamped to the CPU's). `$generic` must be
/// `#[inline(always)] unsafe fn` so it inlines into each `#[target_feature]` wrapper.
macro_rules! simd_entry {
    ($(#[$m:meta])* $vis:vis fn $name:ident $(<$lt:lifetime>)? ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name $(<$lt>)? (level: $crate::simd::Level, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            #[inline(never)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn a512 $(<$lt>)? ($($arg: $ty),*) $(-> $ret)? {
                unsafe { $generic::<$crate::simd::vector::Avx512>($($arg),*) }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[inline(never)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn a2 $(<$lt>)? ($($arg: $ty),*) $(-> $ret)? {
                unsafe { $generic::<$crate::simd::vector::Avx2>($($arg),*) }
            }
            #[inline(never)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn portable $(<$lt>)? ($($arg: $ty),*) $(-> $ret)? {
                unsafe { $generic::<$crate::simd::vector::Portable>($($arg),*) }
            }
            match $crate::simd::vector::supported(level) {
                // SAFETY: `supported` never returns a level the CPU lacks.
                #[cfg(target_arch = "x86_64")]
                $crate::simd::Level::Avx512 => unsafe { a512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::simd::Level::Avx2Fma => unsafe { a2($($arg),*) },
                // SAFETY: the portable backend needs no CPU feature.
                _ => unsafe { portable($($arg),*) },
            }
        }
    };
}
pub(crate) use simd_entry;

/// Raw pointer that tasks write through, each to its own disjoint region.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: used only to hand disjoint output regions to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `SendPtr`, not its field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Rows per parallel chunk so that each chunk holds about `target` elements.
pub(crate) fn rows_per_chunk(rows: usize, n: usize, target: usize) -> usize {
    (target / n.max(1)).clamp(1, rows.max(1))
}

/// Below this many elements a row-wise kernel stays on the calling thread.
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 15;

#[cfg(test)]
#[inline(always)]
unsafe fn map_g<S: Simd>(x: &[f32], y: &mut [f32], tanh: bool) {
    let l = S::LANES;
    let n = x.len().min(y.len());
    let mut j = 0;
    while j < n {
        let k = (n - j).min(l);
        let v = S::load_part(x.as_ptr().add(j), k, 0.0);
        let v = if tanh { S::tanh(v) } else { S::exp(v) };
        S::store_part(y.as_mut_ptr().add(j), k, v);
        j += k;
    }
}

#[cfg(test)]
simd_entry!(
    /// `y = exp(x)` or `tanh(x)` element-wise with the vector approximations (for tests).
    pub(crate) fn map_slice(x: &[f32], y: &mut [f32], tanh: bool) => map_g
);
