//! Per-rank memory of FSDP at a world size: what `gidd info --nproc N` prints.
//!
//! Persistent (between steps): the rank's shards of the parameters, of mu and nu, and of
//! the reduce-scattered gradients, ceil(numel / world) elements per tensor in the master
//! dtype (f32). Transient (during a step, with the step-level gather this trainer does):
//! the full parameters, all-gathered, and the full gradient sums before the
//! reduce-scatter. Activations: an estimate, not a measurement (see [`activation_bytes`]).

use super::plan::ShardPlan;
use anyhow::Result;
use gidd_model::GiddConfig;

/// Bytes one rank holds, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RankBytes {
    pub params: usize,
    /// mu and nu
    pub optimizer: usize,
    /// the gradient shard after the reduce-scatter
    pub grads: usize,
    /// full parameters and full gradient sums during the step
    pub transient: usize,
    pub activations: usize,
}

impl RankBytes {
    pub fn persistent(&self) -> usize {
        self.params + self.optimizer + self.grads
    }
    pub fn peak(&self) -> usize {
        self.persistent() + self.transient + self.activations
    }
}

/// The per-rank bytes of `cfg` at `world` ranks, state in `master_bytes`-byte elements,
/// activations for `rows` rows of `seq` tokens in `act_bytes`-byte elements.
pub fn rank_bytes(
    cfg: &GiddConfig,
    world: usize,
    master_bytes: usize,
    rows: usize,
    seq: usize,
    act_bytes: usize,
) -> Result<RankBytes> {
    let plan = ShardPlan::new(&cfg.param_shapes(), world)?;
    let shard = plan.total * master_bytes;
    let full = cfg.num_params() * master_bytes;
    Ok(RankBytes {
        params: shard,
        optimizer: 2 * shard,
        grads: shard,
        transient: 2 * full,
        activations: activation_bytes(cfg, rows, seq, act_bytes),
    })
}

/// Activations kept for the backward of `rows` rows of `seq` tokens, estimated per token as
/// 11 d + 2 d_ff + heads elements per layer (the two norms' inputs and outputs 4 d, q k v 3 d,
/// q and k after their norms 2 d, the attention output and its projection 2 d, the MLP's
/// hidden before and after its activation 2 d_ff, flash attention's log-sum-exp one per
/// head) in the activation dtype, plus the logits and their gradient, 2 x vocab, in f32.
pub fn activation_bytes(cfg: &GiddConfig, rows: usize, seq: usize, act_bytes: usize) -> usize {
    let (d, h, v, l) = (
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.vocab_size,
        cfg.num_hidden_layers,
    );
    let per_token = l * (11 * d + 2 * cfg.intermediate_size + h) * act_bytes + 2 * v * 4;
    rows * seq * per_token
}

/// A released model's config: (name, layers, d, heads), vocab 131072, d_ff 4 d.
pub fn released(name: &str, layers: usize, d: usize, heads: usize) -> Result<GiddConfig> {
    let v = serde_json::json!({
        "vocab_size": 131072, "hidden_size": d, "intermediate_size": 4 * d,
        "num_hidden_layers": layers, "num_attention_heads": heads, "head_dim": d / heads,
        "max_position_embeddings": 512, "attention_bias": true, "mlp_bias": true,
        "use_qk_norm": true, "tie_word_embeddings": false,
    });
    GiddConfig::from_json(v).map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

/// The released 3B and 10B configs.
pub fn released_configs() -> Result<Vec<(&'static str, GiddConfig)>> {
    Ok(vec![
        ("3B", released("3B", 19, 3072, 24)?),
        ("10B", released("10B", 34, 4608, 36)?),
    ])
}

fn gib(b: usize) -> String {
    format!("{:.2}", b as f64 / (1u64 << 30) as f64)
}

/// The table `gidd info --nproc N` prints: one row per world size in `worlds`, GiB per
/// rank, f32 state, activations for one row of `seq` tokens per rank in bf16.
pub fn table(name: &str, cfg: &GiddConfig, worlds: &[usize], seq: usize) -> Result<String> {
    let mut s = format!(
        "{name}: {} layers, d {}, {} heads, vocab {}, {:.3}B parameters; GiB per rank (f32 state; activations: 1 row of {seq} tokens, bf16, estimated)\n",
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.vocab_size,
        cfg.num_params() as f64 / 1e9
    );
    s += &format!(
        "{:>6} {:>9} {:>9} {:>9} {:>11} {:>10} {:>9} {:>9}\n",
        "world", "params", "mu+nu", "grads", "persistent", "transient", "activ.", "peak"
    );
    for &w in worlds {
        let b = rank_bytes(cfg, w, 4, 1, seq, 2)?;
        s += &format!(
            "{:>6} {:>9} {:>9} {:>9} {:>11} {:>10} {:>9} {:>9}\n",
            w,
            gib(b.params),
            gib(b.optimizer),
            gib(b.grads),
            gib(b.persistent()),
            gib(b.transient),
            gib(b.activations),
            gib(b.peak())
        );
    }
    Ok(s)
}
