//! The mixing schedule (SPEC.md section 2): linear rate, hybrid mixing
//! distribution, and the loss/ELBO weights, as graph functions of the log-SNR.

use gidd_engine::{Result, Tensor};

pub const BOS: u32 = 0;
pub const EOS: u32 = 1;
pub const PAD: u32 = 2;
pub const MASK: u32 = 3;

/// Schedule constants. `scale`/`shift` are the hybrid distribution's a and b
/// (shift = noise_type: +1000 uniform, -1000 masked).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub min_log_snr: f64,
    pub max_log_snr: f64,
    pub scale: f64,
    pub shift: f64,
    pub vocab_size: usize,
    pub mask_id: u32,
}

pub use gidd_engine::decompose::safe_log;

impl Schedule {
    /// alpha(l) = sigmoid(clip(l, min, max))
    pub fn alpha(&self, l: &Tensor) -> Result<Tensor> {
        l.clip(self.min_log_snr, self.max_log_snr)?.sigmoid()
    }

    /// beta_u(l) = sigmoid(a l + b): the uniform share of the mixing distribution.
    pub fn beta_u(&self, l: &Tensor) -> Result<Tensor> {
        let x = if self.scale == 1.0 {
            l.clone()
        } else {
            l.mul_scalar(self.scale)?
        };
        x.add_scalar(self.shift)?.sigmoid()
    }

    /// 1/(V-1) on non-mask ids, 0 on the mask (as f32, the reference's uniform_vec).
    fn uniform_value(&self) -> f64 {
        (1.0 / (self.vocab_size as f64 - 1.0)) as f32 as f64
    }

    /// pi(l)[z] = beta_u (1 - [z = m]) / (V - 1) + (1 - beta_u) [z = m]
    pub fn pi_at(&self, l: &Tensor, z: &Tensor) -> Result<Tensor> {
        let beta = self.beta_u(l)?;
        let m = z.eq_scalar(self.mask_id as f64)?.to(l.dtype())?;
        let a = beta
            .mul(&m.rsub_scalar(1.0)?)?
            .mul_scalar(1.0 / (self.vocab_size as f64 - 1.0))?;
        a.add(&beta.rsub_scalar(1.0)?.mul(&m)?)
    }

    /// pi'(l)[z] = a beta_u (1 - beta_u) (u - e_mask)[z]
    pub fn pi_prime_at(&self, l: &Tensor, z: &Tensor) -> Result<Tensor> {
        let beta = self.beta_u(l)?;
        let ap = beta.mul(&beta.rsub_scalar(1.0)?)?.mul_scalar(self.scale)?;
        let m = z.eq_scalar(self.mask_id as f64)?;
        let uz = m.select(&ap.full_like(-1.0), &ap.full_like(self.uniform_value()))?;
        ap.mul(&uz)
    }

    /// p(l) = sigmoid(l)(1 - sigmoid(l)), the linear rate's density (unclipped l).
    pub fn p_log_snr(&self, l: &Tensor) -> Result<Tensor> {
        let s = l.sigmoid()?;
        s.mul(&s.rsub_scalar(1.0)?)
    }

    /// Raw loss weights (pi_z - pi'_z) / max(pi_z + e^l [z = x], 1e-8), before the loss's clip.
    pub fn loss_weights(&self, l: &Tensor, z: &Tensor, x: &Tensor) -> Result<Tensor> {
        let pz = self.pi_at(l, z)?;
        let ppz = self.pi_prime_at(l, z)?;
        let delta = z.eq(x)?.to(l.dtype())?;
        let den = pz.add(&l.exp()?.mul(&delta)?)?.max_scalar(1e-8)?;
        pz.sub(&ppz)?.div(&den)
    }

    /// Raw ELBO weights: loss weights / max(p(l), 1e-12).
    pub fn elbo_weights(&self, l: &Tensor, z: &Tensor, x: &Tensor) -> Result<Tensor> {
        self.loss_weights(l, z, x)?
            .div(&self.p_log_snr(l)?.max_scalar(1e-12)?)
    }

    /// log-SNR of time t under the linear rate: clip(safe_log(1 - t) - safe_log(t), min, max).
    pub fn log_snr_from_time(&self, t: &Tensor) -> Result<Tensor> {
        let a = t.rsub_scalar(1.0)?;
        safe_log(&a)?
            .sub(&safe_log(&a.rsub_scalar(1.0)?)?)?
            .clip(self.min_log_snr, self.max_log_snr)
    }

    /// t range of the linear rate: [1 - alpha(max), 1 - alpha(min)].
    pub fn t_range(&self) -> (f64, f64) {
        let sig = |x: f64| (1.0 / (1.0 + (-x).exp())) as f32 as f64;
        (1.0 - sig(self.max_log_snr), 1.0 - sig(self.min_log_snr))
    }
}
