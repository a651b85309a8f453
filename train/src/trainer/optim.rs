//! LaProp (default) and AdamW with the reference's four parameter groups, and
//! the warmup-stable-decay learning rate with a 1-sqrt cooldown (SPEC.md section 5).

use gidd_engine::{Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Bulk,
    Ln,
    Emb,
    Bias,
}

/// First match wins, as on the reference's HF path.
pub fn group_of(name: &str) -> Group {
    if name.contains("norm") {
        Group::Ln
    } else if name.contains("embed_tokens") {
        Group::Emb
    } else if name.contains("bias") {
        Group::Bias
    } else if name.contains("lm_head") {
        Group::Emb
    } else {
        Group::Bulk
    }
}

#[derive(Clone, Debug)]
pub struct OptimOpts {
    pub laprop: bool,
    pub lr: f64,
    pub aux_lr_factor: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub adam_eps: f64,
    pub weight_decay: f64,
    pub ln_wd: f64,
    pub bias_wd: f64,
    pub hidden: usize,
    pub layers: usize,
    pub warmup_steps: usize,
    pub cooldown_steps: f64,
    pub max_steps: usize,
}

impl OptimOpts {
    /// (peak lr, weight decay) of a group: bulk lr/d with decay wd*d; others lr*aux.
    pub fn group_lr_wd(&self, g: Group) -> (f64, f64) {
        let d = self.hidden as f64;
        match g {
            Group::Bulk => (self.lr / d, self.weight_decay * d),
            Group::Ln => (self.lr * self.aux_lr_factor, self.ln_wd),
            Group::Bias => (self.lr * self.aux_lr_factor, self.bias_wd),
            Group::Emb => (self.lr * self.aux_lr_factor, 0.0),
        }
    }
    pub fn eps(&self) -> f64 {
        self.adam_eps / self.hidden as f64 / self.layers as f64
    }
    /// The schedule's factor at step k (0-based): linear warmup, constant, 1 - sqrt cooldown.
    pub fn lr_factor(&self, k: usize) -> f64 {
        let cd = if self.cooldown_steps < 1.0 {
            (self.cooldown_steps * self.max_steps as f64).round()
        } else {
            self.cooldown_steps
        } as usize;
        let cd_start = self.max_steps.saturating_sub(cd);
        if k < self.warmup_steps {
            k as f64 / self.warmup_steps as f64
        } else if cd > 0 && k >= cd_start {
            1.0 - ((k - cd_start) as f64 / cd as f64).sqrt()
        } else {
            1.0
        }
    }
    /// Debiased betas b_t = 1 - (1 - b)/(1 - b^t) at step t (1-based).
    pub fn betas(&self, t: usize) -> (f64, f64) {
        let deb = |b: f64| 1.0 - (1.0 - b) / (1.0 - b.powi(t as i32));
        (deb(self.beta1), deb(self.beta2))
    }
}

/// One parameter's update in the graph. Scalars lr, b1t, b2t are graph inputs.
/// LaProp: nu = b2 nu + (1-b2) g^2; mu = b1 mu + (1-b1) g / (sqrt(nu) + eps); p -= lr (mu + wd p).
/// AdamW: mu = b1 mu + (1-b1) g; nu likewise; p -= lr (mu / (sqrt(nu) + eps) + wd p).
#[allow(clippy::too_many_arguments)]
pub fn update(
    laprop: bool,
    p: &Tensor,
    g: &Tensor,
    mu: &Tensor,
    nu: &Tensor,
    lr: &Tensor,
    b1t: &Tensor,
    b2t: &Tensor,
    eps: f64,
    wd: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let nu2 = b2t
        .mul(nu)?
        .add(&b2t.rsub_scalar(1.0)?.mul(&g.square()?)?)?;
    let den = nu2.sqrt()?.add_scalar(eps)?;
    let (mu2, step) = if laprop {
        let mu2 = b1t
            .mul(mu)?
            .add(&b1t.rsub_scalar(1.0)?.mul(&g.div(&den)?)?)?;
        (mu2.clone(), mu2)
    } else {
        let mu2 = b1t.mul(mu)?.add(&b1t.rsub_scalar(1.0)?.mul(g)?)?;
        let s = mu2.div(&den)?;
        (mu2, s)
    };
    let step = if wd != 0.0 {
        step.add(&p.mul_scalar(wd)?)?
    } else {
        step
    };
    let p2 = p.sub(&lr.mul(&step)?)?;
    Ok((p2, mu2, nu2))
}
