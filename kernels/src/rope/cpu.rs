//! SIMD RoPE kernel: one rotation routine for both directions (`sign = -1` is the backward).

use crate::simd::vector::{rows_per_chunk, simd_entry, Simd, PAR_MIN_ELEMS};
use crate::simd::Level;
use rayon::prelude::*;

/// `k <= LANES` lanes (zero-filled).
#[inline(always)]
unsafe fn load<S: Simd>(p: *const f32, k: usize) -> S::V {
    if k == S::LANES {
        S::load(p)
    } else {
        S::load_part(p, k, 0.0)
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rope_rows<S: Simd>(
    rows: usize,
    heads: usize,
    d: usize,
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    sign: f32,
    out: &mut [f32],
) {
    let (l, half) = (S::LANES, d / 2);
    let sg = S::splat(sign);
    for r in 0..rows {
        let (cr, sr) = (cos.as_ptr().add(r * half), sin.as_ptr().add(r * half));
        for h in 0..heads {
            let xb = x.as_ptr().add((r * heads + h) * d);
            let ob = out.as_mut_ptr().add((r * heads + h) * d);
            let mut j = 0;
            while j < half {
                let k = (half - j).min(l);
                let (c, s) = (load::<S>(cr.add(j), k), S::mul(sg, load::<S>(sr.add(j), k)));
                let (x1, x2) = (load::<S>(xb.add(j), k), load::<S>(xb.add(half + j), k));
                let o1 = S::fma(x1, c, S::mul(S::sub(S::splat(0.0), x2), s));
                let o2 = S::fma(x2, c, S::mul(x1, s));
                if k == l {
                    S::store(ob.add(j), o1);
                    S::store(ob.add(half + j), o2);
                } else {
                    S::store_part(ob.add(j), k, o1);
                    S::store_part(ob.add(half + j), k, o2);
                }
                j += k;
            }
        }
    }
}

simd_entry!(fn rope_chunk(rows: usize, heads: usize, d: usize, x: &[f32], cos: &[f32], sin: &[f32], sign: f32, out: &mut [f32]) => rope_rows);

/// Rotates every head of every row by its position's angle times `sign` (+1 forward,
/// -1 backward), at a given SIMD level.
#[allow(clippy::too_many_arguments)]
pub fn rope(
    level: Level,
    rows: usize,
    heads: usize,
    d: usize,
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    sign: f32,
    out: &mut [f32],
) {
    debug_assert!(d.is_multiple_of(2), "rope: head dim {d} must be even");
    let (row, half) = (heads * d, d / 2);
    debug_assert!(x.len() >= rows * row && out.len() >= rows * row);
    debug_assert!(cos.len() >= rows * half && sin.len() >= rows * half);
    if rows == 0 || row == 0 {
        return;
    }
    // Slicing first: a short slice panics here instead of being read out of bounds.
    let (x, out) = (&x[..rows * row], &mut out[..rows * row]);
    let (cos, sin) = (&cos[..rows * half], &sin[..rows * half]);
    if rows * row < PAR_MIN_ELEMS {
        return rope_chunk(level, rows, heads, d, x, cos, sin, sign, out);
    }
    let rc = rows_per_chunk(rows, row, PAR_MIN_ELEMS / 2);
    x.par_chunks(rc * row)
        .zip(out.par_chunks_mut(rc * row))
        .enumerate()
        .for_each(|(i, (xc, oc))| {
            let r0 = i * rc;
            let n = xc.len() / row;
            let (c, s) = (
                &cos[r0 * half..(r0 + n) * half],
                &sin[r0 * half..(r0 + n) * half],
            );
            rope_chunk(level, n, heads, d, xc, c, s, sign, oc)
        });
}
