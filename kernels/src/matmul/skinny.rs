//! Few-row products (decoding's GEMV and skinny GEMM): `C = op(A) · op(B)` when `C` has at
//! most [`SKINNY_M`] rows per batch entry.
//!
//! The packed GEMM copies a whole panel of `B` before it multiplies; with one to four rows
//! of `A` that copy costs as much memory traffic as the product itself, and the 14-row
//! microkernel runs mostly on padding. Here `B` is streamed once, unpacked, with every row of
//! `A` held against each piece of it:
//! * `B` stored `[n, k]` (`trans_b`, the model's weights): four columns of `C` at a time are
//!   dot products of contiguous rows, `R x 4` vector accumulators over `k`, summed at the end;
//! * `B` stored `[k, n]`: a strip of four vectors of `C` per row is accumulated over `k` with
//!   `A[i, p]` broadcast, one pass down the strip.
//!
//! `op(A)` stored `[k, m]` (`trans_a`) is first copied to `[m, k]` (at most `4 k` elements).
//! Work is split over rayon's pool by (batch entry, strip of columns) above the GEMM's
//! serial threshold.

use super::GemmShape;
use crate::simd::vector::{simd_entry, SendPtr, Simd};
use crate::simd::Level;
use rayon::prelude::*;

/// The most rows of `C` (per batch entry) this path takes.
pub const SKINNY_M: usize = 4;
/// Columns of `C` per task: a few dozen KiB of a weight `[n, k]` at the model's `k`.
pub(super) const STRIP: usize = 64;
/// Below this many flops the call stays on the calling thread (as the packed GEMM does).
pub(super) const PAR_MIN_FLOPS: f64 = 2.0e6;

struct Job<'a> {
    s: GemmShape,
    /// op(A) as `batch x [m, k]`
    a: &'a [f32],
    b: &'a [f32],
    c: SendPtr,
    strips: usize,
}

/// `C = op(A) · op(B)` for `s.m <= SKINNY_M` (see the module docs); any other shape panics.
pub fn gemm_skinny_f32(level: Level, s: &GemmShape, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(
        s.m <= SKINNY_M,
        "gemm_skinny_f32 takes at most {SKINNY_M} rows, got {s:?}"
    );
    let (a_len, b_len, c_len) = s.lens();
    assert!(
        a.len() >= a_len && b.len() >= b_len && c.len() >= c_len,
        "gemm_skinny_f32: short operand for {s:?}"
    );
    if s.batch * s.m * s.n == 0 {
        return;
    }
    if s.k == 0 {
        c[..c_len].fill(0.0);
        return;
    }
    let at: Vec<f32>;
    let a = if s.trans_a && s.m > 1 {
        // [k, m] -> [m, k] per batch entry (with one row the two layouts coincide)
        let (m, k) = (s.m, s.k);
        at = (0..s.batch)
            .flat_map(|bi| {
                let ab = &a[bi * m * k..][..m * k];
                (0..m).flat_map(move |i| (0..k).map(move |p| ab[p * m + i]))
            })
            .collect();
        &at[..]
    } else {
        a
    };
    let strips = s.n.div_ceil(STRIP);
    let job = Job {
        s: *s,
        a,
        b,
        c: SendPtr(c.as_mut_ptr()),
        strips,
    };
    let tasks = s.batch * strips;
    if s.flops() < PAR_MIN_FLOPS || tasks == 1 {
        (0..tasks).for_each(|t| task(level, &job, t));
    } else {
        (0..tasks)
            .into_par_iter()
            .for_each(|t| task(level, &job, t));
    }
}

simd_entry!(fn task(j: &Job<'_>, t: usize) => task_g);

#[inline(always)]
unsafe fn task_g<S: Simd>(j: &Job<'_>, t: usize) {
    let s = &j.s;
    let (bi, strip) = (t / j.strips, t % j.strips);
    let (m, n, k) = (s.m, s.n, s.k);
    let j0 = strip * STRIP;
    let nj = STRIP.min(n - j0);
    let a = j.a[bi * m * k..][..m * k].as_ptr();
    let b = if s.b_broadcast {
        &j.b[..k * n]
    } else {
        &j.b[bi * k * n..][..k * n]
    }
    .as_ptr();
    // SAFETY: strip (bi, j0..j0+nj) of C is this task's alone; it lies within batch*m*n.
    let c = unsafe { j.c.get().add(bi * m * n + j0) };
    // SAFETY: the strip's rows (trans_b) or columns of B lie inside its k·n elements.
    unsafe {
        if s.trans_b {
            strip_dots::<S>(m, a, b.add(j0 * k), c, k, n, nj)
        } else {
            strip_axpys::<S>(m, a, b.add(j0), n, c, k, n, nj)
        }
    }
}

/// [`dots`] for `m` (1..=4) rows.
///
/// # Safety
/// As [`dots`] with `R = m`.
#[inline(always)]
pub(super) unsafe fn strip_dots<S: Simd>(
    m: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    k: usize,
    ldc: usize,
    nj: usize,
) {
    // SAFETY: forwarded.
    unsafe {
        match m {
            1 => dots::<S, 1>(a, b, c, k, ldc, nj),
            2 => dots::<S, 2>(a, b, c, k, ldc, nj),
            3 => dots::<S, 3>(a, b, c, k, ldc, nj),
            _ => dots::<S, 4>(a, b, c, k, ldc, nj),
        }
    }
}

/// [`axpys`] for `m` (1..=4) rows.
///
/// # Safety
/// As [`axpys`] with `R = m`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn strip_axpys<S: Simd>(
    m: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    k: usize,
    ldc: usize,
    nj: usize,
) {
    // SAFETY: forwarded.
    unsafe {
        match m {
            1 => axpys::<S, 1>(a, b, ldb, c, k, ldc, nj),
            2 => axpys::<S, 2>(a, b, ldb, c, k, ldc, nj),
            3 => axpys::<S, 3>(a, b, ldb, c, k, ldc, nj),
            _ => axpys::<S, 4>(a, b, ldb, c, k, ldc, nj),
        }
    }
}

/// `nj` columns of `C [R, ldc]` (at `c`) from `A [R, k]` and the `nj` rows `[nj, k]` of B
/// at `b`: dot products, four rows of B at a time.
///
/// # Safety
/// `a` readable for `R·k`, `b` for `nj·k`, `c` rows `0..R`, columns `0..nj` writable.
#[inline(always)]
unsafe fn dots<S: Simd, const R: usize>(
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    k: usize,
    ldc: usize,
    nj: usize,
) {
    let l = S::LANES;
    let full = k / l * l;
    let mut jj = 0;
    while jj < nj {
        let w = 4.min(nj - jj);
        let rows: [*const f32; 4] =
            std::array::from_fn(|q| unsafe { b.add((jj + q.min(w - 1)) * k) });
        let mut acc = [[unsafe { S::splat(0.0) }; 4]; R];
        let mut p = 0;
        while p < full {
            unsafe {
                let bv: [S::V; 4] = std::array::from_fn(|q| S::load(rows[q].add(p)));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av = S::load(a.add(i * k + p));
                    for q in 0..4 {
                        acc[q] = S::fma(av, bv[q], acc[q]);
                    }
                }
            }
            p += l;
        }
        if p < k {
            unsafe {
                let bv: [S::V; 4] =
                    std::array::from_fn(|q| S::load_part(rows[q].add(p), k - p, 0.0));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av = S::load_part(a.add(i * k + p), k - p, 0.0);
                    for q in 0..4 {
                        acc[q] = S::fma(av, bv[q], acc[q]);
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for (q, v) in acc.iter().enumerate().take(w) {
                unsafe { *c.add(i * ldc + jj + q) = S::hsum(*v) };
            }
        }
        jj += w;
    }
}

/// `nj` columns of `C [R, ldc]` (at `c`) from `A [R, k]` and `nj` columns of `B [k, ldb]`
/// (at `b`): strips of four vectors accumulated down `k` with `A[i, p]` broadcast.
///
/// # Safety
/// `a` readable for `R·k`, `b` rows `0..k` for `nj` columns, `c` rows `0..R`, columns
/// `0..nj` writable.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn axpys<S: Simd, const R: usize>(
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    k: usize,
    ldc: usize,
    nj: usize,
) {
    let l = S::LANES;
    let mut jj = 0;
    while jj < nj {
        let w = (4 * l).min(nj - jj);
        // lanes in each of the four vectors (the last ones may be partial or empty)
        let part: [usize; 4] = std::array::from_fn(|v| w.saturating_sub(v * l).min(l));
        let mut acc = [[unsafe { S::splat(0.0) }; 4]; R];
        for p in 0..k {
            unsafe {
                let row = b.add(p * ldb + jj);
                let bv: [S::V; 4] = std::array::from_fn(|v| {
                    if part[v] == l {
                        S::load(row.add(v * l))
                    } else if part[v] > 0 {
                        S::load_part(row.add(v * l), part[v], 0.0)
                    } else {
                        S::splat(0.0)
                    }
                });
                for (i, acc) in acc.iter_mut().enumerate() {
                    let av = S::splat(*a.add(i * k + p));
                    for v in 0..4 {
                        acc[v] = S::fma(av, bv[v], acc[v]);
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            for v in 0..4 {
                let out = unsafe { c.add(i * ldc + jj + v * l) };
                if part[v] == l {
                    unsafe { S::store(out, acc[v]) };
                } else if part[v] > 0 {
                    unsafe { S::store_part(out, part[v], acc[v]) };
                }
            }
        }
        jj += w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::reference::gemm_f64;
    use crate::testutil::{levels, rng, seed, to_f64, uniform};
    use rand::Rng;

    /// Odd sizes around the lane counts (8, 16), the 4-column groups and the strip (64).
    fn dim(r: &mut rand::rngs::StdRng) -> usize {
        const ODD: [usize; 14] = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 65, 129];
        if r.random_range(0..2) == 0 {
            ODD[r.random_range(0..ODD.len())]
        } else {
            r.random_range(1..=300)
        }
    }

    /// Every output within `1e-5 sqrt(k) max|a| max|b|` of the f64 reference (the packed
    /// GEMM's bound); where the reference is NaN or infinite, the same.
    fn check(what: &str, seed: u64, s: &GemmShape, got: &[f32], want: &[f64], bound: f64) {
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
                "{what}: element {i}: got {g}, want {w} (bound {bound:.2e}); seed {seed}, {s:?}"
            );
        }
    }

    #[test]
    fn skinny_f32_matches_reference_every_level_and_layout() {
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
            let mut a = uniform(&mut r, la, 1.0);
            let b = uniform(&mut r, lb, 1.0);
            if case % 4 == 3 {
                // specials in A: NaN and infinities must propagate as the reference says
                // (no finite product can overflow with |b| < 1)
                const SPECIAL: [f32; 6] =
                    [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-40];
                for _ in 0..r.random_range(1..4) {
                    let i = r.random_range(0..la);
                    a[i] = SPECIAL[r.random_range(0..SPECIAL.len())];
                }
            }
            let want = gemm_f64(&s, &to_f64(&a), &to_f64(&b));
            let bound = 1e-5 * (s.k as f64).sqrt();
            for level in levels() {
                let mut c = vec![f32::NAN; lc + 3];
                c[lc..].fill(7.0);
                gemm_skinny_f32(level, &s, &a, &b, &mut c);
                check(
                    &format!("skinny {level:?} case {case}"),
                    seed,
                    &s,
                    &c[..lc],
                    &want,
                    bound,
                );
                assert!(
                    c[lc..].iter().all(|&x| x == 7.0),
                    "wrote past C; seed {seed}, {s:?}"
                );
                // the public entry takes this path for few rows
                let mut c2 = vec![f32::NAN; lc];
                crate::matmul::cpu::gemm_f32_at(level, &s, &a, &b, &mut c2);
                check(
                    &format!("gemm_f32_at {level:?} case {case}"),
                    seed,
                    &s,
                    &c2,
                    &want,
                    bound,
                );
            }
        }
    }

    #[test]
    fn skinny_f32_empty_and_zero_depth() {
        for level in levels() {
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
            gemm_skinny_f32(level, &s, &[], &[], &mut c);
            assert!(
                c.iter().all(|&x| x == 0.0),
                "k = 0 writes zeros at {level:?}"
            );
            s.n = 0;
            s.k = 4;
            let mut c: Vec<f32> = vec![];
            gemm_skinny_f32(level, &s, &[1.0; 24], &[], &mut c);
        }
    }

    /// Large enough to split over threads: the same values as one thread's.
    #[test]
    fn skinny_f32_threads_split_strips_exactly() {
        let seed = seed();
        let mut r = rng(seed);
        let s = GemmShape {
            batch: 2,
            m: 3,
            n: 1000,
            k: 517,
            trans_a: false,
            trans_b: true,
            b_broadcast: true,
        };
        let (la, lb, lc) = s.lens();
        let (a, b) = (uniform(&mut r, la, 1.0), uniform(&mut r, lb, 1.0));
        let level = crate::simd::level();
        let mut par = vec![0.0; lc];
        gemm_skinny_f32(level, &s, &a, &b, &mut par);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let mut ser = vec![0.0; lc];
        one.install(|| gemm_skinny_f32(level, &s, &a, &b, &mut ser));
        assert_eq!(par, ser, "seed {seed}");
    }
}
