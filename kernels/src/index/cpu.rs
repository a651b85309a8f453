//! The CPU gather and scatter-add: one contiguous run per (outer position, index).

use super::{clamp_id, split_at_axis};
use crate::element::Element;

/// `out [pre, m, post]` = `x` (row-major `shape`) gathered at `ids [m]` along `axis`.
pub fn gather<T: Copy>(x: &[T], shape: &[usize], axis: usize, ids: &[i64], out: &mut [T]) {
    let (pre, len, post) = split_at_axis(shape, axis);
    let m = ids.len();
    for p in 0..pre {
        for (j, &id) in ids.iter().enumerate() {
            let s = (p * len + clamp_id(id, len)) * post;
            let d = (p * m + j) * post;
            out[d..d + post].copy_from_slice(&x[s..s + post]);
        }
    }
}

/// `out` (row-major `shape`) = zeros plus `upd [pre, m, post]` added at `ids [m]` along
/// `axis`, in f32.
pub fn scatter_add_f32(upd: &[f32], shape: &[usize], axis: usize, ids: &[i64], out: &mut [f32]) {
    let (pre, len, post) = split_at_axis(shape, axis);
    let m = ids.len();
    let o = &mut out[..pre * len * post];
    o.fill(0.0);
    for p in 0..pre {
        for (j, &id) in ids.iter().enumerate() {
            let d = (p * len + clamp_id(id, len)) * post;
            let s = (p * m + j) * post;
            o[d..d + post]
                .iter_mut()
                .zip(&upd[s..s + post])
                .for_each(|(y, &v)| *y += v);
        }
    }
}

/// [`scatter_add_f32`] for any update and output types, accumulating in f64 and rounding
/// once (bf16 and integer updates are rare: this favours exactness over speed).
pub fn scatter_add_wide<S: Element, T: Element>(
    upd: &[S],
    shape: &[usize],
    axis: usize,
    ids: &[i64],
    out: &mut [T],
) {
    let (pre, len, post) = split_at_axis(shape, axis);
    let m = ids.len();
    let n = pre * len * post;
    let mut acc = vec![0f64; n];
    for p in 0..pre {
        for (j, &id) in ids.iter().enumerate() {
            let id = clamp_id(id, len);
            for q in 0..post {
                acc[(p * len + id) * post + q] += upd[(p * m + j) * post + q].to_f64();
            }
        }
    }
    out[..n]
        .iter_mut()
        .zip(&acc)
        .for_each(|(y, &v)| *y = T::from_f64(v));
}
