//! The fused sampling step (`Op::SampleStep`) as a WGSL kernel (sample/sample.wgsl): one
//! workgroup per position streams its logits in f64, so only tokens and scores leave the
//! device. The kernel needs f64 shaders: `WgpuExecutor::supports_fused` offers it only on a
//! device opened with SHADER_F64, and elsewhere the op is refused (generation samples on
//! the host).

use crate::error::{Result, WgpuError};
use crate::pipelines::Kernel;
use crate::plan::{grid, u32_of, Builder};
use gidd_engine::op::{Op, SampleMode, SampleSpec};
use gidd_kernels::wgsl::Module;

fn words(x: f64) -> [u32; 2] {
    let b = x.to_bits();
    [(b >> 32) as u32, b as u32]
}

/// The kernel's parameters (its header lists them).
fn params(s: &SampleSpec, rows: usize, vocab: usize) -> Result<Vec<u32>> {
    // the reference's own filters: top-k in (0, V), top-p in (0, 1), else none
    let k = s.top_k.filter(|&k| k > 0 && k < vocab).unwrap_or(0);
    let p = s.top_p.filter(|&p| p > 0.0 && p < 1.0);
    let (mode, a_t, a_s, pi) = match s.mode {
        SampleMode::Adaptive => (0, 0.5, 0.5, [0.0f32; 4]),
        SampleMode::Ancestral(post) => {
            if post.mask_id != s.mask_id {
                return Err(WgpuError::Unsupported(format!(
                    "sample_step: the posterior's mask id {} is not the step's {}",
                    post.mask_id, s.mask_id
                )));
            }
            let [t0, t1] = post.pi_t;
            let [s0, s1] = post.pi_s;
            (1, post.a_t, post.a_s, [t0, t1, s0, s1])
        }
    };
    let mut out = vec![
        u32_of(rows)?,
        u32_of(vocab)?,
        u32_of(s.mask_id)?,
        mode,
        u32_of(k)?,
        u32::from(p.is_some()),
    ];
    for x in [s.temperature, p.unwrap_or(1.0), a_t, a_s] {
        out.extend(words(x));
    }
    out.extend(pi.iter().map(|x| x.to_bits()));
    Ok(out)
}

pub fn lower(b: &mut Builder, op: &Op, ins: &[usize], outs: &[usize]) -> Result<()> {
    let Op::SampleStep(spec) = op else {
        return Err(super::no_kernel(op));
    };
    let lg = b.shape(ins[0]).to_vec();
    let (rows, vocab) = (lg[0], lg[1]);
    if !(spec.temperature >= 0.0 && spec.temperature.is_finite()) {
        return Err(WgpuError::Unsupported(format!(
            "sample_step at temperature {}: want a finite temperature >= 0",
            spec.temperature
        )));
    }
    let p = params(spec, rows, vocab)?;
    let binds = vec![b.wout(outs[0])?, b.wbuf(ins[0])?, b.wbuf(ins[1])?];
    let row_bytes = [12, 4 * vocab as u64, 16];
    let pw = |len: usize| {
        let mut q = p.clone();
        q[0] = u32_of(len)?;
        Ok(q)
    };
    let k = Kernel::new(Module::Sample, "sample_step", 2);
    b.push_rows(k, binds, &row_bytes, rows, pw, grid)
}
