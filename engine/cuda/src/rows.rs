//! Softmax, log-softmax and their backward (softmax/softmax.ptx), rms_norm forward and
//! backward (norm/rms_norm.ptx), RoPE forward and backward (rope/rope.ptx) as PTX kernels:
//! a 256-thread block per row for the row reductions (sums in f64), a thread per rotated
//! pair for RoPE, a thread per column for rms_norm's dw. Unverified on hardware (see
//! crate::fused).
//!
//! The graph builds these ops over f32 (the model's bf16 programs convert around them), so
//! the kernels take f32.

use crate::error::{CudaError, Result};
use crate::fused::row_grid;
use crate::plan::{u32_of, Arg, Builder};
use gidd_engine::op::Op;
use gidd_engine::DType;

pub fn supports(_op: &Op, dtype: DType) -> bool {
    dtype == DType::F32
}

/// (rows, n) of a value whose rows are its last axis.
fn rows_of(b: &Builder, v: usize) -> (usize, usize) {
    let s = b.shape(v);
    let n = s.last().copied().unwrap_or(1);
    let total: usize = s.iter().product();
    (total.checked_div(n).unwrap_or(0), n)
}

fn ptr(b: &mut Builder, name: &'static str, v: usize) -> Result<(&'static str, Arg)> {
    Ok((name, Arg::Ptr(b.ptr(v)?)))
}

fn out(b: &Builder, name: &'static str, v: usize) -> Result<(&'static str, Arg)> {
    Ok((name, Arg::Ptr(b.out(v)?)))
}

pub fn lower(b: &mut Builder, op: &Op, ins: &[usize], outs: &[usize]) -> Result<()> {
    for &v in ins.iter().chain(outs) {
        let d = b.dtype(v);
        if d != DType::F32 {
            return Err(CudaError::Unsupported(format!(
                "{}: the PTX kernels take f32 values, not {d}",
                op.name()
            )));
        }
    }
    let (rows, n) = rows_of(b, ins[0]);
    u32_of(rows * n)?;
    let dims = |rows: usize, n: usize| -> Result<Vec<(&'static str, Arg)>> {
        Ok(vec![
            ("rows", Arg::Val(u32_of(rows)?)),
            ("n", Arg::Val(u32_of(n)?)),
        ])
    };
    match op {
        Op::Softmax | Op::LogSoftmax => {
            let mut a = dims(rows, n)?;
            a.push(("log", Arg::Val(matches!(op, Op::LogSoftmax).into())));
            a.extend([out(b, "out", outs[0])?, ptr(b, "x", ins[0])?]);
            launch_rows(b, "softmax_fwd", rows, n, a);
        }
        Op::SoftmaxBwd => {
            let mut a = dims(rows, n)?;
            a.extend([
                out(b, "out", outs[0])?,
                ptr(b, "y", ins[0])?,
                ptr(b, "dy", ins[1])?,
            ]);
            launch_rows(b, "softmax_bwd", rows, n, a);
        }
        Op::RmsNorm { eps } => {
            let mut a = dims(rows, n)?;
            a.push(("eps", Arg::Val(eps.to_bits() as u64)));
            a.extend([
                out(b, "y", outs[0])?,
                out(b, "rstd", outs[1])?,
                ptr(b, "x", ins[0])?,
                ptr(b, "w", ins[1])?,
            ]);
            launch_rows(b, "rms_norm_fwd", rows, n, a);
        }
        Op::RmsNormBwd => {
            // (x, w, rstd, dy) -> (dx, dw)
            let mut a = dims(rows, n)?;
            a.extend([
                out(b, "dx", outs[0])?,
                ptr(b, "x", ins[0])?,
                ptr(b, "w", ins[1])?,
                ptr(b, "rstd", ins[2])?,
                ptr(b, "dy", ins[3])?,
            ]);
            launch_rows(b, "rms_norm_bwd_dx", rows, n, a);
            let mut a = dims(rows, n)?;
            a.extend([
                out(b, "dw", outs[1])?,
                ptr(b, "x", ins[0])?,
                ptr(b, "rstd", ins[2])?,
                ptr(b, "dy", ins[3])?,
            ]);
            b.launch_1d("rms_norm_dw", n, a);
        }
        Op::Rope | Op::RopeBwd => {
            // x (or dy) [R, H, D], cos and sin [R, D/2]
            let s = b.shape(ins[0]);
            let (heads, half) = (s[1], s[2] / 2);
            let pairs = s[0] * heads * half;
            let a = vec![
                ("n", Arg::Val(u32_of(pairs)?)),
                ("heads", Arg::Val(u32_of(heads)?)),
                ("half", Arg::Val(u32_of(half)?)),
                ("neg", Arg::Val(matches!(op, Op::RopeBwd).into())),
                out(b, "out", outs[0])?,
                ptr(b, "x", ins[0])?,
                ptr(b, "cos", ins[1])?,
                ptr(b, "sin", ins[2])?,
            ];
            b.launch_1d("rope", pairs, a);
        }
        _ => {
            return Err(CudaError::Unsupported(format!(
                "{} is not a row op",
                op.name()
            )))
        }
    }
    Ok(())
}

/// A block per row (none for no rows or empty rows: nothing to compute).
fn launch_rows(
    b: &mut Builder,
    entry: &'static str,
    rows: usize,
    n: usize,
    args: Vec<(&'static str, Arg)>,
) {
    if rows > 0 && n > 0 {
        b.launch(entry, row_grid(rows), args);
    }
}
