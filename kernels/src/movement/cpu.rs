//! The CPU copies: one strided copy serves broadcast_in_dim, transpose and slice.

use crate::layout::strides;
use rayon::prelude::*;

/// `out[i] = src[offset + sum_d idx_d(i) * src_strides[d]]` over `out_shape`
/// (row-major). Rows of the last dim are copied contiguously when their stride is 1.
pub fn strided_copy<T: Copy + Send + Sync>(
    out: &mut [T],
    out_shape: &[usize],
    src: &[T],
    src_strides: &[usize],
    offset: usize,
) {
    let n: usize = out_shape.iter().product();
    if n == 0 {
        return;
    }
    if out_shape.is_empty() {
        out[0] = src[offset];
        return;
    }
    let r = out_shape.len();
    let inner = out_shape[r - 1];
    let s_inner = src_strides[r - 1];
    let rows = n / inner;
    let row_src = |row: usize| -> usize {
        let mut rem = row;
        let mut off = offset;
        for d in (0..r - 1).rev() {
            off += (rem % out_shape[d]) * src_strides[d];
            rem /= out_shape[d];
        }
        off
    };
    let copy_row = |row: usize, o: &mut [T]| {
        let base = row_src(row);
        if s_inner == 1 {
            o.copy_from_slice(&src[base..base + inner]);
        } else if s_inner == 0 {
            o.fill(src[base]);
        } else {
            o.iter_mut()
                .enumerate()
                .for_each(|(j, y)| *y = src[base + j * s_inner]);
        }
    };
    let out = &mut out[..n];
    if n >= 1 << 16 && rows > 1 {
        out.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(row, o)| copy_row(row, o));
    } else {
        out.chunks_mut(inner)
            .enumerate()
            .for_each(|(row, o)| copy_row(row, o));
    }
}

/// `out` (row-major `shape`) = `src` (`src_shape`) with source dim `k` at output dim `dims[k]`.
pub fn broadcast_in_dim<T: Copy + Send + Sync>(
    out: &mut [T],
    shape: &[usize],
    src: &[T],
    src_shape: &[usize],
    dims: &[usize],
) {
    let ss = strides(src_shape);
    let mut st = vec![0; shape.len()];
    for (i, &d) in dims.iter().enumerate() {
        if src_shape[i] != 1 {
            st[d] = ss[i];
        }
    }
    strided_copy(out, shape, src, &st, 0);
}

/// `out` = `src` (`src_shape`) with output dim `k` being source dim `perm[k]`.
pub fn transpose<T: Copy + Send + Sync>(
    out: &mut [T],
    src: &[T],
    src_shape: &[usize],
    perm: &[usize],
) {
    let ss = strides(src_shape);
    let shape: Vec<usize> = perm.iter().map(|&p| src_shape[p]).collect();
    let st: Vec<usize> = perm.iter().map(|&p| ss[p]).collect();
    strided_copy(out, &shape, src, &st, 0);
}

/// `out` = `src[start..limit]` along every dim of `src_shape`.
pub fn slice<T: Copy + Send + Sync>(
    out: &mut [T],
    src: &[T],
    src_shape: &[usize],
    start: &[usize],
    limit: &[usize],
) {
    let ss = strides(src_shape);
    let shape: Vec<usize> = start.iter().zip(limit).map(|(a, b)| b - a).collect();
    let offset = start.iter().zip(&ss).map(|(a, s)| a * s).sum();
    strided_copy(out, &shape, src, &ss, offset);
}

/// `out` = the `(data, shape)` parts joined along `dim`.
pub fn concatenate<T: Copy>(out: &mut [T], parts: &[(&[T], &[usize])], dim: usize) {
    let Some(&(_, shape0)) = parts.first() else {
        return;
    };
    let outer: usize = shape0[..dim].iter().product();
    let inner: usize = shape0[dim + 1..].iter().product();
    let total: usize = parts.iter().map(|(_, s)| s[dim]).sum::<usize>() * inner;
    let mut pos = 0;
    for o in 0..outer {
        for (src, s) in parts {
            let len = s[dim] * inner;
            out[pos..pos + len].copy_from_slice(&src[o * len..(o + 1) * len]);
            pos += len;
        }
    }
    debug_assert_eq!(pos, outer * total);
}
