//! The CPU reduction: three access patterns chosen from the reduced dims, rayon over outputs.

use super::{Acc, ReduceOp};
use crate::layout::strides;
use rayon::prelude::*;

/// `out` = `x` (row-major `shape`) reduced by `op` over `dims` (see the module docs).
pub fn reduce<T: Acc>(op: ReduceOp, dims: &[usize], x: &[T], shape: &[usize], out: &mut [T]) {
    let n: usize = shape.iter().product();
    let kept: Vec<usize> = (0..shape.len()).filter(|d| !dims.contains(d)).collect();
    let out_n: usize = kept.iter().map(|&d| shape[d]).product();
    let red_n: usize = dims.iter().map(|&d| shape[d]).product();
    let st = strides(shape);
    let kept_shape: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    let red_shape: Vec<usize> = dims.iter().map(|&d| shape[d]).collect();
    let contiguous_tail = dims
        .iter()
        .enumerate()
        .all(|(k, &d)| d == shape.len() - dims.len() + k);
    // Sums over leading dims (bias gradients: [tokens, features] -> [features]) run row by
    // row into a vector of accumulators instead of striding down each column.
    let leading = dims.iter().enumerate().all(|(k, &d)| d == k);
    let leading_sum = op == ReduceOp::Sum && leading && out_n > 1 && red_n > 1;
    // Offsets of every reduced position relative to the first (shared by all outputs),
    // only for the paths that walk them: a contiguous-tail sum reads a slice.
    let walks = !(leading_sum || (contiguous_tail && op == ReduceOp::Sum));
    let red_off: Vec<usize> = (0..if walks { red_n } else { 0 })
        .map(|j| {
            let mut rem = j;
            let mut off = 0;
            for (k, &d) in dims.iter().enumerate().rev() {
                off += (rem % red_shape[k]) * st[d];
                rem /= red_shape[k];
            }
            off
        })
        .collect();
    let base = |i: usize| -> usize {
        let mut rem = i;
        let mut off = 0;
        for (k, &d) in kept.iter().enumerate().rev() {
            off += (rem % kept_shape[k]) * st[d];
            rem /= kept_shape[k];
        }
        off
    };
    let o = &mut out[..out_n];
    let xs = &x[..n];
    if leading_sum {
        sum_leading(xs, red_n, o);
    } else {
        reduce_walk(op, xs, o, &red_off, base, contiguous_tail, red_n);
    }
}

/// o[j] = sum over r of x[r * cols + j], in f64, over a fixed number of row chunks summed
/// in order (so the result does not depend on the thread count).
fn sum_leading<T: Acc>(xs: &[T], rows: usize, o: &mut [T]) {
    const CHUNKS: usize = 8;
    let cols = o.len();
    let per = rows.div_ceil(CHUNKS);
    let partial: Vec<Vec<f64>> = (0..CHUNKS)
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0f64; cols];
            for r in (c * per)..((c + 1) * per).min(rows) {
                for (a, v) in acc.iter_mut().zip(&xs[r * cols..(r + 1) * cols]) {
                    *a += v.to_acc();
                }
            }
            acc
        })
        .collect();
    for (j, y) in o.iter_mut().enumerate() {
        *y = T::from_acc(partial.iter().map(|p| p[j]).sum());
    }
}

/// Each output from its base offset: a slice sum over a contiguous tail, else a walk of
/// `red_off`.
fn reduce_walk<T: Acc>(
    op: ReduceOp,
    xs: &[T],
    o: &mut [T],
    red_off: &[usize],
    base: impl Fn(usize) -> usize + Sync,
    contiguous_tail: bool,
    red_n: usize,
) {
    let n = xs.len();
    let single = o.len() == 1;
    let one = |i: usize| -> T {
        let b = base(i);
        match op {
            ReduceOp::Sum => {
                let s: f64 = if contiguous_tail && single && red_n >= 1 << 16 {
                    // one long sum (norms, losses): fixed chunks in parallel, added in order
                    let per = red_n.div_ceil(16);
                    let parts: Vec<f64> = (0..16)
                        .into_par_iter()
                        .map(|c| {
                            let (lo, hi) = ((c * per).min(red_n), ((c + 1) * per).min(red_n));
                            xs[b + lo..b + hi].iter().map(|v| v.to_acc()).sum::<f64>()
                        })
                        .collect();
                    parts.iter().sum()
                } else if contiguous_tail {
                    xs[b..b + red_n].iter().map(|v| v.to_acc()).sum()
                } else {
                    red_off.iter().map(|&r| xs[b + r].to_acc()).sum()
                };
                T::from_acc(s)
            }
            ReduceOp::Max => {
                let mut m = f64::NEG_INFINITY;
                for &r in red_off {
                    let v = xs[b + r].to_acc();
                    if v.is_nan() {
                        return T::from_acc(f64::NAN);
                    }
                    m = m.max(v);
                }
                if red_n == 0 && !T::is_float() {
                    T::from_acc(0.0)
                } else {
                    T::from_acc(m)
                }
            }
        }
    };
    if n >= 1 << 16 && o.len() > 1 {
        o.par_iter_mut().enumerate().for_each(|(i, y)| *y = one(i));
    } else {
        o.iter_mut().enumerate().for_each(|(i, y)| *y = one(i));
    }
}
