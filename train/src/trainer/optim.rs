//! LaProp (default) and AdamW with the reference's four parameter groups, and
//! the warmup-stable-decay learning rate with a 1-sqrt cooldown (SPEC.md section 5).

use gidd_engine::{Result, Tensor};
use gidd_model::init::{role_of, ParamRole};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Bulk,
    Ln,
    Emb,
    Bias,
}

/// The reference's four groups, from the parameter's role (first match wins, as on its HF path).
pub fn group_of(name: &str) -> Group {
    match role_of(name) {
        ParamRole::Norm => Group::Ln,
        ParamRole::Embedding | ParamRole::Head => Group::Emb,
        ParamRole::Bias => Group::Bias,
        ParamRole::Weight => Group::Bulk,
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
    /// Cooldown length in updates: `cooldown_steps` below 1 is a fraction of `max_steps`,
    /// truncated as the reference's `int(max_training_steps * cooldown_steps)` does.
    pub fn cooldown_len(&self) -> usize {
        if self.cooldown_steps < 1.0 {
            (self.cooldown_steps * self.max_steps as f64) as usize
        } else {
            self.cooldown_steps as usize
        }
    }
    /// The schedule's factor at the update's 0-based count k, as the reference's
    /// `optax.join_schedules([linear 0 -> 1 over warmup, constant 1, 1 - sqrt(k'/cooldown)],
    /// [warmup, max_steps - cooldown])`: the later boundary wins where they overlap, and the
    /// cooldown's k' stops at its length (the factor stays 0 past the last step).
    pub fn lr_factor(&self, k: usize) -> f64 {
        let cd = self.cooldown_len() as i64;
        let cd_start = self.max_steps as i64 - cd;
        let k = k as i64;
        if k >= cd_start {
            let kc = (k - cd_start).min(cd);
            1.0 - (kc as f64 / cd.max(1) as f64).sqrt()
        } else if k < self.warmup_steps as i64 {
            k as f64 / self.warmup_steps as f64
        } else {
            1.0
        }
    }
    /// Debiased betas b_t = 1 - (1 - b)/(1 - b^t) at step t (1-based).
    pub fn betas(&self, t: usize) -> (f64, f64) {
        let deb = |b: f64| 1.0 - (1.0 - b) / (1.0 - b.powi(t as i32));
        (deb(self.beta1), deb(self.beta2))
    }
    /// The step program's `SCALARS` inputs for the update with 0-based count k (update
    /// k + 1), in their order: bulk lr, aux lr (ln, bias, emb), debiased b1, b2. The
    /// schedule is read at k, the betas debiased at k + 1 (optax: the first update has
    /// lr(0), 0 during warmup, while its moments move with b1 = b2 = 0).
    pub fn step_scalars(&self, k: usize) -> [f64; 4] {
        let f = self.lr_factor(k);
        let (b1t, b2t) = self.betas(k + 1);
        [
            self.group_lr_wd(Group::Bulk).0 * f,
            self.group_lr_wd(Group::Emb).0 * f,
            b1t,
            b2t,
        ]
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
