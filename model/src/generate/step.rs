//! One denoising step's draws for every position of a block: on the host from downloaded
//! logits, or with the executor's fused sampling step (`Op::SampleStep`) on logits left on
//! the device, so that only tokens and scores come back. Both run the same f64 arithmetic
//! (`gidd_engine::sample`) on the same uniforms: the tokens are the same.

use super::canvas::DeviceLogits;
use super::{Canvas, GenOpts, Method, StepCtx};
use crate::sample::host::Posterior;
use crate::schedule::{EOS, MASK};
use anyhow::Result;
use gidd_engine::op::{SampleMode, SampleSpec};
use gidd_engine::sample::{pack_uniform, step_row};
use gidd_engine::Executor;
use rayon::prelude::*;

/// A block's current logits between steps. On the device, each canvas row's logits sit in
/// the buffer of the last call that ran it: `owner[row]` = (buffer, row within it).
pub(super) enum Logits<E: Executor> {
    Host(Vec<f32>),
    Device {
        held: Vec<(DeviceLogits<E>, Vec<usize>)>,
        owner: Vec<(usize, usize)>,
    },
}

impl<E: Executor> Logits<E> {
    pub fn new(device: bool) -> Self {
        if device {
            Logits::Device {
                held: vec![],
                owner: vec![],
            }
        } else {
            Logits::Host(vec![])
        }
    }

    /// Recomputes the logits of canvas rows `rows` (ascending) of `b`.
    #[allow(clippy::too_many_arguments)]
    pub fn refresh(
        &mut self,
        canvas: &mut Canvas<E>,
        x: &[Vec<u32>],
        noise: &[Vec<bool>],
        ws: usize,
        we: usize,
        rows: &[usize],
    ) -> Result<()> {
        let b = x.len();
        match self {
            Logits::Host(logits) => {
                if rows.len() == b {
                    *logits = canvas.block_logits(x, noise, ws, we)?;
                } else {
                    // Rows never interact in the model: the unchanged rows keep their logits.
                    let part = canvas.block_logits_rows(x, noise, ws, we, rows)?;
                    let n = (we - ws) * canvas.vocab();
                    for (i, &r) in rows.iter().enumerate() {
                        logits[r * n..(r + 1) * n].copy_from_slice(&part[i * n..(i + 1) * n]);
                    }
                }
            }
            Logits::Device { held, owner } => {
                let d = canvas.block_logits_device(x, noise, ws, we, rows)?;
                if rows.len() == b {
                    held.clear();
                    *owner = (0..b).map(|r| (0, r)).collect();
                    held.push((d, rows.to_vec()));
                } else {
                    let h = held.len();
                    for (i, &r) in rows.iter().enumerate() {
                        owner[r] = (h, i);
                    }
                    held.push((d, rows.to_vec()));
                    // buffers no row reads any more are freed (indices shift down)
                    let mut live = vec![false; held.len()];
                    owner.iter().for_each(|&(k, _)| live[k] = true);
                    let mut new_index = vec![0; held.len()];
                    let mut k = 0;
                    for (i, &l) in live.iter().enumerate() {
                        new_index[i] = k;
                        k += usize::from(l);
                    }
                    let mut i = 0;
                    held.retain(|_| {
                        i += 1;
                        live[i - 1]
                    });
                    owner.iter_mut().for_each(|o| o.0 = new_index[o.0]);
                }
            }
        }
        Ok(())
    }
}

/// Every block position's (score, token) for this step, row-major [b, blk]: the adaptive
/// sampler's p_delta numerator (max x_hat - x_hat[z]) pi[z] and its draw, or the ancestral
/// draw (score 0). `x` is the canvas, `pi` the adaptive step's pi and `post` the ancestral
/// step's posterior.
pub(super) fn draws<E: Executor>(
    canvas: &mut Canvas<E>,
    logits: &Logits<E>,
    sc: &StepCtx,
    x: &[Vec<u32>],
    o: &GenOpts,
    pi: &[f32],
    post: &Posterior,
) -> Result<Vec<(f64, u32)>> {
    let (b, blk) = (x.len(), sc.blk);
    let z_at = |i: usize| x[i / blk][sc.ws + i % blk] as usize;
    let spec = SampleSpec {
        mask_id: MASK as usize,
        temperature: o.temperature,
        top_k: o.top_k,
        top_p: o.top_p,
        mode: match o.method {
            Method::Adaptive => SampleMode::Adaptive,
            Method::Ancestral => SampleMode::Ancestral(post.0),
        },
    };
    let (held, owner) = match logits {
        Logits::Host(l) => return Ok(host_draws(l, sc, b, &z_at, &spec, pi)),
        Logits::Device { held, owner } => (held, owner),
    };
    let mut out = vec![(0.0, 0u32); b * blk];
    for (k, (d, rows)) in held.iter().enumerate() {
        // every row of the buffer is sampled (a superseded one's draw is dropped)
        let input: Vec<i32> = rows
            .iter()
            .flat_map(|&r| (0..blk).map(move |j| r * blk + j))
            .flat_map(|i| {
                let ban = if i % blk < sc.min_eos { EOS as i32 } else { -1 };
                let [hi, lo] = pack_uniform(sc.uniform(i));
                [z_at(i) as i32, ban, hi, lo]
            })
            .collect();
        let got = canvas.sample_device(d, blk, spec, input)?;
        for (n, &r) in rows.iter().enumerate() {
            if owner[r].0 != k {
                continue;
            }
            for j in 0..blk {
                let row = &got[(n * blk + j) * 3..(n * blk + j + 1) * 3];
                let score = gidd_engine::sample::score_of(row);
                let zj = z_at(r * blk + j);
                out[r * blk + j] = (score * pi[zj] as f64, row[0] as u32);
            }
        }
    }
    Ok(out)
}

/// [`draws`] on the host from the block's logits [b, blk, V]: the fused step's own
/// arithmetic per position (`gidd_engine::sample::step_row`), in parallel, each position
/// from its own counter-keyed uniform.
fn host_draws(
    logits: &[f32],
    sc: &StepCtx,
    b: usize,
    z_at: &(dyn Fn(usize) -> usize + Sync),
    spec: &SampleSpec,
    pi: &[f32],
) -> Vec<(f64, u32)> {
    let v = sc.v;
    (0..b * sc.blk)
        .into_par_iter()
        .map(|i| {
            let zj = z_at(i);
            let ban = (i % sc.blk < sc.min_eos).then_some(EOS as usize);
            let row = &logits[i * v..(i + 1) * v];
            let (token, score) = step_row(spec, row, zj, ban, sc.uniform(i));
            (score * pi[zj] as f64, token as u32)
        })
        .collect()
}
