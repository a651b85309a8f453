//! AVX2+FMA f32 microkernel: 6×16 register tile (12 ymm accumulators, 2 B loads,
//! 1 broadcast). Ragged rows get their own const-generic instantiation; ragged columns go
//! through a small stack tile. With it, AVX2 packers (8×8 in-register transposes for
//! depth-contiguous rows, 8-lane copies for depth-strided ones), as the AVX-512 kernel has:
//! the element loop they replace spends instructions per element. Measured on the main job
//! (AVX2-only EPYC, perf): packing 14.6% -> 13.7% of the step's samples, the same CPU time
//! within noise, since its large packs (the [tokens, V] logits gradient, 16 MiB, packed for
//! dX and dW) are bound by memory, not instructions; same bits.

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
    transpose: Some(transpose32),
    strided: Some(strided_f32),
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

/// How far ahead (32-bit units along a row) `transpose32` prefetches its source rows.
const PF_UNITS: usize = 64;

/// Depth rows ahead that `strided_f32` prefetches.
const PF_ROWS: usize = 8;

/// Lanes `0..n` (n <= 8) set, as a maskload / maskstore mask.
#[inline]
#[target_feature(enable = "avx2")]
fn lanes(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n.min(8) as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// In-register transpose of an 8×8 matrix of 32-bit units (`v[row]` lane `col` becomes
/// `v[col]` lane `row`): unpacks within 128-bit lanes, then swaps of the 128-bit halves.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose8(v: &mut [__m256; 8]) {
    let mut t = [_mm256_setzero_ps(); 8];
    for i in 0..4 {
        t[2 * i] = _mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    }
    // u[4q + j], 128-bit lane L: column 4L + j of rows 4q..4q+4.
    let mut u = [_mm256_setzero_ps(); 8];
    for q in 0..2 {
        u[4 * q] = _mm256_shuffle_ps::<0x44>(t[4 * q], t[4 * q + 2]);
        u[4 * q + 1] = _mm256_shuffle_ps::<0xee>(t[4 * q], t[4 * q + 2]);
        u[4 * q + 2] = _mm256_shuffle_ps::<0x44>(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = _mm256_shuffle_ps::<0xee>(t[4 * q + 1], t[4 * q + 3]);
    }
    for j in 0..4 {
        v[j] = _mm256_permute2f128_ps::<0x20>(u[j], u[4 + j]);
        v[4 + j] = _mm256_permute2f128_ps::<0x31>(u[j], u[4 + j]);
    }
}

/// [`super::cpu::Transpose32`] for AVX2: 8×8 blocks, masked at the ragged edges.
///
/// # Safety
/// See [`super::cpu::Transpose32`]; AVX2.
#[target_feature(enable = "avx2,fma")]
unsafe fn transpose32(out: *mut u32, r: usize, rows: &[*const u32], groups: usize) {
    debug_assert!(rows.len() <= r && r <= 32);
    for h in (0..r).step_by(8) {
        let hr = &rows[h.min(rows.len())..(h + 8).min(rows.len())];
        let store = lanes(r - h);
        for g0 in (0..groups).step_by(8) {
            let gn = (groups - g0).min(8);
            let load = lanes(gn);
            // Missing rows stay zero.
            let mut v = [_mm256_setzero_ps(); 8];
            for (x, &p) in v.iter_mut().zip(hr) {
                let p = p.wrapping_add(g0).cast::<f32>();
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PF_UNITS).cast());
                // SAFETY: lanes 0..gn are units g0..g0+gn < groups of a readable row;
                // masked-off lanes are not accessed.
                *x = unsafe {
                    match gn {
                        8 => _mm256_loadu_ps(p),
                        _ => _mm256_maskload_ps(p, load),
                    }
                };
            }
            transpose8(&mut v);
            for (g, x) in v.iter().enumerate().take(gn) {
                let last = g0 + g + 1 == groups;
                // SAFETY: units (g0+g)·r + h .. + min(8, r-h) lie inside out's groups·r;
                // the 6-row tile's 8-lane store reaches 2 units into the next group's row,
                // which that group's store (later, in this order) overwrites, and is never
                // used for the last group.
                unsafe {
                    let dst = out.add((g0 + g) * r + h).cast::<f32>();
                    match r - h {
                        8.. => _mm256_storeu_ps(dst, *x),
                        // vmaskmovps stores are microcoded on AMD (see `strided_6`)
                        MR if r == MR && !last => _mm256_storeu_ps(dst, *x),
                        MR if r == MR => {
                            _mm_storeu_ps(dst, _mm256_castps256_ps128(*x));
                            let hi = _mm256_extractf128_ps::<1>(*x);
                            _mm_storel_pd(dst.add(4).cast(), _mm_castps_pd(hi));
                        }
                        _ => _mm256_maskstore_ps(dst, store, *x),
                    }
                }
            }
        }
    }
}

/// [`super::cpu::StridedPack`] for f32 (KU = 1): 8-lane copies per depth step, masked at
/// the ragged edge (lanes `rows..r` written as zeros).
///
/// # Safety
/// See [`super::cpu::StridedPack`]; AVX2.
#[target_feature(enable = "avx2,fma")]
unsafe fn strided_f32(out: *mut f32, r: usize, src: *const f32, ld: usize, rows: usize, kn: usize) {
    debug_assert!(rows <= r && r <= 32);
    if r == MR && rows == MR {
        // SAFETY: as below; 4 + 2 lanes read row[0..6] and write out[p·6 .. p·6 + 6].
        return unsafe { strided_6(out, src, ld, kn) };
    }
    for p in 0..kn {
        let row = src.wrapping_add(p * ld);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(PF_ROWS * ld).cast());
        for h in (0..r).step_by(8) {
            let n = rows.saturating_sub(h);
            // SAFETY: the contract makes row[0..rows] readable and out[p·r .. p·r + r]
            // writable; masked-off lanes are not accessed.
            unsafe {
                let x = match n {
                    8.. => _mm256_loadu_ps(row.add(h)),
                    0 => _mm256_setzero_ps(),
                    _ => _mm256_maskload_ps(row.add(h), lanes(n)),
                };
                let dst = out.add(p * r + h);
                match r - h {
                    8.. => _mm256_storeu_ps(dst, x),
                    m => _mm256_maskstore_ps(dst, lanes(m), x),
                }
            }
        }
    }
}

/// [`strided_f32`] for whole A panels of the 6-row tile: a 4-lane and a 2-lane move per
/// depth row instead of masked ones. AMD cores run `vmaskmovps` stores as many micro-ops
/// (perf on the EPYC: the masked load and store took half of this packer's time, and the
/// packer ~7% of the main job's step, packing the logits gradient for dW).
///
/// # Safety
/// [`strided_f32`]'s contract with `r = rows = 6`; AVX2.
#[target_feature(enable = "avx2")]
unsafe fn strided_6(out: *mut f32, src: *const f32, ld: usize, kn: usize) {
    for p in 0..kn {
        let row = src.wrapping_add(p * ld);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(PF_ROWS * ld).cast());
        // SAFETY: row[0..6] readable, out[p·6 .. p·6 + 6] writable (contract); the 2-lane
        // half moves as one 8-byte load and store, bits unchanged.
        unsafe {
            let lo = _mm_loadu_ps(row);
            let hi = _mm_load_sd(row.add(4).cast());
            let dst = out.add(p * MR);
            _mm_storeu_ps(dst, lo);
            _mm_storel_pd(dst.add(4).cast(), hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpu::Same;
    use super::super::pack::{pack, Src};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The SIMD packers against the element loop, bit for bit (packing only moves bits):
    /// both panel widths, ragged rows and depths, depth-contiguous and depth-strided
    /// sources, odd leading dimensions.
    #[test]
    fn simd_packs_are_the_element_loop_bit_for_bit() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            eprintln!("SKIPPED: no AVX2 on this CPU");
            return;
        }
        let mut rng = StdRng::seed_from_u64(7);
        for case in 0..400 {
            let r = [6, 16][case % 2];
            let rn = rng.random_range(1..=3 * r);
            let kn = rng.random_range(1..=70);
            let (r0, p0) = (rng.random_range(0..5), rng.random_range(0..5));
            let k_contig = case % 4 < 2;
            let ld = match k_contig {
                true => p0 + kn + rng.random_range(0..9),
                false => r0 + rn + rng.random_range(0..9),
            };
            let outer = if k_contig { r0 + rn } else { p0 + kn };
            // NaN payloads, infinities and signed zeros move as bits too
            let data: Vec<f32> = (0..outer * ld)
                .map(|_| f32::from_bits(rng.random()))
                .collect();
            let src = Src {
                data: &data,
                k_contig,
                ld,
            };
            let len = rn.div_ceil(r) * kn * r;
            // `got` has a guard after the panels: the 6-row packers store 8 lanes where the
            // next group's row follows, and must not do so past the end
            const GUARD: usize = 16;
            let (mut want, mut got) = (vec![f32::NAN; len], vec![-7.0f32; len + GUARD]);
            pack::<f32, f32, Same>(&mut want, src, r0, rn, p0, kn, r, (None, None));
            let fast = (Some(super::transpose32 as _), Some(super::strided_f32 as _));
            pack::<f32, f32, Same>(&mut got[..len], src, r0, rn, p0, kn, r, fast);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got[..len]),
                bits(&want),
                "case {case}: r {r} rn {rn} kn {kn} k_contig {k_contig}"
            );
            assert!(
                got[len..].iter().all(|&x| x == -7.0),
                "case {case}: written past the panels (r {r} rn {rn} kn {kn} k_contig {k_contig})"
            );
        }
    }
}
