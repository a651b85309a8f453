//! `gidd eval`: the negative ELBO per token of a dataset under a model (nats, bits,
//! perplexity bound), Monte Carlo over noise draws with its standard error.

use crate::data::packer::{EvalSet, HeldOut};
use crate::data::source::open_source;
use crate::data::tokenizer::Tok;
use crate::session::load_checkpoint;
use crate::trainer::noise::NoiseOpts;
use anyhow::{bail, Result};
use gidd_engine::DType;
use gidd_model::Schedule;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct EvalArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Text, jsonl, parquet buckets or token shards (as for train).
    #[arg(long)]
    pub data_files: PathBuf,
    /// tokenizer.json (default: the checkpoint's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Sequence length of evaluation rows (default: max_position_embeddings).
    #[arg(long)]
    pub seq: Option<usize>,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// At most this many rows of documents.
    #[arg(long, default_value_t = 64)]
    pub max_rows: usize,
    /// Noise draws (the standard error is across them).
    #[arg(long, default_value_t = 8)]
    pub draws: u32,
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

pub fn run(a: &EvalArgs) -> Result<()> {
    let m = load_checkpoint(&a.checkpoint)?;
    let tok_path = a
        .tokenizer
        .clone()
        .unwrap_or_else(|| a.checkpoint.join("tokenizer.json"));
    let tok = if tok_path.exists() {
        Some(Tok::from_file(&tok_path)?)
    } else {
        None
    };
    let src = open_source(&a.data_files, tok.as_ref())?;
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
    let dtype = match a.dtype.as_str() {
        "f32" | "fp32" => DType::F32,
        "bf16" => DType::BF16,
        d => bail!("--dtype {d}: use f32 or bf16"),
    };
    // Every document is evaluated (k = 1 holds out all of them).
    let eval = EvalSet::build(src.as_ref(), HeldOut::EveryK(1), seq, a.max_rows)?;
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
    let c = &m.cfg;
    let sched = Schedule {
        min_log_snr: c.min_log_snr,
        max_log_snr: c.max_log_snr,
        scale: 1.0,
        shift: c.noise_type,
        vocab_size: c.vocab_size,
        mask_id: 3,
    };
    let no = NoiseOpts {
        p_independent: 1.0,
        p_linear: 0.0,
        p_prompt: 0.0,
        p_infilling: 0.0,
        causal_prompt_attn: false,
        clean_log_snr: 10.0,
    };
    let (e, se) = crate::trainer::elbo_over(
        c,
        &sched,
        &no,
        &m.params,
        &eval,
        a.batch_size,
        seq,
        dtype,
        a.draws,
    )?;
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
