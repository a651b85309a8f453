//! Block-wise diffusion generation (SPEC.md section 6), the HF `generate` loop:
//! the model runs on the canvas, sampling happens on the host in f64.

mod canvas;
mod correct;
mod step;

use crate::sample::host::sigmoid;
pub use crate::sample::host::{draw, draw_u, predictable_logits, probs_with_topk_topp, Posterior};
use crate::sample::pi_vec;
use crate::schedule::{EOS, MASK, PAD};
use crate::GiddConfig;
use anyhow::{bail, Result};
pub use canvas::{Canvas, CanvasStats, DeviceLogits};
pub use correct::{self_correct, Change};
use gidd_engine::rng::{uniform_f64_at, HostRng};
use gidd_engine::Executor;
use std::ops::ControlFlow;

/// `--sampling_method`: how a step picks the positions it denoises (SPEC.md section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Method {
    Adaptive,
    Ancestral,
}

/// `--noise_schedule`: the log-SNR grid a generation or likelihood walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum NoiseSchedule {
    Linear,
    Cosine,
}

#[derive(Clone, Debug)]
pub struct GenOpts {
    pub max_length: usize,
    pub min_length: usize,
    pub block_length: usize,
    pub steps: usize,
    pub method: Method,
    pub schedule: NoiseSchedule,
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub tokens_per_step: usize,
    pub seed: u64,
}

impl GenOpts {
    /// Plain ancestral sampling on the cosine schedule at temperature 1, one token per step,
    /// no truncation and no minimum length: what benches, tests and training samples use.
    pub fn ancestral(max_length: usize, block_length: usize, steps: usize, seed: u64) -> Self {
        GenOpts {
            max_length,
            min_length: 0,
            block_length,
            steps,
            method: Method::Ancestral,
            schedule: NoiseSchedule::Cosine,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            tokens_per_step: 1,
            seed,
        }
    }
}

/// Where one row's draws are keyed in [`generate_keyed`]: a seed and a row number of the
/// caller's choosing (a server: the request's seed and the row's index in the request), so
/// the row draws the same numbers whatever batch it runs in and wherever in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowSeed {
    pub seed: u64,
    pub row: u32,
}

/// One denoising step's shared inputs: the block's shape and where the draws are keyed.
struct StepCtx<'a> {
    v: usize,
    blk: usize,
    min_eos: usize,
    seed: u64,
    /// per batch row, its own key ([`generate_keyed`]); else (seed, batch row)
    keys: Option<&'a [RowSeed]>,
    block: usize,
    step: usize,
    ws: usize,
}

impl StepCtx<'_> {
    /// The uniform for block position i's draw, keyed by (seed; block, step, row,
    /// canvas position): the same whatever order or thread the positions run in. Steps
    /// count from 1, so step word 0 is free for the keyed prior ([`keyed_prior`]).
    fn uniform(&self, i: usize) -> f64 {
        let (row, j) = (i / self.blk, self.ws + i % self.blk);
        let (seed, row) = match self.keys {
            Some(k) => (k[row].seed, k[row].row),
            None => (self.seed, row as u32),
        };
        uniform_f64_at(seed, [j as u32, row, self.step as u32, self.block as u32])
    }
}

/// The prior canvas of a keyed row: position j is a uniform id with probability
/// sigmoid(min_log_snr + noise_type), else the mask, from draws at counters (j, row, 0, 0)
/// and (j, row, 0, 1) under the row's seed (no step is 0: the steps' draws never meet these).
fn keyed_prior(key: RowSeed, t: usize, v: usize, pu: f64) -> Vec<u32> {
    (0..t as u32)
        .map(|j| {
            if uniform_f64_at(key.seed, [j, key.row, 0, 0]) < pu {
                let u = uniform_f64_at(key.seed, [j, key.row, 0, 1]);
                ((u * v as f64) as usize).min(v - 1) as u32
            } else {
                MASK
            }
        })
        .collect()
}

/// What generation reports while it runs.
pub enum GenEvent<'a> {
    /// a denoising step ran (`step` counts down from `steps` to 1 in each block)
    Step { block: usize, step: usize },
    /// block `block` is final: `x` is the canvas, [start, end) the block's positions
    Block {
        x: &'a [Vec<u32>],
        block: usize,
        start: usize,
        end: usize,
    },
}

/// Generates from one batch of equal-length prompts. `prior` replaces the sampled prior
/// canvas when given; `on_block(canvas, end)` is called as each block becomes final.
pub fn generate<E: Executor>(
    canvas: &mut Canvas<E>,
    cfg: &GiddConfig,
    prompts: &[Vec<u32>],
    o: &GenOpts,
    prior: Option<Vec<Vec<u32>>>,
    mut on_block: impl FnMut(&[Vec<u32>], usize),
) -> Result<Vec<Vec<u32>>> {
    generate_with(canvas, cfg, prompts, o, prior, |e| {
        if let GenEvent::Block { x, end, .. } = e {
            on_block(x, end)
        }
    })
}

/// The number of blocks a generation of `o` from a `p_len`-token prompt runs at most
/// on a `t`-token canvas (fewer when every row reaches eos).
pub fn max_blocks(o: &GenOpts, p_len: usize, t: usize) -> usize {
    let span = o.max_length.min(t.saturating_sub(p_len));
    span.div_ceil(o.block_length.max(1)).max(1)
}

/// `generate`, reporting every step and block to `on_event`.
pub fn generate_with<E: Executor>(
    canvas: &mut Canvas<E>,
    cfg: &GiddConfig,
    prompts: &[Vec<u32>],
    o: &GenOpts,
    prior: Option<Vec<Vec<u32>>>,
    mut on_event: impl FnMut(GenEvent<'_>),
) -> Result<Vec<Vec<u32>>> {
    generate_until(canvas, cfg, prompts, o, prior, |e| {
        on_event(e);
        ControlFlow::Continue(())
    })
}

/// The message of the error [`generate_until`] returns when its caller stops it.
pub const CANCELLED: &str = "generation cancelled";

/// `generate_with` whose `on_event` may stop it (a server whose client went away):
/// `Break` ends the run after that event with an error saying [`CANCELLED`].
pub fn generate_until<E: Executor>(
    canvas: &mut Canvas<E>,
    cfg: &GiddConfig,
    prompts: &[Vec<u32>],
    o: &GenOpts,
    prior: Option<Vec<Vec<u32>>>,
    on_event: impl FnMut(GenEvent<'_>) -> ControlFlow<()>,
) -> Result<Vec<Vec<u32>>> {
    run(canvas, cfg, prompts, o, Draws::Batch(prior), on_event)
}

/// [`generate_until`] with every row's draws keyed by its own [`RowSeed`] (`o.seed` is
/// unused): its prior canvas and every step's draw depend on its key only, never on the
/// batch it shares or its place there, so a row generated alone or beside others gives the
/// same tokens (on an executor whose forward treats rows alike, as the cpu one does).
pub fn generate_keyed<E: Executor>(
    canvas: &mut Canvas<E>,
    cfg: &GiddConfig,
    prompts: &[Vec<u32>],
    keys: &[RowSeed],
    o: &GenOpts,
    on_event: impl FnMut(GenEvent<'_>) -> ControlFlow<()>,
) -> Result<Vec<Vec<u32>>> {
    if keys.len() != prompts.len() {
        bail!("{} row keys for {} prompts", keys.len(), prompts.len());
    }
    run(canvas, cfg, prompts, o, Draws::Keyed(keys), on_event)
}

/// Where a generation's draws come from.
enum Draws<'a> {
    /// the batch's: a prior from one stream under `o.seed` (or given), steps keyed by
    /// (o.seed, batch row), as `gidd generate` has always drawn
    Batch(Option<Vec<Vec<u32>>>),
    /// each row's own key
    Keyed(&'a [RowSeed]),
}

fn run<E: Executor>(
    canvas: &mut Canvas<E>,
    cfg: &GiddConfig,
    prompts: &[Vec<u32>],
    o: &GenOpts,
    draws: Draws<'_>,
    mut on_event: impl FnMut(GenEvent<'_>) -> ControlFlow<()>,
) -> Result<Vec<Vec<u32>>> {
    let b = prompts.len();
    let t = canvas.len;
    let v = canvas.vocab();
    let p_len = prompts.first().map(|p| p.len()).unwrap_or(0);
    if prompts.iter().any(|p| p.len() != p_len) {
        bail!("prompts in one batch must have equal length");
    }
    if p_len >= t {
        bail!("prompt of {p_len} tokens leaves no room in a {t}-token context (max_position_embeddings)");
    }
    if let Some(bad) = prompts.iter().flatten().find(|&&x| x as usize >= v) {
        bail!("prompt token id {bad} is outside the model's vocabulary of {v}");
    }
    if o.block_length == 0 || o.steps == 0 {
        bail!("block_length and steps must be positive");
    }
    let mut rng = HostRng::new(o.seed);
    let pu = sigmoid(cfg.min_log_snr + cfg.noise_type);
    let keys = match draws {
        Draws::Keyed(k) => Some(k),
        Draws::Batch(_) => None,
    };
    let mut x: Vec<Vec<u32>> = match draws {
        Draws::Batch(Some(p)) => p,
        Draws::Keyed(k) => k.iter().map(|&key| keyed_prior(key, t, v, pu)).collect(),
        Draws::Batch(None) => (0..b)
            .map(|_| {
                (0..t)
                    .map(|_| {
                        if rng.next_f64() < pu {
                            rng.below(v as u32)
                        } else {
                            MASK
                        }
                    })
                    .collect()
            })
            .collect(),
    };
    for (row, p) in x.iter_mut().zip(prompts) {
        row[..p_len].copy_from_slice(p);
    }
    let mut noise = vec![vec![true; t]; b];
    for row in noise.iter_mut() {
        row[..p_len].fill(false);
    }
    let (amin, amax) = (
        sigmoid(cfg.min_log_snr) as f32 as f64,
        sigmoid(cfg.max_log_snr) as f32 as f64,
    );
    let log_snrs: Vec<f64> = (0..=o.steps)
        .map(|i| {
            let ts = i as f64 / o.steps as f64;
            let f = match o.schedule {
                NoiseSchedule::Linear => 1.0 - ts,
                NoiseSchedule::Cosine => 0.5 + 0.5 * (ts * std::f64::consts::PI).cos(),
            };
            let a = (amax - amin) * f + amin;
            (a / (1.0 - a)).ln().clamp(cfg.min_log_snr, cfg.max_log_snr)
        })
        .collect();
    let mut nb = 0;
    loop {
        let ws = p_len + nb * o.block_length;
        let we = (ws + o.block_length).min(t);
        let blk = we - ws;
        canvas.begin_block(&x, ws)?;
        // each row's logits from the last call that ran it
        let mut logits = step::Logits::new(canvas.samples_on_device());
        // rows whose tokens changed since their logits were computed
        let mut stale = vec![true; b];
        for step in (1..=o.steps).rev() {
            let rows: Vec<usize> = (0..b).filter(|&r| stale[r]).collect();
            if !rows.is_empty() {
                logits.refresh(canvas, &x, &noise, ws, we, &rows)?;
            }
            if on_event(GenEvent::Step { block: nb, step }).is_break() {
                bail!(CANCELLED);
            }
            let min_eos = (o.min_length + p_len).saturating_sub(ws);
            let sc = StepCtx {
                v,
                blk,
                min_eos,
                seed: o.seed,
                keys,
                block: nb,
                step,
                ws,
            };
            let pi = pi_vec(cfg, log_snrs[step], MASK as usize);
            let post = Posterior::new(cfg, log_snrs[step], log_snrs[step - 1]);
            let per = step::draws(canvas, &logits, &sc, &x, o, &pi, &post)?;
            let z_next: Vec<u32> = match o.method {
                Method::Adaptive => {
                    let mut out = Vec::with_capacity(b * blk);
                    for r in 0..b {
                        let z = &x[r][ws..we];
                        let row = &per[r * blk..(r + 1) * blk];
                        // p_noise normalised over the block's positions (the HF sampler)
                        let sum: f64 = z.iter().map(|&id| pi[id as usize] as f64).sum();
                        let delta: Vec<f64> = row.iter().map(|d| d.0 / sum).collect();
                        let mut order: Vec<usize> = (0..blk).collect();
                        order.sort_by(|&a, &c| delta[c].total_cmp(&delta[a]));
                        let mut zn = z.to_vec();
                        for &j in order.iter().take(o.tokens_per_step) {
                            zn[j] = row[j].1;
                        }
                        out.extend(zn);
                    }
                    out
                }
                Method::Ancestral => per.iter().map(|d| d.1).collect(),
            };
            for r in 0..b {
                let zn = &z_next[r * blk..(r + 1) * blk];
                stale[r] = x[r][ws..we] != *zn || !canvas.reuse_logits;
                x[r][ws..we].copy_from_slice(zn);
            }
        }
        for row in noise.iter_mut() {
            row[..we].fill(false);
        }
        let flow = on_event(GenEvent::Block {
            x: &x,
            block: nb,
            start: ws,
            end: we,
        });
        if flow.is_break() {
            bail!(CANCELLED);
        }
        nb += 1;
        // Keyed rows count only eos already generated (up to this block's end): a uniform
        // prior can hold eos in the undenoised tail, and stopping on it would make a row's
        // text depend on whether its batch neighbours go on. `gidd generate` keeps the
        // reference's rule (SPEC.md section 6: any eos in the row).
        let has_eos = x.iter().all(|row| match keys {
            Some(_) => row[..we].contains(&EOS),
            None => row.contains(&EOS),
        });
        if ws + o.block_length >= o.max_length + p_len || has_eos || we >= t {
            break;
        }
    }
    let end = (o.max_length + p_len).min(t);
    Ok(x.into_iter()
        .map(|mut row| {
            row.truncate(end);
            if let Some(i) = row.iter().position(|&y| y == EOS).filter(|&i| i > 0) {
                row[i..].fill(PAD);
            }
            row
        })
        .collect())
}
