//! Likelihood of completions given prompts (SPEC.md section 7, `gidd eval --requests`):
//! the engine computation against an independent f64 one written here, repeatability
//! under a seed (the CLI end to end: likelihood_cli.rs).

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE: denied outside tests)

mod likelihood_support;
use likelihood_support::{random_params, requests, tiny_cfg, totals};

use gidd_engine::{CpuExecutor, DType, HostTensor};
use gidd_model::generate::{Canvas, NoiseSchedule};
use gidd_model::likelihood::{
    likelihood, likelihood_indexed, likelihood_keyed, LikelihoodOpts, Prior, Request, RowKey, Trace,
};
use gidd_model::GiddConfig;

const MASK: u32 = 3;

/// Agreement of the engine's f32 likelihood with the f64 computation below, relative to
/// the total NLL, on top of the f32 rounding bound `token_elbo` returns (see there).
const REL_TOL: f64 = 1e-5;

/// f32 unit roundoff.
const EPS32: f64 = f32::EPSILON as f64 / 2.0;

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// sigmoid as an f32 number: the reference's `safe_sigmoid` computes in f32, and alpha,
/// beta and p(l) are those f32 numbers (near |l| = 9, 1 - sigmoid(l) in f32 is 1e-4 off
/// the exact value; that is part of what the reference computes, not an error of ours).
fn sig32(x: f64) -> f64 {
    let x = x as f32;
    (1.0 / (1.0 + (-x).exp())) as f64
}

/// The level grid, as the reference writes it: the first n of n + 1 points.
fn grid(schedule: NoiseSchedule, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let f = i as f64 / n as f64;
            let alpha = match schedule {
                NoiseSchedule::Linear => 1e-4 + (0.9999 - 1e-4) * f,
                NoiseSchedule::Cosine => {
                    let t = 0.999 + (1e-3 - 0.999) * f;
                    0.5 + 0.5 * (std::f64::consts::PI * t).cos()
                }
            };
            (alpha / (1.0 - alpha)).ln().clamp(-9.0, 9.0)
        })
        .collect()
}

/// The per-token negative ELBO of SPEC.md section 3 in f64, written out over the vocabulary,
/// and a bound on the f32 rounding error of computing it: KL = sum_v q_v (log q_v - log p_v)
/// with each log rounded to f32 is off by up to ~eps sum_v q_v (|log q_v| + |log p_v| + 2)
/// (more than the KL itself at alpha ~ 1e-4 under uniform noise, where q ~ p: the reference's
/// own float32 sum cancels the same way), times the ELBO weight; the IS term likewise.
fn token_elbo(lg32: &[f32], x: u32, z: u32, l: f64, shift: f64) -> (f64, f64) {
    let v = lg32.len();
    let (x, z) = (x as usize, z as usize);
    let m = MASK as usize;
    let mut lg: Vec<f64> = lg32.iter().map(|&y| y as f64).collect();
    lg[m] = -1e6;
    let mx = lg.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let se: f64 = lg.iter().map(|y| (y - mx).exp()).sum();
    let xhat: Vec<f64> = lg.iter().map(|y| (y - mx).exp() / se).collect();
    let alpha = sig32(l.clamp(-9.0, 9.0));
    let beta = sig32(l + shift);
    let pi = |k: usize| {
        if k == m {
            1.0 - beta
        } else {
            beta / (v as f64 - 1.0)
        }
    };
    let tiny = f32::MIN_POSITIVE as f64;
    let slog = |y: f64| if y > 0.0 { y.max(tiny).ln() } else { tiny.ln() };
    let (mut kl, mut cond, mut lpz, mut lqz) = (0.0, 0.0, 0.0, 0.0);
    for (k, &xh) in xhat.iter().enumerate() {
        let lp = slog(alpha * xh + (1.0 - alpha) * pi(k));
        let lq = slog(alpha * if k == x { 1.0 } else { 0.0 } + (1.0 - alpha) * pi(k));
        kl += lq.exp() * (lq - lp);
        cond += lq.exp() * (lq.abs() + lp.abs() + 2.0);
        if k == z {
            (lpz, lqz) = (lp, lq);
        }
    }
    let r = lqz.exp() / (lpz.exp() + 1e-12);
    let is = r - (lqz - lpz) - 1.0;
    cond += r + lqz.abs() + lpz.abs() + 2.0;
    let pz = pi(z);
    let ppz = beta * (1.0 - beta) * if z == m { -1.0 } else { 1.0 / (v as f64 - 1.0) };
    let delta = if z == x { 1.0 } else { 0.0 };
    let w = (pz - ppz) / (pz + l.exp() * delta).max(1e-8);
    let s = sig32(l);
    let we = (w / (s * (1.0 - s)).max(1e-12)).clamp(0.0, 1e6);
    (we * (kl + is), we * 4.0 * EPS32 * cond)
}

/// The canvas labels, written independently: prompt, completion, then the prior.
fn labels_of(
    r: &Request,
    len: usize,
    prior: Prior,
    vocab: usize,
    seed: u64,
    index: usize,
) -> Vec<u32> {
    let mut x: Vec<u32> = match prior {
        Prior::Mask => vec![MASK; len],
        Prior::Uniform => gidd_engine::rng::uniform_rows(
            1,
            len,
            [seed as u32, (seed >> 32) as u32],
            0,
            index as u32,
        )
        .iter()
        .map(|&u| ((u * vocab as f32).floor() as u32).min(vocab as u32 - 1))
        .collect(),
    };
    let p = r.prompt.len();
    x[..p].copy_from_slice(&r.prompt);
    x[p..p + r.completion.len()].copy_from_slice(&r.completion);
    x
}

/// Checks request `index`'s z at every level against the documented draws (Philox streams
/// 1 + 3 i + k, row = request index): z = x on the prompt; elsewhere keep x if u0 < alpha,
/// else a uniform id floor(u2 V) if u1 < sigmoid(l + shift), else the mask. A mismatch is
/// allowed only where a uniform sits within 1e-6 of its threshold (f32 sigmoid rounding).
fn check_draws(cfg: &GiddConfig, o: &LikelihoodOpts, tr: &Trace, index: usize, p: usize) {
    let len = o.canvas_len;
    let key = [o.seed as u32, (o.seed >> 32) as u32];
    let x = &tr.labels[index];
    for (li, lt) in tr.levels.iter().enumerate() {
        let draw = |k: u32| {
            gidd_engine::rng::uniform_rows(1, len, key, 1 + 3 * li as u32 + k, index as u32)
        };
        let (u0, u1, u2) = (draw(0), draw(1), draw(2));
        let l = lt.log_snr;
        let (alpha, beta) = (sig(l), sig(l + cfg.noise_type));
        let z = &lt.z[index];
        for j in 0..len {
            let want = if j < p || (u0[j] as f64) < alpha {
                x[j]
            } else if (u1[j] as f64) < beta {
                ((u2[j] * cfg.vocab_size as f32).floor() as u32).min(cfg.vocab_size as u32 - 1)
            } else {
                MASK
            };
            if z[j] != want {
                let near =
                    (u0[j] as f64 - alpha).abs() < 1e-6 || (u1[j] as f64 - beta).abs() < 1e-6;
                assert!(
                    near,
                    "level {li} request {index} position {j}: z {} but the draws give {want}",
                    z[j]
                );
            }
        }
    }
}

/// The likelihood recomputed in f64 from plain forward logits over the traced z draws.
fn reference_scores(
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    reqs: &[Request],
    o: &LikelihoodOpts,
    tr: &Trace,
) -> Vec<(f64, f64)> {
    let len = o.canvas_len;
    let v = cfg.vocab_size;
    let levels = grid(o.noise_schedule, o.num_denoising_steps);
    assert_eq!(tr.levels.len(), levels.len());
    for (lt, &l) in tr.levels.iter().zip(&levels) {
        assert!(
            (lt.log_snr - l).abs() < 1e-5,
            "level log-SNR {} vs {l}",
            lt.log_snr
        );
    }
    let mut canvas = Canvas::new(cfg, params, 1, len, DType::F32).unwrap();
    reqs.iter()
        .enumerate()
        .map(|(i, r)| {
            let x = labels_of(r, len, o.prior, v, o.seed, i);
            assert_eq!(tr.labels[i], x, "canvas labels of request {i}");
            let (p, c) = (r.prompt.len(), r.completion.len());
            check_draws(cfg, o, tr, i, p);
            let noisy: Vec<bool> = (0..len).map(|j| j >= p).collect();
            let mask: Vec<bool> = (0..len * len)
                .map(|qk| noisy[qk / len] >= noisy[qk % len])
                .collect();
            let (mut total, mut bound) = (0.0, 0.0);
            for (lt, &level_l) in tr.levels.iter().zip(&levels) {
                let z = &lt.z[i];
                let l = if o.effective_log_snr {
                    let same = (p..p + c).filter(|&j| z[j] == x[j]).count() as f64;
                    let a = same / c as f64;
                    (a / (1.0 - a + 1e-12) + 1e-12).ln().clamp(-9.0, 9.0)
                } else {
                    level_l
                };
                assert!(
                    (lt.elbo_log_snr[i] - l).abs() < 1e-5,
                    "ELBO log-SNR {} vs {l}",
                    lt.elbo_log_snr[i]
                );
                let logits = canvas.logits(std::slice::from_ref(z), &mask).unwrap();
                for (k, j) in (p..p + c).enumerate() {
                    let (e, err) =
                        token_elbo(&logits[j * v..(j + 1) * v], x[j], z[j], l, cfg.noise_type);
                    let g = lt.elbo[i][k];
                    assert!(
                        (g - e).abs() <= REL_TOL * e.abs() + err,
                        "request {i}, level l = {level_l:.4} (ELBO at {l:.4}), position {j} (x {}, z {}): {g} vs f64 {e} (f32 bound {err:.2e})",
                        x[j],
                        z[j]
                    );
                    total += e;
                    bound += err;
                }
            }
            let n = levels.len() as f64;
            (total / n, bound / n)
        })
        .collect()
}

fn check_against_reference(
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    reqs: &[Request],
    o: &LikelihoodOpts,
    what: &str,
) {
    let mut tr = Trace::default();
    let got = likelihood(&CpuExecutor, cfg, params, reqs, o, Some(&mut tr)).unwrap();
    let want = reference_scores(cfg, params, reqs, o, &tr);
    for (i, (g, &(w, err))) in got.iter().zip(&want).enumerate() {
        let rel = (g.total_nll - w).abs() / w.abs().max(1e-12);
        eprintln!(
            "{what} request {i}: total_nll {} vs f64 {w} (rel {rel:.2e}, f32 bound {:.2e})",
            g.total_nll,
            err / w
        );
        assert!(w.is_finite() && w > 0.0, "{what}: f64 NLL {w}");
        assert!(
            (g.total_nll - w).abs() <= REL_TOL * w + err,
            "{what} request {i}: total_nll {} vs f64 {w}: rel {rel:.2e} (f32 bound {:.2e})",
            g.total_nll,
            err / w
        );
        assert_eq!(g.num_tokens, reqs[i].completion.len());
        assert!(
            (g.mean_nll - g.total_nll / g.num_tokens as f64).abs() <= 1e-12 * g.total_nll.abs()
        );
        assert_eq!(g.ppl, g.mean_nll.exp()); // inf when the NLL is past ~709 nats a token
        let s: f64 = g.token_nll.iter().sum();
        assert!((s - g.total_nll).abs() <= 1e-9 * g.total_nll.abs());
    }
}

#[test]
fn matches_an_independent_f64_computation() {
    // Hybrid noise (both uniform and mask draws), mask prior, effective log-SNR, a short
    // last batch (3 requests in batches of 2).
    let cfg = tiny_cfg(40, 0.0, 16, true);
    let params = random_params(&cfg, 11);
    let o = LikelihoodOpts {
        num_denoising_steps: 7,
        batch_size: 2,
        seed: 5,
        ..LikelihoodOpts::for_model(&cfg)
    };
    assert_eq!(o.prior, Prior::Mask);
    check_against_reference(&cfg, &params, &requests(), &o, "hybrid/effective");
    // The level's own log-SNR, the cosine grid.
    let o2 = LikelihoodOpts {
        effective_log_snr: false,
        noise_schedule: NoiseSchedule::Cosine,
        ..o.clone()
    };
    check_against_reference(&cfg, &params, &requests(), &o2, "hybrid/cosine/level");
    // Uniform noise and a uniform prior tail, no bias slot.
    let cfg = tiny_cfg(40, 1000.0, 16, false);
    let params = random_params(&cfg, 12);
    let o3 = LikelihoodOpts {
        num_denoising_steps: 5,
        batch_size: 3,
        seed: 9,
        ..LikelihoodOpts::for_model(&cfg)
    };
    assert_eq!(o3.prior, Prior::Uniform);
    check_against_reference(&cfg, &params, &requests(), &o3, "uniform/effective");
}

#[test]
fn matches_f64_on_the_reference_checkpoints() {
    for case in ["mask-small", "unif-small"] {
        let m = gidd_train::model_dir::load_checkpoint(&gidd_tests::golden_case(case)).unwrap();
        let o = LikelihoodOpts {
            num_denoising_steps: 6,
            batch_size: 2,
            seed: 1,
            ..LikelihoodOpts::for_model(&m.cfg)
        };
        let reqs = vec![
            Request {
                prompt: vec![0, 50, 51],
                completion: vec![60, 61, 62, 1],
            },
            Request {
                prompt: vec![0],
                completion: vec![70, 1],
            },
        ];
        check_against_reference(&m.cfg, &m.params, &reqs, &o, case);
    }
}

#[test]
fn seeded_and_independent_of_batching() {
    let cfg = tiny_cfg(40, 0.0, 16, true);
    let params = random_params(&cfg, 21);
    let reqs = requests();
    let o = LikelihoodOpts {
        num_denoising_steps: 4,
        batch_size: 3,
        seed: 3,
        ..LikelihoodOpts::for_model(&cfg)
    };
    let a = totals(&likelihood(&CpuExecutor, &cfg, &params, &reqs, &o, None).unwrap());
    let b = totals(&likelihood(&CpuExecutor, &cfg, &params, &reqs, &o, None).unwrap());
    assert_eq!(a, b, "same seed, same result");
    let c = totals(
        &likelihood(
            &CpuExecutor,
            &cfg,
            &params,
            &reqs,
            &LikelihoodOpts {
                seed: 4,
                ..o.clone()
            },
            None,
        )
        .unwrap(),
    );
    assert!(
        a.iter().zip(&c).all(|(x, y)| x != y),
        "another seed draws other z: {a:?} vs {c:?}"
    );
    // One request per call draws the same numbers: a request's result does not depend on the batch.
    let d = totals(
        &likelihood(
            &CpuExecutor,
            &cfg,
            &params,
            &reqs,
            &LikelihoodOpts {
                batch_size: 1,
                ..o.clone()
            },
            None,
        )
        .unwrap(),
    );
    for (x, y) in a.iter().zip(&d) {
        assert!(
            (x - y).abs() <= 1e-5 * x.abs(),
            "batch 3 {x} vs batch 1 {y}"
        );
    }
    // More levels change the average (the grid is not nested), and every value is finite and positive.
    let e = totals(
        &likelihood(
            &CpuExecutor,
            &cfg,
            &params,
            &reqs,
            &LikelihoodOpts {
                num_denoising_steps: 5,
                ..o.clone()
            },
            None,
        )
        .unwrap(),
    );
    assert!(a.iter().chain(&e).all(|x| x.is_finite() && *x > 0.0));
    assert_ne!(a, e);
}

/// Requests of several callers, each with its own seed and index, in one batch: every one
/// scores bitwise as it does alone (what lets `gidd serve` batch clients), with either prior.
#[test]
fn keyed_rows_score_as_they_do_alone() {
    for shift in [0.0, 1000.0] {
        let cfg = tiny_cfg(40, shift, 16, true);
        let params = random_params(&cfg, 5);
        let reqs = requests();
        let o = LikelihoodOpts {
            num_denoising_steps: 3,
            batch_size: 4,
            ..LikelihoodOpts::for_model(&cfg)
        };
        // row i: seed 10 + i % 3, index i / 2 (repeated and out of order)
        let keys: Vec<RowKey> = (0..reqs.len())
            .map(|i| RowKey {
                seed: 10 + (i % 3) as u64,
                index: (reqs.len() - i) / 2,
            })
            .collect();
        let mixed = likelihood_keyed(&CpuExecutor, &cfg, &params, &reqs, &keys, &o).unwrap();
        for (i, k) in keys.iter().enumerate() {
            let alone = likelihood_indexed(
                &CpuExecutor,
                &cfg,
                &params,
                &reqs[i..i + 1],
                &[k.index],
                &LikelihoodOpts {
                    seed: k.seed,
                    batch_size: 1,
                    ..o.clone()
                },
            )
            .unwrap();
            assert_eq!(
                mixed[i].token_nll, alone[0].token_nll,
                "request {i}, key {k:?}, prior {:?}",
                o.prior
            );
        }
        // and the keys matter: another seed for row 0 changes its score
        let mut other = keys.clone();
        other[0].seed += 100;
        let moved = likelihood_keyed(&CpuExecutor, &cfg, &params, &reqs, &other, &o).unwrap();
        assert_ne!(moved[0].token_nll, mixed[0].token_nll);
        assert_eq!(moved[1].token_nll, mixed[1].token_nll);
    }
}
