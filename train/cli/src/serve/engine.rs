//! The engine worker: one thread owns the executor, the parameters and the compiled
//! canvases; requests reach it through a bounded queue (the HTTP side refuses with 429
//! when it is full), so memory is bounded by the queue and the per-request limits.
//!
//! Batching: a request's rows (prompts × n) of equal prompt length generate together,
//! as `gidd generate` batches a file. Requests of different clients are *not* merged:
//! a row's draws are keyed by its row index in the batch and the prior canvas comes from
//! one sequential stream per batch (`gidd_model::generate`), so a client's text would
//! depend on its neighbours and `seed` would stop reproducing it. Sequential is correct.

use super::errors::ApiError;
use super::request::{GenWork, ScoreWork};
pub use super::score::Scored;
use anyhow::Result;
use axum::http::StatusCode;
use gidd_engine::{DType, Executor, HostTensor};
use gidd_model::generate::{generate_until, Canvas, GenEvent, GenOpts, CANCELLED};
use gidd_model::schedule::{EOS, PAD};
use gidd_model::GiddConfig;
use gidd_ports::data::Tok;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Rows per generation batch: bounds a canvas's memory and the programs compiled.
pub(super) const MAX_BATCH_ROWS: usize = 8;

/// What a generation reports to its HTTP handler.
pub enum Event {
    /// What a finished block added to choice `index`: its text and token ids.
    Text {
        index: usize,
        text: String,
        ids: Vec<u32>,
    },
    /// Every choice, final.
    Done(Vec<Choice>),
    Failed(ApiError),
}

/// One finished completion.
pub struct Choice {
    pub index: usize,
    pub text: String,
    pub ids: Vec<u32>,
    pub finish_reason: &'static str,
    pub prompt_tokens: usize,
    /// which of its prompt's n samples this is
    pub sample: usize,
}

pub enum Job {
    Generate {
        work: GenWork,
        events: mpsc::UnboundedSender<Event>,
    },
    Score {
        work: ScoreWork,
        reply: oneshot::Sender<Result<Vec<Scored>, ApiError>>,
    },
}

pub struct Engine<E: Executor + Clone> {
    pub exec: E,
    pub cfg: GiddConfig,
    pub params: Vec<(String, HostTensor)>,
    pub tok: Option<Arc<Tok>>,
    pub dtype: DType,
    /// One canvas per batch size, as in `gidd generate`: programs and parameters reused.
    canvases: HashMap<usize, Canvas<E>>,
}

pub(super) fn internal(e: anyhow::Error) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "engine_error",
        format!("{e:#}"),
    )
}

/// What a block added to a choice.
#[derive(Default)]
struct Delta {
    text: String,
    ids: Vec<u32>,
}

impl Delta {
    /// A stream chunk, when there is anything new.
    fn send(self, index: usize, events: &mpsc::UnboundedSender<Event>) {
        if !self.text.is_empty() || !self.ids.is_empty() {
            let _ = events.send(Event::Text {
                index,
                text: self.text,
                ids: self.ids,
            });
        }
    }
}

/// Where a choice's text stands as blocks finish: the ids so far (cut at eos), the text
/// already sent, and whether it has ended (eos or a stop string).
struct Progress {
    ids: Vec<u32>,
    sent: String,
    stopped: bool,
}

impl<E: Executor + Clone> Engine<E> {
    pub fn new(
        exec: E,
        cfg: GiddConfig,
        params: Vec<(String, HostTensor)>,
        tok: Option<Arc<Tok>>,
        dtype: DType,
    ) -> Self {
        Engine {
            exec,
            cfg,
            params,
            tok,
            dtype,
            canvases: HashMap::new(),
        }
    }

    /// Serves jobs until every sender is gone (the server is shutting down).
    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.blocking_recv() {
            match job {
                Job::Generate { work, events } => {
                    if events.is_closed() {
                        eprintln!("serve: generation skipped: its client left while it was queued");
                        continue;
                    }
                    match self.generate(&work, &events) {
                        Ok(choices) => {
                            let _ = events.send(Event::Done(choices));
                        }
                        Err(e) if e.to_string() == CANCELLED => {
                            eprintln!("serve: generation stopped: its client went away");
                        }
                        Err(e) => {
                            let _ = events.send(Event::Failed(internal(e)));
                        }
                    }
                }
                Job::Score { work, reply } => {
                    if reply.is_closed() {
                        continue;
                    }
                    let _ = reply.send(self.score(&work).map_err(internal));
                }
            }
        }
    }

    pub(super) fn canvas(&mut self, batch: usize) -> Result<&mut Canvas<E>> {
        let t = self.cfg.max_position_embeddings;
        if !self.canvases.contains_key(&batch) {
            let c = Canvas::with_executor(
                self.exec.clone(),
                &self.cfg,
                &self.params,
                batch,
                t,
                self.dtype,
            )?;
            self.canvases.insert(batch, c);
        }
        Ok(self.canvases.get_mut(&batch).expect("inserted above"))
    }

    /// Advances a choice to the generated ids `gen` (from the prompt's end, up to the
    /// block that just finished): cut at eos, decoded, cut at the first stop string.
    /// Returns the text not sent yet and the ids added.
    fn advance(&self, p: &mut Progress, gen: &[u32], stop: &[String]) -> Result<Delta> {
        if p.stopped {
            return Ok(Delta::default());
        }
        let end = gen
            .iter()
            .position(|&t| t == EOS || t == PAD)
            .unwrap_or(gen.len());
        p.stopped = end < gen.len();
        let old = p.ids.len();
        p.ids = gen[..end].to_vec();
        let ids = p.ids.get(old..).unwrap_or_default().to_vec();
        let Some(tok) = &self.tok else {
            return Ok(Delta {
                text: String::new(),
                ids,
            });
        };
        let mut text = tok.decode(&p.ids)?;
        if let Some(cut) = stop.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(cut);
            p.stopped = true;
        }
        // Decoding a longer prefix can rewrite the tail (a split multi-byte character);
        // what was sent stays sent, and only a clean extension is sent on.
        let delta = match text.strip_prefix(p.sent.as_str()) {
            Some(rest) => rest.to_string(),
            None => String::new(),
        };
        p.sent.push_str(&delta);
        Ok(Delta { text: delta, ids })
    }

    /// Generates every choice (row = prompt i's j-th sample, choice index i * n + j),
    /// equal-length rows together; stops when the client goes away.
    fn generate(
        &mut self,
        w: &GenWork,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<Vec<Choice>> {
        let rows: Vec<usize> = (0..w.prompts.len() * w.n).collect();
        let mut order = rows.clone();
        order.sort_by_key(|&r| (w.prompts[r / w.n].len(), r));
        let mut batches: Vec<Vec<usize>> = vec![];
        for r in order {
            let len = w.prompts[r / w.n].len();
            match batches.last_mut() {
                Some(b) if b.len() < MAX_BATCH_ROWS && w.prompts[b[0] / w.n].len() == len => {
                    b.push(r)
                }
                _ => batches.push(vec![r]),
            }
        }
        let mut progress: Vec<Progress> = rows
            .iter()
            .map(|_| Progress {
                ids: vec![],
                sent: String::new(),
                stopped: false,
            })
            .collect();
        for (bi, batch) in batches.iter().enumerate() {
            let p_len = w.prompts[batch[0] / w.n].len();
            let ids: Vec<Vec<u32>> = batch.iter().map(|&r| w.prompts[r / w.n].clone()).collect();
            // per batch, as `gidd generate`: batches differ, a rerun repeats them
            let o = GenOpts {
                seed: w.opts.seed.wrapping_add(bi as u64),
                ..w.opts.clone()
            };
            let end_cap = p_len + o.max_length;
            let mut deltas: Vec<(usize, Delta)> = vec![];
            let cfg = self.cfg.clone();
            // out of the map while it runs: the block callback reads `self` (the tokenizer)
            self.canvas(batch.len())?;
            let mut canvas = self.canvases.remove(&batch.len()).expect("built above");
            let out = generate_until(&mut canvas, &cfg, &ids, &o, None, |e| {
                if events.is_closed() {
                    return ControlFlow::Break(());
                }
                if let GenEvent::Block { x, end, .. } = e {
                    for (k, &r) in batch.iter().enumerate() {
                        let gen = &x[k][p_len..end.min(end_cap)];
                        if let Ok(d) = self.advance(&mut progress[r], gen, &w.stop) {
                            deltas.push((r, d));
                        }
                    }
                    if w.stream {
                        for (index, d) in deltas.drain(..) {
                            d.send(index, events);
                        }
                    }
                }
                ControlFlow::Continue(())
            });
            self.canvases.insert(batch.len(), canvas);
            let out = out?;
            for (k, &r) in batch.iter().enumerate() {
                // the final rows: truncated to max_tokens, eos and after cleared
                let d = self.advance(&mut progress[r], &out[k][p_len..], &w.stop)?;
                if w.stream {
                    d.send(r, events);
                }
            }
        }
        Ok(progress
            .into_iter()
            .enumerate()
            .map(|(r, p)| Choice {
                index: r,
                text: p.sent,
                finish_reason: if p.stopped { "stop" } else { "length" },
                ids: p.ids,
                prompt_tokens: w.prompts[r / w.n].len(),
                sample: r % w.n,
            })
            .collect())
    }
}
