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

pub use gidd_engine::sample::{draw_u, probs_with_topk_topp};

/// A categorical draw in f64 (f32 draws would lower the effective temperature).
pub fn draw(p: &[f64], rng: &mut HostRng) -> usize {
    draw_u(p, rng.next_f64())
}

/// The ancestral posterior p(z_s | z_t, x_hat) between log-SNRs l_t and l_s, in f64
/// (`gidd_engine::sample::Posterior`, what the fused sampling step draws from).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Posterior(pub gidd_engine::sample::Posterior);

impl Posterior {
    pub fn new(cfg: &GiddConfig, lt: f64, ls: f64) -> Posterior {
        let mask = MASK as usize;
        // pi holds one value on the mask and one on every other id
        let other = (mask + 1) % cfg.vocab_size;
        let two = |l: f64| {
            let pi = pi_vec(cfg, l, mask);
            [pi[other], pi[mask]]
        };
        Posterior(gidd_engine::sample::Posterior {
            a_t: sigmoid(lt),
            a_s: sigmoid(ls),
            pi_t: two(lt),
            pi_s: two(ls),
            mask_id: mask,
        })
    }
}

impl std::ops::Deref for Posterior {
    type Target = gidd_engine::sample::Posterior;
    fn deref(&self) -> &Self::Target {
        &self.0
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
