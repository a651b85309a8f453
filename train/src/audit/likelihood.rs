//! The likelihood audit: the reference's own `likelihood()` run (`likelihood_golden.*`,
//! SPEC.md section 7) against `gidd_model::likelihood`, the code `gidd eval --requests`
//! runs. The reference's draws cannot be ours (JAX threefry vs our Philox), so its recorded
//! canvases (the labels, with a uniform prior's random tail) and every level's z go in
//! through [`likelihood_given`], which shares the whole loop with [`likelihood`]: masks,
//! levels, effective log-SNR, the model under the block mask, the per-token terms, the sums.
//!
//! Rows: `lik.level_log_snr` (our level grid), `lik.labels` (our token layout of the
//! requests: bos + prompt, completion + eos, the mask prior's tail; a uniform prior's tail
//! is the reference's draw and is not compared), `lik.noise_mask`, `lik.completion_mask`,
//! `lik.nlls.level{i}` (every level's per-token terms times the noise mask, the noised tail
//! included), `lik.mean_nlls`, and the request totals `lik.total_nll`, `lik.avg_nll`, `lik.ppl`.

use super::{compare, measured_row, tol, Row};
use anyhow::{bail, Context, Result};
use gidd_engine::{CpuExecutor, DType, Executor, HostTensor};
use gidd_model::generate::NoiseSchedule;
use gidd_model::likelihood::{
    batch_rows, canvas_labels, level_log_snrs, likelihood_given, schedule_of, Canvases,
    LikelihoodOpts, Prior, Request, Trace,
};
use gidd_model::schedule::{BOS, EOS};
use gidd_model::GiddConfig;
use gidd_ports::TensorStore;
use serde_json::Value;
use std::path::Path;

/// The file's settings, requests and recorded draws.
struct Case {
    reqs: Vec<Request>,
    opts: LikelihoodOpts,
    given: Canvases,
    /// (B, L)
    shape: (usize, usize),
}

fn ids(v: &Value) -> Result<Vec<u32>> {
    v.as_array()
        .context("likelihood_golden.json: token ids must be an array")?
        .iter()
        .map(|t| t.as_u64().map(|x| x as u32).context("a token id"))
        .collect()
}

/// Rows of a [S?, B, L] integer tensor as canvases.
fn rows_of(t: &HostTensor, len: usize) -> Vec<Vec<u32>> {
    t.to_f64_vec()
        .chunks(len)
        .map(|r| r.iter().map(|&x| x as u32).collect())
        .collect()
}

fn read_case(cfg: &GiddConfig, meta: &Value, gold: &TensorStore, dtype: DType) -> Result<Case> {
    let st = &meta["settings"];
    let num = |k: &str| {
        st[k]
            .as_f64()
            .with_context(|| format!("likelihood_golden.json: no setting \"{k}\""))
    };
    // We read the schedule from the checkpoint's config (the module doc of gidd_model::likelihood).
    let s = schedule_of(cfg);
    for (k, ours) in [
        ("min_log_snr", s.min_log_snr),
        ("max_log_snr", s.max_log_snr),
        ("hybrid_mixing_shift", s.shift),
    ] {
        if num(k)? != ours {
            bail!(
                "likelihood_golden.json: {k} {} but the checkpoint's config gives {ours}",
                num(k)?
            );
        }
    }
    if st["noise_schedule"].as_str() != Some("linear") {
        bail!("likelihood_golden.json: only the linear schedule runs in the reference");
    }
    let prior = match st["prior"].as_str() {
        Some("mask") => Prior::Mask,
        Some("uniform") => Prior::Uniform,
        p => bail!("likelihood_golden.json: unknown prior {p:?}"),
    };
    // The reference's tokenization: prompt = bos + ids (eos dropped), completion = ids + eos.
    let reqs = meta["pairs_token_ids"]
        .as_array()
        .context("likelihood_golden.json: no pairs_token_ids")?
        .iter()
        .map(|pc| {
            let mut prompt = vec![BOS];
            prompt.extend(ids(&pc[0])?);
            let mut completion = ids(&pc[1])?;
            completion.push(EOS);
            Ok(Request { prompt, completion })
        })
        .collect::<Result<Vec<_>>>()?;
    let len = num("max_sequence_length")? as usize;
    let levels = num("num_denoising_steps")? as usize;
    let opts = LikelihoodOpts {
        num_denoising_steps: levels,
        noise_schedule: NoiseSchedule::Linear,
        effective_log_snr: st["use_effective_snr"].as_bool().unwrap_or(true),
        seed: num("seed")? as u64,
        batch_size: reqs.len(),
        canvas_len: len,
        prior,
        dtype,
        progress: false,
    };
    let z = rows_of(&gold.get("lik.noisy_ids")?, len);
    let given = Canvases {
        labels: rows_of(&gold.get("lik.labels")?, len),
        z: z.chunks(reqs.len()).map(|c| c.to_vec()).collect(),
    };
    let shape = (reqs.len(), len);
    Ok(Case {
        reqs,
        opts,
        given,
        shape,
    })
}

/// Our values of the computed rows on the recorded draws, in `dtype`.
fn computed<E: Executor>(
    exec: &E,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    c: &Case,
    dtype: DType,
) -> Result<Vec<(String, Vec<f64>)>> {
    let o = LikelihoodOpts {
        dtype,
        ..c.opts.clone()
    };
    let mut tr = Trace::default();
    let scores = likelihood_given(exec, cfg, params, &c.reqs, &o, &c.given, Some(&mut tr))?;
    let (b, l) = c.shape;
    let mut out = vec![];
    let mut mean = vec![0f64; b * l];
    for (i, lt) in tr.levels.iter().enumerate() {
        let terms: Vec<f64> = lt.terms.concat();
        for (m, t) in mean.iter_mut().zip(&terms) {
            *m += t / tr.levels.len() as f64;
        }
        out.push((format!("lik.nlls.level{i}"), terms));
    }
    out.push(("lik.mean_nlls".into(), mean));
    out.push((
        "lik.total_nll".into(),
        scores.iter().map(|s| s.total_nll).collect(),
    ));
    out.push((
        "lik.avg_nll".into(),
        scores.iter().map(|s| s.mean_nll).collect(),
    ));
    out.push(("lik.ppl".into(), scores.iter().map(|s| s.ppl).collect()));
    Ok(out)
}

/// The golden value of a computed row.
fn golden(gold: &TensorStore, name: &str, c: &Case) -> Result<Vec<f64>> {
    Ok(match name.strip_prefix("lik.nlls.level") {
        Some(i) => {
            let i: usize = i.parse()?;
            let n = c.shape.0 * c.shape.1;
            gold.get("lik.nlls")?.to_f64_vec()[i * n..(i + 1) * n].to_vec()
        }
        None => gold.get(name)?.to_f64_vec(),
    })
}

/// Rows of the likelihood audit. `params` are the case's parameters (any precision: the
/// likelihood runs them in `dtype`'s master precision); `path` the likelihood_golden.safetensors
/// (its .json beside it). The computed rows take a tolerance from measured rounding
/// ([`super::measured_row`]): the same run in f64 and in f32 gives it.
pub fn audit_likelihood<E: Executor>(
    exec: &E,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    path: &Path,
    dtype: DType,
) -> Result<Vec<Row>> {
    let json_path = path.with_extension("json");
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(&json_path)
            .with_context(|| format!("reading {}", json_path.display()))?,
    )
    .with_context(|| format!("parsing {}", json_path.display()))?;
    let gold = TensorStore::open(path)?;
    let c = read_case(cfg, &meta, &gold, dtype)?;
    let (b, len) = c.shape;
    let s = schedule_of(cfg);
    let mut rows = vec![];

    // The level grid and the canvas layout, from the same functions the likelihood uses.
    let levels = level_log_snrs(
        NoiseSchedule::Linear,
        c.opts.num_denoising_steps,
        s.min_log_snr,
        s.max_log_snr,
    );
    let want = gold.get("lik.level_log_snr")?.to_f64_vec();
    rows.push(compare("lik.level_log_snr", &levels, &want, tol::FORWARD));
    let o = &c.opts;
    let ours = |r: usize| canvas_labels(&c.reqs[r], len, o.prior, cfg.vocab_size, o.seed, r);
    let (lab, nm, cm) = batch_rows(&c.reqs, b, len, ours);
    let mut got_lab: Vec<f64> = lab.iter().map(|&x| x as f64).collect();
    let want_lab = gold.get("lik.labels")?.to_f64_vec();
    let mut note = String::new();
    if o.prior == Prior::Uniform {
        // the tail after the completion is the reference's random draw: take it as given
        for (r, q) in c.reqs.iter().enumerate() {
            let from = r * len + q.prompt.len() + q.completion.len();
            got_lab[from..(r + 1) * len].copy_from_slice(&want_lab[from..(r + 1) * len]);
        }
        note = "uniform tail not compared: the reference's draw".into();
    }
    let mut row = compare("lik.labels", &got_lab, &want_lab, 0.0);
    row.note = if row.note.is_empty() { note } else { row.note };
    rows.push(row);
    for (n, v) in [("lik.noise_mask", &nm), ("lik.completion_mask", &cm)] {
        let got: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        rows.push(compare(n, &got, &gold.get(n)?.to_f64_vec(), 0.0));
    }

    // The terms and totals on the reference's draws, with a tolerance from measured rounding
    // (super::measured_row): our f64 run is the exact value, our f32 run shows how far the
    // reference's f32 rounding can take each quantity (at low log-SNR the KL cancels).
    let got = computed(exec, cfg, params, &c, dtype)?;
    let run = |d: DType| -> Result<Vec<(String, Vec<f64>)>> {
        if d == dtype {
            Ok(got.clone())
        } else if d == DType::F64 {
            // the exact value is a reference, not the executor under test: the cpu computes
            // it (executors without f64, such as wgpu, could not)
            computed(&CpuExecutor, cfg, params, &c, d)
        } else {
            computed(exec, cfg, params, &c, d)
        }
    };
    let (exact, at_f32) = (run(DType::F64)?, run(DType::F32)?);
    for (i, (n, v)) in got.iter().enumerate() {
        let want = golden(&gold, n, &c)?;
        rows.push(measured_row(
            n,
            v,
            &want,
            &exact[i].1,
            &at_f32[i].1,
            tol::LIKELIHOOD,
        ));
    }
    Ok(rows)
}
