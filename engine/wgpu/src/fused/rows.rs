//! Softmax, log-softmax, their backward, rms_norm forward and backward, RoPE forward and
//! backward as WGSL kernels (softmax/softmax.wgsl, norm/rms_norm.wgsl, rope/rope.wgsl):
//! one workgroup per row for the row reductions, one invocation per rotated pair for RoPE.
//!
//! The graph only builds these ops over f32 (infer admits f32 or f64, and the model's bf16 and f16
//! programs convert to f32 around them), so f32 is what runs; bf16 and f16 are accepted too (f32
//! math, results rounded once) should a program carry them. f64 programs never load here.

use crate::error::{Result, WgpuError};
use crate::lower::{class, Class};
use crate::pipelines::Kernel;
use crate::plan::{grid, u32_of, Builder, MAX_GROUPS, WG};
use gidd_engine::op::Op;
use gidd_engine::DType;
use gidd_kernels::wgsl::Module;

pub fn supports(_op: &Op, dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16 | DType::F16)
}

/// The dtype's HALF constant (f32, bf16 or f16 only).
fn half_kind(b: &Builder, v: usize) -> Result<u32> {
    match class(b.dtype(v))? {
        Class::Float { half } => Ok(half),
        c => Err(WgpuError::Unsupported(format!(
            "a row kernel over {c:?} values"
        ))),
    }
}

/// (rows, n) of a value whose rows are its last axis.
fn rows_of(b: &Builder, v: usize) -> (usize, usize) {
    let s = b.shape(v);
    let n = s.last().copied().unwrap_or(1);
    let total: usize = s.iter().product();
    (total.checked_div(n).unwrap_or(0), n)
}

pub fn lower(b: &mut Builder, op: &Op, ins: &[usize], outs: &[usize]) -> Result<()> {
    match op {
        Op::Softmax | Op::LogSoftmax => {
            let (rows, n) = rows_of(b, ins[0]);
            let k = Kernel::new(Module::Softmax, "softmax_fwd", 1)
                .with("LOG", matches!(op, Op::LogSoftmax).into())
                .with("HALF", half_kind(b, outs[0])?);
            let binds = vec![b.wout(outs[0])?, b.wbuf(ins[0])?];
            let rb = 4 * n as u64;
            let p = |len| Ok(vec![u32_of(len)?, u32_of(n)?]);
            b.push_rows(k, binds, &[rb, rb], rows, p, |len| row_grid(len, n))
        }
        Op::SoftmaxBwd => {
            let (rows, n) = rows_of(b, ins[0]);
            let k =
                Kernel::new(Module::Softmax, "softmax_bwd", 2).with("HALF", half_kind(b, outs[0])?);
            let binds = vec![b.wout(outs[0])?, b.wbuf(ins[0])?, b.wbuf(ins[1])?];
            let rb = 4 * n as u64;
            let p = |len| Ok(vec![u32_of(len)?, u32_of(n)?]);
            b.push_rows(k, binds, &[rb, rb, rb], rows, p, |len| row_grid(len, n))
        }
        Op::RmsNorm { eps } => {
            let (rows, n) = rows_of(b, ins[0]);
            let k = Kernel::new(Module::RmsNorm, "rms_norm_fwd", 2)
                .outputs(2)
                .with("HALF", half_kind(b, outs[0])?);
            let binds = vec![
                b.wout(outs[0])?,
                b.wout(outs[1])?,
                b.wbuf(ins[0])?,
                b.buf(ins[1])?,
            ];
            let rb = 4 * n as u64;
            let p = |len| Ok(vec![u32_of(len)?, u32_of(n)?, eps.to_bits()]);
            // n = 0 still has rows: rstd = 1 / sqrt(0 / 0 + eps) as on the cpu
            b.push_rows(k, binds, &[rb, 4, rb, 0], rows, p, grid)
        }
        Op::RmsNormBwd => rms_norm_bwd(b, ins, outs),
        Op::Rope | Op::RopeBwd => {
            let s = b.shape(ins[0]);
            let (heads, half) = (s[1], s[2] / 2);
            let k = Kernel::new(Module::Rope, "rope", 3)
                .with("BWD", matches!(op, Op::RopeBwd).into())
                .with("HALF", half_kind(b, outs[0])?);
            let binds = vec![
                b.wout(outs[0])?,
                b.wbuf(ins[0])?,
                b.wbuf(ins[1])?,
                b.wbuf(ins[2])?,
            ];
            let (xb, cb) = ((4 * heads * s[2]) as u64, (4 * half) as u64);
            let per_row = heads * half;
            // heads and half of at least 1 keep the kernel's divisions defined (nothing runs)
            let p = |len: usize| {
                Ok(vec![
                    u32_of(len * per_row)?,
                    u32_of(heads.max(1))?,
                    u32_of(half.max(1))?,
                ])
            };
            let g = |len: usize| grid((len * per_row).div_ceil(WG));
            b.push_rows(k, binds, &[xb, xb, cb, cb], s[0], p, g)
        }
        _ => Err(super::no_kernel(op)),
    }
}

/// One workgroup per row (none when the rows are empty).
fn row_grid(rows: usize, n: usize) -> Result<[u32; 3]> {
    grid(if n == 0 { 0 } else { rows })
}

/// dx by rows; dw as per-block partial sums over rows into scratch, then summed in block
/// order (deterministic: no atomics). Rows larger than one binding come in windows of whole
/// blocks (the partials are the same either way, and so is dw).
fn rms_norm_bwd(b: &mut Builder, ins: &[usize], outs: &[usize]) -> Result<()> {
    let (rows, n) = rows_of(b, ins[0]);
    let flag = half_kind(b, outs[0])?;
    let (x, w, rstd, dy) = (
        b.wbuf(ins[0])?,
        b.buf(ins[1])?,
        b.wbuf(ins[2])?,
        b.wbuf(ins[3])?,
    );
    let (dx, dw) = (b.wout(outs[0])?, b.out(outs[1])?);
    let rb = 4 * n as u64;
    let windowed = rows as u64 * rb > b.max_binding;
    let wrows = match windowed {
        true => b.rows_per_window(&[rb, 4])?,
        false => rows.max(1),
    };
    // blocks of at least 32 rows, at most 1024 blocks (the partials stay small), whole
    // blocks per window
    let per = rows.div_ceil(1024).max(32).min(wrows);
    let wrows = match windowed {
        true => {
            let l = crate::plan::lcm(per as u64, b.row_step(&[rb, 4])) as usize;
            wrows / l * l
        }
        false => wrows,
    };
    if wrows == 0 {
        return Err(WgpuError::Unsupported(format!(
            "rms_norm_bwd: windows of whole {per}-row blocks of rows of {n} do not fit one \
             storage binding ({:.1} MiB)",
            b.max_binding as f64 / 1048576.0
        )));
    }
    let blocks = rows.div_ceil(per);
    let tiles = n.div_ceil(WG);
    if tiles > MAX_GROUPS {
        return Err(WgpuError::Unsupported(format!(
            "rms_norm_bwd over rows of {n}: more than 65535 column tiles"
        )));
    }
    let p = |len: usize, first: usize| -> Result<Vec<u32>> {
        Ok(vec![
            u32_of(len)?,
            u32_of(n)?,
            0,
            u32_of(per)?,
            u32_of(blocks)?,
            u32_of(first)?,
        ])
    };
    let k = Kernel::new(Module::RmsNorm, "rms_norm_bwd", 4).with("HALF", flag);
    let binds = vec![dx, x, w, rstd, dy];
    let rbs = [rb, rb, 0, 4, rb];
    b.push_rows(
        k,
        binds,
        &rbs,
        rows,
        |len| p(len, 0),
        |len| row_grid(len, n),
    )?;
    let part = b.scratch(0, (blocks * n * 4).max(4) as u64);
    let k = Kernel::new(Module::RmsNorm, "rms_norm_dw_part", 3);
    for start in (0..rows).step_by(wrows) {
        let len = wrows.min(rows - start);
        let win =
            |e: u64| windowed.then(|| (start as u64 * e, (len as u64 * e).next_multiple_of(4)));
        let g = [tiles as u32, len.div_ceil(per) as u32, 1];
        let wins = vec![None, win(rb), win(4), win(rb)];
        b.push_windows(
            k.clone(),
            vec![part, x, rstd, dy],
            wins,
            &p(len, start / per)?,
            g,
        )?;
    }
    let k = Kernel::new(Module::RmsNorm, "rms_norm_dw_finish", 1).with("HALF", flag);
    b.push_1d(k, vec![dw, part], &p(rows, 0)?, n)
}
