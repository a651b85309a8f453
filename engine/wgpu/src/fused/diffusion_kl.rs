//! The fused GIDD diffusion KL, forward and backward, as WGSL kernels
//! (gidd_loss/diffusion_kl.wgsl): one workgroup per token streams the vocabulary; p_t and
//! q_t are never stored. One dispatch per op.
//!
//! As with the row ops, the graph builds these over f32 logits only (bf16 and f16 programs
//! convert to f32 first); bf16 and f16 are accepted as well (f32 math, results rounded once).

use crate::error::{Result, WgpuError};
use crate::lower::{class, Class};
use crate::pipelines::Kernel;
use crate::plan::{grid, u32_of, Builder};
use gidd_engine::op::{MarginalSpec, Op};
use gidd_engine::DType;
use gidd_kernels::wgsl::Module;

pub fn supports(_op: &Op, dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16 | DType::F16)
}

/// The kernel's id kind: 0 = i32, 1 = u32, 2 = i64.
fn id_kind(b: &Builder, v: usize) -> Result<u32> {
    match b.dtype(v) {
        DType::I32 => Ok(0),
        DType::U32 => Ok(1),
        DType::I64 => Ok(2),
        d => Err(WgpuError::Unsupported(format!(
            "diffusion_kl ids of dtype {d}"
        ))),
    }
}

fn params(b: &Builder, s: &MarginalSpec, ins: &[usize]) -> Result<(Vec<u32>, usize)> {
    let lg = b.shape(ins[0]);
    let vocab = *lg.last().unwrap_or(&0);
    let rows: usize = lg[..lg.len().saturating_sub(1)].iter().product();
    if s.mask_id as usize >= vocab {
        return Err(WgpuError::Unsupported(format!(
            "diffusion_kl: mask id {} outside a vocabulary of {vocab}",
            s.mask_id
        )));
    }
    let p = vec![
        u32_of(rows)?,
        u32_of(vocab)?,
        s.mask_id,
        s.min_log_snr.to_bits(),
        s.max_log_snr.to_bits(),
        s.scale.to_bits(),
        s.shift.to_bits(),
        id_kind(b, ins[1])?,
        id_kind(b, ins[2])?,
    ];
    Ok((p, rows))
}

pub fn lower(b: &mut Builder, op: &Op, ins: &[usize], outs: &[usize]) -> Result<()> {
    let flag = match class(b.dtype(outs[0]))? {
        Class::Float { half } => half,
        c => {
            return Err(WgpuError::Unsupported(format!(
                "diffusion_kl over {c:?} values"
            )))
        }
    };
    let (k, spec) = match op {
        Op::DiffusionKl(s) => (
            Kernel::new(Module::DiffusionKl, "diffusion_kl", 4).outputs(3),
            s,
        ),
        Op::DiffusionKlBwd(s) => (Kernel::new(Module::DiffusionKl, "diffusion_kl_bwd", 6), s),
        _ => return Err(super::no_kernel(op)),
    };
    let (p, rows) = params(b, spec, ins)?;
    // every value is by row (a token's logits, or one value per token): windows of tokens
    // when the logits are larger than a binding
    let mut binds = outs
        .iter()
        .map(|&o| b.wout(o))
        .collect::<Result<Vec<_>>>()?;
    for &v in ins {
        binds.push(b.wbuf(v)?);
    }
    let row_bytes: Vec<u64> = outs
        .iter()
        .chain(ins)
        .map(|&v| {
            let per = b
                .shape(v)
                .iter()
                .product::<usize>()
                .checked_div(rows)
                .unwrap_or(0);
            (per * crate::buffer::words(b.dtype(v)) * 4) as u64
        })
        .collect();
    let pw = |len: usize| {
        let mut q = p.clone();
        q[0] = u32_of(len)?;
        Ok(q)
    };
    b.push_rows(k.with("HALF", flag), binds, &row_bytes, rows, pw, grid)
}
