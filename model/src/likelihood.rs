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
//!   `batch_size` or its batch neighbours (in JAX it depends on both). Bits cannot match JAX;
//!   [`likelihood_given`] takes the reference's recorded canvases and draws instead, through
//!   the same loop, and `gidd audit` checks every level's terms and the totals on them.
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

use crate::generate::NoiseSchedule;
use crate::loss::gidd_loss;
use crate::noise::{block_attention, draw_marginal};
use crate::schedule::{MASK, PAD};
use crate::transformer::{forward, ForwardOpts};
use crate::{GiddConfig, Params, Schedule};
use anyhow::{bail, Context, Result};
use gidd_engine::api::uniform_rows_at;
use gidd_engine::{DType, Executor, Graph, HostTensor, Program, Tensor};

/// What fills the canvas after the completion (the reference's `prior` argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Prior {
    #[cfg_attr(feature = "clap", value(alias = "masked"))]
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
    /// the per-token terms per request over the whole canvas, times the noise mask (the
    /// reference's per-level `nlls`: the noised tail after the completion included)
    pub terms: Vec<Vec<f64>>,
}

/// Canvases and draws given instead of drawn: the reference's own (its `likelihood_golden`
/// records them), so that `gidd audit` runs them through this module's one code path.
#[derive(Clone, Debug, Default)]
pub struct Canvases {
    /// labels x per request, the whole canvas (prompt, completion, prior tail)
    pub labels: Vec<Vec<u32>>,
    /// z per level, per request, the whole canvas
    pub z: Vec<Vec<Vec<u32>>>,
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
    anyhow::ensure!(!reqs.is_empty(), "no requests to score");
    for (i, r) in reqs.iter().enumerate() {
        check_request(r, cfg, canvas_len).with_context(|| format!("request {}", i + 1))?;
    }
    Ok(())
}

/// Whether the level program reads the level's log-SNR: to draw z, or as the ELBO's.
fn uses_log_snr(given_z: bool, effective: bool) -> bool {
    !given_z || !effective
}

/// Names of the level program's inputs after the parameters: the canvas (the completion
/// mask where the effective log-SNR reads it), then either our draw's keys (seed, level,
/// each row's draw index) or the given z, then the level's log-SNR (where used).
fn level_inputs(given_z: bool, effective: bool) -> Vec<&'static str> {
    let mut v = vec!["labels", "noise_mask"];
    if effective {
        v.push("completion_mask");
    }
    if given_z {
        v.push("z");
    } else {
        v.extend(["seed", "level", "rows"]);
    }
    if uses_log_snr(given_z, effective) {
        v.push("log_snr");
    }
    v
}

/// One level over a batch, as one graph: draw z ~ q_t(. | x) at the level's log-SNR (or
/// take z as an input, `given_z`), run the model under the block mask, and return the
/// per-token ELBO terms times the noise mask (the reference's per-level `nlls`).
///
/// # Shapes
/// labels [B, L] i32, noise_mask and completion_mask [B, L] f32 (1 = yes; the completion mask
/// only with `effective`), then seed u32 [B, 2] (each row's key),
/// level u32 scalar and rows u32 [B] (each row's draw index; drawn) or z [B, L] i32 (given), log_snr scalar in the master
/// precision (f64 for `dtype` f64, else f32; not an input where z is given and the ELBO
/// takes the effective log-SNR) -> terms [B, L] (0 on the prompt and padding),
/// z [B, L] i32, the ELBO's log-SNR per row [B, 1]
#[allow(clippy::too_many_arguments)]
pub fn build_level(
    cfg: &GiddConfig,
    s: &Schedule,
    batch: usize,
    len: usize,
    effective: bool,
    dtype: DType,
    given_z: bool,
    param_dtype: &dyn Fn(&str) -> DType,
) -> Result<(Program, Vec<String>)> {
    let g = Graph::new();
    let master = dtype.accum();
    let p = Params::declare_each(&g, cfg, param_dtype);
    let (b, l) = (batch, len);
    let x = g.input("labels", &[b, l], DType::I32);
    // 0/1 masks: exact in any precision, so the host always sends f32
    let noise_mask = g.input("noise_mask", &[b, l], DType::F32).to(master)?;
    let log_snr = g.input("log_snr", &[], master);
    let z = if given_z {
        g.input("z", &[b, l], DType::I32)
    } else {
        let seed = g.input("seed", &[b, 2], DType::U32);
        let level = g.input("level", &[], DType::U32);
        let rows = g.input("rows", &[b], DType::U32);
        let u = |k: u32| -> Result<Tensor> {
            let stream = level
                .mul(&g.scalar(3.0, DType::U32))?
                .add(&g.scalar((1 + k) as f64, DType::U32))?; // level_stream(level, k)
            Ok(uniform_rows_at(&g, l, &seed, &stream, &rows)?)
        };
        let lt = log_snr.broadcast_to(&[b, l])?; // (B, L)
        let noisy = noise_mask.eq_scalar(1.0)?;
        draw_marginal(s, &x, &lt, &noisy, [u(0)?, u(1)?, u(2)?])?
    };

    // The ELBO's log-SNR per row: the level's, or the effective one from the completion.
    let l_row = if effective {
        let comp = g.input("completion_mask", &[b, l], DType::F32).to(master)?;
        let same = z.eq(&x)?.to(master)?.mul(&comp)?;
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
    // As the reference: terms times the noise mask; the host sums the completion's.
    let terms = t.elbo.mul(&noise_mask)?;

    let mut order = p.names();
    order.extend(
        level_inputs(given_z, effective)
            .iter()
            .map(|n| n.to_string()),
    );
    let refs: Vec<&str> = order.iter().map(|n| n.as_str()).collect();
    Ok((Program::compile(&[terms, z, l_row], &refs)?, order))
}

/// Scores every request (see the module doc). With `trace`, also records the canvases
/// and every level's z and ELBO log-SNR.
pub fn likelihood<E: Executor>(
    exec: &E,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    reqs: &[Request],
    o: &LikelihoodOpts,
    trace: Option<&mut Trace>,
) -> Result<Vec<Score>> {
    score_levels(exec, cfg, params, reqs, None, o, None, trace)
}

/// [`likelihood`] with each request's draw index given (`likelihood` uses its position in
/// `reqs`): request i draws as the request at line `indices[i]` of an `eval --requests`
/// file would, whatever its position, so one batch can hold several requests that draw
/// alike (`gidd serve` scores every split of one prompt as that prompt's own request).
pub fn likelihood_indexed<E: Executor>(
    exec: &E,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    reqs: &[Request],
    indices: &[usize],
    o: &LikelihoodOpts,
) -> Result<Vec<Score>> {
    let seed = o.seed;
    let keys: Vec<RowKey> = indices
        .iter()
        .map(|&index| RowKey { seed, index })
        .collect();
    likelihood_keyed(exec, cfg, params, reqs, &keys, o)
}

/// Where a request's draws are keyed: as line `index` of an `eval --requests --seed seed` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowKey {
    pub seed: u64,
    pub index: usize,
}

/// [`likelihood`] with each request's seed and draw index given (`o.seed` is unused):
/// requests of several callers with their own seeds share batches and each still scores
/// as it would alone (`gidd serve` batching clients).
pub fn likelihood_keyed<E: Executor>(
    exec: &E,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    reqs: &[Request],
    keys: &[RowKey],
    o: &LikelihoodOpts,
) -> Result<Vec<Score>> {
    let (k, n) = (keys.len(), reqs.len());
    anyhow::ensure!(k == n, "{k} draw keys for {n} requests");
    score_levels(exec, cfg, params, reqs, Some(keys), o, None, None)
}

/// [`likelihood`] on given canvases and draws instead of ours (`gidd audit` feeds the
/// reference's): `given.labels[i]` is request i's canvas, `given.z[level][i]` its z at
/// that level. Everything else (masks, levels, effective log-SNR, model, terms, sums) is
/// the same code.
pub fn likelihood_given<E: Executor>(
    exec: &E,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    reqs: &[Request],
    o: &LikelihoodOpts,
    given: &Canvases,
    trace: Option<&mut Trace>,
) -> Result<Vec<Score>> {
    let (n, len) = (reqs.len(), o.canvas_len);
    let rows_ok = |rows: &[Vec<u32>]| rows.len() == n && rows.iter().all(|r| r.len() == len);
    if !rows_ok(&given.labels) {
        bail!("given canvases: expected {n} labels rows of {len} tokens");
    }
    if given.z.len() != o.num_denoising_steps || !given.z.iter().all(|zl| rows_ok(zl)) {
        bail!(
            "given canvases: expected z for {} levels, {n} rows of {len} tokens each",
            o.num_denoising_steps
        );
    }
    for (i, x) in given.labels.iter().enumerate() {
        if let Some(bad) = x.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            bail!(
                "given canvas {}: token id {bad} outside the vocabulary",
                i + 1
            );
        }
    }
    score_levels(exec, cfg, params, reqs, None, o, Some(given), trace)
}

/// Per batch row: labels, noise mask, completion mask of a chunk of requests (rows past
/// the chunk are padding: all clean, nothing scored). `labels_of(r)` is row r's canvas.
pub fn batch_rows(
    chunk: &[Request],
    bs: usize,
    len: usize,
    labels_of: impl Fn(usize) -> Vec<u32>,
) -> (Vec<i32>, Vec<f32>, Vec<f32>) {
    let (mut lab, mut nm, mut cm) = (
        vec![PAD as i32; bs * len],
        vec![0f32; bs * len],
        vec![0f32; bs * len],
    );
    for (r, req) in chunk.iter().enumerate() {
        let (p, c) = (req.prompt.len(), req.completion.len());
        for (j, t) in labels_of(r).into_iter().enumerate() {
            lab[r * len + j] = t as i32;
        }
        nm[r * len + p..(r + 1) * len].fill(1.0);
        cm[r * len + p..r * len + p + c].fill(1.0);
    }
    (lab, nm, cm)
}

/// The one likelihood loop: our draws (`given` None) or the given ones; request i draws
/// with key `keys[i]` (default: `o.seed`, index i).
#[allow(clippy::too_many_arguments)]
fn score_levels<E: Executor>(
    exec: &E,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    reqs: &[Request],
    keys: Option<&[RowKey]>,
    o: &LikelihoodOpts,
    given: Option<&Canvases>,
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
    let master = o.dtype.accum();
    let s = schedule_of(cfg);
    let levels = level_log_snrs(
        o.noise_schedule,
        o.num_denoising_steps,
        s.min_log_snr,
        s.max_log_snr,
    );
    // Parameters in the master precision as they are; bf16 and f16 ones (mapped from a
    // checkpoint) keep their dtype and widen inside the program where used, which is exact, so that a large
    // model is never copied to f32 on the host; anything else converts to the master.
    let kept = |d: DType| if d.is_half() { d } else { master };
    let given_dtype: std::collections::BTreeMap<&str, DType> = params
        .iter()
        .map(|(n, t)| (n.as_str(), kept(t.dtype())))
        .collect();
    let param_dtype = |n: &str| given_dtype.get(n).copied().unwrap_or(master);
    let (prog, _) = build_level(
        cfg,
        &s,
        bs,
        len,
        o.effective_log_snr,
        o.dtype,
        given.is_some(),
        &param_dtype,
    )
    .context("building the likelihood program")?;
    let mut lp = exec.load(&prog)?;
    // Parameters go to the device once; per batch only its rows and their keys do.
    let params_d = params
        .iter()
        .map(|(_, t)| {
            if kept(t.dtype()) == t.dtype() {
                exec.upload(t)
            } else {
                exec.upload(&t.convert(master))
            }
        })
        .collect::<gidd_engine::Result<Vec<_>>>()?;
    if let Some(t) = trace.as_deref_mut() {
        t.labels.clear();
        t.levels = levels
            .iter()
            .map(|&l| LevelTrace {
                log_snr: l,
                z: vec![],
                elbo_log_snr: vec![],
                elbo: vec![],
                terms: vec![],
            })
            .collect();
    }

    let mut scores = Vec::with_capacity(reqs.len());
    let start = std::time::Instant::now();
    for (bi, chunk) in reqs.chunks(bs).enumerate() {
        let row0 = bi * bs;
        let key = |r: usize| match keys {
            Some(k) => k[row0 + r],
            None => RowKey {
                seed: o.seed,
                index: row0 + r,
            },
        };
        let labels_of = |r: usize| match given {
            Some(gv) => gv.labels[row0 + r].clone(),
            None => {
                let k = key(r);
                canvas_labels(&chunk[r], len, o.prior, cfg.vocab_size, k.seed, k.index)
            }
        };
        let (lab, nm, cm) = batch_rows(chunk, bs, len, labels_of);
        if let Some(t) = trace.as_deref_mut() {
            t.labels.extend((0..chunk.len()).map(labels_of));
        }
        let labels = exec.upload(&HostTensor::i32(vec![bs, len], lab.clone())?)?;
        let noise_mask = exec.upload(&HostTensor::f32(vec![bs, len], nm)?)?;
        let comp = exec.upload(&HostTensor::f32(vec![bs, len], cm)?)?;
        // padding rows draw too (o.seed, the batch's next indices); nothing of theirs is scored
        let row_keys: Vec<RowKey> = (0..bs)
            .map(|r| match r < chunk.len() {
                true => key(r),
                false => RowKey {
                    seed: o.seed,
                    index: row0 + r,
                },
            })
            .collect();
        let ids: Vec<u32> = row_keys.iter().map(|k| k.index as u32).collect();
        let rows_t = exec.upload(&HostTensor::u32(vec![bs], ids)?)?;
        let seeds: Vec<u32> = row_keys.iter().flat_map(|k| seed_key(k.seed)).collect();
        let seed_t = exec.upload(&HostTensor::u32(vec![bs, 2], seeds)?)?;
        let mut acc = vec![0f64; bs * len];
        for (li, &l) in levels.iter().enumerate() {
            // Our draw's level index, or the given z (padding rows: their clean labels).
            let level_in = match given {
                None => exec.upload(&HostTensor::u32(vec![], vec![li as u32])?)?,
                Some(gv) => {
                    let mut z = lab.clone();
                    for (r, zr) in gv.z[li][row0..row0 + chunk.len()].iter().enumerate() {
                        for (j, &t) in zr.iter().enumerate() {
                            z[r * len + j] = t as i32;
                        }
                    }
                    exec.upload(&HostTensor::i32(vec![bs, len], z)?)?
                }
            };
            let l_t = exec.upload(&HostTensor::f64(vec![], vec![l])?.convert(master))?;
            let mut ins: Vec<&E::Buffer> = params_d.iter().collect();
            ins.extend([&labels, &noise_mask]);
            if o.effective_log_snr {
                ins.push(&comp);
            }
            match given {
                None => ins.extend([&seed_t, &level_in, &rows_t]),
                Some(_) => ins.push(&level_in),
            }
            if uses_log_snr(given.is_some(), o.effective_log_snr) {
                ins.push(&l_t);
            }
            let out = exec.run(&mut lp, &ins)?;
            let terms = exec.download(&out[0])?.to_f64_vec();
            for (a, e) in acc.iter_mut().zip(&terms) {
                *a += e;
            }
            if let Some(t) = trace.as_deref_mut() {
                let z = exec.download(&out[1])?.to_f64_vec();
                let lr = exec.download(&out[2])?.to_f64_vec();
                let lt = &mut t.levels[li];
                for (r, req) in chunk.iter().enumerate() {
                    let (p, c) = (req.prompt.len(), req.completion.len());
                    let row = r * len..(r + 1) * len;
                    lt.z.push(z[row.clone()].iter().map(|&v| v as u32).collect());
                    lt.elbo_log_snr.push(lr[r]);
                    lt.elbo.push(terms[r * len + p..r * len + p + c].to_vec());
                    lt.terms.push(terms[row].to_vec());
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
