//! The HTTP endpoints: `/health`, `/v1/models`, `/v1/completions` (generation, streamed
//! or not, and scoring) and `/v1/chat/completions`, answering in the OpenAI shapes.

use super::batch::BatchStats;
use super::engine::{Choice, Event, Job, Scored};
use super::errors::{body_rejection, ApiError};
use super::request::{parse, Limits, Work};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gidd_model::GiddConfig;
use gidd_ports::data::Tok;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub struct AppState {
    /// to the engine; bounded by `stats.queued` against `queue`
    pub jobs: std::sync::mpsc::Sender<Job>,
    pub stats: Arc<BatchStats>,
    pub queue: usize,
    pub cfg: GiddConfig,
    pub tok: Option<Arc<Tok>>,
    pub limits: Limits,
    pub model: String,
    pub body_limit: usize,
    /// tokenizer_config.json's `chat_template`, when the checkpoint has one.
    pub chat_template: Option<String>,
    pub next_id: AtomicU64,
    /// Set when a shutdown signal came: new work gets 503 while the queue drains.
    pub draining: AtomicBool,
    /// Completions requests between their parse and their response.
    pub in_flight: AtomicUsize,
}

/// Counts a request as in flight until dropped: its handler returned or was cancelled,
/// or, streamed, its stream ended or its client left.
struct InFlight(Arc<AppState>);

impl InFlight {
    fn new(st: Arc<AppState>) -> Self {
        st.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(st)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the server is shutting down: it finishes the requests it has and takes no new ones",
    )
}

pub(super) type St = State<Arc<AppState>>;

/// 200 while serving; 503 while draining for a shutdown (load balancers stop sending).
pub async fn health(State(st): St) -> Response {
    if st.draining.load(Ordering::SeqCst) {
        return shutting_down().into_response();
    }
    Json(json!({"status": "ok"})).into_response()
}

/// What the engine's batches carried (requests and rows per batch) and the queue now.
pub async fn metrics(State(st): St) -> Json<Value> {
    Json(st.stats.json())
}

pub async fn models(State(st): St) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": st.model, "object": "model", "created": 0, "owned_by": "gidd"}],
    }))
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint: the server has GET /health, GET /v1/models, GET /metrics, POST /v1/completions, POST /v1/chat/completions",
    )
}

pub async fn chat(State(st): St) -> ApiError {
    match &st.chat_template {
        None => ApiError::bad(
            "no_chat_template",
            "this model's tokenizer has no chat template (no chat_template in the checkpoint's tokenizer_config.json), so chat messages cannot be turned into a prompt: use /v1/completions with a prompt",
        ),
        Some(_) => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "chat_template_unsupported",
            "the checkpoint has a chat template but gidd serve does not render chat templates: use /v1/completions with a prompt",
        ),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The id and time every chunk of one response carries.
struct Meta {
    id: String,
    created: u64,
    model: String,
}

impl Meta {
    fn new(st: &AppState) -> Meta {
        Meta {
            id: format!("cmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed)),
            created: now(),
            model: st.model.clone(),
        }
    }

    fn response(&self, choices: Vec<Value>, usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.id, "object": "text_completion", "created": self.created,
            "model": self.model, "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Queues a job, or refuses at once when the queue is full (429: retry shortly): back-
/// pressure, never an unbounded backlog. 503 is for a server that will not get better by
/// waiting a moment: shutting down, or its engine stopped.
fn enqueue(st: &AppState, job: Job) -> Result<(), ApiError> {
    // a place in the queue first: the engine gives it back when the request starts
    if st.stats.queued.fetch_add(1, Ordering::SeqCst) >= st.queue {
        st.stats.queued.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            format!(
                "the request queue is full ({} waiting, --queue): retry later",
                st.queue
            ),
        ));
    }
    st.jobs.send(job).map_err(|_| {
        st.stats.queued.fetch_sub(1, Ordering::SeqCst);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_stopped",
            "the engine has stopped",
        )
    })
}

fn engine_gone() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "engine_stopped",
        "the engine stopped before answering",
    )
}

pub async fn completions(
    State(st): St,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let counted = InFlight::new(st.clone());
    if st.draining.load(Ordering::SeqCst) {
        return Err(shutting_down());
    }
    let bytes = body.map_err(|r| body_rejection(r, st.body_limit))?;
    let work = parse(&bytes, &st.cfg, st.tok.as_deref(), &st.limits)?;
    let meta = Meta::new(&st);
    match work {
        Work::Score(w) => {
            let (reply, rx) = oneshot::channel();
            enqueue(&st, Job::Score { work: w, reply })?;
            let scored = rx.await.map_err(|_| engine_gone())??;
            Ok(Json(score_response(&meta, &scored, st.tok.as_deref())).into_response())
        }
        Work::Generate(w) => {
            let stream = w.stream;
            let (events, mut rx) = mpsc::unbounded_channel();
            enqueue(&st, Job::Generate { work: w, events })?;
            if stream {
                return Ok(sse(meta, rx, counted).into_response());
            }
            loop {
                match rx.recv().await {
                    Some(Event::Text { .. }) => {}
                    Some(Event::Done(choices)) => {
                        return Ok(Json(done_response(&meta, &choices)).into_response())
                    }
                    Some(Event::Failed(e)) => return Err(e),
                    None => return Err(engine_gone()),
                }
            }
        }
    }
}

fn choice_json(c: &Choice) -> Value {
    // token_ids: a GIDD extra (OpenAI clients ignore it); the only output of a checkpoint
    // without a tokenizer, whose text is empty
    json!({"text": c.text, "index": c.index, "logprobs": null,
           "finish_reason": c.finish_reason, "token_ids": c.ids})
}

fn done_response(meta: &Meta, choices: &[Choice]) -> Value {
    // a prompt's tokens count once, however many samples (n) it has
    let prompt: usize = choices
        .iter()
        .filter(|c| c.sample == 0)
        .map(|c| c.prompt_tokens)
        .sum();
    let completion: usize = choices.iter().map(|c| c.ids.len()).sum();
    meta.response(
        choices.iter().map(choice_json).collect(),
        Some(usage(prompt, completion)),
    )
}

fn token_str(tok: Option<&Tok>, id: u32) -> String {
    match tok.and_then(|t| t.decode(&[id]).ok()) {
        Some(s) => s,
        None => id.to_string(),
    }
}

/// The echo-scoring response. Per prompt: tokens (decoded one by one; the ids when there
/// is no tokenizer), their log-probabilities (null for the context, as OpenAI's first
/// token), the top entries, and offsets into `text`, the tokens' concatenation.
fn score_response(meta: &Meta, scored: &[Scored], tok: Option<&Tok>) -> Value {
    let mut choices = vec![];
    let mut prompt_tokens = 0;
    for (i, s) in scored.iter().enumerate() {
        prompt_tokens += s.ids.len();
        let tokens: Vec<String> = s.ids.iter().map(|&id| token_str(tok, id)).collect();
        let mut offsets = vec![];
        let mut at = 0;
        for t in &tokens {
            offsets.push(at);
            at += t.chars().count();
        }
        let top: Vec<Value> = (0..s.ids.len())
            .map(|j| match s.top.get(j) {
                Some(Some(entries)) => {
                    let mut m = serde_json::Map::new();
                    for &(id, lp) in entries {
                        m.entry(token_str(tok, id)).or_insert(json!(lp));
                    }
                    Value::Object(m)
                }
                _ => Value::Null,
            })
            .collect();
        choices.push(json!({
            "text": tokens.concat(), "index": i, "finish_reason": "length",
            "logprobs": {"tokens": tokens, "token_logprobs": s.logprobs,
                         "top_logprobs": top, "text_offset": offsets},
        }));
    }
    meta.response(choices, Some(usage(prompt_tokens, 0)))
}

/// Server-sent events: a chunk per finished block of each choice, then a last chunk per
/// choice with its finish_reason, then `[DONE]`. Dropping the stream (the client left)
/// closes the channel, which the engine sees between steps and stops.
fn sse(
    meta: Meta,
    rx: mpsc::UnboundedReceiver<Event>,
    counted: InFlight,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let meta = Arc::new(meta);
    let chunk = move |m: &Meta, index: usize, text: &str, ids: &[u32], finish: Option<&str>| {
        let c = json!({"text": text, "index": index, "logprobs": null,
                       "finish_reason": finish, "token_ids": ids});
        m.response(vec![c], None).to_string()
    };
    // the in-flight count travels with the stream: a shutdown waits for it to end
    let counted = Arc::new(counted);
    let stream = futures_util::stream::unfold(
        (rx, VecDeque::<String>::new(), false),
        move |(mut rx, mut queue, mut done)| {
            let meta = meta.clone();
            let counted = counted.clone();
            async move {
                let _counted = counted;
                loop {
                    if let Some(d) = queue.pop_front() {
                        let ev = SseEvent::default().data(d);
                        return Some((Ok(ev), (rx, queue, done)));
                    }
                    if done {
                        return None;
                    }
                    match rx.recv().await {
                        Some(Event::Text { index, text, ids }) => {
                            queue.push_back(chunk(&meta, index, &text, &ids, None))
                        }
                        Some(Event::Done(choices)) => {
                            for c in &choices {
                                queue.push_back(chunk(
                                    &meta,
                                    c.index,
                                    "",
                                    &[],
                                    Some(c.finish_reason),
                                ));
                            }
                            queue.push_back("[DONE]".into());
                            done = true;
                        }
                        Some(Event::Failed(e)) => {
                            queue.push_back(e.body().to_string());
                            queue.push_back("[DONE]".into());
                            done = true;
                        }
                        None => done = true,
                    }
                }
            }
        },
    );
    Sse::new(stream)
}
