//! The engine worker: one thread owns the executor, the parameters and the compiled
//! canvases; requests reach it through a bounded queue (the HTTP side refuses with 429
//! when it is full), so memory is bounded by the queue and the per-request limits.
//! [`super::batch`] merges the queued requests of all clients into batched forwards.

use super::errors::ApiError;
use super::request::{GenWork, ScoreWork};
pub use super::score::Scored;
use anyhow::Result;
use axum::http::StatusCode;
use gidd_engine::{DType, Executor, HostTensor};
use gidd_model::generate::Canvas;
use gidd_model::schedule::{EOS, PAD};
use gidd_model::GiddConfig;
use gidd_ports::data::Tok;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

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
    /// Most rows in one forward (`--max_batch_rows`): generation canvases, likelihood
    /// batches, top_logprobs positions.
    pub max_rows: usize,
    /// One canvas per batch size, as in `gidd generate`: programs and parameters reused.
    pub(super) canvases: HashMap<usize, Canvas<E>>,
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
pub(super) struct Delta {
    text: String,
    ids: Vec<u32>,
}

impl Delta {
    /// A stream chunk, when there is anything new.
    pub(super) fn send(self, index: usize, events: &mpsc::UnboundedSender<Event>) {
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
#[derive(Default)]
pub(super) struct Progress {
    pub ids: Vec<u32>,
    pub sent: String,
    pub stopped: bool,
}

impl<E: Executor + Clone> Engine<E> {
    pub fn new(
        exec: E,
        cfg: GiddConfig,
        params: Vec<(String, HostTensor)>,
        tok: Option<Arc<Tok>>,
        dtype: DType,
        max_rows: usize,
    ) -> Self {
        Engine {
            exec,
            cfg,
            params,
            tok,
            dtype,
            max_rows,
            canvases: HashMap::new(),
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
    pub(super) fn advance(&self, p: &mut Progress, gen: &[u32], stop: &[String]) -> Result<Delta> {
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
}
