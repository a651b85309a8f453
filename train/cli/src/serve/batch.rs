//! The scheduler: the requests of every client wait in one queue, and the engine thread
//! runs them as batches. It takes the oldest request and, with it, whatever queued work
//! can share its forward, up to `--max_batch_rows` rows (after waiting up to
//! `--batch_wait_ms` for more when everything queued fits one batch):
//! - generation: rows (prompt × sample) with the same canvas program: prompt length and
//!   every option but the seed equal (max_tokens, min_length, steps, block_length,
//!   sampling method, schedule, temperature, top_k, top_p, tokens_per_step); a request
//!   larger than a batch runs over several;
//! - scoring: whole requests with the same levels and schedule, as one likelihood, up to
//!   `--max_score_rows` likelihood rows (the first request always goes).
//!
//! A row's draws are keyed by its request's seed and its index in the request
//! (`generate_keyed`, `likelihood_keyed`), never by its place in a batch, so an answer
//! does not depend on what else was queued. Requests whose client left are dropped before
//! a batch forms; a batch stops when every client it serves has left. `/metrics` shows
//! what the batches carried ([`BatchStats`]).

use super::engine::{internal, Choice, Engine, Event, Job, Progress, Scored};
use super::errors::ApiError;
use super::request::{GenWork, ScoreWork};
use gidd_engine::Executor;
use gidd_model::generate::CANCELLED;
use gidd_model::generate::{generate_keyed, GenEvent, GenOpts, Method, NoiseSchedule, RowSeed};
use serde_json::{json, Value};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What the batches carried, for `/metrics`, and the queue's length (the HTTP side
/// refuses with 429 when `queued` reaches `--queue`).
#[derive(Default)]
pub struct BatchStats {
    /// requests not yet fully started: queued, or with rows still waiting
    pub queued: AtomicUsize,
    batches: AtomicU64,
    requests: AtomicU64,
    rows: AtomicU64,
    max_requests: AtomicU64,
    max_rows: AtomicU64,
    /// requests dropped unrun because their client had left
    dropped: AtomicU64,
    last: Mutex<Option<Value>>,
}

impl BatchStats {
    fn record(&self, kind: &str, requests: usize, rows: usize) {
        let (q, r) = (requests as u64, rows as u64);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(q, Ordering::Relaxed);
        self.rows.fetch_add(r, Ordering::Relaxed);
        self.max_requests.fetch_max(q, Ordering::Relaxed);
        self.max_rows.fetch_max(r, Ordering::Relaxed);
        if let Ok(mut l) = self.last.lock() {
            *l = Some(json!({"kind": kind, "requests": requests, "rows": rows}));
        }
    }

    pub fn json(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let last = self.last.lock().ok().and_then(|l| l.clone());
        json!({
            "batches": get(&self.batches),
            "requests": get(&self.requests),
            "rows": get(&self.rows),
            "max_requests_per_batch": get(&self.max_requests),
            "max_rows_per_batch": get(&self.max_rows),
            "dropped_requests": get(&self.dropped),
            "queued": self.queued.load(Ordering::SeqCst),
            "last_batch": last,
        })
    }
}

/// The scheduler's bounds (flags of `gidd serve`).
#[derive(Clone, Debug)]
pub struct Batching {
    /// rows of one batched forward (generation) or likelihood call chunk (scoring)
    pub max_rows: usize,
    /// likelihood rows of one scoring batch
    pub max_score_rows: usize,
    /// how long to wait for more work when everything queued fits one batch
    pub wait: Duration,
}

/// A generation request in the scheduler.
struct GenJob {
    work: GenWork,
    events: mpsc::UnboundedSender<Event>,
    /// rows not started yet, in run order (prompt length, then row)
    todo: Vec<usize>,
    progress: Vec<Progress>,
    finished: usize,
}

enum Active {
    Gen(GenJob),
    Score {
        work: ScoreWork,
        reply: oneshot::Sender<Result<Vec<Scored>, ApiError>>,
    },
}

impl Active {
    fn new(job: Job) -> Active {
        match job {
            Job::Generate { work, events } => {
                let mut todo: Vec<usize> = (0..work.prompts.len() * work.n).collect();
                todo.sort_by_key(|&r| (work.prompts[r / work.n].len(), r));
                let progress = todo.iter().map(|_| Progress::default()).collect();
                Active::Gen(GenJob {
                    work,
                    events,
                    todo,
                    progress,
                    finished: 0,
                })
            }
            Job::Score { work, reply } => Active::Score { work, reply },
        }
    }

    fn client_left(&self) -> bool {
        match self {
            Active::Gen(g) => g.events.is_closed(),
            Active::Score { reply, .. } => reply.is_closed(),
        }
    }

    /// Whether it still counts as queued: some of its rows have not started (a scoring
    /// request starts whole).
    fn waiting(&self) -> bool {
        match self {
            Active::Gen(g) => !g.todo.is_empty(),
            Active::Score { .. } => true,
        }
    }
}

/// What generation rows must share to run on one canvas: everything but the seed.
#[derive(PartialEq)]
struct GenKey {
    prompt_len: usize,
    max_length: usize,
    min_length: usize,
    block_length: usize,
    steps: usize,
    method: Method,
    schedule: NoiseSchedule,
    temperature: u64,
    top_k: Option<usize>,
    top_p: Option<u64>,
    tokens_per_step: usize,
}

impl GenKey {
    fn of(o: &GenOpts, prompt_len: usize) -> GenKey {
        GenKey {
            prompt_len,
            max_length: o.max_length,
            min_length: o.min_length,
            block_length: o.block_length,
            steps: o.steps,
            method: o.method,
            schedule: o.schedule,
            temperature: o.temperature.to_bits(),
            top_k: o.top_k,
            top_p: o.top_p.map(f64::to_bits),
            tokens_per_step: o.tokens_per_step,
        }
    }

    fn of_row(g: &GenJob, r: usize) -> GenKey {
        GenKey::of(&g.work.opts, g.work.prompts[r / g.work.n].len())
    }
}

impl<E: Executor + Clone> Engine<E> {
    /// Serves jobs until every sender is gone (the server is shutting down) and nothing
    /// is left.
    pub fn run(mut self, jobs: Receiver<Job>, b: Batching, stats: Arc<BatchStats>) {
        let mut active: Vec<Active> = vec![];
        let mut open = true;
        loop {
            if active.is_empty() {
                match jobs.recv() {
                    Ok(j) => active.push(Active::new(j)),
                    Err(_) => return,
                }
            }
            // everything queued, and a short wait for more while it all fits one batch
            let deadline = Instant::now() + b.wait;
            while open {
                match jobs.try_recv() {
                    Ok(j) => {
                        active.push(Active::new(j));
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => open = false,
                    Err(TryRecvError::Empty) => {}
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || full(&active, &b) {
                    break;
                }
                match jobs.recv_timeout(left) {
                    Ok(j) => active.push(Active::new(j)),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            self.drop_left(&mut active, &stats);
            match active.first() {
                None => {}
                Some(Active::Gen(_)) => self.gen_batch(&mut active, &b, &stats),
                Some(Active::Score { .. }) => self.score_batch_of(&mut active, &b, &stats),
            }
        }
    }

    /// Drops the requests whose client went away: their rows are never computed.
    fn drop_left(&self, active: &mut Vec<Active>, stats: &BatchStats) {
        active.retain(|a| {
            if !a.client_left() {
                return true;
            }
            if a.waiting() {
                stats.queued.fetch_sub(1, Ordering::SeqCst);
            }
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            if let Active::Gen(_) = a {
                eprintln!("serve: generation skipped: its client left while it was queued");
            }
            false
        });
    }

    /// Runs the oldest request's next rows with every queued row that shares their canvas.
    fn gen_batch(&mut self, active: &mut Vec<Active>, b: &Batching, stats: &BatchStats) {
        let Some(Active::Gen(first)) = active.first_mut() else {
            return;
        };
        let Some(&r0) = first.todo.first() else {
            // nothing to generate (no rows): answered as it is
            let choices = take_choices(first);
            let _ = first.events.send(Event::Done(choices));
            active.remove(0);
            return;
        };
        let key = GenKey::of_row(first, r0);
        let opts = first.work.opts.clone();
        // (request, row) pairs in the order of the batch
        let mut picked: Vec<(usize, usize)> = vec![];
        for (ji, a) in active.iter_mut().enumerate() {
            let Active::Gen(g) = a else { continue };
            let was_waiting = !g.todo.is_empty();
            let mut kept = vec![];
            for &r in &g.todo {
                if picked.len() < b.max_rows && GenKey::of_row(g, r) == key {
                    picked.push((ji, r));
                } else {
                    kept.push(r);
                }
            }
            g.todo = kept;
            if was_waiting && g.todo.is_empty() {
                stats.queued.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let mut served: Vec<usize> = picked.iter().map(|p| p.0).collect();
        served.dedup();
        stats.record("generate", served.len(), picked.len());
        if served.len() > 1 {
            eprintln!(
                "serve: batch of {} requests, {} rows (generate)",
                served.len(),
                picked.len()
            );
        }
        let result = self.run_rows(active, &picked, &served, &opts, key.prompt_len);
        let mut done: Vec<usize> = vec![];
        for &ji in &served {
            let Active::Gen(g) = &mut active[ji] else {
                continue;
            };
            match &result {
                Ok(()) if g.finished == g.progress.len() => {
                    let choices = take_choices(g);
                    let _ = g.events.send(Event::Done(choices));
                    done.push(ji);
                }
                Ok(()) => {}
                Err(e) if e.to_string() == CANCELLED => done.push(ji),
                Err(e) => {
                    let _ = g
                        .events
                        .send(Event::Failed(internal(anyhow::anyhow!("{e:#}"))));
                    done.push(ji);
                }
            }
        }
        if matches!(&result, Err(e) if e.to_string() == CANCELLED) {
            eprintln!("serve: generation stopped: its client went away");
        }
        for &ji in done.iter().rev() {
            if active[ji].waiting() {
                stats.queued.fetch_sub(1, Ordering::SeqCst);
            }
            active.remove(ji);
        }
    }

    /// Generates the picked rows on one canvas, streaming each request's blocks as they
    /// finish; stops when every request served has lost its client.
    fn run_rows(
        &mut self,
        active: &mut [Active],
        picked: &[(usize, usize)],
        served: &[usize],
        o: &GenOpts,
        p_len: usize,
    ) -> anyhow::Result<()> {
        let (mut prompts, mut keys) = (vec![], vec![]);
        for &(ji, r) in picked {
            let Active::Gen(g) = &active[ji] else {
                anyhow::bail!("internal: a generation row of a scoring request");
            };
            prompts.push(g.work.prompts[r / g.work.n].clone());
            keys.push(RowSeed {
                seed: g.work.opts.seed,
                row: r as u32,
            });
        }
        let end_cap = p_len + o.max_length;
        let cfg = self.cfg.clone();
        // out of the map while it runs: the block callback reads `self` (the tokenizer)
        self.canvas(picked.len())?;
        let mut canvas = self
            .canvases
            .remove(&picked.len())
            .ok_or_else(|| anyhow::anyhow!("internal: canvas missing"))?;
        let gone = |active: &[Active]| served.iter().all(|&ji| active[ji].client_left());
        let out = generate_keyed(&mut canvas, &cfg, &prompts, &keys, o, |e| {
            if gone(active) {
                return ControlFlow::Break(());
            }
            if let GenEvent::Block { x, end, .. } = e {
                for (k, &(ji, r)) in picked.iter().enumerate() {
                    let Active::Gen(g) = &mut active[ji] else {
                        continue;
                    };
                    let gen = &x[k][p_len..end.min(end_cap)];
                    if let Ok(d) = self.advance(&mut g.progress[r], gen, &g.work.stop) {
                        if g.work.stream {
                            d.send(r, &g.events);
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        });
        self.canvases.insert(picked.len(), canvas);
        let out = out?;
        for (k, &(ji, r)) in picked.iter().enumerate() {
            let Active::Gen(g) = &mut active[ji] else {
                continue;
            };
            // the final rows: truncated to max_tokens, eos and after cleared
            let d = self.advance(&mut g.progress[r], &out[k][p_len..], &g.work.stop)?;
            if g.work.stream {
                d.send(r, &g.events);
            }
            g.finished += 1;
        }
        Ok(())
    }

    /// Scores the oldest request with every queued scoring request of its levels and
    /// schedule, as one likelihood, up to `max_score_rows` rows.
    fn score_batch_of(&mut self, active: &mut Vec<Active>, b: &Batching, stats: &BatchStats) {
        let Some(Active::Score { work: first, .. }) = active.first() else {
            return;
        };
        let key = (first.levels, first.schedule);
        let mut rows = 0;
        let mut picked: Vec<usize> = vec![];
        for (ji, a) in active.iter().enumerate() {
            let Active::Score { work, .. } = a else {
                continue;
            };
            let n = work.rows();
            if (work.levels, work.schedule) == key
                && (picked.is_empty() || rows + n <= b.max_score_rows)
            {
                picked.push(ji);
                rows += n;
            }
        }
        let mut batch = vec![];
        for &ji in picked.iter().rev() {
            if let Active::Score { work, reply } = active.remove(ji) {
                stats.queued.fetch_sub(1, Ordering::SeqCst);
                batch.push((work, reply));
            }
        }
        batch.reverse();
        stats.record("score", batch.len(), rows);
        if batch.len() > 1 {
            eprintln!(
                "serve: batch of {} requests, {rows} rows (score)",
                batch.len()
            );
        }
        let works: Vec<&ScoreWork> = batch.iter().map(|(w, _)| w).collect();
        match self.score_batch(&works) {
            Ok(scored) => {
                for ((_, reply), s) in batch.into_iter().zip(scored) {
                    let _ = reply.send(Ok(s));
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                for (_, reply) in batch {
                    let _ = reply.send(Err(internal(anyhow::anyhow!("{msg}"))));
                }
            }
        }
    }
}

/// Whether the queued work of the oldest request's kind fills a batch: no reason to wait.
fn full(active: &[Active], b: &Batching) -> bool {
    let (gen, score) = active.iter().fold((0, 0), |(g, s), a| match a {
        Active::Gen(j) => (g + j.todo.len(), s),
        Active::Score { work, .. } => (g, s + work.rows()),
    });
    match active.first() {
        Some(Active::Gen(_)) => gen >= b.max_rows,
        Some(Active::Score { .. }) => score >= b.max_score_rows,
        None => false,
    }
}

/// A finished request's choices, in index order.
fn take_choices(g: &mut GenJob) -> Vec<Choice> {
    let n = g.work.n;
    std::mem::take(&mut g.progress)
        .into_iter()
        .enumerate()
        .map(|(r, p)| Choice {
            index: r,
            text: p.sent,
            finish_reason: if p.stopped { "stop" } else { "length" },
            ids: p.ids,
            prompt_tokens: g.work.prompts[r / n].len(),
            sample: r % n,
        })
        .collect()
}
