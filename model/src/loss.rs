//! The GIDD loss and ELBO per token (SPEC.md section 3), written as the plain
//! formula over the vocabulary.

use crate::schedule::Schedule;
use gidd_engine::{Result, Tensor};

/// Per-token terms [B, L] (f32, f64 in an f64 run: the logits' dtype).
pub struct LossTerms {
    /// clip(w) KL + beta_is_div clip(w) IS
    pub loss: Tensor,
    /// clip(w_e) (KL + IS)
    pub elbo: Tensor,
    pub kl_loss: Tensor,
    pub is_loss: Tensor,
    /// raw (unclipped) loss weights
    pub loss_weights: Tensor,
    /// raw (unclipped) ELBO weights
    pub elbo_weights: Tensor,
    pub p_log_snr: Tensor,
}

/// The GIDD loss of logits [B, L, V] for noisy ids z, labels x, log-SNR l [B, L].
pub fn gidd_loss(
    s: &Schedule,
    logits: &Tensor,
    z: &Tensor,
    x: &Tensor,
    l: &Tensor,
    beta_is_div: f64,
) -> Result<LossTerms> {
    let l = &l.to(logits.dtype())?;
    let loss_weights = s.loss_weights(l, z, x)?;
    let p_log_snr = s.p_log_snr(l)?;
    let elbo_weights = loss_weights.div(&p_log_snr.max_scalar(1e-12)?)?;
    let w = loss_weights.clip(0.0, 1e3)?;
    let we = elbo_weights.clip(0.0, 1e6)?;

    // The pass over the vocabulary is one fused op (mask logit overwritten with -1e6,
    // softmax, marginals, safe logs, KL, values at z); its decomposition is the plain formula.
    let spec = gidd_engine::op::MarginalSpec {
        mask_id: s.mask_id,
        min_log_snr: s.min_log_snr as f32,
        max_log_snr: s.max_log_snr as f32,
        scale: s.scale as f32,
        shift: s.shift as f32,
    };
    let (kl, log_p_z, log_q_z) = gidd_engine::api::diffusion_kl(logits, z, x, l, spec)?; // (B, L)
    let ratio = log_q_z.exp()?.div(&log_p_z.exp()?.add_scalar(1e-12)?)?;
    let is = ratio.sub(&log_q_z.sub(&log_p_z)?)?.add_scalar(-1.0)?;
    let kl_loss = w.mul(&kl)?;
    let is_loss = w.mul(&is)?;
    let loss = kl_loss.add(&is_loss.mul_scalar(beta_is_div)?)?;
    let elbo = we.mul(&kl)?.add(&we.mul(&is)?)?;
    Ok(LossTerms {
        loss,
        elbo,
        kl_loss,
        is_loss,
        loss_weights,
        elbo_weights,
        p_log_snr,
    })
}
