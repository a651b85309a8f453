//! Synthetic RESULTS from a known loss surface L(M, D) = a·M^(−α) + b·D^(−β) + E, for
//! tests and for trying `gidd fit` without a sweep. A constant-LR run of size M and batch
//! B·T then follows L(s) = (E + a·M^(−α)) + b·(B·T)^(−β)·s^(−β): exactly the per-run curve
//! form, so every stage of the analysis has a known answer.

use super::results::Run;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// The surface and how runs are sampled from it.
#[derive(Clone, Debug)]
pub struct Synth {
    pub a: f64,
    pub alpha: f64,
    pub b: f64,
    pub beta: f64,
    pub e: f64,
    /// Gaussian noise (nats) added to every logged ELBO.
    pub noise_sd: f64,
    pub seed: u64,
    /// Sequence length T.
    pub seq: u64,
    /// History points per run, log-spaced from step 1 to the last step.
    pub points: usize,
    /// What each run reports as its held-out text's bytes per token.
    pub bytes_per_token: f64,
    /// A learning-rate effect: every loss is multiplied by exp(lr_curv·ln²(lr/lr_opt)),
    /// so η* = lr_opt at every size, batch and budget (0: no effect).
    pub lr_curv: f64,
    pub lr_opt: f64,
}

impl Default for Synth {
    fn default() -> Synth {
        Synth {
            a: 100.0,
            alpha: 0.3,
            b: 150.0,
            beta: 0.35,
            e: 1.8,
            noise_sd: 0.0,
            seed: 0,
            seq: 256,
            points: 120,
            bytes_per_token: 4.0,
            lr_curv: 0.0,
            lr_opt: 1.0,
        }
    }
}

/// N = L·(12d² + 14d) + d (SCALING.md §1).
pub fn non_embedding_params(layers: u64, hidden: u64) -> f64 {
    let (l, d) = (layers as f64, hidden as f64);
    l * (12.0 * d * d + 14.0 * d) + d
}

/// One standard normal draw (Box–Muller; `rand` alone has no normal distribution).
pub fn normal(rng: &mut impl Rng) -> f64 {
    let u: f64 = rng.random::<f64>().max(1e-300);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

impl Synth {
    pub fn loss(&self, m: f64, d: f64) -> f64 {
        self.a * m.powf(-self.alpha) + self.b * d.powf(-self.beta) + self.e
    }

    /// A run of `noise` at (layers, hidden), batch and lr, `steps` long, cooled down over
    /// the `cooldown` fraction (a cooled run's ELBO is divided by `cd_gain` at the end).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        noise: &str,
        shift: f64,
        (layers, hidden): (u64, u64),
        batch: u64,
        lr: f64,
        steps: u64,
        cooldown: f64,
        rng: &mut impl Rng,
    ) -> Run {
        let n = non_embedding_params(layers, hidden);
        let t = self.seq as f64;
        let m = 6.0 * n + 12.0 * (layers * hidden) as f64 * t;
        let bt = (batch * self.seq) as f64;
        let history: Vec<(f64, f64)> = (0..self.points)
            .map(|i| {
                let s = (steps as f64)
                    .powf(i as f64 / (self.points - 1) as f64)
                    .round();
                let gain = if cooldown > 0.0 { 1.02 } else { 1.0 };
                let lr_factor = (self.lr_curv * (lr / self.lr_opt).ln().powi(2)).exp();
                let l = self.loss(m, s * bt) * lr_factor / gain;
                (s, l + self.noise_sd * normal(rng))
            })
            .collect();
        let last = history.last().map_or(f64::NAN, |p| p.1);
        Run {
            run: format!("{noise}-L{layers}-d{hidden}-B{batch}-lr{lr}-cd{cooldown}"),
            noise: noise.into(),
            shift,
            layers,
            hidden,
            heads: hidden / 64,
            seq: self.seq,
            vocab: 1000,
            n_params: n,
            flops_per_token: m,
            flops_per_token_6n: 6.0 * n,
            batch,
            lr,
            steps,
            warmup: 0,
            cooldown,
            tokens: steps as f64 * bt,
            flops: steps as f64 * bt * m,
            final_elbo: last,
            ema_elbo: last,
            bytes_per_token: Some(self.bytes_per_token),
            history,
        }
    }

    /// A ladder of sizes (L = d/32), one batch and lr, for `noise`.
    pub fn ladder(
        &self,
        noise: &str,
        shift: f64,
        hiddens: &[u64],
        batch: u64,
        steps: u64,
    ) -> Vec<Run> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        hiddens
            .iter()
            .map(|&d| self.run(noise, shift, (d / 32, d), batch, 1.0, steps, 0.0, &mut rng))
            .collect()
    }
}

/// A run as its RESULTS line (the keys `gidd sweep` writes).
pub fn to_jsonl(r: &Run) -> String {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["history"] = json!(r
        .history
        .iter()
        .map(|&(s, e)| json!([s, e]))
        .collect::<Vec<_>>());
    v.to_string()
}
