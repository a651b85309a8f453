//! Neural-net composites on fused ops: softmax, RMSNorm, RoPE, attention.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::Tensor;
use crate::op::{AttnSpec, Op};

impl Tensor {
    /// softmax over the last axis (f32, or f64 for f64).
    pub fn softmax(&self) -> Result<Tensor> {
        self.graph().apply1(Op::Softmax, &[self])
    }
    /// log-softmax over the last axis (f32, or f64 for f64).
    pub fn log_softmax(&self) -> Result<Tensor> {
        self.graph().apply1(Op::LogSoftmax, &[self])
    }

    /// RMSNorm with the (1 + w) weight: y = x * rsqrt(mean(x^2) + eps) * (1 + w),
    /// computed in f32 (f64 for f64) and returned in x's dtype.
    ///
    /// # Shapes
    /// x [.., n], w [n] -> [.., n]
    pub fn rms_norm(&self, w: &Tensor, eps: f32) -> Result<Tensor> {
        let acc = self.dtype().accum();
        let x = self.to(acc)?;
        let y = self
            .graph()
            .apply(Op::RmsNorm { eps }, &[&x, &w.to(acc)?])?;
        y[0].to(self.dtype())
    }

    /// neox RoPE: the first half of each head rotates with the second half.
    ///
    /// # Shapes
    /// self [B, L, H, D], cos and sin [B, L, D/2] (rows of the table already
    /// gathered by position id) -> [B, L, H, D]
    pub fn rope(&self, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let s = self.shape().to_vec();
        if s.len() != 4 {
            return Err(Error::shape("rope", "x must be [B, L, H, D]", &[&s]));
        }
        let rows = s[0] * s[1];
        let acc = self.dtype().accum();
        let x = self.to(acc)?.reshape(&[rows, s[2], s[3]])?; // (B*L, H, D)
        let c = cos.to(acc)?.reshape(&[rows, s[3] / 2])?;
        let sn = sin.to(acc)?.reshape(&[rows, s[3] / 2])?;
        let y = self.graph().apply1(Op::Rope, &[&x, &c, &sn])?;
        y.reshape(&s)?.to(self.dtype())
    }
}

/// Soft-capped masked attention, computed in f32 (f64 for f64).
///
/// s = scale q.k; s = c tanh(s / c) if softcap; masked scores = f32::MIN (so a
/// fully masked row is uniform, as in the reference); p = softmax(s); out = p v.
///
/// # Shapes
/// q [B,H,Lq,D], k and v [B,H,Lk,D], mask bool [B,Lq,Lk] -> [B,H,Lq,D]
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    spec: AttnSpec,
) -> Result<Tensor> {
    let dt = q.dtype();
    let acc = dt.accum();
    let (q, k, v) = (q.to(acc)?, k.to(acc)?, v.to(acc)?);
    let out = q.graph().apply(Op::Attention(spec), &[&q, &k, &v, mask])?;
    out[0].to(dt)
}

/// Attention with a learned key/value bias slot (SPEC.md section 1): k_bias and
/// v_bias [H, D] are prepended as key/value slot 0, which every query sees.
///
/// # Shapes
/// q [B,H,Lq,D], k and v [B,H,Lk,D], mask bool [B,Lq,Lk], k_bias and v_bias [H,D]
/// -> [B,H,Lq,D]
pub fn attention_with_bias_slot(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    bias: Option<(&Tensor, &Tensor)>,
    spec: AttnSpec,
) -> Result<Tensor> {
    let Some((kb, vb)) = bias else {
        return attention(q, k, v, mask, spec);
    };
    let (b, h, _, d) = (k.dim(0), k.dim(1), k.dim(2), k.dim(3));
    let lq = q.dim(2);
    let slot = |t: &Tensor| -> Result<Tensor> {
        t.to(k.dtype())?
            .reshape(&[1, h, 1, d])?
            .broadcast_to(&[b, h, 1, d]) // (B, H, 1, D)
    };
    let k = Tensor::concat(&[&slot(kb)?, k], 2)?; // (B, H, 1+Lk, D)
    let v = Tensor::concat(&[&slot(vb)?, v], 2)?;
    let ones = mask.graph().splat(1.0, &[b, lq, 1], DType::Bool);
    let mask = Tensor::concat(&[&ones, mask], 2)?; // (B, Lq, 1+Lk)
    attention(q, &k, &v, &mask, spec)
}

/// The GIDD loss's fused pass over the vocabulary: (kl, log p_t[z], log q_t[z]) per token.
///
/// # Shapes
/// logits [.., V] (any float, computed in f32, or f64 for f64), z and x [..] (int),
/// l [..] (float) -> three [..]
pub fn diffusion_kl(
    logits: &Tensor,
    z: &Tensor,
    x: &Tensor,
    l: &Tensor,
    spec: crate::op::MarginalSpec,
) -> Result<(Tensor, Tensor, Tensor)> {
    let acc = logits.dtype().accum();
    let lg = logits.to(acc)?;
    let o = logits
        .graph()
        .apply(Op::DiffusionKl(spec), &[&lg, z, x, &l.to(acc)?])?;
    Ok((o[0].clone(), o[1].clone(), o[2].clone()))
}
