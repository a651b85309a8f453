//! The fused sampling step (`Op::SampleStep`) as a PTX kernel (sample/sample.ptx): one block
//! per position streams its logits in f64, so only tokens and scores leave the device. The
//! same contract and algorithm as the wgpu kernel (sample.wgsl); assembled by ptxas and
//! emulated against the cpu executor (crate::emulate_sample), not yet run on a GPU.

use crate::error::{CudaError, Result};
use crate::fused::row_grid;
use crate::plan::{u32_of, Arg, Builder};
use gidd_engine::op::{SampleMode, SampleSpec};
use gidd_engine::DType;

/// The launch of sample_step over logits `ins[0]` [R, V] and rows `ins[1]` [R, 4] into
/// `outs[0]` [R, 3].
pub fn lower(b: &mut Builder, s: &SampleSpec, ins: &[usize], outs: &[usize]) -> Result<()> {
    let lg = b.shape(ins[0]);
    let (rows, vocab) = (lg[0], lg[1]);
    if b.dtype(ins[0]) != DType::F32 || b.dtype(ins[1]) != DType::I32 {
        return Err(CudaError::Unsupported(
            "sample_step: the PTX kernel takes f32 logits and i32 rows".into(),
        ));
    }
    if !(s.temperature >= 0.0 && s.temperature.is_finite()) {
        return Err(CudaError::Unsupported(format!(
            "sample_step at temperature {}: want a finite temperature >= 0",
            s.temperature
        )));
    }
    u32_of(rows * vocab)?;
    // the reference's own filters: top-k in (0, V), top-p in (0, 1), else none
    let k = s.top_k.filter(|&k| k > 0 && k < vocab).unwrap_or(0);
    let p = s.top_p.filter(|&p| p > 0.0 && p < 1.0);
    let (mode, a_t, a_s, pi) = match s.mode {
        SampleMode::Adaptive => (0, 0.5, 0.5, [0.0f32; 4]),
        SampleMode::Ancestral(post) if post.mask_id == s.mask_id => {
            let ([t0, t1], [s0, s1]) = (post.pi_t, post.pi_s);
            (1, post.a_t, post.a_s, [t0, t1, s0, s1])
        }
        SampleMode::Ancestral(post) => {
            return Err(CudaError::Unsupported(format!(
                "sample_step: the posterior's mask id {} is not the step's {}",
                post.mask_id, s.mask_id
            )))
        }
    };
    let f = |x: f64| Arg::Val(x.to_bits());
    let h = |x: f32| Arg::Val(x.to_bits() as u64);
    let args = vec![
        ("rows", Arg::Val(u32_of(rows)?)),
        ("vocab", Arg::Val(u32_of(vocab)?)),
        ("mask", Arg::Val(u32_of(s.mask_id)?)),
        ("mode", Arg::Val(mode)),
        ("topk", Arg::Val(u32_of(k)?)),
        ("usep", Arg::Val(u64::from(p.is_some()))),
        ("temp", f(s.temperature)),
        ("topp", f(p.unwrap_or(1.0))),
        ("a_t", f(a_t)),
        ("a_s", f(a_s)),
        ("pit0", h(pi[0])),
        ("pit1", h(pi[1])),
        ("pis0", h(pi[2])),
        ("pis1", h(pi[3])),
        ("out", Arg::Ptr(b.out(outs[0])?)),
        ("lg", Arg::Ptr(b.ptr(ins[0])?)),
        ("ri", Arg::Ptr(b.ptr(ins[1])?)),
    ];
    if rows > 0 {
        b.launch("sample_step", row_grid(rows), args);
    }
    Ok(())
}
