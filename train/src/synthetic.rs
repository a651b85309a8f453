//! Synthetic checkpoints of the released model sizes (SPEC.md section 1, "Released
//! models"): the config of gidd-unif-3b or gidd-unif-10b with randomly initialised bf16
//! weights, written as an HF sharded checkpoint (`model-0000i-of-0000N.safetensors` +
//! `model.safetensors.index.json` + `config.json`). They exercise loading, memory and
//! generation speed at full size; their text is noise.
//!
//! The weights follow the training init's distributions (each parameter's std from
//! [`gidd_model::init::InitStream`]: weights N(0, (0.4/sqrt d)^2), embedding N(0, 0.02^2),
//! norms and biases zero), except that the lm_head is drawn like the other weights instead
//! of starting at zero, so that the logits depend on the weights. They are drawn in chunks
//! of 1M values, each from its own Philox stream keyed by (seed, parameter, chunk), so
//! chunks draw in parallel; they are written tensor by tensor: memory holds a few chunks,
//! never the model.

use anyhow::{bail, Context, Result};
use gidd_engine::rng::HostRng;
use gidd_model::init::{InitOpts, InitStream};
use gidd_model::GiddConfig;
use gidd_ports::{StoredDType, TensorSpec};
use half::bf16;
use rayon::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Values drawn per chunk (2 MiB of bf16).
const CHUNK: usize = 1 << 20;

/// The configs `--config` names: the released unif models' (SPEC.md section 1), or `tiny`
/// (the same layout at test size).
pub fn preset(name: &str) -> Result<GiddConfig> {
    let (layers, d, heads) = match name {
        "3b" => (19, 3072, 24),
        "10b" => (34, 4608, 36),
        "tiny" => (2, 128, 2),
        _ => bail!("--config {name:?}: use 3b (gidd-unif-3b), 10b (gidd-unif-10b) or tiny"),
    };
    let vocab = if name == "tiny" { 1024 } else { 131072 };
    let v = json!({
        "vocab_size": vocab,
        "hidden_size": d,
        "intermediate_size": 4 * d,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": 2048,
        "resid_scale": 4.0,
        "weight_scaling": 1.0,
        "head_scaling": 512.0 / d as f64,
        "attention_bias": true,
        "mlp_bias": true,
        "tie_word_embeddings": false,
        "noise_type": 1000.0,
        "torch_dtype": "bfloat16",
    });
    Ok(GiddConfig::from_json(v)?)
}

/// The key of chunk `c` of parameter `t`'s draws.
fn chunk_key(seed: u64, t: usize, c: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((t as u64) << 40) ^ c as u64
}

/// `n` values ~ N(0, std^2) as little-endian bf16 bytes, from the Philox stream `key`:
/// Box-Muller in f32 using both values of each pair (a zero std draws nothing).
fn draw_bf16(key: u64, std: f32, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; 2 * n];
    if std == 0.0 {
        return v;
    }
    let mut rng = HostRng::new(key);
    // 24 random bits: uniform in (0, 1]
    let mut unit = || ((rng.next_u32() >> 8) + 1) as f32 * (1.0 / 16_777_216.0);
    for pair in v.chunks_mut(4) {
        let (u1, u2) = (unit(), unit());
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let (s, c) = (2.0 * std::f32::consts::PI * u2).sin_cos();
        for (b, x) in pair.chunks_exact_mut(2).zip([r * c, r * s]) {
            b.copy_from_slice(&bf16::from_f32(x).to_bits().to_le_bytes());
        }
    }
    v
}

/// What [`create`] wrote.
#[derive(Clone, Debug)]
pub struct Created {
    pub files: Vec<PathBuf>,
    pub bytes: u64,
    pub params: usize,
}

/// Writes a synthetic bf16 checkpoint of `cfg` to `dir`, in shards of at most
/// `max_shard_bytes`. The whole checkpoint appears at once: it is written into a sibling
/// `.NAME.partial` directory that is renamed to `dir` at the end, so an interrupted run
/// leaves no `dir` behind (and a stale `.partial` is replaced by the next run). `dir`
/// must not exist.
pub fn create(dir: &Path, cfg: &GiddConfig, seed: u64, max_shard_bytes: usize) -> Result<Created> {
    if dir.exists() {
        bail!(
            "{} exists: remove it or give another directory (a checkpoint is never overwritten)",
            dir.display()
        );
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{}: not a directory name", dir.display()))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;

    gidd_ports::write_json_pretty(&tmp.join("config.json"), &cfg.to_json())?;
    let specs: Vec<TensorSpec> = cfg
        .param_shapes()
        .into_iter()
        .map(|(name, shape)| TensorSpec {
            name,
            dtype: StoredDType::BF16,
            shape,
        })
        .collect();
    let opts = InitOpts {
        init_scale: cfg.init_scale,
        aux_init_scale: 0.02,
        zero_head_init: false,
    };
    // each parameter's std as the init gives it, and its index (a key of its draws)
    let mut init = InitStream::new(cfg, &opts, seed);
    let mut stds = std::collections::HashMap::new();
    while let Some((name, _, std)) = init.next_param() {
        let i = stds.len();
        stds.insert(name, (i, std));
    }
    let group = 2 * rayon::current_num_threads().max(1);
    let files = gidd_ports::write_streamed(&tmp, &specs, max_shard_bytes, |spec, out| {
        let Some(&(t, std)) = stds.get(&spec.name) else {
            return Err(std::io::Error::other(format!("no init for {}", spec.name)));
        };
        let numel: usize = spec.shape.iter().product();
        let chunks: Vec<(usize, usize)> = (0..numel)
            .step_by(CHUNK)
            .enumerate()
            .map(|(c, start)| (c, CHUNK.min(numel - start)))
            .collect();
        // a few chunks drawn in parallel, then written in order
        for part in chunks.chunks(group) {
            let bufs: Vec<Vec<u8>> = part
                .par_iter()
                .map(|&(c, n)| draw_bf16(chunk_key(seed, t, c), std as f32, n))
                .collect();
            for b in bufs {
                out.write_all(&b)?;
            }
        }
        Ok(())
    })?;
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    let files = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| dir.join(n)))
        .collect();
    Ok(Created {
        files,
        bytes: specs.iter().map(|s| s.nbytes() as u64).sum(),
        params: cfg.num_params(),
    })
}
