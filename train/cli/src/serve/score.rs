//! Echo scoring (`echo: true`, `max_tokens` 0 or 1, `logprobs: k`): per-token values whose
//! sums are `gidd eval --requests`' ELBO log-likelihood, for whichever context boundary the
//! client slices at afterwards (lm-eval's `local-completions` sends context+continuation
//! and sums `token_logprobs[ctxlen:-1]` itself; the server never learns ctxlen).
//!
//! A prompt is the ids x[0..N] the model sees (a text prompt: bos, not echoed, then its
//! tokens). S_c is eval's log-likelihood (minus its total NLL) of the completion
//! x[c..N] + eos given the clean prompt x[..c], with the same levels and draws as an
//! `eval --requests` file line holding that pair at the prompt's index in the request
//! (`seed` = eval's `--seed`). Every split c >= max(1, hidden) is one row of one batched
//! likelihood (`likelihood_keyed`: all of a prompt's rows draw as its own index under its
//! request's seed, so requests of other clients can share the batch), and
//! position c's value is l_c = S_c - S_(c+1) with S_N = 0; so any suffix sum from c
//! telescopes to S_c. With `context_tokens` only the split after that many echoed tokens is
//! scored (one row) and each scored token carries its level-averaged ELBO term: then only
//! sums from that boundary are meaningful.
//!
//! The scored completion always ends with eos (unless the prompt already does), as the
//! reference scores a completion; with `max_tokens: 1` that eos is echoed as one more entry
//! with a null logprob (its term is already in the last prompt token's value).
//!
//! `top_logprobs` at position j: the model's prediction there from one forward with x[..j]
//! clean and the rest of the canvas at the prior (the likelihood's noisiest level), shifted
//! so that the token's own entry equals its reported value: ranking and gaps are the
//! model's, and lm-eval's greedy check (value == max of the top values) holds exactly when
//! the token is the model's argmax given its clean prefix.

use super::engine::Engine;
use super::request::{ScorePrompt, ScoreWork};
use anyhow::Result;
use gidd_engine::Executor;
use gidd_model::generate::predictable_logits;
use gidd_model::likelihood::{
    canvas_labels, likelihood_keyed, LikelihoodOpts, Prior, Request, RowKey, Score,
};

/// One scored prompt: per echoed token its value (None where not scored) and, when asked,
/// the top entries of the model's prediction there.
pub struct Scored {
    pub ids: Vec<u32>,
    pub logprobs: Vec<Option<f64>>,
    pub top: Vec<Option<TopEntries>>,
}

/// A position's top entries: (token id, value), best first.
pub type TopEntries = Vec<(u32, f64)>;

impl ScoreWork {
    /// The first scored position of a prompt (the rest of its ids are scored).
    pub fn first(&self, p: &ScorePrompt) -> usize {
        match self.context {
            Some(c) => p.hidden + c,
            None => p.hidden.max(1),
        }
    }

    /// The scored splits of prompt i: every one from `first`, or the one after `context`.
    fn splits(&self, p: &ScorePrompt) -> std::ops::Range<usize> {
        let first = self.first(p);
        match self.context {
            Some(_) => first..first + 1,
            None => first..p.ids.len(),
        }
    }

    /// Likelihood rows of the request: what `--max_score_rows` bounds.
    pub fn rows(&self) -> usize {
        self.prompts.iter().map(|p| self.splits(p).len()).sum()
    }

    /// The likelihood request of split c: x[..c] clean, x[c..] + eos scored.
    fn split(&self, p: &ScorePrompt, c: usize) -> Request {
        let mut completion = p.ids[c..].to_vec();
        if p.ids.last() != Some(&self.eos) {
            completion.push(self.eos);
        }
        Request {
            prompt: p.ids[..c].to_vec(),
            completion,
        }
    }
}

impl<E: Executor + Clone> Engine<E> {
    /// Scores several requests (of one level count and schedule) as one batched
    /// likelihood: each row keyed by its request's seed and its prompt's index there, so
    /// every request gets what it would alone.
    pub(super) fn score_batch(&mut self, ws: &[&ScoreWork]) -> Result<Vec<Vec<Scored>>> {
        let (mut reqs, mut keys) = (vec![], vec![]);
        for w in ws {
            for (i, p) in w.prompts.iter().enumerate() {
                for c in w.splits(p) {
                    reqs.push(w.split(p, c));
                    keys.push(RowKey {
                        seed: w.seed,
                        index: i,
                    });
                }
            }
        }
        let Some(w0) = ws.first() else {
            return Ok(vec![]);
        };
        let o = LikelihoodOpts {
            num_denoising_steps: w0.levels,
            noise_schedule: w0.schedule,
            batch_size: self.max_rows,
            dtype: self.dtype,
            ..LikelihoodOpts::for_model(&self.cfg)
        };
        let scores = likelihood_keyed(&self.exec, &self.cfg, &self.params, &reqs, &keys, &o)?;
        let mut scores = scores.into_iter();
        ws.iter().map(|w| self.finish(w, &mut scores)).collect()
    }

    /// One request's answer from its rows' scores (taken from `scores` in order).
    fn finish(
        &mut self,
        w: &ScoreWork,
        scores: &mut impl Iterator<Item = Score>,
    ) -> Result<Vec<Scored>> {
        let mut out = vec![];
        for (i, p) in w.prompts.iter().enumerate() {
            let (n, first) = (p.ids.len(), w.first(p));
            let mut values = vec![None; n];
            if w.context.is_some() {
                let s = scores.next().expect("one row per prompt");
                for (j, nll) in (first..n).zip(&s.token_nll) {
                    values[j] = Some(-nll);
                }
                // the appended eos's term goes to the last prompt token
                if s.token_nll.len() > n - first {
                    let eos = s.token_nll[n - first];
                    values[n - 1] = values[n - 1].map(|v| v - eos);
                }
            } else {
                let s: Vec<f64> = (first..n)
                    .map(|_| -scores.next().expect("a row per split").total_nll)
                    .collect();
                for j in first..n {
                    let next = s.get(j + 1 - first).copied().unwrap_or(0.0);
                    values[j] = Some(s[j - first] - next);
                }
            }
            let top = if w.top == 0 {
                vec![]
            } else {
                self.top_entries(p, first, &values, w.top, w.seed, i)?
            };
            let mut s = Scored {
                ids: p.ids[p.hidden..].to_vec(),
                logprobs: values[p.hidden..].to_vec(),
                top: top.into_iter().skip(p.hidden).collect(),
            };
            if w.echo_eos {
                s.ids.push(w.eos);
                s.logprobs.push(None);
                if w.top > 0 {
                    s.top.push(None);
                }
            }
            out.push(s);
        }
        Ok(out)
    }

    /// `top_logprobs` of positions first.. (see the module doc): one forward per position
    /// with its prefix clean, up to `max_rows` positions a forward.
    fn top_entries(
        &mut self,
        p: &ScorePrompt,
        first: usize,
        values: &[Option<f64>],
        k: usize,
        seed: u64,
        index: usize,
    ) -> Result<Vec<Option<TopEntries>>> {
        let (t, v) = (self.cfg.max_position_embeddings, self.cfg.vocab_size);
        let prior = Prior::of_config(&self.cfg);
        let mut out = vec![None; first];
        let positions: Vec<usize> = (first..p.ids.len()).collect();
        for chunk in positions.chunks(self.max_rows) {
            let mut xs = vec![];
            let mut mask = Vec::with_capacity(chunk.len() * t * t);
            for &j in chunk {
                let ctx = Request {
                    prompt: p.ids[..j].to_vec(),
                    completion: vec![],
                };
                xs.push(canvas_labels(&ctx, t, prior, v, seed, index));
                // attention as the likelihood's: noisy queries see all, clean ones the clean
                let noisy = |q: usize| q >= j;
                mask.extend((0..t * t).map(|i| noisy(i / t) >= noisy(i % t)));
            }
            let logits = self.canvas(chunk.len())?.logits(&xs, &mask)?;
            for (r, &j) in chunk.iter().enumerate() {
                let row = &logits[(r * t + j) * v..(r * t + j + 1) * v];
                out.push(Some(top_of(row, p.ids[j] as usize, values[j], k)));
            }
        }
        Ok(out)
    }
}

/// The k best of a position's prediction, shifted so that `actual`'s value is `reported`.
fn top_of(logits: &[f32], actual: usize, reported: Option<f64>, k: usize) -> TopEntries {
    let l = predictable_logits(logits);
    let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + l.iter().map(|y| (y - m).exp()).sum::<f64>().ln();
    let lp: Vec<f64> = l.iter().map(|y| y - lse).collect();
    let mut ids: Vec<usize> = (0..lp.len()).collect();
    ids.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]));
    let reported = reported.unwrap_or(lp[actual]);
    let shift = if lp[actual].is_finite() {
        reported - lp[actual]
    } else {
        0.0
    };
    ids[..k.min(lp.len())]
        .iter()
        .map(|&id| {
            let val = if id == actual {
                reported
            } else {
                lp[id] + shift
            };
            (id as u32, val)
        })
        .collect()
}
