//! The reduction spec: one pass over `x` in row-major order, accumulating in f64.

use super::{Acc, ReduceOp};
use crate::layout::unravel;

/// `x` (row-major `shape`) reduced by `op` over `dims`, as the kept dims in order.
pub fn reduce<T: Acc>(op: ReduceOp, dims: &[usize], x: &[T], shape: &[usize]) -> Vec<T> {
    let kept: Vec<usize> = (0..shape.len()).filter(|d| !dims.contains(d)).collect();
    let kept_shape: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    let out_n: usize = kept_shape.iter().product();
    let init = match op {
        ReduceOp::Sum => 0.0,
        ReduceOp::Max if T::is_float() => f64::NEG_INFINITY,
        // The max over nothing is 0 for integers (they have no -inf).
        ReduceOp::Max => 0.0,
    };
    let mut acc = vec![init; out_n];
    let mut seen = vec![false; out_n];
    for (i, v) in x.iter().enumerate() {
        let idx = unravel(i, shape);
        let j = kept
            .iter()
            .zip(&kept_shape)
            .fold(0, |j, (&d, &n)| j * n + idx[d]);
        let v = v.to_acc();
        acc[j] = match op {
            ReduceOp::Sum => acc[j] + v,
            ReduceOp::Max if v.is_nan() || acc[j].is_nan() => f64::NAN,
            ReduceOp::Max if !seen[j] => v,
            ReduceOp::Max => acc[j].max(v),
        };
        seen[j] = true;
    }
    acc.into_iter().map(T::from_acc).collect()
}
