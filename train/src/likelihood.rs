//! Likelihood of completions given prompts (SPEC.md section 7): the reference's
//! `gidd_easydel/likelihood.py`, which its lm-evaluation-harness fork
//! (`lm_eval/models/gidd.py`) calls for `loglikelihood` requests.
//!
//! What the reference computes, and what we compute the same way:
//! - Canvas: `max_sequence_length` tokens per row. The prompt (with its bos) is written
//!   at the start and is clean; the completion (with its eos) follows; the rest of the
//!   row holds prior tokens (all mask, or uniform-random ids). Everything after the
//!   prompt is noisy, the tail included: it is noised like the completion and the
//!   completion's queries see it.
//! - Levels: `num_denoising_steps` log-SNRs. Linear: alpha = linspace(1e-4, 0.9999, n + 1);
//!   cosine: t = linspace(0.999, 1e-3, n + 1), alpha = (1 + cos(pi t)) / 2; in both the
//!   first n points are used (the last grid point is never evaluated); l = logit(alpha)
//!   clipped to [min_log_snr, max_log_snr].
//! - Per level: z ~ q_t(. | x) as in training (SPEC.md section 2: keep x w.p. alpha, else
//!   a uniform id over all V w.p. sigmoid(l + shift), else the mask), z = x on the prompt;
//!   attention att[q, k] = noisy[q] >= noisy[k] (prompt queries see the prompt only;
//!   noisy queries see everything); the per-token ELBO of SPEC.md section 3 with the
//!   ELBO weight clipped to [0, 1e6], at the level's l or, with the effective log-SNR
//!   (the reference's default, and what its lm-eval fork runs), at
//!   l_eff = clip(log(a / (1 - a + 1e-12) + 1e-12)) with a = the fraction of completion
//!   tokens that z left unchanged (one value per row).
//! - Per completion token: the mean over levels; total NLL = the sum over the completion,
//!   mean NLL = total / completion length, PPL = exp(mean).
//!
//! Where we must differ, and why:
//! - RNG. The reference draws from JAX's threefry (a key split per level, one draw for
//!   the whole batch); we draw from our counter-based Philox (`gidd_engine::api::random`),
//!   keyed by (seed, stream, request index, position): stream 0 = the uniform prior tail,
//!   stream 1 + 3 i + k = level i's keep (k = 0), uniform-vs-mask (1) and uniform id (2)
//!   draws. So a request's result depends on the seed and its index in the file, never on
//!   `batch_size` or its batch neighbours (in JAX it depends on both). Bits cannot match JAX.
//! - Batching. The lm-eval fork pads short batches with ("", "") requests; we pad with
//!   all-clean rows, which cannot change any other row (attention is within a row).
//! - Over-long requests. The reference silently cuts the prompt to
//!   `max_sequence_length - completion length` tokens (keeping its *start*); we refuse.
//! - Vocabulary. The reference sizes the mixing distribution by `len(tokenizer)`; we use
//!   the model's `vocab_size` (the two must agree for the reference's own broadcasting to work).
//! - Schedule constants: the reference's `likelihood()` takes min/max log-SNR -9/9 and the
//!   hybrid shift as arguments (scale 1); we read them from the checkpoint's config
//!   (`min_log_snr`, `max_log_snr`, `noise_type`), the same values for the released models.
//! - Cosine. The reference builds its mixing schedule with `rate=noise_schedule`, and
//!   `create_mixing_schedule` knows only "linear", so its cosine path raises. We evaluate
//!   the cosine grid with the linear rate's density p(l) in the ELBO weight (the only rate
//!   the reference defines); the lm-eval fork always passes "linear".
//! - Accumulation over levels is in f64 on the host (the reference sums in f32).

use crate::data::tokenizer::Tok;
use crate::generate::NoiseSchedule;
use crate::trainer::noise::{block_attention, draw_marginal};
use anyhow::{bail, Context, Result};
use gidd_engine::api::uniform_rows;
use gidd_engine::{CpuExecutor, DType, Executor, Graph, HostTensor, Program, Tensor};
use gidd_model::loss::gidd_loss;
use gidd_model::schedule::{BOS, EOS, MASK, PAD};
use gidd_model::transformer::{forward, ForwardOpts};
use gidd_model::{GiddConfig, Params, Schedule};
use std::path::Path;

/// What fills the canvas after the completion (the reference's `prior` argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prior {
    Mask,
    Uniform,
}

impl Prior {
    /// The prior a model was trained towards: uniform when the noise at the lowest
    /// log-SNR is mostly uniform, sigmoid(min_log_snr + noise_type) > 1/2 (noise_type
    /// +1000: uniform; -1000 or 0: mask). The lm-eval fork takes it as an argument.
    pub fn of_config(cfg: &GiddConfig) -> Prior {
        if cfg.min_log_snr + cfg.noise_type > 0.0 {
            Prior::Uniform
        } else {
            Prior::Mask
        }
    }
}

#[derive(Clone, Debug)]
pub struct LikelihoodOpts {
    /// Noise levels (the reference's and the lm-eval fork's default: 128).
    pub num_denoising_steps: usize,
    pub noise_schedule: NoiseSchedule,
    /// The ELBO at the effective log-SNR of each level (the reference's default: true).
    pub effective_log_snr: bool,
    pub seed: u64,
    /// Rows per model call.
    pub batch_size: usize,
    /// Canvas length (the reference's `max_sequence_length`); at most max_position_embeddings.
    pub canvas_len: usize,
    pub prior: Prior,
    /// Activation dtype of the forward pass.
    pub dtype: DType,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl LikelihoodOpts {
    /// The reference's defaults for a model: 128 linear levels, effective log-SNR,
    /// a canvas of max_position_embeddings, the model's prior, seed 0.
    pub fn for_model(cfg: &GiddConfig) -> LikelihoodOpts {
        LikelihoodOpts {
            num_denoising_steps: 128,
            noise_schedule: NoiseSchedule::Linear,
            effective_log_snr: true,
            seed: 0,
            batch_size: 1,
            canvas_len: cfg.max_position_embeddings,
            prior: Prior::of_config(cfg),
            dtype: DType::F32,
            progress: false,
        }
    }
}

/// One loglikelihood request: token ids of the prompt (clean) and of the completion (scored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
}

/// The score of one request (nats).
#[derive(Clone, Debug)]
pub struct Score {
    /// sum over completion tokens of the level-averaged negative ELBO
    pub total_nll: f64,
    pub mean_nll: f64,
    pub ppl: f64,
    pub num_tokens: usize,
    /// per completion token, averaged over levels
    pub token_nll: Vec<f64>,
}

/// What one level drew, per request (for tests and inspection).
#[derive(Clone, Debug)]
pub struct LevelTrace {
    /// the level's log-SNR (the grid value; z was drawn at it)
    pub log_snr: f64,
    /// z per request, the whole canvas
    pub z: Vec<Vec<u32>>,
    /// the log-SNR the ELBO used per request (the grid value, or the effective one)
    pub elbo_log_snr: Vec<f64>,
    /// the per-token negative ELBO per request, over its completion tokens
    pub elbo: Vec<Vec<f64>>,
}

/// The canvases and every level's draws.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// labels x per request, the whole canvas (prompt, completion, prior tail)
    pub labels: Vec<Vec<u32>>,
    pub levels: Vec<LevelTrace>,
}

/// The levels' log-SNRs: the first n points of the reference's (n + 1)-point grid,
/// computed in f64 and rounded to f32 (the reference computes them in f32).
pub fn level_log_snrs(
    schedule: NoiseSchedule,
    n: usize,
    min_log_snr: f64,
    max_log_snr: f64,
) -> Vec<f64> {
    let lin = |a: f64, b: f64, i: usize| a + (b - a) * i as f64 / n as f64;
    (0..n)
        .map(|i| {
            let alpha = match schedule {
                NoiseSchedule::Linear => lin(1e-4, 0.9999, i),
                NoiseSchedule::Cosine => {
                    0.5 + 0.5 * (std::f64::consts::PI * lin(0.999, 1e-3, i)).cos()
                }
            };
            let l = (alpha / (1.0 - alpha)).ln();
            l.clamp(min_log_snr, max_log_snr) as f32 as f64
        })
        .collect()
}

/// The hybrid schedule of a checkpoint (scale 1, shift = noise_type).
pub fn schedule_of(cfg: &GiddConfig) -> Schedule {
    Schedule {
        min_log_snr: cfg.min_log_snr,
        max_log_snr: cfg.max_log_snr,
        scale: 1.0,
        shift: cfg.noise_type,
        vocab_size: cfg.vocab_size,
        mask_id: MASK,
    }
}

fn seed_key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// The Philox stream of the uniform prior tail.
pub const TAIL_STREAM: u32 = 0;

/// The Philox stream of level `level`'s draw `k` (0 keep, 1 uniform-vs-mask, 2 uniform id).
pub fn level_stream(level: usize, k: u32) -> u32 {
    1 + 3 * level as u32 + k
}

/// Labels x of request `index`'s canvas: prompt, completion, then the prior
/// (mask ids, or ids uniform over all V drawn from `TAIL_STREAM`).
pub fn canvas_labels(
    req: &Request,
    len: usize,
    prior: Prior,
    vocab_size: usize,
    seed: u64,
    index: usize,
) -> Vec<u32> {
    let mut x = match prior {
        Prior::Mask => vec![MASK; len],
        Prior::Uniform => {
            gidd_engine::rng::uniform_rows(1, len, seed_key(seed), TAIL_STREAM, index as u32)
                .into_iter()
                .map(|u| ((u * vocab_size as f32).floor() as usize).min(vocab_size - 1) as u32)
                .collect()
        }
    };
    let p = req.prompt.len();
    x[..p].copy_from_slice(&req.prompt);
    x[p..p + req.completion.len()].copy_from_slice(&req.completion);
    x
}

/// Checks a request against the model and the canvas.
pub fn check_request(r: &Request, cfg: &GiddConfig, canvas_len: usize) -> Result<()> {
    if r.completion.is_empty() {
        bail!("empty completion: nothing to score");
    }
    let n = r.prompt.len() + r.completion.len();
    if n > canvas_len {
        bail!(
            "prompt ({}) + completion ({}) = {n} tokens exceed the canvas of {canvas_len} (max_position_embeddings {})",
            r.prompt.len(),
            r.completion.len(),
            cfg.max_position_embeddings
        );
    }
    for (what, ids) in [("prompt", &r.prompt), ("completion", &r.completion)] {
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            bail!(
                "{what} holds token id {bad}, outside the model's vocabulary of {}",
                cfg.vocab_size
            );
        }
    }
    Ok(())
}

/// Checks the canvas length and every request; errors name the request (1-based).
pub fn validate(reqs: &[Request], cfg: &GiddConfig, canvas_len: usize) -> Result<()> {
    if canvas_len == 0 || canvas_len > cfg.max_position_embeddings {
        bail!(
            "canvas of {canvas_len} tokens: the model takes 1..={} (max_position_embeddings)",
            cfg.max_position_embeddings
        );
    }
    if reqs.is_empty() {
        bail!("no requests to score");
    }
    for (i, r) in reqs.iter().enumerate() {
        check_request(r, cfg, canvas_len).with_context(|| format!("request {}", i + 1))?;
    }
    Ok(())
}

/// Names of the level program's inputs after the parameters.
const LEVEL_INPUTS: [&str; 7] = [
    "labels",
    "noise_mask",
    "completion_mask",
    "seed",
    "level",
    "row0",
    "log_snr",
];

/// One level over a batch, as one graph: draw z ~ q_t(. | x) at the level's log-SNR,
/// run the model under the block mask, and return the per-token ELBO on completion tokens.
///
/// # Shapes
/// labels [B, L] i32, noise_mask and completion_mask [B, L] f32 (1 = yes), seed u32 [2],
/// level and row0 u32 scalars, log_snr f32 scalar -> elbo [B, L] f32 (0 off the completion),
/// z [B, L] i32, the ELBO's log-SNR per row [B, 1] f32
pub fn build_level(
    cfg: &GiddConfig,
    s: &Schedule,
    batch: usize,
    len: usize,
    effective: bool,
    dtype: DType,
) -> Result<(Program, Vec<String>)> {
    let g = Graph::new();
    let p = Params::declare(&g, cfg);
    let (b, l) = (batch, len);
    let x = g.input("labels", &[b, l], DType::I32);
    let noise_mask = g.input("noise_mask", &[b, l], DType::F32);
    let comp = g.input("completion_mask", &[b, l], DType::F32);
    let seed = g.input("seed", &[2], DType::U32);
    let level = g.input("level", &[], DType::U32);
    let row0 = g.input("row0", &[], DType::U32);
    let log_snr = g.input("log_snr", &[], DType::F32);

    let u = |k: u32| -> Result<Tensor> {
        let stream = level
            .mul(&g.scalar(3.0, DType::U32))?
            .add(&g.scalar((1 + k) as f64, DType::U32))?; // level_stream(level, k)
        Ok(uniform_rows(&g, b, l, &seed, &stream, &row0)?)
    };
    let lt = log_snr.broadcast_to(&[b, l])?; // (B, L)
    let noisy = noise_mask.eq_scalar(1.0)?;
    let z = draw_marginal(s, &x, &lt, &noisy, [u(0)?, u(1)?, u(2)?])?;

    // The ELBO's log-SNR per row: the level's, or the effective one from the completion.
    let l_row = if effective {
        let same = z.eq(&x)?.to(DType::F32)?.mul(&comp)?;
        let n = comp.sum(&[1], true)?.max_scalar(1.0)?; // (B, 1); padding rows have none
        let a = same.sum(&[1], true)?.div(&n)?;
        a.div(&a.rsub_scalar(1.0)?.add_scalar(1e-12)?)?
            .add_scalar(1e-12)?
            .log()?
            .clip(s.min_log_snr, s.max_log_snr)?
    } else {
        log_snr.broadcast_to(&[b, 1])?
    };

    // Attention: noisy queries see every key; clean (prompt) queries see clean keys.
    let attn = block_attention(&noise_mask)?; // (B, L, L)
    let pos = g.iota(&[b, l], 1, DType::I32)?;
    let out = forward(
        cfg,
        &p,
        &z,
        &attn,
        &pos,
        ForwardOpts {
            dtype,
            attentions: false,
        },
    )?;
    let t = gidd_loss(s, &out.logits, &z, &x, &l_row.broadcast_to(&[b, l])?, 1.0)?;
    // The reference multiplies by the noise mask and sums over the completion mask; the
    // completion is noisy, so the completion mask alone selects the same terms.
    let elbo = t.elbo.mul(&comp)?;

    let mut order = p.names();
    order.extend(LEVEL_INPUTS.iter().map(|n| n.to_string()));
    let refs: Vec<&str> = order.iter().map(|n| n.as_str()).collect();
    Ok((Program::compile(&[elbo, z, l_row], &refs)?, order))
}

/// Scores every request (see the module doc). With `trace`, also records the canvases
/// and every level's z and ELBO log-SNR.
pub fn likelihood(
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    reqs: &[Request],
    o: &LikelihoodOpts,
    mut trace: Option<&mut Trace>,
) -> Result<Vec<Score>> {
    validate(reqs, cfg, o.canvas_len)?;
    if o.num_denoising_steps == 0 {
        bail!("--num_denoising_steps must be at least 1");
    }
    if o.batch_size == 0 {
        bail!("--batch_size must be at least 1");
    }
    let (len, bs) = (o.canvas_len, o.batch_size.min(reqs.len()).max(1));
    let s = schedule_of(cfg);
    let levels = level_log_snrs(
        o.noise_schedule,
        o.num_denoising_steps,
        s.min_log_snr,
        s.max_log_snr,
    );
    let (prog, _) = build_level(cfg, &s, bs, len, o.effective_log_snr, o.dtype)
        .context("building the likelihood program")?;
    let mut lp = CpuExecutor.load(&prog)?;
    let key = seed_key(o.seed);
    let seed_t = HostTensor::u32(vec![2], key.to_vec())?;
    if let Some(t) = trace.as_deref_mut() {
        t.labels.clear();
        t.levels = levels
            .iter()
            .map(|&l| LevelTrace {
                log_snr: l,
                z: vec![],
                elbo_log_snr: vec![],
                elbo: vec![],
            })
            .collect();
    }

    let mut scores = Vec::with_capacity(reqs.len());
    let start = std::time::Instant::now();
    for (bi, chunk) in reqs.chunks(bs).enumerate() {
        let row0 = bi * bs;
        let (mut lab, mut nm, mut cm) = (
            vec![PAD as i32; bs * len],
            vec![0f32; bs * len],
            vec![0f32; bs * len],
        );
        for (r, req) in chunk.iter().enumerate() {
            let x = canvas_labels(req, len, o.prior, cfg.vocab_size, o.seed, row0 + r);
            let (p, c) = (req.prompt.len(), req.completion.len());
            for (j, &t) in x.iter().enumerate() {
                lab[r * len + j] = t as i32;
            }
            nm[r * len + p..(r + 1) * len].fill(1.0);
            cm[r * len + p..r * len + p + c].fill(1.0);
            if let Some(t) = trace.as_deref_mut() {
                t.labels.push(x);
            }
        }
        // Padding rows (a short last batch): all clean, nothing scored.
        let labels = HostTensor::i32(vec![bs, len], lab)?;
        let noise_mask = HostTensor::f32(vec![bs, len], nm)?;
        let comp = HostTensor::f32(vec![bs, len], cm)?;
        let row0_t = HostTensor::u32(vec![], vec![row0 as u32])?;
        let mut acc = vec![0f64; bs * len];
        for (li, &l) in levels.iter().enumerate() {
            let level_t = HostTensor::u32(vec![], vec![li as u32])?;
            let l_t = HostTensor::scalar_f32(l as f32);
            let mut ins: Vec<&HostTensor> = params.iter().map(|(_, t)| t).collect();
            ins.extend([
                &labels,
                &noise_mask,
                &comp,
                &seed_t,
                &level_t,
                &row0_t,
                &l_t,
            ]);
            let out = CpuExecutor.run(&mut lp, &ins)?;
            let elbo = out[0].to_f64_vec();
            for (a, e) in acc.iter_mut().zip(&elbo) {
                *a += e;
            }
            if let Some(t) = trace.as_deref_mut() {
                let z = out[1].to_f64_vec();
                let lr = out[2].to_f64_vec();
                let lt = &mut t.levels[li];
                for (r, req) in chunk.iter().enumerate() {
                    let (p, c) = (req.prompt.len(), req.completion.len());
                    lt.z.push(
                        z[r * len..(r + 1) * len]
                            .iter()
                            .map(|&v| v as u32)
                            .collect(),
                    );
                    lt.elbo_log_snr.push(lr[r]);
                    lt.elbo.push(elbo[r * len + p..r * len + p + c].to_vec());
                }
            }
        }
        for (r, req) in chunk.iter().enumerate() {
            let (p, c) = (req.prompt.len(), req.completion.len());
            let token_nll: Vec<f64> = acc[r * len + p..r * len + p + c]
                .iter()
                .map(|a| a / levels.len() as f64)
                .collect();
            let total: f64 = token_nll.iter().sum();
            let mean = total / c as f64;
            scores.push(Score {
                total_nll: total,
                mean_nll: mean,
                ppl: mean.exp(),
                num_tokens: c,
                token_nll,
            });
        }
        if o.progress {
            eprintln!(
                "likelihood: {}/{} requests, {} levels, {:.1}s",
                scores.len(),
                reqs.len(),
                levels.len(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(scores)
}

/// Special ids a text request is wrapped in: the reference tokenizes with
/// `add_special_tokens=True` (bos ... eos) and drops the prompt's last token (eos) and
/// the completion's first (bos), so prompt = bos + text, completion = text + eos.
fn bos_eos(tok: &Tok) -> (u32, u32) {
    let sp = tok.special_ids();
    (sp.bos.unwrap_or(BOS), sp.eos.unwrap_or(EOS))
}

fn ids_field(v: &serde_json::Value, name: &str, line: usize) -> Result<Vec<u32>> {
    let arr = v
        .as_array()
        .with_context(|| format!("line {line}: \"{name}\" must be an array of token ids"))?;
    arr.iter()
        .map(|t| {
            t.as_u64()
                .filter(|&x| x <= u32::MAX as u64)
                .map(|x| x as u32)
                .with_context(|| {
                    format!(
                        "line {line}: \"{name}\" holds {t}, not a non-negative integer token id"
                    )
                })
        })
        .collect()
}

/// Parses one request line: {"prompt", "completion"} (text; needs a tokenizer) or
/// {"prompt_ids", "completion_ids"} (ids used as given). `line` is 1-based, for errors.
pub fn parse_request(text: &str, line: usize, tok: Option<&Tok>) -> Result<Request> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        // serde's message ends "at line 1 column N": the line is ours, keep the column.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        anyhow::anyhow!("line {line}, column {}: not valid JSON: {msg}", e.column())
    })?;
    let obj = v
        .as_object()
        .with_context(|| format!("line {line}: expected a JSON object"))?;
    if let (Some(p), Some(c)) = (obj.get("prompt_ids"), obj.get("completion_ids")) {
        return Ok(Request {
            prompt: ids_field(p, "prompt_ids", line)?,
            completion: ids_field(c, "completion_ids", line)?,
        });
    }
    match (obj.get("prompt"), obj.get("completion")) {
        (Some(p), Some(c)) => {
            let (Some(p), Some(c)) = (p.as_str(), c.as_str()) else {
                bail!("line {line}: \"prompt\" and \"completion\" must be strings");
            };
            let Some(tok) = tok else {
                bail!("line {line}: text requests need a tokenizer: put tokenizer.json in the checkpoint directory or pass --tokenizer (or give prompt_ids/completion_ids)");
            };
            let (bos, eos) = bos_eos(tok);
            let mut prompt = vec![bos];
            prompt.extend(tok.encode(p)?);
            let mut completion = tok.encode(c)?;
            completion.push(eos);
            Ok(Request { prompt, completion })
        }
        _ => bail!(
            "line {line}: a request needs \"prompt\" and \"completion\" (text) or \"prompt_ids\" and \"completion_ids\""
        ),
    }
}

/// Reads a requests file, one JSON object a line (blank lines skipped): the requests
/// and their 1-based line numbers.
pub fn read_requests(path: &Path, tok: Option<&Tok>) -> Result<Vec<(usize, Request)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read requests file {}", path.display()))?;
    let mut out = vec![];
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let r = parse_request(l, i + 1, tok).with_context(|| format!("{}", path.display()))?;
        out.push((i + 1, r));
    }
    if out.is_empty() {
        bail!("{}: no requests", path.display());
    }
    Ok(out)
}

/// One output line: the score, plus what an lm-eval `loglikelihood` request returns,
/// (logprob, is_greedy). logprob = -total_nll, an ELBO bound on log p(completion | prompt).
/// is_greedy is not defined for a diffusion model (there is no left-to-right argmax to
/// compare with); like the reference's lm-eval fork we always report false.
/// A ppl past f64's range (mean NLL above ~709 nats) is written as null.
pub fn score_json(s: &Score) -> serde_json::Value {
    serde_json::json!({
        "total_nll": s.total_nll,
        "mean_nll": s.mean_nll,
        "ppl": s.ppl,
        "num_tokens": s.num_tokens,
        "logprob": -s.total_nll,
        "is_greedy": false,
    })
}
