//! The engine's fused ops as hand-written WGSL kernels: softmax, rms_norm and RoPE over rows
//! ([`rows`]), flash-style attention ([`attention`]), the GIDD diffusion KL over the
//! vocabulary ([`diffusion_kl`]); every fused op of the engine has one. `supports` says which
//! (op, dtype) pairs have a kernel; `load` decomposes the others into primitives
//! (`gidd_engine::rewrite::lower_for`), so an op without a kernel for a dtype still runs, only
//! with more dispatches.

mod attention;
mod diffusion_kl;
mod rows;
mod sample;

use crate::error::{Result, WgpuError};
use crate::plan::Builder;
use gidd_engine::op::Op;
use gidd_engine::DType;

/// Whether `op` over values of `dtype` (its first float operand's) runs as a fused kernel
/// (the sampling step's also needs f64 shaders: `WgpuExecutor::supports_fused`).
pub fn supports(op: &Op, dtype: DType) -> bool {
    match op {
        Op::Softmax
        | Op::LogSoftmax
        | Op::SoftmaxBwd
        | Op::RmsNorm { .. }
        | Op::RmsNormBwd
        | Op::Rope
        | Op::RopeBwd => rows::supports(op, dtype),
        Op::Attention(_) | Op::AttentionBwd(_) => attention::supports(op, dtype),
        Op::DiffusionKl(_) | Op::DiffusionKlBwd(_) => diffusion_kl::supports(op, dtype),
        Op::SampleStep(_) => dtype == DType::F32,
        _ => false,
    }
}

/// Adds the dispatches of fused node `op` reading values `ins`, writing values `outs`.
pub fn lower(b: &mut Builder, op: &Op, ins: &[usize], outs: &[usize]) -> Result<()> {
    match op {
        Op::Softmax
        | Op::LogSoftmax
        | Op::SoftmaxBwd
        | Op::RmsNorm { .. }
        | Op::RmsNormBwd
        | Op::Rope
        | Op::RopeBwd => rows::lower(b, op, ins, outs),
        Op::Attention(_) | Op::AttentionBwd(_) => attention::lower(b, op, ins, outs),
        Op::DiffusionKl(_) | Op::DiffusionKlBwd(_) => diffusion_kl::lower(b, op, ins, outs),
        Op::SampleStep(_) => sample::lower(b, op, ins, outs),
        _ => Err(WgpuError::Unsupported(format!(
            "{} is not a fused op",
            op.name()
        ))),
    }
}

/// The error of a fused op that reached lowering without a kernel.
fn no_kernel(op: &Op) -> WgpuError {
    WgpuError::Unsupported(format!(
        "fused op {} has no WGSL kernel yet and was not decomposed",
        op.name()
    ))
}
