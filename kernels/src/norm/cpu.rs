//! SIMD RMSNorm kernels (see the module docs for the math). `level` selects the ISA
//! (clamped to the CPU's).

use crate::simd::vector::{rows_per_chunk, simd_entry, Simd, PAR_MIN_ELEMS};
use crate::simd::Level;
use rayon::prelude::*;

/// `dw` partial sums stay in f32 for at most this many rows before moving to f64.
const DW_BLOCK_ROWS: usize = 32;

/// `sum_j a_j b_j` over a row, in f32 lanes.
#[inline(always)]
unsafe fn dot<S: Simd>(a: *const f32, b: *const f32, n: usize) -> f32 {
    let l = S::LANES;
    let (mut s0, mut s1) = (S::splat(0.0), S::splat(0.0));
    let mut j = 0;
    while j + l <= n {
        s0 = S::fma(S::load(a.add(j)), S::load(b.add(j)), s0);
        std::mem::swap(&mut s0, &mut s1);
        j += l;
    }
    if j < n {
        s0 = S::fma(
            S::load_part(a.add(j), n - j, 0.0),
            S::load_part(b.add(j), n - j, 0.0),
            s0,
        );
    }
    S::hsum(S::add(s0, s1))
}

#[inline(always)]
unsafe fn fwd_rows<S: Simd>(
    rows: usize,
    n: usize,
    eps: f32,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    rstd: &mut [f32],
) {
    let l = S::LANES;
    let one = S::splat(1.0);
    let wp = w.as_ptr();
    for (i, rs) in rstd[..rows].iter_mut().enumerate() {
        let (xr, yr) = (x.as_ptr().add(i * n), y.as_mut_ptr().add(i * n));
        let ss = dot::<S>(xr, xr, n);
        let r = (1.0 / (ss as f64 / n as f64 + eps as f64).sqrt()) as f32;
        *rs = r;
        let rv = S::splat(r);
        let mut j = 0;
        while j + l <= n {
            let g = S::add(one, S::load(wp.add(j)));
            S::store(yr.add(j), S::mul(S::mul(S::load(xr.add(j)), rv), g));
            j += l;
        }
        if j < n {
            let k = n - j;
            let g = S::add(one, S::load_part(wp.add(j), k, 0.0));
            S::store_part(
                yr.add(j),
                k,
                S::mul(S::mul(S::load_part(xr.add(j), k, 0.0), rv), g),
            );
        }
    }
}

/// Backward over a chunk of rows: writes `dx` and adds `sum_i dy x r` into `dw64`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn bwd_rows<S: Simd>(
    rows: usize,
    n: usize,
    x: &[f32],
    w: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dw64: &mut [f64],
) {
    let l = S::LANES;
    let one = S::splat(1.0);
    let wp = w.as_ptr();
    let mut acc = vec![0.0f32; n];
    let ap = acc.as_mut_ptr();
    for (i, &r) in rstd[..rows].iter().enumerate() {
        let (xr, dyr, dxr) = (
            x.as_ptr().add(i * n),
            dy.as_ptr().add(i * n),
            dx.as_mut_ptr().add(i * n),
        );
        // a = sum_j dy_j g_j x_j
        let (mut s0, mut s1) = (S::splat(0.0), S::splat(0.0));
        let mut j = 0;
        while j + l <= n {
            let t = S::mul(S::load(dyr.add(j)), S::add(one, S::load(wp.add(j))));
            s0 = S::fma(t, S::load(xr.add(j)), s0);
            std::mem::swap(&mut s0, &mut s1);
            j += l;
        }
        if j < n {
            let k = n - j;
            let t = S::mul(
                S::load_part(dyr.add(j), k, 0.0),
                S::add(one, S::load_part(wp.add(j), k, 0.0)),
            );
            s0 = S::fma(t, S::load_part(xr.add(j), k, 0.0), s0);
        }
        let a = S::hsum(S::add(s0, s1)) as f64;
        let c = ((r as f64).powi(3) * a / n as f64) as f32;
        let (rv, ncv) = (S::splat(r), S::splat(-c));
        // dx = r g dy - c x ;  acc += dy x r
        let mut j = 0;
        while j < n {
            let k = (n - j).min(l);
            let (xv, dyv) = if k == l {
                (S::load(xr.add(j)), S::load(dyr.add(j)))
            } else {
                (
                    S::load_part(xr.add(j), k, 0.0),
                    S::load_part(dyr.add(j), k, 0.0),
                )
            };
            let g = S::add(
                one,
                if k == l {
                    S::load(wp.add(j))
                } else {
                    S::load_part(wp.add(j), k, 0.0)
                },
            );
            let d = S::fma(xv, ncv, S::mul(rv, S::mul(g, dyv)));
            let av = if k == l {
                S::load(ap.add(j))
            } else {
                S::load_part(ap.add(j), k, 0.0)
            };
            let av = S::fma(S::mul(dyv, xv), rv, av);
            if k == l {
                S::store(dxr.add(j), d);
                S::store(ap.add(j), av);
            } else {
                S::store_part(dxr.add(j), k, d);
                S::store_part(ap.add(j), k, av);
            }
            j += k;
        }
        if (i + 1) % DW_BLOCK_ROWS == 0 || i + 1 == rows {
            for (d, a) in dw64.iter_mut().zip(acc.iter_mut()) {
                *d += *a as f64;
                *a = 0.0;
            }
        }
    }
}

simd_entry!(fn fwd_chunk(rows: usize, n: usize, eps: f32, x: &[f32], w: &[f32], y: &mut [f32], rstd: &mut [f32]) => fwd_rows);
simd_entry!(fn bwd_chunk(rows: usize, n: usize, x: &[f32], w: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32], dw64: &mut [f64]) => bwd_rows);

/// [`super::rms_norm_fwd`] at a given SIMD level.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_fwd(
    level: Level,
    rows: usize,
    n: usize,
    eps: f32,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    rstd: &mut [f32],
) {
    debug_assert!(x.len() >= rows * n && y.len() >= rows * n && w.len() >= n && rstd.len() >= rows);
    if rows == 0 {
        return;
    }
    // Slicing first: a short slice panics here instead of being read out of bounds.
    let (x, y, rstd, w) = (
        &x[..rows * n],
        &mut y[..rows * n],
        &mut rstd[..rows],
        &w[..n],
    );
    if rows * n < PAR_MIN_ELEMS || n == 0 {
        return fwd_chunk(level, rows, n, eps, x, w, y, rstd);
    }
    let rc = rows_per_chunk(rows, n, PAR_MIN_ELEMS / 2);
    x.par_chunks(rc * n)
        .zip(y.par_chunks_mut(rc * n))
        .zip(rstd.par_chunks_mut(rc))
        .for_each(|((xc, yc), sc)| fwd_chunk(level, sc.len(), n, eps, xc, w, yc, sc));
}

/// [`super::rms_norm_bwd`] at a given SIMD level.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_bwd(
    level: Level,
    rows: usize,
    n: usize,
    x: &[f32],
    w: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
) {
    debug_assert!(x.len() >= rows * n && dy.len() >= rows * n && dx.len() >= rows * n);
    debug_assert!(w.len() >= n && dw.len() >= n && rstd.len() >= rows);
    let dw = &mut dw[..n];
    if rows == 0 || n == 0 {
        dw.fill(0.0);
        return;
    }
    let w = &w[..n];
    // Slicing first: a short slice panics here instead of being read out of bounds.
    let (x, dy, dx, rstd) = (
        &x[..rows * n],
        &dy[..rows * n],
        &mut dx[..rows * n],
        &rstd[..rows],
    );
    let mut total = vec![0.0f64; n];
    if rows * n < PAR_MIN_ELEMS {
        bwd_chunk(level, rows, n, x, w, rstd, dy, dx, &mut total);
    } else {
        // Few chunks (a handful per thread) so the f64 partials of dw stay small.
        let per_thread = rows.div_ceil(4 * rayon::current_num_threads());
        let rc = rows_per_chunk(rows, n, PAR_MIN_ELEMS / 2).max(per_thread);
        let parts: Vec<Vec<f64>> = x
            .par_chunks(rc * n)
            .zip(dy.par_chunks(rc * n))
            .zip(dx.par_chunks_mut(rc * n))
            .zip(rstd.par_chunks(rc))
            .map(|(((xc, dyc), dxc), sc)| {
                let mut part = vec![0.0f64; n];
                bwd_chunk(level, sc.len(), n, xc, w, sc, dyc, dxc, &mut part);
                part
            })
            .collect();
        // Summed in chunk order: deterministic.
        for p in parts {
            for (t, v) in total.iter_mut().zip(p) {
                *t += v;
            }
        }
    }
    for (d, t) in dw.iter_mut().zip(total) {
        *d = t as f32;
    }
}
