//! The GIDD loss and ELBO per token (SPEC.md section 3), written as the plain
//! formula over the vocabulary.

use crate::schedule::{safe_log, Schedule};
use gidd_engine::{DType, Result, Tensor};

/// Per-token terms [B, L] (f32).
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
    let v = logits.dim(-1);
    let g = logits.graph();
    let loss_weights = s.loss_weights(l, z, x)?;
    let p_log_snr = s.p_log_snr(l)?;
    let elbo_weights = loss_weights.div(&p_log_snr.max_scalar(1e-12)?)?;
    let w = loss_weights.clip(0.0, 1e3)?;
    let we = elbo_weights.clip(0.0, 1e6)?;

    // The mask token is never a prediction: its logit is overwritten with -1e6.
    let is_mask = g
        .iota(logits.shape(), 2, DType::I32)?
        .eq_scalar(s.mask_id as f64)?;
    let logits = is_mask.select(&logits.full_like(-1e6), &logits.to(DType::F32)?)?;
    let x_hat = logits.softmax()?; // (B, L, V)
    let log_p = safe_log(&s.marginal(l, &x_hat)?)?;
    let log_q = safe_log(&s.marginal(l, &x.one_hot(v, DType::F32)?)?)?;
    let kl = log_q.exp()?.mul(&log_q.sub(&log_p)?)?.sum_last(false)?; // (B, L)
    let log_p_z = log_p.take_last(z)?;
    let log_q_z = log_q.take_last(z)?;
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
