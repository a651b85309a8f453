//! dot_general, reduce, gather and scatter-add lowered to their PTX kernels, with the choice
//! of kernel variant per layout, dtype and shape made here (plain functions, unit-tested).

use crate::error::{CudaError, Result};
use crate::hopper::TmaSpec;
use crate::lower::convert_from_f64;
use crate::movement::{copy, strides};
use crate::plan::{bytes_of, dtype_code, u32_of, Arg, Builder, Ptr, MAX_GRID_YZ};
use gidd_engine::op::{DotDims, ReduceOp};
use gidd_engine::DType;

/// The one stride that walks `dims` (in this order) of an operand with `shape` and row-major
/// `st` as a single run, if there is one; size-1 dims are skipped, and no dims walk with 0.
pub fn group_stride(shape: &[usize], st: &[usize], dims: &[usize]) -> Option<usize> {
    let ds: Vec<usize> = dims.iter().copied().filter(|&d| shape[d] != 1).collect();
    for w in ds.windows(2) {
        if st[w[0]] != st[w[1]] * shape[w[1]] {
            return None;
        }
    }
    Some(ds.last().map_or(0, |&d| st[d]))
}

/// An operand as a [batch, rows, cols] stack: its pointer and the three element strides.
/// Layouts whose groups are single runs (every plain or transposed matrix, batched or not)
/// are read in place; any other is first copied into scratch in [batch, rows, cols] order.
fn as_matrix(b: &mut Builder, v: usize, groups: [&[usize]; 3]) -> Result<(Ptr, [usize; 3])> {
    let shape = b.shape(v);
    let st = strides(shape);
    let g: Vec<Option<usize>> = groups
        .iter()
        .map(|ds| group_stride(shape, &st, ds))
        .collect();
    let src = b.ptr(v)?;
    if let [Some(s0), Some(s1), Some(s2)] = g[..] {
        return Ok((src, [s0, s1, s2]));
    }
    let order: Vec<usize> = groups.iter().flat_map(|ds| ds.iter().copied()).collect();
    let oshape: Vec<usize> = order.iter().map(|&d| shape[d]).collect();
    let src_st: Vec<usize> = order.iter().map(|&d| st[d]).collect();
    let d = b.dtype(v);
    let dst = b.scratch(bytes_of(b.numel(v), d));
    copy(b, src, dst, &oshape, &src_st, &strides(&oshape), d.size())?;
    let size = |ds: &[usize]| ds.iter().map(|&d| shape[d]).product::<usize>();
    let (r, c) = (size(groups[1]), size(groups[2]));
    Ok((dst, [r * c, c, 1]))
}

/// The tensor-core kernel's view of an operand: whether its unit-stride dim is k, and its row
/// stride. `rows_st`/`cols_st`: the strides of the operand's non-k dim (m or n) and of k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmaOperand {
    pub k_contiguous: bool,
    pub ld: usize,
}

/// Whether gemm_mma_bf16 takes an operand with strides (batch, mn, k) and extents (mn, k):
/// one of mn or k must have unit stride, and that extent, the other stride and the batch
/// stride must be multiples of 8 elements (16 bytes), so that every 16-byte chunk the kernel
/// copies is wholly inside or wholly outside the matrix and aligned.
pub fn mma_operand(
    batch_st: usize,
    mn_st: usize,
    k_st: usize,
    mn: usize,
    k: usize,
) -> Option<MmaOperand> {
    let aligned = |x: usize| x.is_multiple_of(8);
    if !aligned(batch_st) {
        return None;
    }
    if k_st == 1 && aligned(k) && aligned(mn_st) && mn_st >= k {
        Some(MmaOperand {
            k_contiguous: true,
            ld: mn_st,
        })
    } else if mn_st == 1 && aligned(mn) && aligned(k_st) && k_st >= mn {
        Some(MmaOperand {
            k_contiguous: false,
            ld: k_st,
        })
    } else {
        None
    }
}

/// The GEMM variant for one dot_general.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmKernel {
    /// bf16 on tensor cores (sm_80 mma.sync), both operands in place.
    Mma { a: MmaOperand, b: MmaOperand },
    /// bf16 on Hopper (sm_90a wgmma fed by TMA): each operand's tensor map and whether its
    /// contiguous dim is k.
    Wgmma {
        a: TmaSpec,
        a_kc: bool,
        b: TmaSpec,
        b_kc: bool,
    },
    /// FMA units, any strides: every f32 GEMM, and bf16 ones the tensor-core kernel cannot take.
    Simt,
}

/// Picks the kernel for a GEMM of `dtype` with A strides (batch, m, k) and B strides
/// (batch, k, n) over extents batch, m, n, k: on Hopper (`hopper`) the wgmma kernel when TMA
/// reads both operands in place (crate::hopper::specs), else the sm_80 tensor-core kernel
/// when its alignment holds, else the SIMT one.
pub fn pick_gemm(
    dtype: DType,
    hopper: bool,
    sa: [usize; 3],
    sb: [usize; 3],
    [batch, m, n, k]: [usize; 4],
) -> GemmKernel {
    if dtype != DType::BF16 {
        return GemmKernel::Simt;
    }
    if hopper && k > 0 {
        if let Some((a, a_kc, b, b_kc)) = crate::hopper::specs(sa, sb, batch, m, n, k) {
            return GemmKernel::Wgmma { a, a_kc, b, b_kc };
        }
    }
    match (
        mma_operand(sa[0], sa[1], sa[2], m, k),
        mma_operand(sb[0], sb[2], sb[1], n, k),
    ) {
        (Some(a), Some(b)) => GemmKernel::Mma { a, b },
        _ => GemmKernel::Simt,
    }
}

pub fn dot_general(b: &mut Builder, dd: &DotDims, l: usize, r: usize, out: usize) -> Result<()> {
    let d = b.dtype(out);
    if !matches!(d, DType::F32 | DType::BF16) {
        return Err(CudaError::Unsupported(format!(
            "dot_general of {d} operands"
        )));
    }
    let (ls, rs) = (b.shape(l), b.shape(r));
    let lf: Vec<usize> = (0..ls.len())
        .filter(|x| !dd.lhs_batch.contains(x) && !dd.lhs_contract.contains(x))
        .collect();
    let rf: Vec<usize> = (0..rs.len())
        .filter(|x| !dd.rhs_batch.contains(x) && !dd.rhs_contract.contains(x))
        .collect();
    let size = |s: &[usize], ds: &[usize]| ds.iter().map(|&x| s[x]).product::<usize>();
    let (batch, m, n, k) = (
        size(ls, &dd.lhs_batch),
        size(ls, &lf),
        size(rs, &rf),
        size(ls, &dd.lhs_contract),
    );
    let o = b.out(out)?;
    if batch * m * n == 0 {
        return Ok(());
    }
    let (a, sa) = as_matrix(b, l, [&dd.lhs_batch, &lf, &dd.lhs_contract])?;
    let (bb, sb) = as_matrix(b, r, [&dd.rhs_batch, &dd.rhs_contract, &rf])?;
    let kernel = pick_gemm(d, b.hopper, sa, sb, [batch, m, n, k]);
    let tile = match kernel {
        GemmKernel::Mma { .. } | GemmKernel::Wgmma { .. } => 128,
        GemmKernel::Simt => 64,
    };
    let (gx, gy) = (n.div_ceil(tile), m.div_ceil(tile));
    if gy > MAX_GRID_YZ {
        return Err(CudaError::Unsupported(format!(
            "dot_general with {m} rows: more than {MAX_GRID_YZ} row tiles"
        )));
    }
    // batches beyond one grid's 65535 go to further launches
    for b0 in (0..batch).step_by(MAX_GRID_YZ) {
        let nb = (batch - b0).min(MAX_GRID_YZ);
        let grid = [gx as u32, gy as u32, nb as u32];
        let head = vec![
            ("m", Arg::Val(u32_of(m)?)),
            ("n", Arg::Val(u32_of(n)?)),
            ("k", Arg::Val(u32_of(k)?)),
            ("b0", Arg::Val(b0 as u64)),
        ];
        let args = match kernel {
            GemmKernel::Wgmma { a: ta, b: tb, .. } => {
                let mut v = vec![
                    ("tma_a[16]", Arg::TensorMap(a, ta)),
                    ("tma_b[16]", Arg::TensorMap(bb, tb)),
                ];
                v.extend(head);
                v.extend([
                    ("a_batched", Arg::Val(u64::from(ta.dims[2] > 1))),
                    ("b_batched", Arg::Val(u64::from(tb.dims[2] > 1))),
                    ("c", Arg::Ptr(o)),
                    ("out_bf16", Arg::Val(1)),
                ]);
                v
            }
            GemmKernel::Mma { a: ma, b: mb } => {
                let mut v = head;
                v.extend([
                    ("a", Arg::Ptr(a)),
                    ("sa_batch", Arg::Val(u32_of(sa[0])?)),
                    ("lda", Arg::Val(u32_of(ma.ld)?)),
                    ("a_kc", Arg::Val(u64::from(ma.k_contiguous))),
                    ("b", Arg::Ptr(bb)),
                    ("sb_batch", Arg::Val(u32_of(sb[0])?)),
                    ("ldb", Arg::Val(u32_of(mb.ld)?)),
                    ("b_kc", Arg::Val(u64::from(mb.k_contiguous))),
                    ("c", Arg::Ptr(o)),
                    ("out_bf16", Arg::Val(1)),
                ]);
                v
            }
            GemmKernel::Simt => {
                let mut v = head;
                v.extend([
                    ("dt", Arg::Val(dtype_code(d)? as u64)),
                    ("a", Arg::Ptr(a)),
                    ("sa_batch", Arg::Val(u32_of(sa[0])?)),
                    ("sa_m", Arg::Val(u32_of(sa[1])?)),
                    ("sa_k", Arg::Val(u32_of(sa[2])?)),
                    ("b", Arg::Ptr(bb)),
                    ("sb_batch", Arg::Val(u32_of(sb[0])?)),
                    ("sb_k", Arg::Val(u32_of(sb[1])?)),
                    ("sb_n", Arg::Val(u32_of(sb[2])?)),
                    ("c", Arg::Ptr(o)),
                ]);
                v
            }
        };
        match kernel {
            GemmKernel::Wgmma { a_kc, b_kc, .. } => b.launch_with(
                crate::hopper::entry(a_kc, b_kc),
                grid,
                crate::hopper::THREADS,
                crate::hopper::SMEM_BYTES,
                args,
            ),
            GemmKernel::Mma { .. } => b.launch("gemm_mma_bf16", grid, args),
            GemmKernel::Simt => b.launch("gemm_simt", grid, args),
        }
    }
    Ok(())
}

/// Reductions over contiguous innermost dims at least this long take a block per output.
pub const ROWS_MIN: usize = 128;
/// Runs of kept and of reduced dims the kernels take.
pub const MAX_RUNS: usize = 6;

/// Runs of dims as (size, element stride), outermost first.
pub type Runs = Vec<(usize, usize)>;

/// (kept runs, reduced runs) of a reduction, with adjacent dims of a kind merged (the input
/// is contiguous, so they always form one run).
pub fn reduce_runs(shape: &[usize], dims: &[usize]) -> (Runs, Runs) {
    let st = strides(shape);
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
    let kept = ds.iter().filter(|d| !d.2).map(|d| (d.0, d.1)).collect();
    let red = ds.iter().filter(|d| d.2).map(|d| (d.0, d.1)).collect();
    (kept, red)
}

/// Whether a reduction runs a block per output (`reduce_rows`): long sums over the innermost dims.
pub fn reduce_by_rows(shape: &[usize], dims: &[usize]) -> bool {
    let innermost = (0..shape.len()).rev().find(|&d| shape[d] != 1);
    let red_n: usize = dims.iter().map(|&d| shape[d]).product();
    innermost.is_some_and(|d| dims.contains(&d)) && red_n >= ROWS_MIN
}

pub fn reduce(b: &mut Builder, op: ReduceOp, dims: &[usize], x: usize, out: usize) -> Result<()> {
    let shape = b.shape(x);
    let (kept, red) = reduce_runs(shape, dims);
    if kept.len() > MAX_RUNS || red.len() > MAX_RUNS {
        return Err(CudaError::Unsupported(format!(
            "reduce over {dims:?} of {shape:?}: more than {MAX_RUNS} alternating runs"
        )));
    }
    let n_out: usize = kept.iter().map(|d| d.0).product();
    let red_n: usize = red.iter().map(|d| d.0).product();
    if n_out == 0 {
        return Ok(());
    }
    let src = b.ptr(x)?;
    let o = b.out(out)?;
    let mut args = vec![
        ("n_out", Arg::Val(u32_of(n_out)?)),
        ("red_n", Arg::Val(u32_of(red_n)?)),
        ("kept_rank", Arg::Val(kept.len() as u64)),
        ("red_rank", Arg::Val(red.len() as u64)),
        ("op", Arg::Val(u64::from(op == ReduceOp::Max))),
        ("dt", Arg::Val(dtype_code(b.dtype(x))? as u64)),
        ("out", Arg::Ptr(o)),
        ("x", Arg::Ptr(src)),
    ];
    // runs innermost first, padded with size 1 (never read)
    const NAMES: [[&str; 6]; 4] = [
        [
            "kept_size0",
            "kept_size1",
            "kept_size2",
            "kept_size3",
            "kept_size4",
            "kept_size5",
        ],
        [
            "kept_stride0",
            "kept_stride1",
            "kept_stride2",
            "kept_stride3",
            "kept_stride4",
            "kept_stride5",
        ],
        [
            "red_size0",
            "red_size1",
            "red_size2",
            "red_size3",
            "red_size4",
            "red_size5",
        ],
        [
            "red_stride0",
            "red_stride1",
            "red_stride2",
            "red_stride3",
            "red_stride4",
            "red_stride5",
        ],
    ];
    for (runs, [sizes, stride_names]) in
        [(&kept, [NAMES[0], NAMES[1]]), (&red, [NAMES[2], NAMES[3]])]
    {
        let inner: Vec<(usize, usize)> = runs.iter().rev().copied().collect();
        for (k, name) in sizes.iter().enumerate() {
            args.push((name, Arg::Val(u32_of(inner.get(k).map_or(1, |r| r.0))?)));
        }
        for (k, name) in stride_names.iter().enumerate() {
            args.push((name, Arg::Val(u32_of(inner.get(k).map_or(0, |r| r.1))?)));
        }
    }
    if reduce_by_rows(shape, dims) {
        let blocks = n_out.min(crate::plan::MAX_BLOCKS) as u32;
        b.launch("reduce_rows", [blocks, 1, 1], args);
    } else {
        b.launch_1d("reduce_cols", n_out, args);
    }
    Ok(())
}

/// (elements of the [pre, m, post] operand, len, post, m) of an index op.
fn index_dims(
    b: &Builder,
    indexed: &[usize],
    axis: usize,
    ids: usize,
) -> (usize, usize, usize, usize) {
    let len = indexed[axis];
    let pre: usize = indexed[..axis].iter().product();
    let post: usize = indexed[axis + 1..].iter().product();
    let m = b.numel(ids);
    (pre * m * post, len, post, m)
}

fn id_kind(d: DType) -> Result<u64> {
    match d {
        DType::I32 | DType::U32 | DType::I64 => Ok(dtype_code(d)? as u64),
        other => Err(CudaError::Unsupported(format!("indices of dtype {other}"))),
    }
}

pub fn gather(b: &mut Builder, axis: usize, x: usize, ids: usize, out: usize) -> Result<()> {
    let (n, len, post, m) = index_dims(b, b.shape(x), axis, ids);
    if n == 0 || len == 0 {
        return Ok(());
    }
    let (src, idx, o) = (b.ptr(x)?, b.ptr(ids)?, b.out(out)?);
    let args = vec![
        ("n", Arg::Val(u32_of(n)?)),
        ("len", Arg::Val(u32_of(len)?)),
        ("post", Arg::Val(u32_of(post)?)),
        ("m", Arg::Val(u32_of(m)?)),
        ("w", Arg::Val(b.dtype(out).size() as u64)),
        ("idk", Arg::Val(id_kind(b.dtype(ids))?)),
        ("out", Arg::Ptr(o)),
        ("x", Arg::Ptr(src)),
        ("ids", Arg::Ptr(idx)),
    ];
    b.launch_1d("gather", n, args);
    Ok(())
}

/// f32: atomic adds straight into the zeroed output. Every other dtype: atomic f64 adds into
/// zeroed scratch, then one conversion (the CPU accumulates those in f64 too).
pub fn scatter_add(
    b: &mut Builder,
    axis: usize,
    shape: &[usize],
    upd: usize,
    ids: usize,
    out: usize,
) -> Result<()> {
    let d = b.dtype(out);
    let total = b.numel(out);
    let (n, len, post, m) = index_dims(b, shape, axis, ids);
    let o = b.out(out)?;
    let (src, idx) = (b.ptr(upd)?, b.ptr(ids)?);
    let head = [
        ("n", Arg::Val(u32_of(n)?)),
        ("len", Arg::Val(u32_of(len)?)),
        ("post", Arg::Val(u32_of(post)?)),
        ("m", Arg::Val(u32_of(m)?)),
        ("idk", Arg::Val(id_kind(b.dtype(ids))?)),
    ];
    let live = n > 0 && len > 0;
    if d == DType::F32 {
        b.zero(o, bytes_of(total, d));
        let mut args = head.to_vec();
        args.extend([
            ("out", Arg::Ptr(o)),
            ("upd", Arg::Ptr(src)),
            ("ids", Arg::Ptr(idx)),
        ]);
        if live {
            b.launch_1d("scatter_add_f32", n, args);
        }
        return Ok(());
    }
    let acc = b.scratch(bytes_of(total, DType::F64));
    b.zero(acc, bytes_of(total, DType::F64));
    let mut args = head.to_vec();
    args.extend([
        ("dt", Arg::Val(dtype_code(d)? as u64)),
        ("acc", Arg::Ptr(acc)),
        ("upd", Arg::Ptr(src)),
        ("ids", Arg::Ptr(idx)),
    ]);
    if live {
        b.launch_1d("scatter_add_f64", n, args);
    }
    convert_from_f64(b, acc, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The four layouts of a linear layer's three GEMMs (x w, dy w^T, x^T dy) and attention's
    /// q k^T all run on tensor cores in place; odd or unaligned extents fall back.
    #[test]
    fn mma_takes_every_transpose_of_aligned_matrices() {
        let (m, n, k) = (64, 96, 32);
        // A [m, k] k-contiguous, B [k, n] n-contiguous (x w)
        let g = pick_gemm(DType::BF16, false, [0, k, 1], [0, n, 1], [1, m, n, k]);
        assert_eq!(
            g,
            GemmKernel::Mma {
                a: MmaOperand {
                    k_contiguous: true,
                    ld: k
                },
                b: MmaOperand {
                    k_contiguous: false,
                    ld: n
                }
            }
        );
        // B stored [n, k] (dy w^T, q k^T): k-contiguous
        let g = pick_gemm(DType::BF16, false, [0, k, 1], [0, 1, k], [1, m, n, k]);
        assert!(
            matches!(g, GemmKernel::Mma { b: MmaOperand { k_contiguous: true, ld }, .. } if ld == k)
        );
        // A stored [k, m] (x^T dy): m-contiguous
        let g = pick_gemm(DType::BF16, false, [0, 1, m], [0, n, 1], [1, m, n, k]);
        assert!(
            matches!(g, GemmKernel::Mma { a: MmaOperand { k_contiguous: false, ld }, .. } if ld == m)
        );
        // batched, with weights shared across the batch (stride 0)
        let g = pick_gemm(DType::BF16, false, [m * k, k, 1], [0, n, 1], [1, m, n, k]);
        assert!(matches!(g, GemmKernel::Mma { .. }));
        // k = 36 is no multiple of 8: the FMA kernel
        assert_eq!(
            pick_gemm(DType::BF16, false, [0, 36, 1], [0, n, 1], [1, m, n, 36]),
            GemmKernel::Simt
        );
        // f32 always runs on the FMA units
        assert_eq!(
            pick_gemm(DType::F32, false, [0, k, 1], [0, n, 1], [1, m, n, k]),
            GemmKernel::Simt
        );
    }

    #[test]
    fn group_strides_find_single_runs() {
        let shape = [2, 3, 4];
        let st = strides(&shape);
        assert_eq!(group_stride(&shape, &st, &[1, 2]), Some(1));
        assert_eq!(group_stride(&shape, &st, &[0]), Some(12));
        assert_eq!(group_stride(&shape, &st, &[]), Some(0));
        // dims 0 and 2 are not one run
        assert_eq!(group_stride(&shape, &st, &[0, 2]), None);
        // transposed order is not one run either
        assert_eq!(group_stride(&shape, &st, &[2, 1]), None);
    }

    #[test]
    fn reductions_merge_runs_and_pick_a_variant() {
        // [4, 5, 6] over the last two: one kept run, one reduced run of 30
        assert_eq!(
            reduce_runs(&[4, 5, 6], &[1, 2]),
            (vec![(4, 30)], vec![(30, 1)])
        );
        // over the middle dim: kept runs outside and inside it
        assert_eq!(
            reduce_runs(&[4, 5, 6], &[1]),
            (vec![(4, 30), (6, 1)], vec![(5, 6)])
        );
        // a bias gradient ([tokens, features] over tokens) walks columns
        assert!(!reduce_by_rows(&[4096, 256], &[0]));
        // a long sum over the last dim takes a block per row; a short one a thread
        assert!(reduce_by_rows(&[64, 4096], &[1]));
        assert!(!reduce_by_rows(&[64, 100], &[1]));
        // size-1 trailing dims do not hide the innermost reduced dim
        assert!(reduce_by_rows(&[8, 512, 1], &[1]));
    }
}
