//! bf16 few-row products (cached decoding's GEMV and skinny GEMM): `C = op(A) · op(B)` in
//! f32 from bf16 operands when `C` has at most [`SKINNY_M`] rows per batch entry; the bf16
//! twin of [`super::skinny`], with its layout and its split into (batch entry, strip of
//! [`STRIP`] columns) tasks.
//!
//! With AVX512_BF16 (`native`), `B` is streamed once as it is stored:
//! * `B [n, k]` (`trans_b`, the model's weights): dot products of contiguous rows, 32 bf16
//!   (16 pairs) per `vdpbf16ps`, `R x 4` accumulators, summed at the end;
//! * `B [k, n]`: two depth rows of a 64-column strip are interleaved into (row p, row p+1)
//!   pairs (`vpermt2w`) and met by the broadcast pair `(A[i, p], A[i, p+1])`.
//!
//! Elsewhere each task widens its strip of `B` to f32 (exact) into a per-thread buffer and
//! runs the f32 skinny kernels on it: still one pass over `B`, and no 14-row tile of padding.
//! `op(A)` (at most `4 k` values per batch entry) is copied to `[m, k]` first, widened to f32
//! off the native path.

use super::skinny::{strip_axpys, strip_dots, PAR_MIN_FLOPS, SKINNY_M, STRIP};
use super::GemmShape;
use crate::convert::bf16_to_f32;
use crate::simd::vector::{simd_entry, SendPtr, Simd};
use crate::simd::Level;
use half::bf16;
use rayon::prelude::*;
use std::cell::RefCell;

/// `op(A)` as `batch x [m, k]`: bf16 for the native kernels, f32 for the widening path.
enum RowsA {
    Bf16(Vec<bf16>),
    F32(Vec<f32>),
}

struct Job<'a> {
    s: GemmShape,
    a: RowsA,
    b: &'a [bf16],
    c: SendPtr,
    strips: usize,
}

impl Job<'_> {
    /// (batch entry, first column, columns) of task `t`, and B of that batch entry.
    fn task(&self, t: usize) -> (usize, usize, usize, &[bf16]) {
        let s = &self.s;
        let (bi, strip) = (t / self.strips, t % self.strips);
        let j0 = strip * STRIP;
        let b = if s.b_broadcast {
            &self.b[..s.k * s.n]
        } else {
            &self.b[bi * s.k * s.n..][..s.k * s.n]
        };
        (bi, j0, STRIP.min(s.n - j0), b)
    }
}

/// `C = op(A) · op(B)` for `s.m <= SKINNY_M` (see the module docs); `native` asks for
/// `vdpbf16ps` (used where `level` is AVX-512 and the CPU has it). Any other shape panics.
pub fn gemm_skinny_bf16(
    level: Level,
    native: bool,
    s: &GemmShape,
    a: &[bf16],
    b: &[bf16],
    c: &mut [f32],
) {
    assert!(
        s.m <= SKINNY_M,
        "gemm_skinny_bf16 takes at most {SKINNY_M} rows, got {s:?}"
    );
    let (a_len, b_len, c_len) = s.lens();
    assert!(
        a.len() >= a_len && b.len() >= b_len && c.len() >= c_len,
        "gemm_skinny_bf16: short operand for {s:?}"
    );
    if s.batch * s.m * s.n == 0 {
        return;
    }
    if s.k == 0 {
        c[..c_len].fill(0.0);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    let native = native && super::cpu::usable(level) == Level::Avx512 && super::cpu::usable_bf16();
    #[cfg(not(target_arch = "x86_64"))]
    let native = {
        let _ = native;
        false
    };
    let (m, k) = (s.m, s.k);
    // op(A) row i, depth p of batch entry bi ([k, m] -> [m, k] when transposed; with one
    // row the two layouts coincide)
    let at = |bi: usize, i: usize, p: usize| {
        let ab = &a[bi * m * k..][..m * k];
        if s.trans_a {
            ab[p * m + i]
        } else {
            ab[i * k + p]
        }
    };
    let rows = || {
        (0..s.batch).flat_map(move |bi| (0..m).flat_map(move |i| (0..k).map(move |p| at(bi, i, p))))
    };
    let rows_a = match (native, s.trans_a && m > 1) {
        (true, false) => RowsA::Bf16(a[..a_len].to_vec()),
        (true, true) => RowsA::Bf16(rows().collect()),
        (false, _) => RowsA::F32(rows().map(bf16_to_f32).collect()),
    };
    let strips = s.n.div_ceil(STRIP);
    let job = Job {
        s: *s,
        a: rows_a,
        b,
        c: SendPtr(c.as_mut_ptr()),
        strips,
    };
    let run = |t: usize| match &job.a {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `native` was checked against the CPU above.
        RowsA::Bf16(a16) => unsafe { native_task(&job, a16, t) },
        #[cfg(not(target_arch = "x86_64"))]
        RowsA::Bf16(_) => unreachable!("native is false off x86_64"),
        RowsA::F32(a32) => widen_task(level, &job, a32, t),
    };
    let tasks = s.batch * strips;
    if s.flops() < PAR_MIN_FLOPS || tasks == 1 {
        (0..tasks).for_each(run);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

simd_entry!(fn widen_task(j: &Job<'_>, a32: &[f32], t: usize) => widen_task_g);

thread_local! {
    /// One task's strip of B widened to f32.
    static STRIP_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

#[inline(always)]
unsafe fn widen_task_g<S: Simd>(j: &Job<'_>, a32: &[f32], t: usize) {
    let s = &j.s;
    let (m, n, k) = (s.m, s.n, s.k);
    let (bi, j0, nj, b) = j.task(t);
    let a = a32[bi * m * k..][..m * k].as_ptr();
    // SAFETY: strip (bi, j0..j0+nj) of C is this task's alone; it lies within batch*m*n.
    let c = unsafe { j.c.get().add(bi * m * n + j0) };
    STRIP_F32.with(|cell| {
        let mut fresh = Vec::new();
        let mut guard = cell.try_borrow_mut();
        // re-entered on this thread (a rayon steal): a buffer of its own
        let buf = guard.as_deref_mut().unwrap_or(&mut fresh);
        buf.clear();
        if s.trans_b {
            // rows j0..j0+nj of B [n, k], each k long
            buf.extend(b[j0 * k..][..nj * k].iter().map(|&x| bf16_to_f32(x)));
            // SAFETY: a holds m·k, buf nj·k; C's strip is ours (above).
            unsafe { strip_dots::<S>(m, a, buf.as_ptr(), c, k, n, nj) }
        } else {
            // columns j0..j0+nj of B [k, n], as [k, nj]
            for p in 0..k {
                buf.extend(b[p * n + j0..][..nj].iter().map(|&x| bf16_to_f32(x)));
            }
            // SAFETY: as above, with buf [k, nj].
            unsafe { strip_axpys::<S>(m, a, buf.as_ptr(), nj, c, k, n, nj) }
        }
    });
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// # Safety
/// The CPU has AVX-512F/BW and AVX512_BF16; `a16` is `op(A)` as `batch x [m, k]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn native_task(j: &Job<'_>, a16: &[bf16], t: usize) {
    let s = &j.s;
    let (m, n, k) = (s.m, s.n, s.k);
    let (bi, j0, nj, b) = j.task(t);
    let a = &a16[bi * m * k..][..m * k];
    // SAFETY: strip (bi, j0..j0+nj) of C is this task's alone; it lies within batch*m*n;
    // the strip's rows (trans_b) or columns of B lie inside `b`.
    unsafe {
        let c = j.c.get().add(bi * m * n + j0);
        macro_rules! rows {
            ($f:ident, $($arg:expr),*) => {
                match m {
                    1 => $f::<1>($($arg),*),
                    2 => $f::<2>($($arg),*),
                    3 => $f::<3>($($arg),*),
                    _ => $f::<4>($($arg),*),
                }
            };
        }
        if s.trans_b {
            rows!(dots_bf16, a.as_ptr(), b.as_ptr().add(j0 * k), c, k, n, nj)
        } else {
            rows!(axpys_bf16, a, b.as_ptr().add(j0), n, c, k, n, nj)
        }
    }
}

/// Lanes `0..n` (n <= 32) of a 32-lane mask.
#[cfg(target_arch = "x86_64")]
fn lanes32(n: usize) -> __mmask32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// Reinterprets 32 packed bf16 as the intrinsic's vector type (same 64 bytes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
fn as_bh(v: __m512i) -> __m512bh {
    // SAFETY: both are plain 512-bit vectors; every bit pattern is a valid value of either.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// `nj` columns of `C [R, ldc]` (at `c`) from `A [R, k]` and the rows `[nj, k]` of B at
/// `b`: `vdpbf16ps` over 32 depth values at a time, four rows of B at once.
///
/// # Safety
/// `a` readable for `R·k`, `b` for `nj·k`, `c` rows `0..R`, columns `0..nj` writable;
/// AVX-512F/BW and AVX512_BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dots_bf16<const R: usize>(
    a: *const bf16,
    b: *const bf16,
    c: *mut f32,
    k: usize,
    ldc: usize,
    nj: usize,
) {
    let mut jj = 0;
    while jj < nj {
        let w = 4.min(nj - jj);
        let rows: [*const bf16; 4] =
            std::array::from_fn(|q| b.wrapping_add((jj + q.min(w - 1)) * k));
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        let mut p = 0;
        while p < k {
            // masked-off lanes load zeros and add nothing
            let mask = lanes32(k - p);
            // SAFETY: lanes 0..min(32, k-p) of row q of B and row i of A are in bounds.
            unsafe {
                let bv: [__m512bh; 4] = std::array::from_fn(|q| {
                    as_bh(_mm512_maskz_loadu_epi16(mask, rows[q].add(p).cast()))
                });
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av = as_bh(_mm512_maskz_loadu_epi16(mask, a.add(i * k + p).cast()));
                    for q in 0..4 {
                        acc[q] = _mm512_dpbf16_ps(acc[q], av, bv[q]);
                    }
                }
            }
            p += 32;
        }
        for (i, acc) in acc.iter().enumerate() {
            for (q, v) in acc.iter().enumerate().take(w) {
                // SAFETY: row i < R, column jj + q < nj of the caller's tile.
                unsafe { *c.add(i * ldc + jj + q) = _mm512_reduce_add_ps(*v) };
            }
        }
        jj += w;
    }
}

/// `nj` (<= 64) columns of `C [R, ldc]` (at `c`) from `A [R, k]` and `nj` columns of
/// `B [k, ldb]` at `b`: depth rows in pairs, interleaved into `vdpbf16ps` pairs, each met
/// by the broadcast pair of A.
///
/// # Safety
/// `a` holds `R·k`; `b` rows `0..k` readable for `nj` columns; `c` rows `0..R`, columns
/// `0..nj` writable; AVX-512F/BW and AVX512_BF16.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn axpys_bf16<const R: usize>(
    a: &[bf16],
    b: *const bf16,
    ldb: usize,
    c: *mut f32,
    k: usize,
    ldc: usize,
    nj: usize,
) {
    debug_assert!(nj <= 64 && a.len() >= R * k);
    // Pair t of the low/high half takes element t (+16) of the first row, then of the second.
    let idx = |base: i32| {
        let mut v = [0i16; 32];
        for (t, x) in v.iter_mut().enumerate() {
            *x = (base + (t / 2) as i32 + if t % 2 == 1 { 32 } else { 0 }) as i16;
        }
        // SAFETY: [i16; 32] and __m512i are both 64 plain bytes.
        unsafe { std::mem::transmute::<[i16; 32], __m512i>(v) }
    };
    let (lo, hi) = (idx(0), idx(16));
    // columns 0..32 and 32..64 of the strip
    let load = [lanes32(nj), lanes32(nj.saturating_sub(32))];
    let a_bits = |i: usize, p: usize| a[i * k + p].to_bits() as u32;
    let mut acc = [[_mm512_setzero_ps(); 4]; R];
    for p in (0..k).step_by(2) {
        let second = p + 1 < k;
        let mut bv = [as_bh(_mm512_setzero_si512()); 4];
        for h in 0..2 {
            if load[h] == 0 {
                continue;
            }
            // SAFETY: depth rows p (and p+1 when < k) hold the strip's columns 32h.. under
            // the mask; masked-off lanes are not read.
            let (x, y) = unsafe {
                let r0 = b.add(p * ldb + 32 * h);
                let x = _mm512_maskz_loadu_epi16(load[h], r0.cast());
                let y = if second {
                    _mm512_maskz_loadu_epi16(load[h], r0.add(ldb).cast())
                } else {
                    _mm512_setzero_si512()
                };
                (x, y)
            };
            bv[2 * h] = as_bh(_mm512_permutex2var_epi16(x, lo, y));
            bv[2 * h + 1] = as_bh(_mm512_permutex2var_epi16(x, hi, y));
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            // (A[i, p], A[i, p+1]) as one 32-bit lane, low half first; a missing p+1 is 0
            let pair = a_bits(i, p) | if second { a_bits(i, p + 1) << 16 } else { 0 };
            let av = as_bh(_mm512_set1_epi32(pair as i32));
            let used = if load[1] == 0 { 2 } else { 4 };
            for (q, v) in bv.iter().enumerate().take(used) {
                acc[q] = _mm512_dpbf16_ps(acc[q], av, *v);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (q, v) in acc.iter().enumerate() {
            let cols = nj.saturating_sub(16 * q).min(16);
            if cols > 0 {
                // SAFETY: columns 16q .. 16q+cols < nj of row i are the caller's.
                unsafe {
                    _mm512_mask_storeu_ps(
                        c.add(i * ldc + 16 * q),
                        ((1u32 << cols) - 1) as __mmask16,
                        *v,
                    )
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::reference::gemm_f64;
    use crate::testutil::{levels, rng, seed, to_f64, uniform};
    use rand::Rng;

    /// Odd sizes around the lane counts (8, 16, 32 bf16), the 4-column groups and the strip.
    fn dim(r: &mut rand::rngs::StdRng) -> usize {
        const ODD: [usize; 15] = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 65, 97, 129];
        if r.random_range(0..2) == 0 {
            ODD[r.random_range(0..ODD.len())]
        } else {
            r.random_range(1..=300)
        }
    }

    /// Every path this CPU runs: each level widened, and native `vdpbf16ps` where present.
    fn paths() -> Vec<(Level, bool)> {
        let mut p: Vec<(Level, bool)> = levels().into_iter().map(|l| (l, false)).collect();
        #[cfg(target_arch = "x86_64")]
        if super::super::cpu::usable_bf16() {
            p.push((Level::Avx512, true));
        } else {
            println!("skipped: native bf16 (avx512bf16) not supported by this CPU");
        }
        p
    }

    /// Within `1e-5 sqrt(k)` of the f64 reference on the same bf16 values (|a|, |b| < 1;
    /// products of bf16 are exact in f32); NaN and infinities where the reference has them.
    #[test]
    fn skinny_bf16_matches_reference_every_level_and_layout() {
        let seed = seed();
        let mut r = rng(seed);
        for case in 0..200 {
            let s = GemmShape {
                batch: r.random_range(1..=3),
                m: r.random_range(1..=SKINNY_M),
                n: dim(&mut r),
                k: dim(&mut r),
                trans_a: r.random(),
                trans_b: r.random(),
                b_broadcast: r.random(),
            };
            let (la, lb, lc) = s.lens();
            let to16 = |x: Vec<f32>| -> Vec<bf16> { x.into_iter().map(bf16::from_f32).collect() };
            let mut a = to16(uniform(&mut r, la, 1.0));
            let b = to16(uniform(&mut r, lb, 1.0));
            if case % 4 == 3 {
                // NaN and infinities in A (no finite product can overflow with |b| < 1);
                // zeros and normal tiny values (vdpbf16ps treats subnormals as zero)
                const SPECIAL: [f32; 6] =
                    [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-37];
                for _ in 0..r.random_range(1..4) {
                    let i = r.random_range(0..la);
                    a[i] = bf16::from_f32(SPECIAL[r.random_range(0..SPECIAL.len())]);
                }
            }
            let wide = |x: &[bf16]| to_f64(&x.iter().map(|v| v.to_f32()).collect::<Vec<_>>());
            let want = gemm_f64(&s, &wide(&a), &wide(&b));
            let bound = 1e-5 * (s.k as f64).sqrt();
            for (level, native) in paths() {
                let what = format!("case {case} {level:?} native={native}; seed {seed}, {s:?}");
                let mut c = vec![f32::NAN; lc + 3];
                c[lc..].fill(7.0);
                gemm_skinny_bf16(level, native, &s, &a, &b, &mut c);
                check(&what, &c[..lc], &want, bound);
                assert!(c[lc..].iter().all(|&x| x == 7.0), "wrote past C: {what}");
                // the GEMM entry takes this path for few rows
                let mut c2 = vec![f32::NAN; lc];
                crate::matmul::cpu::gemm_bf16_at(level, native, &s, &a, &b, &mut c2);
                assert_eq!(
                    c2.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    c[..lc].iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "gemm_bf16_at routes to the skinny path: {what}"
                );
            }
        }
    }

    fn check(what: &str, got: &[f32], want: &[f64], bound: f64) {
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let ok = if w.is_nan() {
                g.is_nan()
            } else if w.is_infinite() {
                g as f64 == w
            } else {
                (g as f64 - w).abs() <= bound
            };
            assert!(
                ok,
                "{what}: element {i}: got {g}, want {w} (bound {bound:.2e})"
            );
        }
    }

    #[test]
    fn skinny_bf16_empty_and_zero_depth() {
        for (level, native) in paths() {
            let mut s = GemmShape {
                batch: 2,
                m: 3,
                n: 5,
                k: 0,
                trans_a: false,
                trans_b: true,
                b_broadcast: false,
            };
            let mut c = vec![f32::NAN; 30];
            gemm_skinny_bf16(level, native, &s, &[], &[], &mut c);
            assert!(
                c.iter().all(|&x| x == 0.0),
                "k = 0 writes zeros at {level:?}"
            );
            s.n = 0;
            s.k = 4;
            let mut c: Vec<f32> = vec![];
            gemm_skinny_bf16(level, native, &s, &[bf16::ONE; 24], &[], &mut c);
        }
    }

    /// Large enough to split over threads: the same values as one thread's.
    #[test]
    fn skinny_bf16_threads_split_strips_exactly() {
        let seed = seed();
        let mut r = rng(seed);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        for trans_b in [true, false] {
            let s = GemmShape {
                batch: 2,
                m: 3,
                n: 1000,
                k: 517,
                trans_a: true,
                trans_b,
                b_broadcast: true,
            };
            let (la, lb, lc) = s.lens();
            let to16 = |x: Vec<f32>| -> Vec<bf16> { x.into_iter().map(bf16::from_f32).collect() };
            let (a, b) = (
                to16(uniform(&mut r, la, 1.0)),
                to16(uniform(&mut r, lb, 1.0)),
            );
            for (level, native) in paths() {
                let mut par = vec![0.0; lc];
                gemm_skinny_bf16(level, native, &s, &a, &b, &mut par);
                let mut ser = vec![0.0; lc];
                one.install(|| gemm_skinny_bf16(level, native, &s, &a, &b, &mut ser));
                assert_eq!(
                    par, ser,
                    "{level:?} native={native} trans_b={trans_b}; seed {seed}"
                );
            }
        }
    }
}
