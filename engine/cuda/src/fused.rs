//! The engine's fused ops as hand-written PTX kernels (issue 14): which (op, dtype) pairs have
//! one ([`supports`], what `CudaExecutor::supports_fused` answers) and their launches
//! ([`lower`]). The rest are decomposed into primitives before planning
//! (`gidd_engine::rewrite::lower_for`), so every fused op still runs, only with more launches.
//!
//! The kernels mirror the wgpu executor's op contracts (engine/wgpu/src/fused). Their PTX is
//! assembled by ptxas in CI and their contracts are run against the cpu executor by
//! crate::emulate; none has yet run on a GPU.

use crate::error::{CudaError, Result};
use crate::plan::{dtype_code, u32_of, Arg, Builder, MAX_BLOCKS};
use gidd_engine::op::{MarginalSpec, Op};
use gidd_engine::DType;

/// Threads per block of the loss kernels: one block per token, strided over the vocabulary
/// (diffusion_kl.ptx merges exactly 8 warps).
pub const LOSS_THREADS: u32 = 256;

/// Whether `op` over values of `dtype` (its first float operand's) runs as a fused kernel.
pub fn supports(op: &Op, dtype: DType) -> bool {
    match op {
        // the graph builds the loss over f32 logits (bf16 programs convert first; f64 is the
        // cpu's audit precision)
        Op::DiffusionKl(_) | Op::DiffusionKlBwd(_) => dtype == DType::F32,
        Op::Attention(_) | Op::AttentionBwd(_) => crate::attention::supports(op, dtype),
        Op::Softmax
        | Op::LogSoftmax
        | Op::SoftmaxBwd
        | Op::RmsNorm { .. }
        | Op::RmsNormBwd
        | Op::Rope
        | Op::RopeBwd => crate::rows::supports(op, dtype),
        Op::SampleStep(_) => dtype == DType::F32,
        _ => false,
    }
}

/// Adds the launches of fused node `op` reading values `ins`, writing values `outs`.
pub fn lower(b: &mut Builder, op: &Op, ins: &[usize], outs: &[usize]) -> Result<()> {
    match op {
        Op::DiffusionKl(s) | Op::DiffusionKlBwd(s) => diffusion_kl(b, op, s, ins, outs),
        Op::Attention(_) | Op::AttentionBwd(_) => crate::attention::lower(b, op, ins, outs),
        Op::Softmax
        | Op::LogSoftmax
        | Op::SoftmaxBwd
        | Op::RmsNorm { .. }
        | Op::RmsNormBwd
        | Op::Rope
        | Op::RopeBwd => crate::rows::lower(b, op, ins, outs),
        Op::SampleStep(s) => crate::sample::lower(b, s, ins, outs),
        _ => Err(CudaError::Unsupported(format!(
            "fused op {} has no PTX kernel yet and was not decomposed",
            op.name()
        ))),
    }
}

/// The grid of a kernel with one block per row, grid-striding beyond [`MAX_BLOCKS`] rows.
pub fn row_grid(rows: usize) -> [u32; 3] {
    [rows.clamp(1, MAX_BLOCKS) as u32, 1, 1]
}

/// diffusion_kl (outputs kl, log p[z], log q[z]) or diffusion_kl_bwd (output d logits).
fn diffusion_kl(
    b: &mut Builder,
    op: &Op,
    s: &MarginalSpec,
    ins: &[usize],
    outs: &[usize],
) -> Result<()> {
    let lg = b.shape(ins[0]);
    let vocab = *lg.last().unwrap_or(&0);
    let rows: usize = lg[..lg.len().saturating_sub(1)].iter().product();
    for &v in ins.iter().chain(outs) {
        let d = b.dtype(v);
        let is_id = v == ins[1] || v == ins[2];
        let ok = if is_id {
            matches!(d, DType::I32 | DType::U32 | DType::I64)
        } else {
            d == DType::F32
        };
        if !ok {
            return Err(CudaError::Unsupported(format!(
                "{}: the PTX kernel takes f32 values and i32, u32 or i64 ids, not {d}",
                op.name()
            )));
        }
    }
    if s.mask_id as usize >= vocab {
        return Err(CudaError::Unsupported(format!(
            "{}: mask id {} outside a vocabulary of {vocab}",
            op.name(),
            s.mask_id
        )));
    }
    u32_of(rows * vocab)?;
    let f = |x: f32| Arg::Val(x.to_bits() as u64);
    let mut args = vec![
        ("rows", Arg::Val(u32_of(rows)?)),
        ("vocab", Arg::Val(u32_of(vocab)?)),
        ("mask", Arg::Val(s.mask_id as u64)),
        ("min_lsnr", f(s.min_log_snr)),
        ("max_lsnr", f(s.max_log_snr)),
        ("scale", f(s.scale)),
        ("shift", f(s.shift)),
        ("zk", Arg::Val(dtype_code(b.dtype(ins[1]))? as u64)),
        ("xk", Arg::Val(dtype_code(b.dtype(ins[2]))? as u64)),
    ];
    let entry = if matches!(op, Op::DiffusionKl(_)) {
        for (name, &o) in ["kl", "lpz", "lqz"].into_iter().zip(outs) {
            args.push((name, Arg::Ptr(b.out(o)?)));
        }
        "diffusion_kl"
    } else {
        args.push(("dlg", Arg::Ptr(b.out(outs[0])?)));
        "diffusion_kl_bwd"
    };
    let names = ["lg", "z", "x", "l", "gkl", "glpz"];
    for (name, &v) in names.into_iter().zip(ins) {
        args.push((name, Arg::Ptr(b.ptr(v)?)));
    }
    if rows > 0 {
        b.launch(entry, row_grid(rows), args);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The host's thread count is the one the PTX's block reductions assume.
    #[test]
    fn loss_block_matches_the_ptx() {
        let m = gidd_kernels::ptx::module_of("diffusion_kl").expect("module");
        // the strided passes step by the block size, and the merges read 8 warps
        assert!(m
            .source
            .contains(&format!("add.u32 %v, %v, {};", super::LOSS_THREADS)));
        assert!(m.source.contains("setp.lt.u32 %p, %i, 8;"));
        assert_eq!(super::LOSS_THREADS, 8 * 32);
        assert_eq!(super::LOSS_THREADS, crate::plan::BLOCK);
    }

    /// Every fused op of the engine has a kernel for f32 (what the graph builds them over);
    /// other dtypes decompose.
    #[test]
    fn every_fused_op_runs_as_a_kernel_in_f32_only() {
        use gidd_engine::op::{AttnSpec, MarginalSpec, Op};
        use gidd_engine::DType;
        let attn = AttnSpec {
            scale: 1.0,
            softcap: None,
        };
        let m = MarginalSpec {
            mask_id: 0,
            min_log_snr: 0.0,
            max_log_snr: 1.0,
            scale: 1.0,
            shift: 0.0,
        };
        let ops = [
            Op::Softmax,
            Op::LogSoftmax,
            Op::SoftmaxBwd,
            Op::RmsNorm { eps: 1e-6 },
            Op::RmsNormBwd,
            Op::Rope,
            Op::RopeBwd,
            Op::Attention(attn),
            Op::AttentionBwd(attn),
            Op::DiffusionKl(m),
            Op::DiffusionKlBwd(m),
        ];
        let sample = Op::SampleStep(gidd_engine::op::SampleSpec {
            mask_id: 0,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            mode: gidd_engine::op::SampleMode::Adaptive,
        });
        for op in ops.iter().chain([&sample]) {
            assert!(op.is_fused());
            assert!(super::supports(op, DType::F32), "{}", op.name());
            for d in [DType::BF16, DType::F64] {
                assert!(!super::supports(op, d), "{} {d}", op.name());
            }
        }
        assert!(!super::supports(&Op::Select, DType::F32));
    }

    #[test]
    fn row_grids_stride_beyond_the_block_limit() {
        use crate::plan::MAX_BLOCKS;
        assert_eq!(super::row_grid(0), [1, 1, 1]);
        assert_eq!(super::row_grid(7), [7, 1, 1]);
        assert_eq!(super::row_grid(MAX_BLOCKS + 5), [MAX_BLOCKS as u32, 1, 1]);
    }
}
