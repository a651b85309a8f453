//! SIMD softmax kernels (see the module docs for the math). One row at a time; rayon over
//! row chunks for large inputs. `level` selects the ISA (clamped to the CPU's).

use crate::simd::vector::{rows_per_chunk, simd_entry, Simd, PAR_MIN_ELEMS};
use crate::simd::Level;
use rayon::prelude::*;

/// Runs `f(rows_in_chunk, x_chunk, y_chunk)` over row chunks, in parallel when large.
fn for_rows(
    rows: usize,
    n: usize,
    x: &[f32],
    y: &mut [f32],
    f: impl Fn(usize, &[f32], &mut [f32]) + Sync,
) {
    debug_assert!(x.len() >= rows * n && y.len() >= rows * n);
    if rows == 0 || n == 0 {
        return;
    }
    // Slicing first: a short slice panics here instead of being read out of bounds.
    let (x, y) = (&x[..rows * n], &mut y[..rows * n]);
    if rows * n < PAR_MIN_ELEMS {
        return f(rows, x, y);
    }
    let rc = rows_per_chunk(rows, n, PAR_MIN_ELEMS / 2);
    x.par_chunks(rc * n)
        .zip(y.par_chunks_mut(rc * n))
        .for_each(|(xc, yc)| f(xc.len() / n, xc, yc));
}

/// Row max with two accumulators (NaN need not survive: it reappears in the exp sum).
#[inline(always)]
unsafe fn row_max<S: Simd>(x: *const f32, n: usize) -> f32 {
    let l = S::LANES;
    let (mut m0, mut m1) = (S::splat(f32::NEG_INFINITY), S::splat(f32::NEG_INFINITY));
    let mut j = 0;
    while j + 2 * l <= n {
        m0 = S::max(m0, S::load(x.add(j)));
        m1 = S::max(m1, S::load(x.add(j + l)));
        j += 2 * l;
    }
    if j + l <= n {
        m0 = S::max(m0, S::load(x.add(j)));
        j += l;
    }
    if j < n {
        m1 = S::max(m1, S::load_part(x.add(j), n - j, f32::NEG_INFINITY));
    }
    S::hmax(S::max(m0, m1))
}

/// `sum_j exp(x_j - m)`, also storing the exponentials to `y` when given.
#[inline(always)]
unsafe fn exp_sum<S: Simd>(x: *const f32, y: Option<*mut f32>, n: usize, m: f32) -> f32 {
    let l = S::LANES;
    let mv = S::splat(m);
    let (mut s0, mut s1) = (S::splat(0.0), S::splat(0.0));
    let mut j = 0;
    while j + l <= n {
        let e = S::exp(S::sub(S::load(x.add(j)), mv));
        if let Some(y) = y {
            S::store(y.add(j), e);
        }
        std::mem::swap(&mut s0, &mut s1);
        s0 = S::add(s0, e);
        j += l;
    }
    if j < n {
        // Padding lanes are -inf: exp gives exactly 0 (unless m is -inf or NaN: then the
        // row is NaN anyway).
        let e = S::exp(S::sub(S::load_part(x.add(j), n - j, f32::NEG_INFINITY), mv));
        if let Some(y) = y {
            S::store_part(y.add(j), n - j, e);
        }
        s1 = S::add(s1, S::select((1u32 << (n - j)) - 1, e, S::splat(0.0)));
    }
    S::hsum(S::add(s0, s1))
}

/// `y = a * x + b` over a row (in place allowed: `x == y`).
#[inline(always)]
unsafe fn affine<S: Simd>(x: *const f32, y: *mut f32, n: usize, a: f32, b: f32) {
    let l = S::LANES;
    let (av, bv) = (S::splat(a), S::splat(b));
    let mut j = 0;
    while j + l <= n {
        S::store(y.add(j), S::fma(S::load(x.add(j)), av, bv));
        j += l;
    }
    if j < n {
        S::store_part(
            y.add(j),
            n - j,
            S::fma(S::load_part(x.add(j), n - j, 0.0), av, bv),
        );
    }
}

#[inline(always)]
unsafe fn softmax_rows<S: Simd>(rows: usize, n: usize, x: &[f32], y: &mut [f32]) {
    for r in 0..rows {
        let (xr, yr) = (x.as_ptr().add(r * n), y.as_mut_ptr().add(r * n));
        let m = row_max::<S>(xr, n);
        let s = exp_sum::<S>(xr, Some(yr), n, m);
        affine::<S>(yr, yr, n, 1.0 / s, 0.0);
    }
}

#[inline(always)]
unsafe fn log_softmax_rows<S: Simd>(rows: usize, n: usize, x: &[f32], y: &mut [f32]) {
    for r in 0..rows {
        let (xr, yr) = (x.as_ptr().add(r * n), y.as_mut_ptr().add(r * n));
        let m = row_max::<S>(xr, n);
        let s = exp_sum::<S>(xr, None, n, m);
        affine::<S>(xr, yr, n, 1.0, -(m + s.ln()));
    }
}

#[inline(always)]
unsafe fn softmax_bwd_rows<S: Simd>(rows: usize, n: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let l = S::LANES;
    for r in 0..rows {
        let (yr, dyr, dxr) = (
            y.as_ptr().add(r * n),
            dy.as_ptr().add(r * n),
            dx.as_mut_ptr().add(r * n),
        );
        let (mut s0, mut s1) = (S::splat(0.0), S::splat(0.0));
        let mut j = 0;
        while j + l <= n {
            s0 = S::fma(S::load(yr.add(j)), S::load(dyr.add(j)), s0);
            std::mem::swap(&mut s0, &mut s1);
            j += l;
        }
        if j < n {
            s0 = S::fma(
                S::load_part(yr.add(j), n - j, 0.0),
                S::load_part(dyr.add(j), n - j, 0.0),
                s0,
            );
        }
        let d = S::splat(S::hsum(S::add(s0, s1)));
        let mut j = 0;
        while j + l <= n {
            let yv = S::load(yr.add(j));
            S::store(dxr.add(j), S::mul(yv, S::sub(S::load(dyr.add(j)), d)));
            j += l;
        }
        if j < n {
            let yv = S::load_part(yr.add(j), n - j, 0.0);
            let g = S::sub(S::load_part(dyr.add(j), n - j, 0.0), d);
            S::store_part(dxr.add(j), n - j, S::mul(yv, g));
        }
    }
}

simd_entry!(fn softmax_chunk(rows: usize, n: usize, x: &[f32], y: &mut [f32]) => softmax_rows);
simd_entry!(fn log_softmax_chunk(rows: usize, n: usize, x: &[f32], y: &mut [f32]) => log_softmax_rows);
simd_entry!(fn softmax_bwd_chunk(rows: usize, n: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) => softmax_bwd_rows);

/// [`super::softmax_fwd`] at a given SIMD level.
pub fn softmax_fwd(level: Level, rows: usize, n: usize, x: &[f32], y: &mut [f32]) {
    for_rows(rows, n, x, y, |r, x, y| softmax_chunk(level, r, n, x, y));
}

/// [`super::log_softmax_fwd`] at a given SIMD level.
pub fn log_softmax_fwd(level: Level, rows: usize, n: usize, x: &[f32], y: &mut [f32]) {
    for_rows(rows, n, x, y, |r, x, y| {
        log_softmax_chunk(level, r, n, x, y)
    });
}

/// [`super::softmax_bwd`] at a given SIMD level.
pub fn softmax_bwd(level: Level, rows: usize, n: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    debug_assert!(dy.len() >= rows * n);
    if rows == 0 || n == 0 {
        return;
    }
    // Slicing first: a short slice panics here instead of being read out of bounds.
    let (y, dy, dx) = (&y[..rows * n], &dy[..rows * n], &mut dx[..rows * n]);
    if rows * n < PAR_MIN_ELEMS {
        return softmax_bwd_chunk(level, rows, n, y, dy, dx);
    }
    let rc = rows_per_chunk(rows, n, PAR_MIN_ELEMS / 2);
    y.par_chunks(rc * n)
        .zip(dy.par_chunks(rc * n))
        .zip(dx.par_chunks_mut(rc * n))
        .for_each(|((yc, dyc), dxc)| softmax_bwd_chunk(level, yc.len() / n, n, yc, dyc, dxc));
}
