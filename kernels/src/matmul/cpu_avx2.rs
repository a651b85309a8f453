//! AVX2+FMA f32 microkernel: 6×16 register tile (12 ymm accumulators, 2 B loads,
//! 1 broadcast). Ragged rows get their own const-generic instantiation; ragged columns go
//! through a small stack tile.

use super::cpu::Kernel;
use std::arch::x86_64::*;

const MR: usize = 6;
const NR: usize = 16;

/// f32, 6×16; A block 96×512 (192 KiB, fits the smaller L2s of AVX2-only CPUs), B block
/// 512×1024 (2 MiB).
pub(super) static F32: Kernel<f32> = Kernel {
    mr: MR,
    nr: NR,
    mc: 96,
    kc: 512,
    nc: 1024,
    micro: micro_f32,
    micro_bf16: None,
    transpose: None,
    strided: None,
};

/// # Safety
/// [`super::cpu::MicroFn`]'s contract; the CPU has AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
unsafe fn micro_f32(
    steps: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    acc: bool,
) {
    // SAFETY: contract forwarded unchanged; `mr` is in 1..=MR.
    unsafe {
        match mr {
            6 => tile_f32::<6>(steps, a, b, c, ldc, nr, acc),
            5 => tile_f32::<5>(steps, a, b, c, ldc, nr, acc),
            4 => tile_f32::<4>(steps, a, b, c, ldc, nr, acc),
            3 => tile_f32::<3>(steps, a, b, c, ldc, nr, acc),
            2 => tile_f32::<2>(steps, a, b, c, ldc, nr, acc),
            _ => tile_f32::<1>(steps, a, b, c, ldc, nr, acc),
        }
    }
}

/// `R`×16 tile.
///
/// # Safety
/// [`super::cpu::MicroFn`]'s contract with `mr = R`; AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_f32<const R: usize>(
    steps: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    nr: usize,
    acc: bool,
) {
    let mut c0 = [_mm256_setzero_ps(); R];
    let mut c1 = [_mm256_setzero_ps(); R];
    for s in 0..steps {
        // SAFETY: step s < steps reads A[s·MR .. s·MR+R] and B[s·NR .. s·NR+16], inside the
        // whole panels the contract guarantees.
        unsafe {
            let (ap, bp) = (a.add(s * MR), b.add(s * NR));
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for i in 0..R {
                let x = _mm256_broadcast_ss(&*ap.add(i));
                c0[i] = _mm256_fmadd_ps(x, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(x, b1, c1[i]);
            }
        }
    }
    for i in 0..R {
        let p = c.wrapping_add(i * ldc);
        if nr == NR {
            // SAFETY: 16 valid columns in row i (contract).
            unsafe {
                let (mut v0, mut v1) = (c0[i], c1[i]);
                if acc {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.add(8)));
                }
                _mm256_storeu_ps(p, v0);
                _mm256_storeu_ps(p.add(8), v1);
            }
        } else {
            let mut t = [0.0f32; NR];
            // SAFETY: `t` holds 16 floats.
            unsafe {
                _mm256_storeu_ps(t.as_mut_ptr(), c0[i]);
                _mm256_storeu_ps(t.as_mut_ptr().add(8), c1[i]);
            }
            // SAFETY: columns 0..nr of row i are valid (contract).
            let row = unsafe { std::slice::from_raw_parts_mut(p, nr) };
            for (d, &v) in row.iter_mut().zip(&t) {
                *d = if acc { *d + v } else { v };
            }
        }
    }
}
