//! broadcast_in_dim, transpose, slice, concatenate (and copies the plan needs) as strided
//! copies (kernels/src/movement/strided_copy.wgsl), with adjacent dims merged first so the
//! kernel walks as few dims as it can (and at most the 8 it takes).

use crate::error::{Result, WgpuError};
use crate::pipelines::Kernel;
use crate::plan::{strides, u32_of, width, Bind, Builder};
use gidd_kernels::wgsl::Module;

/// The dims the kernel takes, after merging.
const MAX_RANK: usize = 8;

/// dst[dst_off + idx . dst_st] = src[src_off + idx . src_st] over the index space `shape`,
/// in elements of `w` words.
#[allow(clippy::too_many_arguments)]
pub fn copy(
    b: &mut Builder,
    src: Bind,
    dst: Bind,
    shape: &[usize],
    src_st: &[usize],
    dst_st: &[usize],
    src_off: usize,
    dst_off: usize,
    w: u32,
) -> Result<()> {
    strided(
        b, src, dst, shape, src_st, dst_st, src_off, dst_off, w, 0, None,
    )
}

/// As [`copy`] from packed `src` of 16-bit float kind `h` (crate::buffer::half; indices count
/// its elements) into widened `dst`, one word per element.
#[allow(clippy::too_many_arguments)]
pub fn copy_from_packed(
    b: &mut Builder,
    src: Bind,
    dst: Bind,
    shape: &[usize],
    src_st: &[usize],
    dst_st: &[usize],
    src_off: usize,
    dst_off: usize,
    h: u32,
) -> Result<()> {
    strided(
        b, src, dst, shape, src_st, dst_st, src_off, dst_off, 1, h, None,
    )
}

/// [`copy`] (or, with `packed` a 16-bit kind, [`copy_from_packed`]) reading `src` through the byte
/// window `win` of it ([`crate::plan::Builder::span_window`]; `src_off` counts from the window's
/// start) into `dst` from element `dst_off`: how blocks of a tensor larger than one storage binding
/// are staged into scratch.
#[allow(clippy::too_many_arguments)]
pub fn copy_from_window(
    b: &mut Builder,
    src: Bind,
    win: (u64, u64),
    dst: Bind,
    shape: &[usize],
    src_st: &[usize],
    dst_st: &[usize],
    [src_off, dst_off]: [usize; 2],
    w: u32,
    packed: u32,
) -> Result<()> {
    strided(
        b,
        src,
        dst,
        shape,
        src_st,
        dst_st,
        src_off,
        dst_off,
        w,
        packed,
        Some(win),
    )
}

#[allow(clippy::too_many_arguments)]
fn strided(
    b: &mut Builder,
    src: Bind,
    dst: Bind,
    shape: &[usize],
    src_st: &[usize],
    dst_st: &[usize],
    src_off: usize,
    dst_off: usize,
    w: u32,
    src_h: u32,
    src_win: Option<(u64, u64)>,
) -> Result<()> {
    let n: usize = shape.iter().product();
    if n == 0 {
        return Ok(());
    }
    // Merge dim d into d + 1 where both index maps step through it as one run.
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
    if dims.len() > MAX_RANK {
        return Err(WgpuError::Unsupported(format!(
            "a copy over {} unmergeable dims (shape {shape:?}); the kernel takes {MAX_RANK}",
            dims.len()
        )));
    }
    let mut p = vec![0u32; 29];
    p[0] = u32_of(n)?;
    p[1] = dims.len() as u32;
    p[2] = w;
    p[3] = u32_of(src_off)?;
    p[4] = u32_of(dst_off)?;
    for (k, &(size, s, d)) in dims.iter().enumerate() {
        p[5 + k] = u32_of(size)?;
        p[13 + k] = u32_of(s)?;
        p[21 + k] = u32_of(d)?;
    }
    let k = Kernel::new(Module::StridedCopy, "strided_copy", 1)
        .with("RANK", dims.len() as u32)
        .with("W", w)
        .with("SRC_H", src_h);
    let g = crate::plan::grid(n.div_ceil(crate::plan::WG))?;
    b.push_windows(k, vec![dst, src], vec![None, src_win], &p, g)
}

/// Copies the first `words` words of value `x` into value `out` (a reshape that runs, an i64
/// copy): one dispatch, or one per window of words when a value is larger than a binding.
pub fn copy_words(b: &mut Builder, x: usize, out: usize, words: usize) -> Result<()> {
    b.windowed = true;
    let binds = b.buf(x).and_then(|s| Ok((s, b.out(out)?)));
    b.windowed = false;
    let (src, dst) = binds?;
    let k = Kernel::new(Module::StridedCopy, "strided_copy", 1)
        .with("RANK", 1)
        .with("W", 1)
        .with("SRC_H", 0);
    b.push_chunked(k, vec![dst, src], &[4, 4], words, 1, |len| {
        let mut p = vec![0u32; 29];
        p[0] = u32_of(len)?;
        (p[1], p[2], p[5], p[13], p[21]) = (1, 1, p[0], 1, 1);
        Ok(p)
    })
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
    let (src, dst) = (b.buf(x)?, b.out(out)?);
    let w = width(b.dtype(out));
    copy(b, src, dst, shape, &src_st, &strides(shape), 0, 0, w)
}

pub fn transpose(b: &mut Builder, x: usize, out: usize, perm: &[usize]) -> Result<()> {
    let xst = strides(b.shape(x));
    let shape = b.shape(out);
    let src_st: Vec<usize> = perm.iter().map(|&p| xst[p]).collect();
    let (src, dst) = (b.buf(x)?, b.out(out)?);
    let w = width(b.dtype(out));
    copy(b, src, dst, shape, &src_st, &strides(shape), 0, 0, w)
}

pub fn slice(b: &mut Builder, x: usize, out: usize, start: &[usize]) -> Result<()> {
    let xst = strides(b.shape(x));
    let shape = b.shape(out);
    let off = start.iter().zip(&xst).map(|(a, s)| a * s).sum();
    let (src, dst) = (b.buf(x)?, b.out(out)?);
    let w = width(b.dtype(out));
    copy(b, src, dst, shape, &xst, &strides(shape), off, 0, w)
}

/// One copy per part, each into its place along `dim` (packed 16-bit values concatenate in
/// crate::positional: a part that starts at an odd element shares its first word with the
/// part before it, so copies into the packed output would have two invocations write one
/// word).
pub fn concatenate(b: &mut Builder, parts: &[usize], out: usize, dim: usize) -> Result<()> {
    let ost = strides(b.shape(out));
    let dst = b.out(out)?;
    let w = width(b.dtype(out));
    let mut at = 0;
    for &x in parts {
        let xs = b.shape(x);
        let src = b.buf(x)?;
        copy(b, src, dst, xs, &strides(xs), &ost, 0, at * ost[dim], w)?;
        at += xs[dim];
    }
    Ok(())
}
