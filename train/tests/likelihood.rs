//! Likelihood of completions given prompts (SPEC.md section 7, `gidd eval --requests`):
//! the engine computation against an independent f64 one written here, repeatability
//! under a seed, and the CLI end to end with its bad-input errors.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE: denied outside tests)

use gidd_engine::rng::HostRng;
use gidd_engine::{DType, HostTensor};
use gidd_model::GiddConfig;
use gidd_train::generate::{Canvas, NoiseSchedule};
use gidd_train::likelihood::{likelihood, LikelihoodOpts, Prior, Request, Score, Trace};
use std::path::{Path, PathBuf};
use std::process::Command;

const MASK: u32 = 3;

/// Agreement of the engine's f32 likelihood with the f64 computation below, relative to
/// the total NLL, on top of the f32 rounding bound `token_elbo` returns (see there).
const REL_TOL: f64 = 1e-5;

/// f32 unit roundoff.
const EPS32: f64 = f32::EPSILON as f64 / 2.0;

fn tiny_cfg(vocab: usize, noise_type: f64, max_pos: usize, bias: bool) -> GiddConfig {
    GiddConfig::from_json(serde_json::json!({
        "vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": max_pos,
        "attention_bias": bias, "mlp_bias": bias, "noise_type": noise_type,
        "min_log_snr": -9.0, "max_log_snr": 9.0,
    }))
    .unwrap()
}

/// Random parameters of every shape (norms and biases too, so none is a no-op).
fn random_params(cfg: &GiddConfig, seed: u64) -> Vec<(String, HostTensor)> {
    let mut rng = HostRng::new(seed);
    cfg.param_shapes()
        .into_iter()
        .map(|(n, s)| {
            let sd = if n.contains("norm") || n.contains("bias") {
                0.3
            } else {
                1.0
            };
            let v: Vec<f32> = (0..s.iter().product::<usize>())
                .map(|_| (rng.normal() * sd) as f32)
                .collect();
            (n, HostTensor::f32(s, v).unwrap())
        })
        .collect()
}

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

fn requests() -> Vec<Request> {
    vec![
        Request {
            prompt: vec![0, 17, 5, 9],
            completion: vec![22, 8, 31, 1],
        },
        Request {
            prompt: vec![],
            completion: vec![4, 4, 12],
        },
        Request {
            prompt: vec![0, 30, 29, 28, 27, 26, 25, 24, 23],
            completion: vec![11],
        },
    ]
}

fn check_against_reference(
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    reqs: &[Request],
    o: &LikelihoodOpts,
    what: &str,
) {
    let mut tr = Trace::default();
    let got = likelihood(cfg, params, reqs, o, Some(&mut tr)).unwrap();
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

fn shared_dir(test: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if p.join("golden").is_dir() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: ../shared not found (looked for {}/golden); {test} did not run",
            p.display()
        );
        None
    }
}

#[test]
fn matches_f64_on_the_reference_checkpoints() {
    let Some(shared) = shared_dir("matches_f64_on_the_reference_checkpoints") else {
        return;
    };
    for case in ["mask-small", "unif-small"] {
        let m = gidd_train::session::load_checkpoint(&shared.join("golden").join(case)).unwrap();
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

fn totals(s: &[Score]) -> Vec<f64> {
    s.iter().map(|x| x.total_nll).collect()
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
    let a = totals(&likelihood(&cfg, &params, &reqs, &o, None).unwrap());
    let b = totals(&likelihood(&cfg, &params, &reqs, &o, None).unwrap());
    assert_eq!(a, b, "same seed, same result");
    let c = totals(
        &likelihood(
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

// ---- the CLI ----

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("gidd-likelihood-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn write_checkpoint(dir: &Path, cfg: &GiddConfig, params: &[(String, HostTensor)]) {
    gidd_ports::write_json_pretty(&dir.join("config.json"), &cfg.to_json()).unwrap();
    gidd_ports::save_tensors(dir, params, None).unwrap();
}

fn gidd_eval(ck: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gidd"))
        .args(["eval", "--checkpoint"])
        .arg(ck)
        .args(args)
        .output()
        .unwrap()
}

fn ids_line(r: &Request) -> String {
    serde_json::json!({"prompt_ids": r.prompt, "completion_ids": r.completion}).to_string()
}

#[test]
fn cli_writes_one_json_line_per_request() {
    let dir = tmp("cli");
    let ck = dir.join("ck");
    std::fs::create_dir_all(&ck).unwrap();
    let cfg = tiny_cfg(40, -1000.0, 16, true);
    let params = random_params(&cfg, 31);
    write_checkpoint(&ck, &cfg, &params);
    let reqs = requests();
    let req_path = dir.join("requests.jsonl");
    let text: Vec<String> = reqs.iter().map(ids_line).collect();
    // A blank line is skipped.
    std::fs::write(
        &req_path,
        format!("{}\n\n{}\n{}\n", text[0], text[1], text[2]),
    )
    .unwrap();
    let out_path = dir.join("out.jsonl");
    let out = gidd_eval(
        &ck,
        &[
            "--requests",
            req_path.to_str().unwrap(),
            "--output",
            out_path.to_str().unwrap(),
            "--num_denoising_steps",
            "3",
            "--seed",
            "7",
            "--batch_size",
            "2",
            "--effective_log_snr",
            "false",
        ],
    );
    assert!(
        out.status.success(),
        "gidd eval --requests: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = LikelihoodOpts {
        num_denoising_steps: 3,
        seed: 7,
        batch_size: 2,
        effective_log_snr: false,
        ..LikelihoodOpts::for_model(&cfg)
    };
    let want = likelihood(&cfg, &params, &reqs, &o, None).unwrap();
    let want_level = want.clone();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), reqs.len(), "one line per request");
    // serde_json writes the shortest round-trip digits but parses them to within an ulp.
    let same = |a: f64, b: f64| (a - b).abs() <= 4.0 * f64::EPSILON * b.abs();
    for (v, w) in lines.iter().zip(&want) {
        let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
        assert!(same(f("total_nll"), w.total_nll), "{v} vs {}", w.total_nll);
        assert!(same(f("mean_nll"), w.mean_nll), "{v}");
        // exp(mean) past f64's range is inf, which JSON writes as null.
        match v["ppl"].as_f64() {
            Some(p) => assert!(same(p, w.ppl), "{v}"),
            None => assert!(v["ppl"].is_null() && w.ppl.is_infinite(), "{v}"),
        }
        assert!(same(f("logprob"), -w.total_nll), "{v}");
        assert_eq!(v["num_tokens"].as_u64(), Some(w.num_tokens as u64));
        assert_eq!(v["is_greedy"].as_bool(), Some(false));
    }
    // The default (effective log-SNR on) differs, and stdout is the default output.
    let out = gidd_eval(
        &ck,
        &[
            "--requests",
            req_path.to_str().unwrap(),
            "--num_denoising_steps",
            "3",
            "--seed",
            "7",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o_eff = LikelihoodOpts {
        effective_log_snr: true,
        batch_size: 8,
        ..o.clone()
    };
    let want = likelihood(&cfg, &params, &reqs, &o_eff, None).unwrap();
    let got: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["total_nll"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for ((g, w), w_level) in got.iter().zip(totals(&want)).zip(totals(&want_level)) {
        assert!(same(*g, w), "{g} vs {w}");
        assert_ne!(w, w_level, "the effective log-SNR changes the result");
    }
}

#[test]
fn cli_text_requests_are_bos_prompt_and_completion_eos() {
    let dir = tmp("text");
    let ck = dir.join("ck");
    let texts: Vec<String> = (0..40)
        .map(|i| format!("the cat {i} sat on the mat and the dog ran {}", i * 7))
        .collect();
    let tok = gidd_train::data::tokenizer::Tok::train_bpe(&texts, 300, &ck.join("tokenizer.json"))
        .unwrap();
    let cfg = tiny_cfg(300, 0.0, 32, true);
    write_checkpoint(&ck, &cfg, &random_params(&cfg, 41));
    let (prompt, completion) = ("the cat sat", " on the mat");
    let text_req = dir.join("text.jsonl");
    std::fs::write(
        &text_req,
        serde_json::json!({"prompt": prompt, "completion": completion}).to_string(),
    )
    .unwrap();
    let mut p = vec![0u32];
    p.extend(tok.encode(prompt).unwrap());
    let mut c = tok.encode(completion).unwrap();
    c.push(1);
    let ids_req = dir.join("ids.jsonl");
    std::fs::write(
        &ids_req,
        ids_line(&Request {
            prompt: p,
            completion: c.clone(),
        }),
    )
    .unwrap();
    let run = |f: &Path| {
        let out = gidd_eval(
            &ck,
            &[
                "--requests",
                f.to_str().unwrap(),
                "--num_denoising_steps",
                "2",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (a, b) = (run(&text_req), run(&ids_req));
    assert_eq!(a, b, "text request = bos + prompt, completion + eos");
    assert_eq!(a["num_tokens"].as_u64(), Some(c.len() as u64));
}

#[test]
fn cli_bad_inputs_fail_clearly() {
    let dir = tmp("bad");
    let ck = dir.join("ck");
    std::fs::create_dir_all(&ck).unwrap();
    let cfg = tiny_cfg(40, -1000.0, 16, false);
    write_checkpoint(&ck, &cfg, &random_params(&cfg, 51));
    let good = ids_line(&requests()[0]);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "malformed",
            format!("{good}\n{{\"prompt_ids\": [0, 1\n"),
            vec!["line 2", "not valid JSON"],
        ),
        (
            "missing",
            format!("{good}\n{{\"prompt_ids\": [0]}}\n"),
            vec!["line 2", "completion_ids"],
        ),
        (
            "not ids",
            "{\"prompt_ids\": [0], \"completion_ids\": [5, -1]}\n".into(),
            vec!["line 1", "-1"],
        ),
        (
            "too long",
            ids_line(&Request {
                prompt: vec![0; 10],
                completion: vec![5; 7],
            }),
            vec!["line 1", "17 tokens", "16"],
        ),
        (
            "vocab",
            ids_line(&Request {
                prompt: vec![0],
                completion: vec![5, 99999],
            }),
            vec!["line 1", "99999", "vocabulary"],
        ),
        (
            "empty completion",
            format!(
                "{good}\n{good}\n{}",
                ids_line(&Request {
                    prompt: vec![0],
                    completion: vec![]
                })
            ),
            vec!["line 3", "empty completion"],
        ),
        (
            "text without tokenizer",
            "{\"prompt\": \"a\", \"completion\": \"b\"}".into(),
            vec!["line 1", "tokenizer"],
        ),
        ("empty file", "\n".into(), vec!["no requests"]),
    ];
    for (what, body, needles) in cases {
        let f = dir.join(format!("{}.jsonl", what.replace(' ', "_")));
        std::fs::write(&f, body).unwrap();
        let out = gidd_eval(
            &ck,
            &[
                "--requests",
                f.to_str().unwrap(),
                "--num_denoising_steps",
                "2",
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: should fail");
        for n in needles {
            assert!(
                err.contains(n),
                "{what}: the error should name {n:?}: {err}"
            );
        }
    }
    let f = dir.join("ok.jsonl");
    std::fs::write(&f, &good).unwrap();
    for (what, args, needle) in [
        ("neither", vec![], "--requests"),
        (
            "both",
            vec![
                "--requests",
                f.to_str().unwrap(),
                "--data_files",
                f.to_str().unwrap(),
            ],
            "not both",
        ),
        (
            "schedule",
            vec![
                "--requests",
                f.to_str().unwrap(),
                "--noise_schedule",
                "square",
            ],
            "square",
        ),
        (
            "canvas",
            vec![
                "--requests",
                f.to_str().unwrap(),
                "--max_sequence_length",
                "17",
            ],
            "17",
        ),
        (
            "steps",
            vec![
                "--requests",
                f.to_str().unwrap(),
                "--num_denoising_steps",
                "0",
            ],
            "num_denoising_steps",
        ),
        (
            "prior",
            vec!["--requests", f.to_str().unwrap(), "--prior", "gauss"],
            "gauss",
        ),
    ] {
        let out = gidd_eval(&ck, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{what}: {err}"
        );
    }
}
