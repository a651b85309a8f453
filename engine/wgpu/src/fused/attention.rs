//! Flash-style attention, forward and backward, as WGSL kernels (attention/attention.wgsl):
//! the `[B, H, Lq, Lk]` scores are never stored. The forward is one dispatch (on GPUs a
//! workgroup per 16 queries of a head, key tiles under an online softmax; on CPU adapters an
//! invocation per query row, the same arithmetic: crate::AttentionStrategy); the backward three: a pass over
//! the query rows (`D_i = do_i . o_i`, the rows whose keys are all masked, and `do`, `lse`
//! packed into one scratch buffer), then `dk, dv` (a workgroup per 16 keys, looping over the
//! queries) and `dq` (a workgroup per 16 queries, looping over the keys). Each gradient
//! element has one owner: deterministic, no atomics.
//!
//! The graph builds attention over f32 only (infer admits f32 or f64; the api converts bf16
//! around it) and f64 programs never load here, so f32 is what the kernels take. Head dims
//! up to [`DMAX`]; larger ones are refused at load.

use super::no_kernel;
use crate::error::{Result, WgpuError};
use crate::pipelines::Kernel;
use crate::plan::{grid, u32_of, Bind, Builder};
use gidd_engine::op::Op;
use gidd_engine::DType;
use gidd_kernels::wgsl::Module;

/// The largest head dim the kernels hold in workgroup memory (`DMAX` in the WGSL).
pub const DMAX: usize = 128;
/// Queries (or keys) per workgroup block and per streamed tile (`T` in the WGSL).
const T: usize = 16;

pub fn supports(_op: &Op, dtype: DType) -> bool {
    dtype == DType::F32
}

/// (B, H, Lq, Lk, D) of q [B,H,Lq,D] and k [B,H,Lk,D].
fn dims(b: &Builder, q: usize, k: usize) -> (usize, usize, usize, usize, usize) {
    let (qs, ks) = (b.shape(q), b.shape(k));
    (qs[0], qs[1], qs[2], ks[2], qs[3])
}

pub fn lower(b: &mut Builder, op: &Op, ins: &[usize], outs: &[usize]) -> Result<()> {
    let spec = match op {
        Op::Attention(s) | Op::AttentionBwd(s) => *s,
        _ => return Err(no_kernel(op)),
    };
    for &v in ins.iter().chain(outs) {
        let d = b.dtype(v);
        // operand 3 is the bool mask
        if d != DType::F32 && !(v == ins[3] && d == DType::Bool) {
            return Err(WgpuError::Unsupported(format!(
                "{}: the WGSL kernels take f32 values (and a bool mask), not {d}",
                op.name()
            )));
        }
    }
    let (bs, h, lq, lk, d) = dims(b, ins[0], ins[1]);
    if d > DMAX {
        return Err(WgpuError::Unsupported(format!(
            "{}: head dim {d} exceeds the WGSL kernels' {DMAX}",
            op.name()
        )));
    }
    let rows = bs * h * lq;
    // every index the kernels form stays below these (ST holds do and three words a row)
    for n in [rows * d + 3 * rows, bs * h * lk * d, bs * lq * lk] {
        u32_of(n)?;
    }
    let p = |blocks: usize| -> Result<Vec<u32>> {
        Ok(vec![
            u32_of(bs * h)?,
            u32_of(h)?,
            u32_of(lq)?,
            u32_of(lk)?,
            u32_of(d)?,
            spec.scale.to_bits(),
            spec.softcap.unwrap_or(1.0).to_bits(),
            spec.softcap.is_some().into(),
            u32_of(blocks)?,
        ])
    };
    let (qb, kb) = (lq.div_ceil(T), lk.div_ceil(T));
    let (q, k, v, mask) = (
        b.buf(ins[0])?,
        b.buf(ins[1])?,
        b.buf(ins[2])?,
        b.buf(ins[3])?,
    );
    if matches!(op, Op::Attention(_)) {
        let binds = vec![b.out(outs[0])?, b.out(outs[1])?, q, k, v, mask];
        if b.attention_rows {
            let kern = Kernel::new(Module::Attention, "attention_fwd_row", 4).outputs(2);
            return b.push(kern, binds, &p(qb)?, grid(rows.div_ceil(64))?);
        }
        let kern = Kernel::new(Module::Attention, "attention_fwd", 4).outputs(2);
        return b.push(kern, binds, &p(qb)?, grid(bs * h * qb)?);
    }
    backward(b, ins, outs, [q, k, v, mask], p(qb)?, p(kb)?)
}

/// The three backward dispatches; `pq`, `pk`: the parameters with query / key blocks.
fn backward(
    b: &mut Builder,
    ins: &[usize],
    outs: &[usize],
    [q, k, v, mask]: [Bind; 4],
    pq: Vec<u32>,
    pk: Vec<u32>,
) -> Result<()> {
    let (bs, h, lq, lk, d) = dims(b, ins[0], ins[1]);
    let rows = bs * h * lq;
    let (out, lse, dout) = (b.buf(ins[4])?, b.buf(ins[5])?, b.buf(ins[6])?);
    let st = b.scratch(0, ((rows * d + 3 * rows) * 4).max(4) as u64);
    let kern = Kernel::new(Module::Attention, "attention_rows", 4);
    b.push_1d(kern, vec![st, out, dout, lse, mask], &pq, rows)?;
    let kern = Kernel::new(Module::Attention, "attention_dkdv", 5).outputs(2);
    let binds = vec![b.out(outs[1])?, b.out(outs[2])?, q, k, v, mask, st];
    b.push(kern, binds, &pk, grid(bs * h * lk.div_ceil(T))?)?;
    // binding 2 is a dummy, so q, k, v, mask, ST sit where attention_dkdv has them
    let kern = Kernel::new(Module::Attention, "attention_dq", 6);
    let binds = vec![b.out(outs[0])?, Bind::Dummy, q, k, v, mask, st];
    b.push(kern, binds, &pq, grid(bs * h * lq.div_ceil(T))?)
}

#[cfg(test)]
mod tests {
    /// The launcher's block and head-dim limits are the kernel file's.
    #[test]
    fn sizes_match_the_wgsl() {
        let s = gidd_kernels::wgsl::Module::Attention.body();
        assert!(s.contains(&format!("const DMAX: u32 = {}u;", super::DMAX)));
        assert!(s.contains(&format!("const T: u32 = {}u;", super::T)));
    }
}
