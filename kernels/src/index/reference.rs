//! The gather / scatter-add spec, element by element, accumulating in f64.

use super::{clamp_id, split_at_axis};

/// `x` (row-major `shape`) gathered at `ids` along `axis`: `[pre, m, post]`.
pub fn gather<T: Copy>(x: &[T], shape: &[usize], axis: usize, ids: &[i64]) -> Vec<T> {
    let (pre, len, post) = split_at_axis(shape, axis);
    let m = ids.len();
    let mut out = Vec::with_capacity(pre * m * post);
    for p in 0..pre {
        for &id in ids {
            for q in 0..post {
                out.push(x[(p * len + clamp_id(id, len)) * post + q]);
            }
        }
    }
    out
}

/// Zeros of `shape` plus `upd [pre, m, post]` added at `ids` along `axis`, in f64.
pub fn scatter_add(upd: &[f64], shape: &[usize], axis: usize, ids: &[i64]) -> Vec<f64> {
    let (pre, len, post) = split_at_axis(shape, axis);
    let m = ids.len();
    let mut out = vec![0.0; pre * len * post];
    for p in 0..pre {
        for (j, &id) in ids.iter().enumerate() {
            for q in 0..post {
                out[(p * len + clamp_id(id, len)) * post + q] += upd[(p * m + j) * post + q];
            }
        }
    }
    out
}
