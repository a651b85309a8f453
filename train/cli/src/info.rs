//! `gidd info`: a checkpoint, checked as `generate` checks it, then described.

use anyhow::Result;
use gidd_train::model_dir::{load_checkpoint, load_tokenizer};
use std::path::Path;

/// Loads `checkpoint` exactly as every command that runs it does (config, every tensor the
/// config implies with its shape and a float dtype, nothing extra, every byte the headers
/// promise readable; the tokenizer when one is there), so a checkpoint `info` accepts is
/// one `generate` accepts; then prints the config, parameter count and FLOPs per token.
pub fn run(checkpoint: &Path) -> Result<()> {
    let m = load_checkpoint(checkpoint)?;
    let tok = load_tokenizer(checkpoint, None)?;
    let cfg = &m.cfg;
    println!("{}", serde_json::to_string_pretty(&cfg.to_json())?);
    println!(
        "parameters: {} ({:.3}M) in {} tensors, all present with the config's shapes",
        cfg.num_params(),
        cfg.num_params() as f64 / 1e6,
        m.params.len()
    );
    let l = cfg.max_position_embeddings;
    println!(
        "forward FLOPs per token at L={l}: {:.4e} (train step: 3x = {:.4e})",
        cfg.flops_per_token(l),
        3.0 * cfg.flops_per_token(l)
    );
    match tok {
        Some(t) => println!(
            "tokenizer: {} ({} tokens)",
            t.path().display(),
            t.vocab_size()
        ),
        None => println!("tokenizer: none in the directory (text commands need --tokenizer)"),
    }
    Ok(())
}
