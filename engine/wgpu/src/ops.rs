//! dot_general, reduce, gather and scatter-add lowered to their WGSL kernels.

use crate::error::{Result, WgpuError};
use crate::lower::{class, Class};
use crate::movement::{copy, copy_from_packed};
use crate::pipelines::Kernel;
use crate::plan::{grid, strides, u32_of, width, Bind, Builder, MAX_GROUPS};
use gidd_engine::op::{DotDims, ReduceOp};
use gidd_engine::DType;
use gidd_kernels::wgsl::Module;

/// The one stride that walks `dims` (in this order) of an operand with `shape` and row-major
/// `st` as a single run, if there is one; size-1 dims are skipped, and no dims walk with 0.
fn group_stride(shape: &[usize], st: &[usize], dims: &[usize]) -> Option<usize> {
    let ds: Vec<usize> = dims.iter().copied().filter(|&d| shape[d] != 1).collect();
    for w in ds.windows(2) {
        if st[w[0]] != st[w[1]] * shape[w[1]] {
            return None;
        }
    }
    Some(ds.last().map_or(0, |&d| st[d]))
}

/// An operand as a [batch, rows, cols] stack: its binding and the three strides. Layouts whose
/// groups are single runs (every plain or transposed matrix) are read in place; any other is
/// first copied into scratch buffer `k` in [batch, rows, cols] order.
fn as_matrix(
    b: &mut Builder,
    v: usize,
    groups: [&[usize]; 3],
    k: usize,
) -> Result<(Bind, [usize; 3])> {
    let shape = b.shape(v);
    let st = strides(shape);
    let g: Vec<Option<usize>> = groups
        .iter()
        .map(|ds| group_stride(shape, &st, ds))
        .collect();
    let src = b.buf(v)?;
    if let [Some(s0), Some(s1), Some(s2)] = g[..] {
        return Ok((src, [s0, s1, s2]));
    }
    let size = |ds: &[usize]| ds.iter().map(|&d| shape[d]).product::<usize>();
    let (r, c) = (size(groups[1]), size(groups[2]));
    Ok((padded_copy(b, v, src, groups, [r, c], k)?, [r * c, c, 1]))
}

/// Copies operand `v` into scratch buffer `k` as a contiguous [batch, rows, cols] stack with
/// `padded` = [rows, cols] (at least the operand's); padding is zero. A bf16 operand comes
/// out widened (one word per element) or, with `pack`, packed into scratch buffer `k + 2`.
fn padded_copy(
    b: &mut Builder,
    v: usize,
    src: Bind,
    groups: [&[usize]; 3],
    padded: [usize; 2],
    k: usize,
) -> Result<Bind> {
    padded_copy_as(b, v, src, groups, padded, k, false)
}

fn padded_copy_as(
    b: &mut Builder,
    v: usize,
    src: Bind,
    groups: [&[usize]; 3],
    padded: [usize; 2],
    k: usize,
    pack: bool,
) -> Result<Bind> {
    let shape = b.shape(v);
    let st = strides(shape);
    let size = |ds: &[usize]| ds.iter().map(|&d| shape[d]).product::<usize>();
    let (batch, rows, cols) = (size(groups[0]), size(groups[1]), size(groups[2]));
    let total = batch * padded[0] * padded[1];
    let dst = b.scratch(k, (total * 4) as u64);
    if [rows, cols] != padded {
        let fill = Kernel::new(Module::Convert, "fill", 0);
        b.push_elementwise(fill, dst, &[], total, &[1])?;
    }
    // each group's dims row-major within the group, groups at the padded strides
    let base = [padded[0] * padded[1], padded[1], 1];
    let (mut oshape, mut src_st, mut dst_st) = (vec![], vec![], vec![]);
    for (g, ds) in groups.iter().enumerate() {
        let mut inner = base[g];
        let mut within = vec![];
        for &d in ds.iter().rev() {
            within.push((shape[d], st[d], inner));
            inner *= shape[d];
        }
        for (size, s, t) in within.into_iter().rev() {
            oshape.push(size);
            src_st.push(s);
            dst_st.push(t);
        }
    }
    if !pack {
        copy(b, src, dst, &oshape, &src_st, &dst_st, 0, 0, 1)?;
        return Ok(dst);
    }
    copy_from_packed(b, src, dst, &oshape, &src_st, &dst_st, 0, 0)?;
    let packed = b.scratch(k + 2, (total.div_ceil(2) * 4) as u64);
    b.pack(dst, packed, total)?;
    Ok(packed)
}

/// An operand for gemm_blocked: contiguous [batch, rows, cols_p] with `cols_p` (and `rows_p`)
/// the padded sizes; in place when it already is, else a padded copy in scratch buffer `k`
/// (bf16 stays packed: its rows of `cols_p`, a multiple of 4, start on whole words).
fn blocked(
    b: &mut Builder,
    v: usize,
    groups: [&[usize]; 3],
    padded: [usize; 2],
    k: usize,
) -> Result<Bind> {
    let shape = b.shape(v);
    let st = strides(shape);
    let size = |ds: &[usize]| ds.iter().map(|&d| shape[d]).product::<usize>();
    let (rows, cols) = (size(groups[1]), size(groups[2]));
    let g: Vec<Option<usize>> = groups
        .iter()
        .map(|ds| group_stride(shape, &st, ds))
        .collect();
    let contiguous = matches!(g[..], [Some(s0), Some(s1), Some(s2)]
        if (s0 == rows * cols || size(groups[0]) == 1)
            && (s1 == cols || rows == 1)
            && (s2 == 1 || cols == 1));
    let src = b.buf(v)?;
    if contiguous && [rows, cols] == padded {
        return Ok(src);
    }
    let bf16 = b.dtype(v) == DType::BF16;
    padded_copy_as(b, v, src, groups, padded, k, bf16)
}

pub fn dot_general(b: &mut Builder, dd: &DotDims, l: usize, r: usize, out: usize) -> Result<()> {
    let bf16 = match class(b.dtype(out))? {
        Class::Float { bf16 } => bf16,
        c => {
            return Err(WgpuError::Unsupported(format!(
                "dot_general of {c:?} operands"
            )))
        }
    };
    let (ls, rs) = (b.shape(l), b.shape(r));
    let lf: Vec<usize> = (0..ls.len())
        .filter(|d| !dd.lhs_batch.contains(d) && !dd.lhs_contract.contains(d))
        .collect();
    let rf: Vec<usize> = (0..rs.len())
        .filter(|d| !dd.rhs_batch.contains(d) && !dd.rhs_contract.contains(d))
        .collect();
    let size = |s: &[usize], ds: &[usize]| ds.iter().map(|&d| s[d]).product::<usize>();
    let (batch, m, n, k) = (
        size(ls, &dd.lhs_batch),
        size(ls, &lf),
        size(rs, &rf),
        size(ls, &dd.lhs_contract),
    );
    if batch * m * n == 0 {
        return Ok(());
    }
    // bf16 runs the register-blocked kernel on every adapter: it reads the packed operands
    // (the tiled kernel reads one word per element)
    if b.blocked_gemm() || bf16 {
        return dot_blocked(b, dd, l, r, out, [&lf, &rf], [batch, m, n, k], bf16);
    }
    let (a, sa) = as_matrix(b, l, [&dd.lhs_batch, &lf, &dd.lhs_contract], 0)?;
    let (bb, sb) = as_matrix(b, r, [&dd.rhs_batch, &dd.rhs_contract, &rf], 1)?;
    let o = b.out(out)?;
    let kern = Kernel::new(Module::Gemm, "gemm", 2).with("BF16", bf16.into());
    let tiles = [n.div_ceil(64), m.div_ceil(64)];
    if tiles.iter().any(|&t| t > MAX_GROUPS) {
        return Err(WgpuError::Unsupported(format!(
            "dot_general of {m} x {n}: more than 65535 tiles along a side"
        )));
    }
    // batches beyond one grid's 65535 go to further dispatches
    for b0 in (0..batch).step_by(MAX_GROUPS) {
        let nb = (batch - b0).min(MAX_GROUPS);
        let p = vec![m, n, k, sa[0], sa[1], sa[2], sb[0], sb[1], sb[2], b0, 0, 0];
        let p = p.into_iter().map(u32_of).collect::<Result<Vec<u32>>>()?;
        let groups = [tiles[0] as u32, tiles[1] as u32, nb as u32];
        b.push(kern.clone(), vec![o, a, bb], &p, groups)?;
    }
    Ok(())
}

/// dot_general on a CPU adapter: gemm_blocked.wgsl over operands in its layout.
#[allow(clippy::too_many_arguments)]
fn dot_blocked(
    b: &mut Builder,
    dd: &DotDims,
    l: usize,
    r: usize,
    out: usize,
    free: [&[usize]; 2],
    [batch, m, n, k]: [usize; 4],
    bf16: bool,
) -> Result<()> {
    let (kp, np) = (k.next_multiple_of(4), n.next_multiple_of(4));
    let a = blocked(b, l, [&dd.lhs_batch, free[0], &dd.lhs_contract], [m, kp], 0)?;
    let bb = blocked(
        b,
        r,
        [&dd.rhs_batch, &dd.rhs_contract, free[1]],
        [kp, np],
        1,
    )?;
    let o = b.out(out)?;
    // a bf16 output is packed in place when N is even, else written widened and packed after
    let (kern, dst) = match bf16 {
        false => (Kernel::new(Module::GemmBlocked, "gemm_blocked", 2), o),
        true if n % 2 == 0 => (
            Kernel::new(Module::GemmBlockedBf16, "gemm_blocked", 2).with("PACKED_OUT", 1),
            o,
        ),
        true => (
            Kernel::new(Module::GemmBlockedBf16, "gemm_blocked", 2).with("PACKED_OUT", 0),
            b.scratch(0, (batch * m * n * 4) as u64),
        ),
    };
    let tiles = [(np / 4).div_ceil(64), m.div_ceil(8)];
    if tiles.iter().any(|&t| t > MAX_GROUPS) {
        return Err(WgpuError::Unsupported(format!(
            "dot_general of {m} x {n}: more than 65535 tiles along a side"
        )));
    }
    for b0 in (0..batch).step_by(MAX_GROUPS) {
        let nb = (batch - b0).min(MAX_GROUPS);
        let p = [
            m,
            n,
            kp / 4,
            m * kp / 4,
            kp / 4,
            kp * np / 4,
            np / 4,
            0,
            0,
            b0,
        ];
        let p = p.into_iter().map(u32_of).collect::<Result<Vec<u32>>>()?;
        let groups = [tiles[0] as u32, tiles[1] as u32, nb as u32];
        b.push(kern.clone(), vec![dst, a, bb], &p, groups)?;
    }
    if dst != o {
        b.pack(dst, o, batch * m * n)?;
    }
    Ok(())
}

/// Rows (one workgroup per output) pay off once a reduction over contiguous inputs is this long.
const ROWS_MIN: usize = 128;

pub fn reduce(b: &mut Builder, op: ReduceOp, dims: &[usize], x: usize, out: usize) -> Result<()> {
    let shape = b.shape(x);
    let st = strides(shape);
    // (size, stride, reduced) of each dim that is not 1, adjacent ones of a kind merged (the
    // input is contiguous, so they always form one run)
    let mut ds: Vec<(usize, usize, bool)> = vec![];
    for (d, &s) in shape.iter().enumerate() {
        if s == 1 {
            continue;
        }
        let red = dims.contains(&d);
        match ds.last_mut() {
            Some(last) if last.2 == red => *last = (last.0 * s, st[d], red),
            _ => ds.push((s, st[d], red)),
        }
    }
    let kept: Vec<(usize, usize)> = ds.iter().filter(|d| !d.2).map(|d| (d.0, d.1)).collect();
    let red: Vec<(usize, usize)> = ds.iter().filter(|d| d.2).map(|d| (d.0, d.1)).collect();
    if kept.len() > 8 || red.len() > 8 {
        return Err(WgpuError::Unsupported(format!(
            "reduce over {dims:?} of {shape:?}: more than 8 alternating runs"
        )));
    }
    let n_out: usize = kept.iter().map(|d| d.0).product();
    let r_n: usize = red.iter().map(|d| d.0).product();
    if n_out == 0 {
        return Ok(());
    }
    let mut p = vec![0u32; 36];
    p[0] = u32_of(n_out)?;
    p[1] = u32_of(r_n)?;
    p[2] = kept.len() as u32;
    p[3] = red.len() as u32;
    for (k, &(s, t)) in kept.iter().enumerate() {
        p[4 + k] = u32_of(s)?;
        p[12 + k] = u32_of(t)?;
    }
    for (k, &(s, t)) in red.iter().enumerate() {
        p[20 + k] = u32_of(s)?;
        p[28 + k] = u32_of(t)?;
    }
    let code = match op {
        ReduceOp::Sum => 0,
        ReduceOp::Max => 1,
    };
    let src = b.buf(x)?;
    let o = b.out(out)?;
    let innermost_reduced = ds.last().is_some_and(|d| d.2);
    let ranks = |k: Kernel| k.with("KR", kept.len() as u32).with("RR", red.len() as u32);
    match class(b.dtype(out))? {
        Class::Float { bf16 } if innermost_reduced && r_n >= ROWS_MIN => {
            let k = Kernel::new(Module::Reduce, "reduce_f_rows", 1)
                .with("OP", code)
                .with("BF16", bf16.into());
            b.push(ranks(k), vec![o, src], &p, grid(n_out)?)
        }
        Class::Float { bf16 } => {
            let k = Kernel::new(Module::Reduce, "reduce_f_cols", 1)
                .with("OP", code)
                .with("BF16", bf16.into());
            b.push_1d(ranks(k), vec![o, src], &p, n_out)
        }
        Class::Int { kind } => {
            let k = Kernel::new(Module::Reduce, "reduce_i_cols", 1)
                .with("OP", code)
                .with("KIND", kind);
            b.push_1d(ranks(k), vec![o, src], &p, n_out)
        }
        Class::Long => {
            let k = Kernel::new(Module::Reduce, "reduce_l_cols", 1).with("OP", code);
            b.push_1d(ranks(k), vec![o, src], &p, n_out)
        }
    }
}

/// P[0..6] of the index kernels: elements of the [pre, m, post] operand, len, post, m, words
/// per element, index kind.
fn index_params(
    b: &Builder,
    indexed: &[usize],
    axis: usize,
    ids: usize,
    d: DType,
) -> Result<(Vec<u32>, usize)> {
    let len = indexed[axis];
    let pre: usize = indexed[..axis].iter().product();
    let post: usize = indexed[axis + 1..].iter().product();
    let m: usize = b.shape(ids).iter().product();
    let kind = match b.dtype(ids) {
        DType::I32 => 0,
        DType::U32 => 1,
        DType::I64 => 2,
        other => return Err(WgpuError::Unsupported(format!("indices of dtype {other}"))),
    };
    let n = pre * m * post;
    // post and m of at least 1 keep the kernel's divisions defined (no invocation runs then)
    let mut p = [n, len, post.max(1), m.max(1)]
        .into_iter()
        .map(u32_of)
        .collect::<Result<Vec<u32>>>()?;
    p.extend([width(d), kind]);
    Ok((p, n))
}

/// A source larger than one storage binding (an embedding table of a large vocabulary) is
/// gathered from in one dispatch per window of it.
pub fn gather(b: &mut Builder, axis: usize, x: usize, ids: usize, out: usize) -> Result<()> {
    let d = b.dtype(out);
    class(d)?;
    let (mut p, n) = index_params(b, b.shape(x), axis, ids, d)?;
    let (idx, o) = (b.buf(ids)?, b.out(out)?);
    b.windowed = true;
    let src = b.buf(x);
    b.windowed = false;
    let src = src?;
    let k = Kernel::new(Module::GatherScatter, "gather", 2).with("W", width(d));
    if !b.too_big(x) {
        p.extend([0, u32::MAX]);
        return b.push_1d(k, vec![o, src, idx], &p, n);
    }
    let eb = width(d) as u64 * 4;
    let total: usize = b.shape(x).iter().product();
    let l = b.window_elems(eb)?;
    for start in (0..total).step_by(l) {
        let len = l.min(total - start);
        let mut pw = p.clone();
        pw.extend([u32_of(start)?, u32_of(len)?]);
        let win = Some((start as u64 * eb, len as u64 * eb));
        let g = grid(n.div_ceil(crate::plan::WG))?;
        b.push_windows(k.clone(), vec![o, src, idx], vec![None, win, None], &pw, g)?;
    }
    Ok(())
}

pub fn scatter_add(
    b: &mut Builder,
    axis: usize,
    shape: &[usize],
    upd: usize,
    ids: usize,
    out: usize,
) -> Result<()> {
    let d = b.dtype(out);
    let kind = match class(d)? {
        Class::Float { bf16 } => u32::from(bf16),
        Class::Int { kind } => 2 + u32::from(kind == 2),
        Class::Long => 4,
    };
    let (p, n) = index_params(b, shape, axis, ids, d)?;
    let (src, idx, o) = (b.buf(upd)?, b.buf(ids)?, b.out(out)?);
    let words = shape.iter().product::<usize>() * width(d) as usize;
    let zero = Kernel::new(Module::GatherScatter, "zero", 0);
    b.push_1d(zero, vec![o], &[u32_of(words)?], words)?;
    let k = Kernel::new(Module::GatherScatter, "scatter_add", 2).with("KIND", kind);
    b.push_1d(k, vec![o, src, idx], &p, n)?;
    if kind == 1 {
        let k = Kernel::new(Module::GatherScatter, "round_bf16_inplace", 0);
        b.push_1d(k, vec![o], &[u32_of(words)?], words)?;
    }
    Ok(())
}
