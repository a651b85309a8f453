//! dot_general, reduce, gather and scatter-add lowered to their WGSL kernels.

use crate::buffer::{half, is_half};
use crate::error::{Result, WgpuError};
use crate::lower::{class, Class};
use crate::movement::{copy, copy_from_packed};
use crate::pipelines::Kernel;
use crate::plan::{grid, strides, u32_of, width, Bind, Builder, MAX_GROUPS};
use crate::reduce_windows::{Columns, Runs};
use gidd_engine::op::{DotDims, ReduceOp};
use gidd_engine::DType;
use gidd_kernels::wgsl::Module;

/// The one stride that walks `dims` (in this order) of an operand with `shape` and row-major
/// `st` as a single run, if there is one; size-1 dims are skipped, and no dims walk with 0.
pub(crate) fn group_stride(shape: &[usize], st: &[usize], dims: &[usize]) -> Option<usize> {
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
/// `padded` = [rows, cols] (at least the operand's); padding is zero. A bf16 or f16 operand
/// comes out widened (one word per element) or, with `pack` its kind (crate::buffer::half),
/// packed into scratch buffer `k + 2`.
fn padded_copy(
    b: &mut Builder,
    v: usize,
    src: Bind,
    groups: [&[usize]; 3],
    padded: [usize; 2],
    k: usize,
) -> Result<Bind> {
    padded_copy_as(b, v, src, groups, padded, k, 0)
}

fn padded_copy_as(
    b: &mut Builder,
    v: usize,
    src: Bind,
    groups: [&[usize]; 3],
    padded: [usize; 2],
    k: usize,
    pack: u32,
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
    if pack == 0 {
        copy(b, src, dst, &oshape, &src_st, &dst_st, 0, 0, 1)?;
        return Ok(dst);
    }
    copy_from_packed(b, src, dst, &oshape, &src_st, &dst_st, 0, 0, pack)?;
    let packed = b.scratch(k + 2, (total.div_ceil(2) * 4) as u64);
    b.pack(dst, packed, total, pack)?;
    Ok(packed)
}

/// An operand for gemm_blocked: contiguous [batch, rows, cols_p] with `cols_p` (and `rows_p`)
/// the padded sizes; in place when it already is, else a padded copy in scratch buffer `k`
/// (bf16 and f16 stay packed: rows of `cols_p`, a multiple of 4, start on whole words).
fn blocked(
    b: &mut Builder,
    v: usize,
    groups: [&[usize]; 3],
    padded: [usize; 2],
    k: usize,
) -> Result<Bind> {
    let src = b.buf(v)?;
    if in_place(b, v, groups, padded) {
        return Ok(src);
    }
    padded_copy_as(b, v, src, groups, padded, k, half(b.dtype(v)))
}

/// Whether operand `v` already is gemm_blocked's contiguous [batch, rows, cols_p] layout.
fn in_place(b: &Builder, v: usize, groups: [&[usize]; 3], padded: [usize; 2]) -> bool {
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
    contiguous && [rows, cols] == padded
}

pub fn dot_general(b: &mut Builder, dd: &DotDims, l: usize, r: usize, out: usize) -> Result<()> {
    let half = match class(b.dtype(out))? {
        Class::Float { half } => half,
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
    // windows when a value, or a scratch copy the plain kernels would make of one, is
    // larger than a binding
    let (kp, np) = (k.next_multiple_of(4), n.next_multiple_of(4));
    let (lg, rg) = (
        [&dd.lhs_batch[..], &lf[..], &dd.lhs_contract[..]],
        [&dd.rhs_batch[..], &dd.rhs_contract[..], &rf[..]],
    );
    let scratch = [
        (!in_place(b, l, lg, [m, kp])).then_some(batch * m * kp * 4),
        (!in_place(b, r, rg, [kp, np])).then_some(batch * kp * np * 4),
        (half != 0 && n % 2 == 1).then_some(batch * m * n * 4),
    ];
    let too_big = scratch.iter().flatten().any(|&x| x as u64 > b.max_binding);
    if too_big || [l, r, out].iter().any(|&v| b.too_big(v)) {
        let free = [lf.as_slice(), rf.as_slice()];
        return crate::gemm_windows::dot(b, dd, l, r, out, free, [batch, m, n, k], half);
    }
    // bf16 and f16 run the register-blocked kernel on every adapter: it reads the packed
    // operands (the tiled kernel reads one word per element)
    if b.blocked_gemm() || half != 0 {
        return dot_blocked(b, dd, l, r, out, [&lf, &rf], [batch, m, n, k], half);
    }
    let (a, sa) = as_matrix(b, l, [&dd.lhs_batch, &lf, &dd.lhs_contract], 0)?;
    let (bb, sb) = as_matrix(b, r, [&dd.rhs_batch, &dd.rhs_contract, &rf], 1)?;
    let o = b.out(out)?;
    let kern = Kernel::new(Module::Gemm, "gemm", 2).with("HALF", half);
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
    half: u32,
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
    // a 16-bit output is packed in place when N is even, else written widened and packed after
    let packed = |out: u32| {
        Kernel::new(Module::GemmBlockedBf16, "gemm_blocked", 2)
            .with("PACKED_OUT", out)
            .with("HALF", half)
    };
    let (kern, dst) = match half {
        0 => (Kernel::new(Module::GemmBlocked, "gemm_blocked", 2), o),
        _ if n % 2 == 0 => (packed(1), o),
        _ => (packed(0), b.scratch(0, (batch * m * n * 4) as u64)),
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
            n,
            m * n,
            b0,
            0,
        ];
        let p = p.into_iter().map(u32_of).collect::<Result<Vec<u32>>>()?;
        let groups = [tiles[0] as u32, tiles[1] as u32, nb as u32];
        b.push(kern.clone(), vec![dst, a, bb], &p, groups)?;
    }
    if dst != o {
        b.pack(dst, o, batch * m * n, half)?;
    }
    Ok(())
}

/// Rows (one workgroup per output) pay off once a reduction over contiguous inputs is this long.
const ROWS_MIN: usize = 128;

/// The kernel parameters of a reduction over `ds`: P, outputs, reduced count, ranks.
fn reduce_params(ds: &[(usize, usize, bool)]) -> Result<(Vec<u32>, usize, usize, u32, u32)> {
    let kept: Vec<(usize, usize)> = ds.iter().filter(|d| !d.2).map(|d| (d.0, d.1)).collect();
    let red: Vec<(usize, usize)> = ds.iter().filter(|d| d.2).map(|d| (d.0, d.1)).collect();
    if kept.len() > 8 || red.len() > 8 {
        return Err(WgpuError::Unsupported(format!(
            "reduce over runs {ds:?}: more than 8 alternating runs"
        )));
    }
    let n_out: usize = kept.iter().map(|d| d.0).product();
    let r_n: usize = red.iter().map(|d| d.0).product();
    let mut p = vec![0u32; 37];
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
    Ok((p, n_out, r_n, kept.len() as u32, red.len() as u32))
}

/// The kernel of a reduction over `ds` writing dtype `d` (`packed`: the 16-bit kind of an
/// input read in place, crate::buffer::half), and its grid for `n_out` outputs.
fn reduce_kernel(
    op: ReduceOp,
    ds: &[(usize, usize, bool)],
    d: DType,
    packed: u32,
) -> Result<(Kernel, bool)> {
    let (_, _, r_n, kr, rr) = reduce_params(ds)?;
    let code = match op {
        ReduceOp::Sum => 0,
        ReduceOp::Max => 1,
    };
    let innermost_reduced = ds.last().is_some_and(|d| d.2);
    let ranks = |k: Kernel| k.with("KR", kr).with("RR", rr);
    Ok(match class(d)? {
        Class::Float { half } if innermost_reduced && r_n >= ROWS_MIN => {
            let k = Kernel::new(Module::Reduce, "reduce_f_rows", 1)
                .with("OP", code)
                .with("HALF", half)
                .with("PACKED", packed);
            (ranks(k), true)
        }
        Class::Float { half } => {
            let k = Kernel::new(Module::Reduce, "reduce_f_cols", 1)
                .with("OP", code)
                .with("HALF", half)
                .with("PACKED", packed);
            (ranks(k), false)
        }
        Class::Int { kind } => {
            let k = Kernel::new(Module::Reduce, "reduce_i_cols", 1)
                .with("OP", code)
                .with("KIND", kind);
            (ranks(k), false)
        }
        Class::Long => {
            let k = Kernel::new(Module::Reduce, "reduce_l_cols", 1).with("OP", code);
            (ranks(k), false)
        }
    })
}

/// A bf16 or f16 input is read packed, in place; such a result is written widened and packed
/// after (one word per output: neighbouring outputs would share a word). An input larger than one
/// binding is reduced in windows: of its outermost dim when that is kept (each window a
/// reduction of its own rows), else of the outermost reduced dim into f32 partials (one row
/// of a scratch buffer per window), reduced after.
pub fn reduce(b: &mut Builder, op: ReduceOp, dims: &[usize], x: usize, out: usize) -> Result<()> {
    if is_half(b.dtype(out)) && !b.is_wide(out) {
        // its f32 sums may outgrow a binding: bound in windows then (too_big below)
        b.wide_in_windows = true;
        let r = b.widened(&[], &[out], |b| {
            b.wide_in_windows = false;
            reduce(b, op, dims, x, out)
        });
        b.wide_in_windows = false;
        return r;
    }
    let shape = b.shape(x);
    let st = strides(shape);
    // (size, stride, reduced) of each dim that is not 1, adjacent ones of a kind merged (the
    // input is contiguous, so they always form one run)
    let mut ds: Runs = vec![];
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
    let (_, n_out, _, _, _) = reduce_params(&ds)?;
    if n_out == 0 {
        return Ok(());
    }
    let d = b.dtype(out);
    let packed = b.packed_kind(x);
    let (src, o) = (b.wbuf(x)?, b.wout(out)?);
    let eout = (width(d) * 4) as u64;
    // a 16-bit result's f32 scratch may outgrow a binding that its packed value fits
    let too_big = b.too_big(x) || b.too_big(out) || n_out as u64 * eout > b.max_binding;
    let (k, rows_kernel) = reduce_kernel(op, &ds, d, packed)?;
    let groups = |n: usize| match rows_kernel {
        true => grid(n),
        false => grid(n.div_ceil(crate::plan::WG)),
    };
    if !too_big {
        let (p, ..) = reduce_params(&ds)?;
        return b.push(k, vec![o, src], &p, groups(n_out)?);
    }
    let ein = match packed {
        0 => (width(b.dtype(x)) * 4) as u64,
        _ => 2,
    };
    let inner_in: usize = ds[1..].iter().map(|r| r.0).product();
    let inner_out: usize = ds[1..].iter().filter(|r| !r.2).map(|r| r.0).product();
    let (outer, _, outer_red) = ds[0];
    if !outer_red {
        let rb = [(inner_out as u64) * eout, inner_in as u64 * ein];
        let params = |len: usize| {
            let mut w = ds.clone();
            w[0].0 = len;
            Ok(reduce_params(&w)?.0)
        };
        let g = |len: usize| groups(len * inner_out);
        return b.push_rows(k, vec![o, src], &rb, outer, params, g);
    }
    // partials: f32 sums (no 16-bit rounding until the end); i32/u32/bool sums as exact i64
    // sums (a window's sum saturated apart could differ from the whole one's), totalled and
    // saturated once at the end
    let int_sum = match (class(d)?, op) {
        (Class::Int { kind }, ReduceOp::Sum) => Some(kind),
        _ => None,
    };
    let pd = match (class(d)?, int_sum) {
        (Class::Float { .. }, _) => DType::F32,
        (_, Some(_)) => DType::I64,
        _ => d,
    };
    let ew = width(pd) as usize;
    let per = b.rows_per_window(&[inner_in as u64 * ein]);
    let pad = (b.offset_align() as usize / 4).max(1);
    let stride = (n_out * ew).next_multiple_of(pad) / ew;
    let kpart = |wd: &Runs| -> Result<Kernel> {
        Ok(match int_sum {
            Some(_) => reduce_kernel(op, wd, d, 0)?.0.with("WIDE", 1),
            None => reduce_kernel(op, wd, pd, packed)?.0,
        })
    };
    let kfin = |fin: &Runs| -> Result<(Kernel, bool)> {
        Ok(match int_sum {
            Some(kind) => (
                reduce_kernel(op, fin, pd, 0)?.0.with("SAT", 1 + kind),
                false,
            ),
            None => reduce_kernel(op, fin, d, 0)?,
        })
    };
    let nwin = per.as_ref().ok().map(|&p| outer.div_ceil(p));
    let cols = Columns::plan(b, &ds, n_out, nwin, stride, ein, eout, ew)?;
    if let Some(c) = cols {
        let params = |r: &Runs| Ok(reduce_params(r)?.0);
        return c.push(b, src, o, &params, &kpart, &|r| Ok(kfin(r)?.0));
    }
    let per = per?;
    let nwin = outer.div_ceil(per);
    let part = b.scratch(0, (nwin * stride * ew * 4) as u64);
    for w in 0..nwin {
        let (start, len) = (w * per, per.min(outer - w * per));
        let mut wd = ds.clone();
        wd[0].0 = len;
        let (p, ..) = reduce_params(&wd)?;
        let kw = kpart(&wd)?;
        let win_in = (
            (start * inner_in) as u64 * ein,
            ((len * inner_in) as u64 * ein).next_multiple_of(4),
        );
        let win_out = ((w * stride * ew * 4) as u64, (n_out * ew * 4) as u64);
        let wins = vec![Some(win_out), Some(win_in)];
        b.push_windows(kw, vec![part, src], wins, &p, groups(n_out)?)?;
    }
    let mut fin: Runs = vec![(nwin, stride, true)];
    if n_out > 1 {
        fin.push((n_out, 1, false));
    }
    let (p, ..) = reduce_params(&fin)?;
    let (kf, rows_f) = kfin(&fin)?;
    let g = match rows_f {
        true => grid(n_out)?,
        false => grid(n_out.div_ceil(crate::plan::WG))?,
    };
    b.push(kf, vec![o, part], &p, g)
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
/// gathered from in one dispatch per window of it. bf16 and f16 are read and written packed
/// (gather_h: one invocation per output word), no unpacking pass.
pub fn gather(b: &mut Builder, axis: usize, x: usize, ids: usize, out: usize) -> Result<()> {
    let d = b.dtype(out);
    class(d)?;
    let packed = is_half(d) && !b.is_wide(x) && !b.is_wide(out);
    let (mut p, n) = index_params(b, b.shape(x), axis, ids, d)?;
    let (idx, o) = (b.buf(ids)?, b.out(out)?);
    let src = b.wbuf(x)?;
    let (k, eb, threads) = match packed {
        true => (
            Kernel::new(Module::GatherScatter, "gather_h", 2),
            2,
            n.div_ceil(2),
        ),
        false => (
            Kernel::new(Module::GatherScatter, "gather", 2).with("W", width(d)),
            width(d) as u64 * 4,
            n,
        ),
    };
    if !b.too_big(x) {
        p.extend([0, u32::MAX]);
        return b.push_1d(k, vec![o, src, idx], &p, threads);
    }
    let total: usize = b.shape(x).iter().product();
    let l = b.window_elems(eb)?;
    for start in (0..total).step_by(l) {
        let len = l.min(total - start);
        let mut pw = p.clone();
        pw.extend([u32_of(start)?, u32_of(len)?]);
        let win = Some((start as u64 * eb, (len as u64 * eb).next_multiple_of(4)));
        let g = grid(threads.div_ceil(crate::plan::WG))?;
        b.push_windows(k.clone(), vec![o, src, idx], vec![None, win, None], &pw, g)?;
    }
    Ok(())
}

/// Atomic adds into the output (zeroed first); a bf16 or f16 output sums in an f32 scratch
/// buffer, packed (rounded once) after, and such updates are read packed. An output larger than one
/// binding is summed in windows of it (each dispatch adding the updates whose target lies in
/// its window), updates larger than one in windows of them.
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
        Class::Float { .. } => 0,
        Class::Int { kind } => 2 + u32::from(kind == 2),
        Class::Long => 4,
    };
    let (out_h, packed) = (b.packed_kind(out), b.packed_kind(upd));
    let (p, n) = index_params(b, shape, axis, ids, d)?;
    let idx = b.buf(ids)?;
    let (src, o) = (b.wbuf(upd)?, b.wout(out)?);
    let total: usize = shape.iter().product();
    // bytes per output element where the sums are (an f32 scratch for bf16 and f16)
    let ob = width(d) as u64 * 4;
    let ol = match total as u64 * ob <= b.max_binding {
        true => total.max(1),
        false => b.window_elems(ob)?,
    };
    let ub = match packed {
        0 => width(b.dtype(upd)) as u64 * 4,
        _ => 2,
    };
    let ul = match n as u64 * ub <= b.max_binding {
        true => n.max(1),
        false => b.window_elems(ub)?,
    };
    let k = Kernel::new(Module::GatherScatter, "scatter_add", 2)
        .with("KIND", kind)
        .with("PACKED", packed);
    for o0 in (0..total).step_by(ol) {
        let olen = ol.min(total - o0);
        let (dst, dwin) = match (out_h != 0, ol == total) {
            (true, _) => (b.scratch(0, olen as u64 * 4), None),
            (false, true) => (o, None),
            (false, false) => (o, Some((o0 as u64 * ob, olen as u64 * ob))),
        };
        let words = olen * width(d) as usize;
        let zero = Kernel::new(Module::GatherScatter, "zero", 0);
        let g = grid(words.div_ceil(crate::plan::WG))?;
        b.push_windows(zero, vec![dst], vec![dwin], &[u32_of(words)?], g)?;
        for u0 in (0..n).step_by(ul) {
            let ulen = ul.min(n - u0);
            let uwin = (ul < n).then(|| (u0 as u64 * ub, (ulen as u64 * ub).next_multiple_of(4)));
            let mut pw = p.clone();
            pw[0] = u32_of(ulen)?;
            pw.extend([u32_of(o0)?, u32_of(olen)?, u32_of(u0)?]);
            let g = grid(ulen.div_ceil(crate::plan::WG))?;
            b.push_windows(
                k.clone(),
                vec![dst, src, idx],
                vec![dwin, uwin, None],
                &pw,
                g,
            )?;
        }
        if out_h != 0 {
            let (win, first) = b.span_window(o0, olen, 2);
            let pk = Kernel::new(Module::Convert, "pack_half_run", 1).with("HALF", out_h);
            let mut pp = vec![0u32; 8];
            pp[0] = u32_of(olen)?;
            pp[1] = u32_of(first)?;
            let words = (first + olen).div_ceil(2) - first / 2;
            let g = grid(words.div_ceil(crate::plan::WG))?;
            b.push_windows(pk, vec![o, dst], vec![Some(win), None], &pp, g)?;
        }
    }
    Ok(())
}
