//! Sampling from the model's predictions on the host, in f64: tempering, top-k/top-p,
//! categorical draws and the ancestral posterior (SPEC.md section 6).

use super::pi_vec;
use crate::schedule::MASK;
use crate::GiddConfig;
use gidd_engine::rng::HostRng;

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A position's logits in f64 with the mask id at -inf: the samplers never predict it.
pub fn predictable_logits(row: &[f32]) -> Vec<f64> {
    let mut l: Vec<f64> = row.iter().map(|&y| y as f64).collect();
    l[MASK as usize] = f64::NEG_INFINITY;
    l
}

/// Tempered, top-k/top-p filtered probabilities in f64 (one-hot argmax at temperature 0).
pub fn probs_with_topk_topp(
    logits: &[f64],
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
) -> Vec<f64> {
    let v = logits.len();
    if temperature == 0.0 {
        let mut best = 0;
        for i in 1..v {
            if logits[i] > logits[best] {
                best = i;
            }
        }
        let mut p = vec![0.0; v];
        p[best] = 1.0;
        return p;
    }
    let mut x: Vec<f64> = logits.iter().map(|l| l / temperature).collect();
    if let Some(k) = top_k.filter(|&k| k > 0 && k < v) {
        let mut s = x.clone();
        s.sort_by(|a, b| b.total_cmp(a));
        let kth = s[k - 1];
        x.iter_mut().for_each(|y| {
            if *y < kth {
                *y = f64::NEG_INFINITY
            }
        });
    }
    let softmax = |x: &[f64]| -> Vec<f64> {
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = x.iter().map(|y| (y - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|y| y / z).collect()
    };
    if let Some(p) = top_p.filter(|&p| p > 0.0 && p < 1.0) {
        let mut idx: Vec<usize> = (0..v).collect();
        idx.sort_by(|&a, &b| x[b].total_cmp(&x[a]));
        let sorted: Vec<f64> = idx.iter().map(|&i| x[i]).collect();
        let sp = softmax(&sorted);
        let mut cum = 0.0;
        let mut keep = vec![true; v];
        for r in 0..v {
            // A token is removed when the mass before it already exceeds p (the first always stays).
            if r > 0 && cum > p {
                keep[r] = false;
            }
            cum += sp[r];
        }
        for r in 0..v {
            if !keep[r] {
                x[idx[r]] = f64::NEG_INFINITY;
            }
        }
    }
    softmax(&x)
}

/// A categorical draw in f64 (f32 draws would lower the effective temperature).
pub fn draw(p: &[f64], rng: &mut HostRng) -> usize {
    draw_u(p, rng.next_f64())
}

/// A categorical draw in f64 with the uniform `u` in [0, 1).
pub fn draw_u(p: &[f64], u: f64) -> usize {
    let total: f64 = p.iter().sum();
    let mut u = u * total;
    for (i, &q) in p.iter().enumerate() {
        if u < q {
            return i;
        }
        u -= q;
    }
    p.iter().rposition(|&q| q > 0.0).unwrap_or(0)
}

/// The ancestral posterior p(z_s | z_t, x_hat) = q_s (a_t/a_s 1[z_t] + beta_pi[z_t]) / q_t[z_t]
/// (SPEC.md section 6) between log-SNRs l_t and l_s, in f64.
pub struct Posterior {
    a_t: f64,
    a_s: f64,
    pi_t: Vec<f32>,
    pi_s: Vec<f32>,
}

impl Posterior {
    pub fn new(cfg: &GiddConfig, lt: f64, ls: f64) -> Posterior {
        Posterior {
            a_t: sigmoid(lt),
            a_s: sigmoid(ls),
            pi_t: pi_vec(cfg, lt, MASK as usize),
            pi_s: pi_vec(cfg, ls, MASK as usize),
        }
    }

    /// p(z_s = k) for every k, unnormalised only by rounding.
    pub fn probs(&self, xh: &[f64], zt: usize) -> Vec<f64> {
        let c = self.at(xh, zt);
        (0..xh.len()).map(|k| self.prob(xh, c, k)).collect()
    }

    /// The terms that depend on z_t only: (beta_pi[z_t], q_t[z_t]).
    fn at(&self, xh: &[f64], zt: usize) -> (usize, f64, f64) {
        let a_t = self.a_t;
        let bpz = self.beta_pi(zt);
        let qtz = a_t * xh[zt] + (1.0 - a_t) * self.pi_t[zt] as f64;
        (zt, bpz, qtz)
    }

    /// Whether `draw(xh, zt, u)` is `zt` for every `xh` and `u`: true when
    /// beta_pi[z_t] = 0 (a token already denoised under masked noise, whose pi puts no mass
    /// on it). Then every k != z_t has p = (q_s * 0 / q_t[z_t]).max(0) = 0 (NaN from 0/0
    /// also maxes to 0), so the draw lands on z_t or, with p[z_t] not positive, falls back
    /// to it.
    pub fn keeps(&self, zt: usize) -> bool {
        self.beta_pi(zt) == 0.0
    }

    /// beta_pi[z_t] = (1 - a_t) pi_t[z_t] - (a_t / a_s)(1 - a_s) pi_s[z_t].
    fn beta_pi(&self, zt: usize) -> f64 {
        let (a_t, a_s) = (self.a_t, self.a_s);
        (1.0 - a_t) * self.pi_t[zt] as f64 - (a_t / a_s) * (1.0 - a_s) * self.pi_s[zt] as f64
    }

    fn prob(&self, xh: &[f64], (zt, bpz, qtz): (usize, f64, f64), k: usize) -> f64 {
        let a_s = self.a_s;
        let qs = a_s * xh[k] + (1.0 - a_s) * self.pi_s[k] as f64;
        let qts = if k == zt { self.a_t / a_s } else { 0.0 } + bpz;
        (qs * qts / qtz).max(0.0)
    }

    /// A draw from p(z_s) with uniform `u`, without storing p (two passes over V).
    pub fn draw(&self, xh: &[f64], zt: usize, u: f64) -> usize {
        let c = self.at(xh, zt);
        let v = xh.len();
        let total: f64 = (0..v).map(|k| self.prob(xh, c, k)).sum();
        let mut u = u * total;
        let mut last = zt;
        for k in 0..v {
            let q = self.prob(xh, c, k);
            if q > 0.0 {
                if u < q {
                    return k;
                }
                u -= q;
                last = k;
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gidd_engine::{CpuExecutor, DType, Executor, Graph, HostTensor, Program};

    fn cfg(shift: f64) -> GiddConfig {
        GiddConfig::from_json(serde_json::json!({
            "vocab_size": 29, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 8, "noise_type": shift,
        }))
        .expect("config")
    }

    fn softmax_masked(l: &[f64]) -> Vec<f64> {
        let mut l = l.to_vec();
        l[MASK as usize] = f64::NEG_INFINITY;
        probs_with_topk_topp(&l, 1.0, None, None)
    }

    /// The host posterior generation draws from is the graph function the golden audit
    /// checks against the reference (`crate::sample::ancestral_probs`).
    #[test]
    fn host_posterior_equals_the_audited_graph_posterior() {
        let mut rng = HostRng::new(std::process::id() as u64);
        for shift in [-1000.0, 0.0, 2.5, 1000.0] {
            let c = cfg(shift);
            let (n, v) = (6, c.vocab_size);
            let (lt, ls) = (-3.0 + 6.0 * rng.next_f64(), 0.0);
            let ls = ls + lt + 0.1 + 2.0 * rng.next_f64();
            let logits: Vec<f32> = (0..n * v).map(|_| (3.0 * rng.normal()) as f32).collect();
            // Under pure uniform noise a mask z_t has probability 0 under q_t: the posterior
            // is undefined there (0/0), so it is not drawn.
            let z: Vec<i32> = (0..n)
                .map(|_| loop {
                    let t = rng.below(v as u32);
                    if shift < 1000.0 || t != MASK {
                        break t as i32;
                    }
                })
                .collect();
            let g = Graph::new();
            let lg = g.input("logits", &[1, n, v], DType::F32);
            let zt = g.input("z", &[1, n], DType::I32);
            let (_, p) = crate::sample::ancestral_probs(&c, &lg, &zt, lt, ls).expect("graph");
            let prog = Program::compile(&[p], &["logits", "z"]).expect("compile");
            let mut lp = CpuExecutor.load(&prog).expect("load");
            let ins = [
                HostTensor::f32(vec![1, n, v], logits.clone()).expect("logits"),
                HostTensor::i32(vec![1, n], z.clone()).expect("z"),
            ];
            let want = CpuExecutor.run(&mut lp, &[&ins[0], &ins[1]]).expect("run")[0].to_f64_vec();
            let post = Posterior::new(&c, lt, ls);
            for i in 0..n {
                let l: Vec<f64> = logits[i * v..(i + 1) * v]
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                let got = post.probs(&softmax_masked(&l), z[i] as usize);
                for k in 0..v {
                    let w = want[i * v + k];
                    assert!(
                        (got[k] - w).abs() <= 1e-5 * w.abs().max(1e-3),
                        "shift {shift} lt {lt:.3} ls {ls:.3} position {i} token {k}: host {} graph {w}",
                        got[k]
                    );
                }
            }
        }
    }

    /// Where `keeps` says the draw is z_t, it is, for any x_hat (random, one-hot, with
    /// zeros where z_t sits) and any uniform; under masked noise every denoised token keeps.
    #[test]
    fn kept_tokens_are_drawn_whatever_x_hat() {
        let mut rng = HostRng::new(std::process::id() as u64 ^ 0x6b65);
        for shift in [-1000.0, -3.0, 0.0, 1000.0] {
            let c = cfg(shift);
            let v = c.vocab_size;
            for _ in 0..20 {
                let lt = -4.0 + 8.0 * rng.next_f64();
                let ls = lt + 0.05 + 3.0 * rng.next_f64();
                let post = Posterior::new(&c, lt, ls);
                let kept: Vec<usize> = (0..v).filter(|&z| post.keeps(z)).collect();
                if shift == -1000.0 {
                    assert_eq!(
                        kept.len(),
                        v - 1,
                        "masked noise: every token but the mask keeps"
                    );
                    assert!(!post.keeps(MASK as usize));
                }
                for &zt in &kept {
                    let l: Vec<f64> = (0..v).map(|_| 4.0 * rng.normal()).collect();
                    let mut xhs = vec![softmax_masked(&l)];
                    let mut onehot = vec![0.0; v];
                    onehot[(zt + 1) % v] = 1.0;
                    xhs.push(onehot);
                    let mut zero_at = softmax_masked(&l);
                    zero_at[zt] = 0.0;
                    xhs.push(zero_at);
                    for xh in &xhs {
                        for u in [0.0, rng.next_f64(), 1.0 - f64::EPSILON / 2.0] {
                            assert_eq!(post.draw(xh, zt, u), zt, "shift {shift} zt {zt} u {u}");
                        }
                    }
                }
            }
        }
    }

    /// Draws land on each token as often as the posterior says.
    #[test]
    fn posterior_draws_follow_the_posterior() {
        let c = cfg(0.0);
        let v = c.vocab_size;
        let mut rng = HostRng::new(std::process::id() as u64 ^ 0xabc);
        let l: Vec<f64> = (0..v).map(|_| 1.5 * rng.normal()).collect();
        let xh = softmax_masked(&l);
        let post = Posterior::new(&c, -0.5, 1.0);
        let zt = 7;
        let p = post.probs(&xh, zt);
        let total: f64 = p.iter().sum();
        let n = 200_000;
        let mut counts = vec![0usize; v];
        for _ in 0..n {
            counts[post.draw(&xh, zt, rng.next_f64())] += 1;
        }
        for k in 0..v {
            let e = n as f64 * p[k] / total;
            let sd = (e * (1.0 - p[k] / total)).sqrt().max(1.0);
            assert!(
                (counts[k] as f64 - e).abs() <= 5.0 * sd,
                "token {k}: {} draws, expected {e:.1}",
                counts[k]
            );
            if p[k] == 0.0 {
                assert_eq!(counts[k], 0, "token {k} has probability 0");
            }
        }
    }
}
