//! Decompositions of fused ops into primitives: each fused op's numerical
//! reference, what the StableHLO emitter writes, and what autograd
//! differentiates when a fused op has no backward rule of its own.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::Tensor;
use crate::op::{AttnSpec, DotDims, Op};

/// The outputs of `op` on `ins`, built from primitives only.
pub fn decompose(op: &Op, ins: &[Tensor]) -> Result<Vec<Tensor>> {
    match op {
        Op::Softmax => Ok(vec![softmax(&ins[0])?]),
        Op::LogSoftmax => {
            let x = &ins[0];
            let m = x.max(&[x.rank() - 1], true)?;
            let z = x.sub(&m)?;
            let lse = z.exp()?.sum_last(true)?.log()?;
            Ok(vec![z.sub(&lse)?])
        }
        Op::SoftmaxBwd => {
            let (y, dy) = (&ins[0], &ins[1]);
            let s = dy.mul(y)?.sum_last(true)?;
            Ok(vec![y.mul(&dy.sub(&s)?)?])
        }
        Op::RmsNorm { eps } => {
            let (x, w) = (&ins[0], &ins[1]);
            let ms = x.square()?.mean(&[x.rank() - 1], false)?;
            let rstd = ms.add_scalar(*eps as f64)?.rsqrt()?; // (..)
            let rs = rstd.reshape(&[rstd.shape(), &[1]].concat())?;
            let y = x.mul(&rs)?.mul(&w.add_scalar(1.0)?)?;
            Ok(vec![y, rstd])
        }
        Op::RmsNormBwd => {
            let (x, w, rstd, dy) = (&ins[0], &ins[1], &ins[2], &ins[3]);
            let n = x.dim(-1) as f64;
            let rs = rstd.reshape(&[rstd.shape(), &[1]].concat())?; // (.., 1)
            let xhat = x.mul(&rs)?;
            let g = dy.mul(&w.add_scalar(1.0)?)?; // dL/dxhat
            let dot = g.mul(&xhat)?.sum_last(true)?.mul_scalar(1.0 / n)?;
            let dx = g.sub(&xhat.mul(&dot)?)?.mul(&rs)?;
            let lead: Vec<usize> = (0..x.rank() - 1).collect();
            let dw = dy.mul(&xhat)?.sum(&lead, false)?;
            Ok(vec![dx, dw])
        }
        Op::Rope => Ok(vec![rope(&ins[0], &ins[1], &ins[2], false)?]),
        Op::RopeBwd => Ok(vec![rope(&ins[0], &ins[1], &ins[2], true)?]),
        Op::Attention(spec) => {
            let (s, _) = attention_scores(&ins[0], &ins[1], &ins[3], spec)?;
            let m = s.max(&[3], true)?;
            let e = s.sub(&m)?.exp()?;
            let z = e.sum(&[3], true)?;
            let p = e.div(&z)?;
            let out = bmm(&p, &ins[2], false)?;
            let lse = z.log()?.add(&m)?.reshape(&ins[0].shape()[..3])?;
            Ok(vec![out, lse])
        }
        Op::AttentionBwd(spec) => {
            let (q, k, v, mask, out, lse, dout) = (
                &ins[0], &ins[1], &ins[2], &ins[3], &ins[4], &ins[5], &ins[6],
            );
            let (s, capped) = attention_scores(q, k, mask, spec)?;
            // P is recomputed as softmax(s), not exp(s - lse): on a fully masked row
            // lse = f32::MIN + log Lk rounds to f32::MIN and would lose the 1/Lk.
            let _ = lse;
            let p = softmax(&s)?; // (B, H, Lq, Lk)
            let dv = bmm_tn(&p, dout)?; // P^T dO
            let dp = bmm(dout, v, true)?; // dO V^T
            let dsum = dout.mul(out)?.sum(&[3], true)?;
            let mut ds = p.mul(&dp.sub(&dsum)?)?;
            if let Some(t) = capped {
                ds = ds.mul(&t.square()?.rsub_scalar(1.0)?)?; // d tanh
            }
            let m4 = mask
                .reshape(&[mask.dim(0), 1, mask.dim(1), mask.dim(2)])?
                .broadcast_to(ds.shape())?;
            ds = m4
                .select(&ds, &ds.full_like(0.0))?
                .mul_scalar(spec.scale as f64)?;
            let dq = bmm(&ds, k, false)?;
            let dk = bmm_tn(&ds, q)?;
            Ok(vec![dq, dk, dv])
        }
        Op::DiffusionKl(spec) => diffusion_kl(spec, &ins[0], &ins[1], &ins[2], &ins[3]),
        Op::DiffusionKlBwd(spec) => Ok(vec![diffusion_kl_bwd(
            spec, &ins[0], &ins[1], &ins[2], &ins[3], &ins[4], &ins[5],
        )?]),
        Op::SampleStep(_) => Err(Error::Msg(
            "sample_step (a sequential f64 categorical draw) has no exact decomposition \
             into primitives: run it on an executor with a sample_step kernel (cpu, wgpu with \
             f64 shaders), or sample on the host"
                .into(),
        )),
        other => Err(Error::Msg(format!(
            "{} is a primitive: nothing to decompose",
            other.name()
        ))),
    }
}

fn softmax(x: &Tensor) -> Result<Tensor> {
    let m = x.max(&[x.rank() - 1], true)?;
    let e = x.sub(&m)?.exp()?;
    e.div(&e.sum_last(true)?)
}

fn bdims(contract_l: usize, contract_r: usize) -> DotDims {
    DotDims {
        lhs_batch: vec![0, 1],
        rhs_batch: vec![0, 1],
        lhs_contract: vec![contract_l],
        rhs_contract: vec![contract_r],
    }
}

/// [B,H,M,K] x [B,H,K,N] (or x [B,H,N,K] when `rhs_t`).
fn bmm(a: &Tensor, b: &Tensor, rhs_t: bool) -> Result<Tensor> {
    a.dot_general(b, bdims(3, if rhs_t { 3 } else { 2 }))
}

/// A^T B over the third dim: [B,H,K,M] x [B,H,K,N] -> [B,H,M,N].
fn bmm_tn(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.dot_general(b, bdims(2, 2))
}

/// Masked, soft-capped scores and (when capped) tanh(s/c) for the backward.
fn attention_scores(
    q: &Tensor,
    k: &Tensor,
    mask: &Tensor,
    spec: &AttnSpec,
) -> Result<(Tensor, Option<Tensor>)> {
    let mut s = bmm(q, k, true)?.mul_scalar(spec.scale as f64)?; // (B, H, Lq, Lk)
    let mut capped = None;
    if let Some(c) = spec.softcap {
        let t = s.mul_scalar(1.0 / c as f64)?.tanh()?;
        s = t.mul_scalar(c as f64)?;
        capped = Some(t);
    }
    let m4 = mask
        .reshape(&[mask.dim(0), 1, mask.dim(1), mask.dim(2)])?
        .broadcast_to(s.shape())?;
    let fill = s.full_like(DType::F32.min_value());
    Ok((m4.select(&s, &fill)?, capped))
}

/// neox rotation of x [R, H, D] by cos/sin [R, D/2]; `transpose` rotates backwards.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, transpose: bool) -> Result<Tensor> {
    let (r, d) = (x.dim(0), x.dim(2));
    let half = d / 2;
    let x1 = x.narrow(2, 0, half)?;
    let x2 = x.narrow(2, half, d)?;
    let c = cos.reshape(&[r, 1, half])?;
    let s = sin.reshape(&[r, 1, half])?;
    let s = if transpose { s.neg()? } else { s };
    let o1 = x1.mul(&c)?.sub(&x2.mul(&s)?)?;
    let o2 = x2.mul(&c)?.add(&x1.mul(&s)?)?;
    Tensor::concat(&[&o1, &o2], 2)
}

/// log(y) floored at log(f32 tiny) = -87.3 (the reference's safe_log), so 0 log 0 = 0.
pub fn safe_log(y: &Tensor) -> Result<Tensor> {
    let tiny = f32::MIN_POSITIVE as f64;
    let pos = y.compare(&y.full_like(0.0), crate::op::CmpOp::Gt)?;
    let l = y.max_scalar(tiny)?.log()?;
    pos.select(&l, &l.full_like(tiny.ln()))
}

/// The per-entry marginals of the GIDD loss (SPEC.md section 3): logits[mask] = -1e6,
/// x_hat = softmax; p = alpha x_hat + (1-alpha) pi; q = alpha onehot(x) + (1-alpha) pi.
struct Marginals {
    is_mask: Tensor,
    x_hat: Tensor,
    /// (.., 1)
    alpha: Tensor,
    p: Tensor,
    q: Tensor,
}

fn marginals(
    s: &crate::op::MarginalSpec,
    logits: &Tensor,
    x: &Tensor,
    l: &Tensor,
) -> Result<Marginals> {
    let v = logits.dim(-1);
    let g = logits.graph();
    let r = logits.rank();
    let is_mask = g
        .iota(logits.shape(), r - 1, DType::I32)?
        .eq_scalar(s.mask_id as f64)?;
    let lg = is_mask.select(&logits.full_like(-1e6), logits)?;
    let x_hat = softmax(&lg)?;
    let col = [l.shape(), &[1]].concat();
    let alpha = l
        .clip(s.min_log_snr as f64, s.max_log_snr as f64)?
        .sigmoid()?
        .reshape(&col)?; // (.., 1)
    let beta = l
        .mul_scalar(s.scale as f64)?
        .add_scalar(s.shift as f64)?
        .sigmoid()?
        .reshape(&col)?;
    let u = (1.0 / (v as f64 - 1.0)) as f32 as f64;
    let pi = is_mask.select(
        &beta.rsub_scalar(1.0)?.broadcast_to(logits.shape())?,
        &beta.mul_scalar(u)?.broadcast_to(logits.shape())?,
    )?;
    let rest = alpha.rsub_scalar(1.0)?.mul(&pi)?;
    let p = alpha.mul(&x_hat)?.add(&rest)?;
    let q = alpha.mul(&x.one_hot(v, logits.dtype())?)?.add(&rest)?;
    Ok(Marginals {
        is_mask,
        x_hat,
        alpha,
        p,
        q,
    })
}

/// The GIDD loss's pass over the vocabulary written out (SPEC.md section 3):
/// kl = sum exp(log q)(log q - log p) with safe logs; also log p[z], log q[z].
fn diffusion_kl(
    s: &crate::op::MarginalSpec,
    logits: &Tensor,
    z: &Tensor,
    x: &Tensor,
    l: &Tensor,
) -> Result<Vec<Tensor>> {
    let m = marginals(s, logits, x, l)?;
    let (lp, lq) = (safe_log(&m.p)?, safe_log(&m.q)?);
    let kl = lq.exp()?.mul(&lq.sub(&lp)?)?.sum_last(false)?;
    Ok(vec![kl, lp.take_last(z)?, lq.take_last(z)?])
}

/// d logits of (kl, log p[z]) for cotangents (g_kl, g_lpz), the gradient of
/// [`diffusion_kl`] written out: with g_v = alpha (-g_kl exp(log q_v) + [v = z] g_lpz) / p_v
/// where p_v > tiny (safe_log's floor stops the gradient below) and 0 elsewhere,
/// d logits_v = x_hat_v (g_v - sum_u g_u x_hat_u), and 0 at the mask id (its logit is overwritten).
///
/// Autograd of the forward's decomposition gives the same values in exact arithmetic, but
/// it also carries the gradient through the softmax's max subtraction (zero, as a sum of
/// cancelling terms) and through the chain of divisions: in f32 that is 16x (cpu) to 45x
/// (XLA) the error of this form against f64 on the tiny preset (relative L2 2e-6 and
/// 5.7e-6 vs 1.2e-7 at step 1).
fn diffusion_kl_bwd(
    s: &crate::op::MarginalSpec,
    logits: &Tensor,
    z: &Tensor,
    x: &Tensor,
    l: &Tensor,
    g_kl: &Tensor,
    g_lpz: &Tensor,
) -> Result<Tensor> {
    let v = logits.dim(-1);
    let m = marginals(s, logits, x, l)?;
    let col = |t: &Tensor| t.reshape(&[t.shape(), &[1]].concat());
    let tiny = f32::MIN_POSITIVE as f64;
    let eq = safe_log(&m.q)?.exp()?;
    let num = z
        .one_hot(v, logits.dtype())?
        .mul(&col(g_lpz)?)?
        .sub(&eq.mul(&col(g_kl)?)?)?;
    // The floor keeps the unselected branch finite (no 0 * inf in a second derivative).
    let gv = m.alpha.mul(&num)?.div(&m.p.max_scalar(tiny)?)?;
    let live = m.p.compare(&m.p.full_like(tiny), crate::op::CmpOp::Gt)?;
    let gv = live.select(&gv, &gv.full_like(0.0))?;
    let dot = gv.mul(&m.x_hat)?.sum_last(true)?;
    let d = m.x_hat.mul(&gv.sub(&dot)?)?;
    m.is_mask.select(&d.full_like(0.0), &d)
}
