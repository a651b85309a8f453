//! broadcast_in_dim, transpose, slice and concatenate (and the copies other ops need) as
//! strided copies (kernels/src/movement/strided_copy.ptx), with adjacent dims merged first so
//! the kernel unravels as few dims as it can (at most the 8 it takes); a copy that merges to
//! one contiguous run is a plain device copy instead.

use crate::error::{CudaError, Result};
use crate::plan::{bytes_of, u32_of, Arg, Builder, Ptr};

/// The dims the kernel takes, after merging.
pub const MAX_RANK: usize = 8;

/// Row-major strides, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// (size, src stride, dst stride) of each dim, outermost first, with size-1 dims dropped and
/// each dim folded into the next where both index maps walk the pair as one run.
pub fn merge_dims(
    shape: &[usize],
    src_st: &[usize],
    dst_st: &[usize],
) -> Vec<(usize, usize, usize)> {
    let mut dims: Vec<(usize, usize, usize)> = vec![];
    for i in 0..shape.len() {
        if shape[i] == 1 {
            continue;
        }
        let cur = (shape[i], src_st[i], dst_st[i]);
        match dims.last_mut() {
            Some(last) if last.1 == cur.1 * cur.0 && last.2 == cur.2 * cur.0 => {
                *last = (last.0 * cur.0, cur.1, cur.2);
            }
            _ => dims.push(cur),
        }
    }
    dims
}

/// dst[idx . dst_st] = src[idx . src_st] over the index space `shape`, for elements of `w`
/// bytes (offsets are already in the pointers).
pub fn copy(
    b: &mut Builder,
    src: Ptr,
    dst: Ptr,
    shape: &[usize],
    src_st: &[usize],
    dst_st: &[usize],
    w: usize,
) -> Result<()> {
    let n: usize = shape.iter().product();
    if n == 0 {
        return Ok(());
    }
    let dims = merge_dims(shape, src_st, dst_st);
    if dims.is_empty() || (dims.len() == 1 && dims[0].1 == 1 && dims[0].2 == 1) {
        b.copy(dst, src, (n * w) as u64);
        return Ok(());
    }
    if dims.len() > MAX_RANK {
        return Err(CudaError::Unsupported(format!(
            "a copy over {} unmergeable dims (shape {shape:?}); the kernel takes {MAX_RANK}",
            dims.len()
        )));
    }
    let mut args = vec![
        ("n", Arg::Val(u32_of(n)?)),
        ("rank", Arg::Val(dims.len() as u64)),
        ("w", Arg::Val(w as u64)),
        ("dst", Arg::Ptr(dst)),
        ("src", Arg::Ptr(src)),
    ];
    // the kernel unravels from dim 0 = innermost; unused dims are size 1 (never read)
    let inner: Vec<(usize, usize, usize)> = dims.iter().rev().copied().collect();
    let at = |k: usize| inner.get(k).copied().unwrap_or((1, 0, 0));
    const SIZE: [&str; 8] = [
        "size0", "size1", "size2", "size3", "size4", "size5", "size6", "size7",
    ];
    const SRC: [&str; 8] = [
        "src_stride0",
        "src_stride1",
        "src_stride2",
        "src_stride3",
        "src_stride4",
        "src_stride5",
        "src_stride6",
        "src_stride7",
    ];
    const DST: [&str; 8] = [
        "dst_stride0",
        "dst_stride1",
        "dst_stride2",
        "dst_stride3",
        "dst_stride4",
        "dst_stride5",
        "dst_stride6",
        "dst_stride7",
    ];
    for (k, name) in SIZE.iter().enumerate() {
        args.push((name, Arg::Val(u32_of(at(k).0)?)));
    }
    for (k, name) in SRC.iter().enumerate() {
        args.push((name, Arg::Val(u32_of(at(k).1)?)));
    }
    for (k, name) in DST.iter().enumerate() {
        args.push((name, Arg::Val(u32_of(at(k).2)?)));
    }
    b.launch_1d("strided_copy", n, args);
    Ok(())
}

pub fn broadcast(
    b: &mut Builder,
    x: usize,
    out: usize,
    shape: &[usize],
    dims: &[usize],
) -> Result<()> {
    let xs = b.shape(x);
    let xst = strides(xs);
    // output dim dims[k] steps through operand dim k unless that one has size 1
    let mut src_st = vec![0; shape.len()];
    for (k, &d) in dims.iter().enumerate() {
        if xs[k] != 1 {
            src_st[d] = xst[k];
        }
    }
    let (src, dst) = (b.ptr(x)?, b.out(out)?);
    let w = b.dtype(out).size();
    copy(b, src, dst, shape, &src_st, &strides(shape), w)
}

pub fn transpose(b: &mut Builder, x: usize, out: usize, perm: &[usize]) -> Result<()> {
    let xst = strides(b.shape(x));
    let shape = b.shape(out);
    let src_st: Vec<usize> = perm.iter().map(|&p| xst[p]).collect();
    let (src, dst) = (b.ptr(x)?, b.out(out)?);
    let w = b.dtype(out).size();
    copy(b, src, dst, shape, &src_st, &strides(shape), w)
}

pub fn slice(b: &mut Builder, x: usize, out: usize, start: &[usize]) -> Result<()> {
    let xst = strides(b.shape(x));
    let shape = b.shape(out);
    let d = b.dtype(out);
    let off: usize = start.iter().zip(&xst).map(|(a, s)| a * s).sum();
    let (src, dst) = (b.ptr(x)?, b.out(out)?);
    copy(
        b,
        src.offset(bytes_of(off, d)),
        dst,
        shape,
        &xst,
        &strides(shape),
        d.size(),
    )
}

/// One copy per part, each into its place along `dim`.
pub fn concatenate(b: &mut Builder, parts: &[usize], out: usize, dim: usize) -> Result<()> {
    let ost = strides(b.shape(out));
    let dst = b.out(out)?;
    let d = b.dtype(out);
    let mut at = 0;
    for &x in parts {
        let xs = b.shape(x);
        let src = b.ptr(x)?;
        let to = dst.offset(bytes_of(at * ost[dim], d));
        copy(b, src, to, xs, &strides(xs), &ost, d.size())?;
        at += xs[dim];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_runs_and_drops_unit_dims() {
        // a contiguous copy is one run
        assert_eq!(
            merge_dims(&[2, 3, 4], &[12, 4, 1], &[12, 4, 1]),
            vec![(24, 1, 1)]
        );
        // a transpose of the last two dims of [2, 3, 4] (out [2, 4, 3]): nothing merges
        assert_eq!(
            merge_dims(&[2, 4, 3], &[12, 1, 4], &[12, 3, 1]),
            vec![(2, 12, 12), (4, 1, 3), (3, 4, 1)]
        );
        // broadcasting [3] along a new leading dim of 5: stride 0 outside, a run inside
        assert_eq!(
            merge_dims(&[5, 1, 3], &[0, 0, 1], &[3, 3, 1]),
            vec![(5, 0, 3), (3, 1, 1)]
        );
        // a slice of columns 1..3 of a [4, 5]: rows stride 5 in, 2 out
        assert_eq!(
            merge_dims(&[4, 2], &[5, 1], &[2, 1]),
            vec![(4, 5, 2), (2, 1, 1)]
        );
    }
}
