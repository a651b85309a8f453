//! The movement spec: each output element's source, computed from its multi-index alone.

use crate::layout::{offset, strides, unravel};

/// `x` (`src_shape`) broadcast to `shape`, source dim `k` at output dim `dims[k]`.
pub fn broadcast_in_dim<T: Copy>(
    x: &[T],
    src_shape: &[usize],
    shape: &[usize],
    dims: &[usize],
) -> Vec<T> {
    let n: usize = shape.iter().product();
    let ss = strides(src_shape);
    (0..n)
        .map(|i| {
            let idx = unravel(i, shape);
            // A size-1 source dim is read at 0 whatever the output index.
            let src: Vec<usize> = dims
                .iter()
                .zip(src_shape)
                .map(|(&d, &s)| if s == 1 { 0 } else { idx[d] })
                .collect();
            x[offset(&src, &ss)]
        })
        .collect()
}

/// `x` (`src_shape`) with output dim `k` being source dim `perm[k]`.
pub fn transpose<T: Copy>(x: &[T], src_shape: &[usize], perm: &[usize]) -> Vec<T> {
    let shape: Vec<usize> = perm.iter().map(|&p| src_shape[p]).collect();
    let n: usize = shape.iter().product();
    let ss = strides(src_shape);
    (0..n)
        .map(|i| {
            let idx = unravel(i, &shape);
            let mut src = vec![0; src_shape.len()];
            for (k, &p) in perm.iter().enumerate() {
                src[p] = idx[k];
            }
            x[offset(&src, &ss)]
        })
        .collect()
}

/// `x[start..limit]` along every dim of `src_shape`.
pub fn slice<T: Copy>(x: &[T], src_shape: &[usize], start: &[usize], limit: &[usize]) -> Vec<T> {
    let shape: Vec<usize> = start.iter().zip(limit).map(|(a, b)| b - a).collect();
    let n: usize = shape.iter().product();
    let ss = strides(src_shape);
    (0..n)
        .map(|i| {
            let src: Vec<usize> = unravel(i, &shape)
                .iter()
                .zip(start)
                .map(|(i, s)| i + s)
                .collect();
            x[offset(&src, &ss)]
        })
        .collect()
}

/// The parts joined along `dim`: output index `j` along `dim` falls in the part whose
/// running extent covers it.
pub fn concatenate<T: Copy>(parts: &[(&[T], &[usize])], dim: usize) -> Vec<T> {
    let Some(&(_, shape0)) = parts.first() else {
        return vec![];
    };
    let mut shape = shape0.to_vec();
    shape[dim] = parts.iter().map(|(_, s)| s[dim]).sum();
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| {
            let mut idx = unravel(i, &shape);
            let mut k = 0;
            while idx[dim] >= parts[k].1[dim] {
                idx[dim] -= parts[k].1[dim];
                k += 1;
            }
            let (x, s) = parts[k];
            x[offset(&idx, &strides(s))]
        })
        .collect()
}
