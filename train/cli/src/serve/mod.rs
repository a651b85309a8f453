//! `gidd serve`: an OpenAI-compatible HTTP server (axum on tokio) over one checkpoint.
//!
//! Threads: tokio's workers parse and check requests and write responses; one engine
//! thread ([`engine`]) owns the executor and runs generation and scoring, fed by a
//! bounded queue, batching the requests of all clients ([`batch`]). Scoring (`echo: true`, [`score`]) gives per-token values whose sum from
//! any context boundary is `gidd eval --requests`' ELBO log-likelihood for that split,
//! so lm-eval's stock `local-completions` works as is; `/tokenizer_info`, `/tokenize` and
//! `/detokenize` ([`tokenize`], vLLM's shapes) let it tokenize as the server does.

mod batch;
mod engine;
mod errors;
mod request;
mod routes;
mod score;
mod tokenize;

use anyhow::{bail, Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use gidd_train::backend::{BackendArgs, Precision};
use gidd_train::model_dir::{load_checkpoint_mapped, load_tokenizer};
use gidd_train::with_executor;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct ServeArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// tokenizer.json (default: the checkpoint's; without one, prompts are token ids).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Address to listen on: loopback by default; 0.0.0.0 exposes the server.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free one; the bound address is printed on stdout).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The model id of /v1/models (default: the checkpoint directory's name).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Requests waiting for the engine; past it new ones get 429.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Most rows in one batched forward: generation rows (prompt x sample) of one or
    /// several requests on one canvas; likelihood rows per model call when scoring.
    #[arg(long, default_value_t = 16)]
    pub max_batch_rows: usize,
    /// Milliseconds the engine waits for more requests to batch with when everything
    /// queued fits one batch (0: batch only what is already queued).
    #[arg(long, default_value_t = 2)]
    pub batch_wait_ms: u64,
    /// Largest request body (bytes); past it 413.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Largest max_tokens (default: the model's max_position_embeddings).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Largest n (samples per prompt).
    #[arg(long, default_value_t = 8)]
    pub max_n: usize,
    /// Largest `steps` per block (generation) and `num_denoising_steps` (scoring).
    #[arg(long, default_value_t = 4096)]
    pub max_steps: usize,
    /// Most prompts in one request.
    #[arg(long, default_value_t = 32)]
    pub max_prompts: usize,
    /// Most likelihood rows of one echo-scoring request: a row per scored prompt token
    /// (every context boundary is scored), one per prompt with `context_tokens`; each row
    /// costs `num_denoising_steps` forward rows.
    #[arg(long, default_value_t = 1024)]
    pub max_score_rows: usize,
    /// Noise levels of a scoring request that names none (`num_denoising_steps`; 128, the
    /// reference's, as `gidd eval --requests`). lm-eval cannot send the field: set it here.
    #[arg(long, default_value_t = 128)]
    pub num_denoising_steps: usize,
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    #[command(flatten)]
    pub exec: BackendArgs,
}

/// The chat template of tokenizer_config.json beside the tokenizer, if any: HF keeps it
/// there, never in tokenizer.json.
fn chat_template(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("chat_template")
        .filter(|t| !t.is_null())
        .map(|t| t.to_string())
}

pub fn run(a: &ServeArgs) -> Result<()> {
    // flags first: a bad one is reported before a large checkpoint is read
    let dtype = a.dtype.activations("serve")?;
    a.exec.check("serving")?;
    if a.queue == 0
        || a.max_n == 0
        || a.max_prompts == 0
        || a.max_steps == 0
        || a.max_score_rows == 0
        || a.max_batch_rows == 0
    {
        bail!("--queue, --max_n, --max_prompts, --max_steps, --max_score_rows and --max_batch_rows must be positive");
    }
    if a.batch_wait_ms > 10_000 {
        bail!(
            "--batch_wait_ms {}: give at most 10000 (a wait is added to every lone request)",
            a.batch_wait_ms
        );
    }
    if a.num_denoising_steps == 0 || a.num_denoising_steps > a.max_steps {
        bail!(
            "--num_denoising_steps {}: give 1..={} (--max_steps)",
            a.num_denoising_steps,
            a.max_steps
        );
    }
    // weights stay in the mapped files (bf16 as bf16): a large model is not copied
    let (m, _) = load_checkpoint_mapped(&a.checkpoint)?;
    let tok = load_tokenizer(&a.checkpoint, a.tokenizer.as_deref())?.map(Arc::new);
    let t = m.cfg.max_position_embeddings;
    let model = match &a.model_name {
        Some(n) => n.clone(),
        None => std::fs::canonicalize(&a.checkpoint)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "gidd".into()),
    };
    // unbounded as a channel, bounded by `stats.queued`, which the engine lowers as
    // requests start (see `routes::enqueue`)
    let (jobs, rx) = std::sync::mpsc::channel();
    let stats = Arc::new(batch::BatchStats::default());
    let batching = batch::Batching {
        max_rows: a.max_batch_rows,
        max_score_rows: a.max_score_rows,
        wait: std::time::Duration::from_millis(a.batch_wait_ms),
    };
    let state = Arc::new(routes::AppState {
        jobs,
        stats: stats.clone(),
        queue: a.queue,
        cfg: m.cfg.clone(),
        tok: tok.clone(),
        limits: request::Limits {
            max_tokens: a.max_tokens.unwrap_or(t),
            max_n: a.max_n,
            max_prompts: a.max_prompts,
            max_logprobs: 20,
            max_steps: a.max_steps,
            max_score_rows: a.max_score_rows,
            default_levels: a.num_denoising_steps,
        },
        model,
        body_limit: a.max_body_bytes,
        chat_template: chat_template(&a.checkpoint),
        next_id: AtomicU64::new(0),
        draining: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
    });

    // The engine thread opens the executor itself (executors need not be Send) and says
    // whether that worked before the server starts listening.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let exec = a.exec.clone();
    let (cfg, params, rows) = (m.cfg, m.params, a.max_batch_rows);
    std::thread::Builder::new()
        .name("gidd-engine".into())
        .spawn(move || match exec.open("serving") {
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
            Ok(opened) => {
                let _ = ready_tx.send(Ok(()));
                with_executor!(opened, e => engine::Engine::new(e, cfg, params, tok, dtype, rows).run(rx, batching, stats))
            }
        })?;
    ready_rx
        .recv()
        .context("the engine thread ended before starting")??;

    let app = Router::new()
        .route("/health", get(routes::health))
        .route("/v1/models", get(routes::models))
        .route("/metrics", get(routes::metrics))
        .route("/v1/completions", post(routes::completions))
        .route("/v1/chat/completions", post(routes::chat))
        .route("/tokenizer_info", get(tokenize::info))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(a.max_body_bytes))
        .with_state(state.clone());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", a.host, a.port))?;
        let addr = listener.local_addr()?;
        // stdout, flushed: tests and scripts read the port chosen for --port 0 from here
        println!("listening on http://{addr}");
        std::io::stdout().flush()?;
        axum::serve(listener, app)
            .with_graceful_shutdown(drain(state))
            .await?;
        eprintln!("serve: drained, stopped");
        Ok(())
    })
}

/// Resolves when the server should stop: after SIGINT or SIGTERM, once the requests it
/// had are answered. Until then it keeps listening and answers new work with 503 (and
/// /health with 503), so a load balancer moves on and no accepted request is dropped.
async fn drain(state: Arc<routes::AppState>) {
    let term = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    state.draining.store(true, Ordering::SeqCst);
    eprintln!(
        "serve: shutting down: answering the {} requests in flight, refusing new ones (503)",
        state.in_flight.load(Ordering::SeqCst)
    );
    while state.in_flight.load(Ordering::SeqCst) > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
