//! `gidd eval`: the negative ELBO per token of a dataset under a model (nats, bits,
//! perplexity bound), Monte Carlo over noise draws with its standard error
//! (`--data_files`); or the likelihood of completions given prompts, the reference's
//! `likelihood.py` (`--requests`, SPEC.md section 7, `gidd_model::likelihood`).

use crate::requests::{read_requests, score_json};
use anyhow::{bail, Context, Result};
use gidd_engine::DType;
use gidd_model::generate::NoiseSchedule;
use gidd_model::likelihood::{self, LikelihoodOpts, Prior};
use gidd_model::noise::NoiseOpts;
use gidd_ports::data::open_source;
use gidd_train::backend::{BackendArgs, Precision};
use gidd_train::model_dir::{load_checkpoint, load_tokenizer, Loaded};
use gidd_train::packer::{EvalSet, HeldOut};
use gidd_train::with_executor;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The dataset ELBO of text, jsonl, parquet buckets or token shards (as for train).
    #[arg(long)]
    pub data_files: Option<PathBuf>,
    /// Likelihood of completions: a jsonl of {"prompt", "completion"} (text) or
    /// {"prompt_ids", "completion_ids"} lines (give this or --data_files).
    #[arg(long)]
    pub requests: Option<PathBuf>,
    /// Where the requests' scores go, one JSON line each, in order (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Requests: noise levels averaged over.
    #[arg(long, default_value_t = 128)]
    pub num_denoising_steps: usize,
    /// Requests: the levels' grid, linear or cosine (the reference's lm-eval fork uses linear).
    #[arg(long, value_enum, default_value_t = NoiseSchedule::Linear)]
    pub noise_schedule: NoiseSchedule,
    /// Requests: the ELBO at the effective log-SNR (the fraction of completion tokens left
    /// unchanged); on by default as in the reference; `--effective_log_snr false` turns it off.
    #[arg(long, num_args = 0..=1, default_value_t = true, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub effective_log_snr: bool,
    /// Requests: seed of the noise draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Requests: canvas length (the reference pads every row to it with prior tokens;
    /// default: max_position_embeddings).
    #[arg(long)]
    pub max_sequence_length: Option<usize>,
    /// Requests: the canvas tail's prior, mask or uniform (default: the model's noise type).
    #[arg(long, value_enum)]
    pub prior: Option<Prior>,
    /// tokenizer.json (default: the checkpoint's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Sequence length of evaluation rows (default: max_position_embeddings).
    #[arg(long)]
    pub seq: Option<usize>,
    /// Rows per model call.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// At most this many rows of documents.
    #[arg(long, default_value_t = 64)]
    pub max_rows: usize,
    /// Noise draws (the standard error is across them).
    #[arg(long, default_value_t = 8)]
    pub draws: u32,
    /// Dataset: a fixed grid of this many noise levels (the --requests levels, no effective
    /// log-SNR) instead of Monte Carlo draws; the standard error is then across rows.
    #[arg(long)]
    pub grid: Option<usize>,
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    #[command(flatten)]
    pub exec: BackendArgs,
}

pub fn run(a: &EvalArgs) -> Result<()> {
    // flags first: a bad one is reported before a checkpoint or dataset is read
    a.dtype.activations("eval")?;
    a.exec.check("evaluating")?;
    match (&a.data_files, &a.requests) {
        (Some(d), None) => {
            let m = load_checkpoint(&a.checkpoint)?;
            let tok = load_tokenizer(&a.checkpoint, a.tokenizer.as_deref())?;
            let src = open_source(d, tok.as_ref())?;
            // Every document is evaluated (k = 1 holds out all of them).
            run_dataset(a, &m, src.as_ref(), HeldOut::EveryK(1))
        }
        (None, Some(r)) => run_requests(a, r),
        (Some(_), Some(_)) => bail!("give either --data_files (the dataset ELBO) or --requests (likelihood of completions), not both"),
        (None, None) => run_trained_on(a),
    }
}

/// No data flag: the held-out split of the embedded corpus the checkpoint was trained on
/// (its trainer_state.json records it), the documents the trainer's held-out ELBO uses.
fn run_trained_on(a: &EvalArgs) -> Result<()> {
    let state_path = a.checkpoint.join("trainer_state.json");
    let give = "give --data_files (the dataset ELBO) or --requests (likelihood of completions given prompts)";
    let Ok(text) = std::fs::read_to_string(&state_path) else {
        bail!(
            "{} not found, so what {} was trained on is unknown: {give}",
            state_path.display(),
            a.checkpoint.display()
        );
    };
    let state: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", state_path.display()))?;
    let data = &state["data"];
    if data["source"] != "embedded" {
        bail!(
            "{} was not trained on the embedded corpus ({}): {give}",
            a.checkpoint.display(),
            match data["path"].as_str() {
                Some(p) => format!("its data: {p}"),
                None => "its trainer_state.json does not say on what".into(),
            }
        );
    }
    let field = |k: &str| {
        data[k]
            .as_u64()
            .map(|v| v as usize)
            .with_context(|| format!("{}: data.{k} missing", state_path.display()))
    };
    let (vocab, n_docs, every) = (
        field("vocab_size")?,
        field("n_docs")?,
        field("heldout_every")?,
    );
    let m = load_checkpoint(&a.checkpoint)?;
    let (_, tok, texts) =
        gidd_ports::corpus::embedded_default(&gidd_train::trainer::corpus_cache(), vocab, n_docs)?;
    let src = gidd_ports::corpus::embedded_tokens(&tok, &texts)?;
    eprintln!(
        "eval: the embedded corpus's held-out split (1 in {every} of {n_docs} documents), as trained"
    );
    run_dataset(a, &m, src.as_ref(), HeldOut::EveryK(every))
}

/// --tokenizer, or the checkpoint's tokenizer.json when it has one.
/// `--requests`: one JSON line per request, in order.
fn run_requests(a: &EvalArgs, path: &Path) -> Result<()> {
    let Loaded { cfg, params } = load_checkpoint(&a.checkpoint)?;
    let tok = load_tokenizer(&a.checkpoint, a.tokenizer.as_deref())?;
    let canvas_len = a.max_sequence_length.unwrap_or(cfg.max_position_embeddings);
    if canvas_len == 0 || canvas_len > cfg.max_position_embeddings {
        bail!(
            "--max_sequence_length {canvas_len}: the model takes 1..={} (max_position_embeddings)",
            cfg.max_position_embeddings
        );
    }
    if a.num_denoising_steps == 0 {
        bail!("--num_denoising_steps must be at least 1");
    }
    if a.batch_size == 0 {
        bail!("--batch_size must be at least 1");
    }
    let noise_schedule = a.noise_schedule;
    let prior = a.prior.unwrap_or_else(|| Prior::of_config(&cfg));
    let lines = read_requests(path, tok.as_ref())?;
    for (line, r) in &lines {
        likelihood::check_request(r, &cfg, canvas_len)
            .with_context(|| format!("{} line {line}", path.display()))?;
    }
    let reqs: Vec<likelihood::Request> = lines.into_iter().map(|(_, r)| r).collect();
    let o = LikelihoodOpts {
        num_denoising_steps: a.num_denoising_steps,
        noise_schedule,
        effective_log_snr: a.effective_log_snr,
        seed: a.seed,
        batch_size: a.batch_size,
        canvas_len,
        prior,
        dtype: a.dtype.activations("eval")?,
        progress: true,
    };
    let scores = with_executor!(a.exec.open("evaluating")?, exec => {
        likelihood::likelihood(&exec, &cfg, &params, &reqs, &o, None)?
    });
    let mut out = String::new();
    for s in &scores {
        out.push_str(&score_json(s).to_string());
        out.push('\n');
    }
    match &a.output {
        Some(p) => {
            gidd_ports::write_atomic(p, out.as_bytes())?;
            eprintln!("wrote {} scores to {}", scores.len(), p.display());
        }
        None => print!("{out}"),
    }
    Ok(())
}

/// The negative ELBO per token of the `heldout` documents of `src`.
fn run_dataset(
    a: &EvalArgs,
    m: &Loaded,
    src: &dyn gidd_ports::data::DocSource,
    heldout: HeldOut,
) -> Result<()> {
    let seq = a.seq.unwrap_or(m.cfg.max_position_embeddings);
    if seq > m.cfg.max_position_embeddings {
        bail!(
            "--seq {seq} exceeds the model's max_position_embeddings {}",
            m.cfg.max_position_embeddings
        );
    }
    if a.draws < 2 {
        bail!("--draws must be at least 2 for a standard error");
    }
    let dtype = a.dtype.activations("eval")?;
    let eval = EvalSet::build(src, heldout, seq, a.max_rows)?;
    if let Some(bad) = eval
        .rows
        .iter()
        .flatten()
        .find(|&&t| t as usize >= m.cfg.vocab_size)
    {
        bail!(
            "token id {bad} is outside the model's vocabulary of {}: wrong tokenizer?",
            m.cfg.vocab_size
        );
    }
    if let Some(levels) = a.grid {
        return dataset_on_grid(a, m, &eval, seq, levels, dtype);
    }
    let c = &m.cfg;
    let sched = likelihood::schedule_of(c);
    let no = NoiseOpts {
        p_independent: 1.0,
        p_linear: 0.0,
        p_prompt: 0.0,
        p_infilling: 0.0,
        causal_prompt_attn: false,
        clean_log_snr: 10.0,
    };
    let (e, se) = with_executor!(a.exec.open("evaluating")?, exec => gidd_train::trainer::elbo_over(
        &exec,
        c,
        &sched,
        &no,
        &m.params,
        &eval,
        a.batch_size,
        seq,
        dtype,
        a.draws,
    )?);
    let ln2 = std::f64::consts::LN_2;
    println!(
        "{}",
        serde_json::json!({
            "documents": eval.docs.len(), "tokens": eval.n_tokens, "draws": a.draws,
            "elbo_nats_per_token": e, "stderr_nats": se, "elbo_bits_per_token": e / ln2, "ppl_bound": e.exp(),
        })
    );
    Ok(())
}

/// The dataset ELBO on a fixed grid of noise levels: every row scored as a completion
/// with no prompt (`gidd_model::likelihood`, linear levels, the level's own log-SNR), so the
/// only randomness left is z at each level. Standard error across rows (ratio estimator).
fn dataset_on_grid(
    a: &EvalArgs,
    m: &Loaded,
    eval: &EvalSet,
    seq: usize,
    levels: usize,
    dtype: DType,
) -> Result<()> {
    if levels == 0 {
        bail!("--grid must be at least 1 level");
    }
    let reqs: Vec<likelihood::Request> = eval
        .rows
        .iter()
        .zip(&eval.lens)
        .filter(|(_, &n)| n > 0)
        .map(|(r, &n)| likelihood::Request {
            prompt: vec![],
            completion: r[..n].to_vec(),
        })
        .collect();
    if reqs.len() < 2 {
        bail!(
            "--grid needs at least 2 rows of data for a standard error (got {})",
            reqs.len()
        );
    }
    let o = LikelihoodOpts {
        num_denoising_steps: levels,
        noise_schedule: NoiseSchedule::Linear,
        effective_log_snr: false,
        seed: a.seed,
        batch_size: a.batch_size,
        canvas_len: seq,
        prior: Prior::of_config(&m.cfg),
        dtype,
        progress: false,
    };
    let scores = with_executor!(a.exec.open("evaluating")?, exec => {
        likelihood::likelihood(&exec, &m.cfg, &m.params, &reqs, &o, None)?
    });
    let total: f64 = scores.iter().map(|s| s.total_nll).sum();
    let n: f64 = scores.iter().map(|s| s.num_tokens as f64).sum();
    let e = total / n;
    let r = scores.len() as f64;
    let nbar = n / r;
    let var = scores
        .iter()
        .map(|s| (s.total_nll - e * s.num_tokens as f64).powi(2))
        .sum::<f64>()
        / (r - 1.0);
    let se = (var / r).sqrt() / nbar;
    let ln2 = std::f64::consts::LN_2;
    println!(
        "{}",
        serde_json::json!({
            "documents": eval.docs.len(), "rows": reqs.len(), "tokens": n as usize, "grid_levels": levels,
            "elbo_nats_per_token": e, "stderr_nats": se, "elbo_bits_per_token": e / ln2, "ppl_bound": e.exp(),
        })
    );
    Ok(())
}
