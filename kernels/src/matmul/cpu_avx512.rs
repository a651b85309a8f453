//! AVX-512 microkernels: f32 (FMA) and bf16 (`vdpbf16ps`), both a 14×32 register tile.
//!
//! Per k-step the tile loads two 16-lane vectors of the B panel and, for each of its 14 rows,
//! broadcasts one A value (folded into the FMA as an `{1to16}` memory operand) and issues two
//! FMAs into 28 accumulators: 28 + 2 of the 32 zmm registers. For bf16 a "k-step" is a pair of
//! k values: A holds `(a[i,p], a[i,p+1])` as one 32-bit broadcast, B holds the pair per column,
//! and `vdpbf16ps` adds both products into an f32 lane, so each instruction does 2× the f32 work.
//! Ragged rows (`mr < 14`) get their own const-generic instantiation; ragged columns are
//! masked stores (packed panels are zero-padded, so the loads never need masks).

use super::cpu::Kernel;
use half::bf16;
use std::arch::x86_64::*;

const MR: usize = 14;
const NR: usize = 32;
/// The C tile is prefetched into L1 this many k-steps before the loop ends (~28 cycles each):
/// early enough to arrive, late enough not to be evicted by the streaming panels.
const PF_STEPS: usize = 24;

/// f32, 14×32. A block 140×1024 (560 KiB of the 1 MiB L2 of Zen 4), B block 1024×1024
/// (4 MiB, L3). A deep KC was measured best here: each tile runs 1024 k-steps (~29k cycles)
/// per C load/store, and both panels stream from L2 at ~7 B/cycle, far below its bandwidth.
pub(super) static F32: Kernel<f32> = Kernel {
    mr: MR,
    nr: NR,
    mc: 140,
    kc: 1024,
    nc: 1024,
    micro: micro_f32,
    micro_bf16: Some(micro_f32_to_bf16),
    transpose: Some(transpose32),
    strided: Some(strided_f32),
};

/// bf16, 14×32 over k-pairs; KC counts k values (even): panels of the same bytes as f32's.
pub(super) static BF16: Kernel<bf16> = Kernel {
    mr: MR,
    nr: NR,
    mc: 140,
    kc: 2048,
    nc: 1024,
    micro: micro_bf16,
    micro_bf16: Some(micro_bf16_to_bf16),
    transpose: Some(transpose32),
    strided: Some(strided_bf16),
};

/// Dispatch on the ragged row count to a const-generic tile.
/// `$out` picks the store: f32 (`false`) or rounded to bf16 (`true`).
macro_rules! by_rows {
    ($tile:ident, $out:expr, $mr:expr, ($($arg:expr),*)) => {
        match $mr {
            14 => $tile::<14, $out>($($arg),*),
            13 => $tile::<13, $out>($($arg),*),
            12 => $tile::<12, $out>($($arg),*),
            11 => $tile::<11, $out>($($arg),*),
            10 => $tile::<10, $out>($($arg),*),
            9 => $tile::<9, $out>($($arg),*),
            8 => $tile::<8, $out>($($arg),*),
            7 => $tile::<7, $out>($($arg),*),
            6 => $tile::<6, $out>($($arg),*),
            5 => $tile::<5, $out>($($arg),*),
            4 => $tile::<4, $out>($($arg),*),
            3 => $tile::<3, $out>($($arg),*),
            2 => $tile::<2, $out>($($arg),*),
            _ => $tile::<1, $out>($($arg),*),
        }
    };
}

/// # Safety
/// [`super::cpu::MicroFn`]'s contract; the CPU has AVX-512F.
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
    unsafe { by_rows!(tile_f32, false, mr, (steps, a, b, c.cast(), ldc, nr, acc)) }
}

/// # Safety
/// [`super::cpu::MicroBf16Fn`]'s contract; the CPU has AVX-512F and AVX-512BW.
unsafe fn micro_f32_to_bf16(
    steps: usize,
    a: *const f32,
    b: *const f32,
    c: *mut bf16,
    ldc: usize,
    mr: usize,
    nr: usize,
) {
    // SAFETY: contract forwarded unchanged; `mr` is in 1..=MR.
    unsafe { by_rows!(tile_f32, true, mr, (steps, a, b, c.cast(), ldc, nr, false)) }
}

/// # Safety
/// [`super::cpu::MicroBf16Fn`]'s contract; the CPU has AVX-512F, AVX-512BW and AVX512_BF16.
unsafe fn micro_bf16_to_bf16(
    steps: usize,
    a: *const bf16,
    b: *const bf16,
    c: *mut bf16,
    ldc: usize,
    mr: usize,
    nr: usize,
) {
    // SAFETY: contract forwarded unchanged; `mr` is in 1..=MR.
    unsafe { by_rows!(tile_bf16, true, mr, (steps, a, b, c.cast(), ldc, nr, false)) }
}

/// # Safety
/// [`super::cpu::MicroFn`]'s contract; the CPU has AVX-512F and AVX512_BF16.
#[allow(clippy::too_many_arguments)]
unsafe fn micro_bf16(
    steps: usize,
    a: *const bf16,
    b: *const bf16,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    acc: bool,
) {
    // SAFETY: contract forwarded unchanged; `mr` is in 1..=MR.
    unsafe { by_rows!(tile_bf16, false, mr, (steps, a, b, c.cast(), ldc, nr, acc)) }
}

/// Starts pulling the C tile into L1 while the k-loop runs (prefetches never fault): rows of
/// 32 f32 (two lines) or, with `OUT16`, of 32 bf16 (one line).
#[inline]
#[target_feature(enable = "avx512f")]
fn prefetch_tile<const R: usize, const OUT16: bool>(c: *mut u8, ldc: usize) {
    let row_bytes = if OUT16 { 2 * ldc } else { 4 * ldc };
    for i in 0..R {
        let p = c.wrapping_add(i * row_bytes);
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
        if !OUT16 {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64).cast());
        }
    }
}

/// Lane masks for the two 16-wide halves of a row of `nr` columns.
fn col_masks(nr: usize) -> (__mmask16, __mmask16) {
    let bits = |w: usize| {
        if w >= 16 {
            0xffff
        } else {
            ((1u32 << w) - 1) as __mmask16
        }
    };
    (bits(nr), bits(nr.saturating_sub(16)))
}

/// Writes (or adds) `R` rows of two accumulators into C.
///
/// # Safety
/// Rows `0..R`, columns `0..nr` at `c` (stride `ldc`) are valid for reads and writes.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store_tile<const R: usize>(
    c0: &[__m512; R],
    c1: &[__m512; R],
    c: *mut f32,
    ldc: usize,
    nr: usize,
    acc: bool,
) {
    if nr == NR {
        for i in 0..R {
            let p = c.wrapping_add(i * ldc);
            // SAFETY: 32 valid columns in row i (caller).
            unsafe {
                let (mut v0, mut v1) = (c0[i], c1[i]);
                if acc {
                    v0 = _mm512_add_ps(v0, _mm512_loadu_ps(p));
                    v1 = _mm512_add_ps(v1, _mm512_loadu_ps(p.add(16)));
                }
                _mm512_storeu_ps(p, v0);
                _mm512_storeu_ps(p.add(16), v1);
            }
        }
    } else {
        let (k0, k1) = col_masks(nr);
        for i in 0..R {
            let p = c.wrapping_add(i * ldc);
            let q = p.wrapping_add(16);
            // SAFETY: masked-off lanes are neither read nor written (no fault either), the
            // others are among the nr valid columns of row i (caller).
            unsafe {
                let (mut v0, mut v1) = (c0[i], c1[i]);
                if acc {
                    v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(k0, p));
                    v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(k1, q));
                }
                _mm512_mask_storeu_ps(p, k0, v0);
                _mm512_mask_storeu_ps(q, k1, v1);
            }
        }
    }
}

/// The f32 tile rounded to bf16 as [`crate::convert::f32_to_bf16`] rounds (add `0x7fff`
/// plus the kept lowest bit, NaN made quiet by its `0x0040` bit): 32 lanes of row `i`
/// are the high halves of `c0[i]`, `c1[i]`, gathered by one `vpermt2w`.
///
/// # Safety
/// Rows `0..R`, columns `0..nr` of bf16 at `c` (stride `ldc`) are valid for writes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn store_tile_bf16<const R: usize>(
    c0: &[__m512; R],
    c1: &[__m512; R],
    c: *mut bf16,
    ldc: usize,
    nr: usize,
) {
    let mut hi = [0i16; 32];
    for (t, x) in hi.iter_mut().enumerate() {
        // lane t < 16: word 2t+1 of the first vector; t >= 16: of the second (index + 32)
        *x = (2 * (t % 16) + 1 + 32 * (t / 16)) as i16;
    }
    // SAFETY: [i16; 32] and __m512i are both 64 plain bytes.
    let hi = unsafe { std::mem::transmute::<[i16; 32], __m512i>(hi) };
    let round = |v: __m512| {
        let b = _mm512_castps_si512(v);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
        let r = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
        let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7fff_ffff));
        let nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f80_0000));
        _mm512_mask_or_epi32(r, nan, b, _mm512_set1_epi32(0x0040_0000))
    };
    let mask = lanes32(nr);
    for i in 0..R {
        let v = _mm512_permutex2var_epi16(round(c0[i]), hi, round(c1[i]));
        // SAFETY: lanes 0..nr are the nr valid columns of row i (caller); masked-off lanes
        // are not written.
        unsafe { _mm512_mask_storeu_epi16(c.wrapping_add(i * ldc).cast(), mask, v) };
    }
}

/// Stores the tile: f32 (`acc` adds to C) or, with `OUT16`, rounded to bf16.
///
/// # Safety
/// The tile at `c` (f32, or bf16 with `OUT16`) as [`store_tile`] / [`store_tile_bf16`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn store<const R: usize, const OUT16: bool>(
    c0: &[__m512; R],
    c1: &[__m512; R],
    c: *mut u8,
    ldc: usize,
    nr: usize,
    acc: bool,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if OUT16 {
            store_tile_bf16::<R>(c0, c1, c.cast(), ldc, nr)
        } else {
            store_tile::<R>(c0, c1, c.cast(), ldc, nr, acc)
        }
    }
}

/// `R`×32 f32 tile. A panel rows are `MR` apart, B panel rows `NR` apart.
///
/// # Safety
/// [`super::cpu::MicroFn`]'s contract with `mr = R`; AVX-512F.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn tile_f32<const R: usize, const OUT16: bool>(
    steps: usize,
    a: *const f32,
    b: *const f32,
    c: *mut u8,
    ldc: usize,
    nr: usize,
    acc: bool,
) {
    let pf = steps.saturating_sub(PF_STEPS);
    let mut c0 = [_mm512_setzero_ps(); R];
    let mut c1 = [_mm512_setzero_ps(); R];
    for s in 0..steps {
        if s == pf {
            prefetch_tile::<R, OUT16>(c, ldc);
        }
        // SAFETY: step s < steps reads A[s·MR .. s·MR+R] and B[s·NR .. s·NR+32], inside the
        // whole panels the contract guarantees.
        unsafe {
            let (ap, bp) = (a.add(s * MR), b.add(s * NR));
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for i in 0..R {
                let x = _mm512_set1_ps(*ap.add(i));
                c0[i] = _mm512_fmadd_ps(x, b0, c0[i]);
                c1[i] = _mm512_fmadd_ps(x, b1, c1[i]);
            }
        }
    }
    // SAFETY: the contract's tile.
    unsafe { store::<R, OUT16>(&c0, &c1, c, ldc, nr, acc) }
}

/// Reinterprets 32 packed bf16 as the intrinsic's vector type (same 64 bytes).
#[target_feature(enable = "avx512f,avx512bf16")]
fn as_bh(v: __m512i) -> __m512bh {
    // SAFETY: both are plain 512-bit vectors; every bit pattern is a valid value of either.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// `R`×32 bf16 tile over k-pairs: A panel `[steps][MR][2]`, B panel `[steps][NR][2]`.
///
/// # Safety
/// [`super::cpu::MicroFn`]'s contract with `mr = R`; AVX-512F and AVX512_BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn tile_bf16<const R: usize, const OUT16: bool>(
    steps: usize,
    a: *const bf16,
    b: *const bf16,
    c: *mut u8,
    ldc: usize,
    nr: usize,
    acc: bool,
) {
    let pf = steps.saturating_sub(PF_STEPS);
    let mut c0 = [_mm512_setzero_ps(); R];
    let mut c1 = [_mm512_setzero_ps(); R];
    let a = a.cast::<i32>();
    for s in 0..steps {
        if s == pf {
            prefetch_tile::<R, OUT16>(c, ldc);
        }
        // SAFETY: step s reads pairs A[s·MR .. s·MR+R] (as i32, 4-byte aligned in the 64-byte
        // aligned panel) and 64 bf16 of B at s·2·NR, inside the contract's whole panels.
        unsafe {
            let (ap, bp) = (a.add(s * MR), b.add(s * 2 * NR));
            let b0 = as_bh(_mm512_loadu_si512(bp.cast()));
            let b1 = as_bh(_mm512_loadu_si512(bp.add(32).cast()));
            for i in 0..R {
                let x = as_bh(_mm512_set1_epi32(*ap.add(i)));
                c0[i] = _mm512_dpbf16_ps(c0[i], x, b0);
                c1[i] = _mm512_dpbf16_ps(c1[i], x, b1);
            }
        }
    }
    // SAFETY: the contract's tile.
    unsafe { store::<R, OUT16>(&c0, &c1, c, ldc, nr, acc) }
}

/// How far ahead (32-bit units along a row) `transpose32` prefetches its source rows.
const PF_UNITS: usize = 128;

/// Lanes `0..n` (n <= 16) set.
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// In-register transpose of a 16×16 matrix of 32-bit units (`v[row]` lane `col` becomes
/// `v[col]` lane `row`): 32-bit and 64-bit unpacks within 128-bit lanes, then a 4×4
/// transpose of the 128-bit lanes.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose16(v: &mut [__m512i; 16]) {
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
    }
    // u[4q + j], lane L: column 4L + j of rows 4q..4q+4.
    let mut u = [_mm512_setzero_si512(); 16];
    for q in 0..4 {
        u[4 * q] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
    }
    for j in 0..4 {
        let x0 = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]);
        let x1 = _mm512_shuffle_i32x4::<0xee>(u[j], u[4 + j]);
        let y0 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
        let y1 = _mm512_shuffle_i32x4::<0xee>(u[8 + j], u[12 + j]);
        v[j] = _mm512_shuffle_i32x4::<0x88>(x0, y0);
        v[4 + j] = _mm512_shuffle_i32x4::<0xdd>(x0, y0);
        v[8 + j] = _mm512_shuffle_i32x4::<0x88>(x1, y1);
        v[12 + j] = _mm512_shuffle_i32x4::<0xdd>(x1, y1);
    }
}

/// [`super::cpu::Transpose32`] for AVX-512: 16×16 blocks, masked at the ragged edges.
///
/// # Safety
/// See [`super::cpu::Transpose32`]; AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn transpose32(out: *mut u32, r: usize, rows: &[*const u32], groups: usize) {
    debug_assert!(rows.len() <= r && r <= 32);
    for h in (0..r).step_by(16) {
        let hr = &rows[h.min(rows.len())..(h + 16).min(rows.len())];
        let store = lanes(r - h);
        for g0 in (0..groups).step_by(16) {
            let gn = (groups - g0).min(16);
            let load = lanes(gn);
            let mut v = [_mm512_setzero_si512(); 16];
            for (i, x) in v.iter_mut().enumerate() {
                // Missing rows load nothing (mask 0) and stay zero.
                let (p, m) = match hr.get(i) {
                    Some(&p) => (p.wrapping_add(g0), load),
                    None => (out.cast_const(), 0),
                };
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PF_UNITS).cast());
                // SAFETY: lanes 0..gn are units g0..g0+gn < groups of a readable row; masked-off
                // lanes are not accessed.
                *x = unsafe { _mm512_maskz_loadu_epi32(m, p.cast()) };
            }
            transpose16(&mut v);
            for (g, x) in v.iter().enumerate().take(gn) {
                // SAFETY: units (g0+g)·r + h .. + min(16, r-h) lie inside out's groups·r.
                unsafe { _mm512_mask_storeu_epi32(out.add((g0 + g) * r + h).cast(), store, *x) };
            }
        }
    }
}

/// Depth rows ahead that the strided packers prefetch.
const PF_ROWS: usize = 8;

/// Lanes `0..n` (n <= 32) of a 32-lane mask.
fn lanes32(n: usize) -> __mmask32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// [`super::cpu::StridedPack`] for f32 (KU = 1): one or two masked 16-lane copies per step.
///
/// # Safety
/// See [`super::cpu::StridedPack`]; AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn strided_f32(out: *mut f32, r: usize, src: *const f32, ld: usize, rows: usize, kn: usize) {
    debug_assert!(rows <= r && r <= 32);
    let (l0, l1) = (lanes(rows), lanes(rows.saturating_sub(16)));
    let (s0, s1) = (lanes(r), lanes(r.saturating_sub(16)));
    for p in 0..kn {
        let row = src.wrapping_add(p * ld);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(PF_ROWS * ld).cast());
        // SAFETY: the contract makes row[0..rows] readable and out[p·r .. p·r + r] writable;
        // masked-off lanes are not accessed.
        unsafe {
            let dst = out.add(p * r);
            _mm512_mask_storeu_ps(dst, s0, _mm512_maskz_loadu_ps(l0, row));
            if r > 16 {
                _mm512_mask_storeu_ps(
                    dst.add(16),
                    s1,
                    _mm512_maskz_loadu_ps(l1, row.wrapping_add(16)),
                );
            }
        }
    }
}

/// [`super::cpu::StridedPack`] for bf16 (KU = 2): loads two depth rows and interleaves them
/// into `(row p, row p+1)` pairs with one `vpermt2w` per 16 output pairs.
///
/// # Safety
/// See [`super::cpu::StridedPack`]; AVX-512F and AVX-512BW.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn strided_bf16(
    out: *mut bf16,
    r: usize,
    src: *const bf16,
    ld: usize,
    rows: usize,
    kn: usize,
) {
    debug_assert!(rows <= r && r <= 32);
    // Pair t of the low/high half takes element t (+16) of the first row, then of the second.
    let idx = |base: i32| {
        let mut v = [0i16; 32];
        for (t, x) in v.iter_mut().enumerate() {
            *x = (base + (t / 2) as i32 + if t % 2 == 1 { 32 } else { 0 }) as i16;
        }
        // SAFETY: [i16; 32] and __m512i are both 64 plain bytes.
        unsafe { std::mem::transmute::<[i16; 32], __m512i>(v) }
    };
    let (lo_idx, hi_idx) = (idx(0), idx(16));
    let load = lanes32(rows);
    let (s0, s1) = (lanes32(2 * r.min(16)), lanes32(2 * r.saturating_sub(16)));
    for st in 0..kn.div_ceil(2) {
        let row0 = src.wrapping_add(2 * st * ld);
        let row1 = row0.wrapping_add(ld);
        _mm_prefetch::<_MM_HINT_T0>(row0.wrapping_add(PF_ROWS * ld).cast());
        _mm_prefetch::<_MM_HINT_T0>(row1.wrapping_add(PF_ROWS * ld).cast());
        // SAFETY: depth rows 2st and (if < kn) 2st+1 are readable for `rows` elements; the
        // output step st is 2r elements of the panel; masked-off lanes are not accessed.
        unsafe {
            let x = _mm512_maskz_loadu_epi16(load, row0.cast());
            let y = if 2 * st + 1 < kn {
                _mm512_maskz_loadu_epi16(load, row1.cast())
            } else {
                _mm512_setzero_si512()
            };
            let dst = out.add(st * 2 * r);
            _mm512_mask_storeu_epi16(dst.cast(), s0, _mm512_permutex2var_epi16(x, lo_idx, y));
            if r > 16 {
                _mm512_mask_storeu_epi16(
                    dst.add(32).cast(),
                    s1,
                    _mm512_permutex2var_epi16(x, hi_idx, y),
                );
            }
        }
    }
}
