//! `gidd info`: a checkpoint, checked as `generate` checks it, then described.

use anyhow::{bail, Result};
use gidd_train::model_dir::{load_checkpoint, load_tokenizer};
use std::path::Path;

/// Loads `checkpoint` exactly as every command that runs it does (config, every tensor the
/// config implies with its shape and a float dtype, nothing extra, every byte the headers
/// promise readable; the tokenizer when one is there), so a checkpoint `info` accepts is
/// one `generate` accepts; then prints the config, parameter count and FLOPs per token.
pub fn run(checkpoint: Option<&Path>, nproc: Option<usize>, seq: usize) -> Result<()> {
    match (checkpoint, nproc) {
        (None, None) => bail!("gidd info needs --checkpoint DIR, --nproc N, or both"),
        (Some(c), None) => describe(c),
        (c, Some(n)) => {
            if let Some(c) = c {
                describe(c)?;
            }
            memory(c, n, seq)
        }
    }
}

/// The FSDP memory tables at world sizes 1, 2, 4, .. up to `nproc` (and `nproc` itself).
fn memory(checkpoint: Option<&Path>, nproc: usize, seq: usize) -> Result<()> {
    use gidd_train::fsdp::memory::{released_configs, table};
    if nproc == 0 {
        bail!("--nproc 0: a world needs at least one rank");
    }
    let mut worlds: Vec<usize> = (0..)
        .map(|i| 1usize << i)
        .take_while(|&w| w < nproc)
        .collect();
    worlds.push(nproc);
    let mut cfgs = released_configs()?;
    if let Some(c) = checkpoint {
        cfgs.push(("this checkpoint", load_checkpoint(c)?.cfg));
    }
    println!("FSDP memory per rank: persistent = parameter + mu/nu + gradient shards (f32); transient = gathered parameters and full gradients at their peak in the step program (a layer gathered just before use, the next prefetched, again for the backward; each gradient reduce-scattered once complete); peak = persistent + transient + activations");
    for (name, cfg) in cfgs {
        println!();
        print!("{}", table(name, &cfg, &worlds, seq)?);
    }
    Ok(())
}

fn describe(checkpoint: &Path) -> Result<()> {
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
