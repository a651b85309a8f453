//! Per-rank memory of FSDP at a world size: what `gidd info --nproc N` prints.
//!
//! Persistent (between steps): the rank's shards of the parameters, of mu and nu, and of
//! the reduce-scattered gradients, ceil(numel / world) elements per tensor in the master
//! dtype (f32). Transient (during a step): the gathered parameters and the full gradients
//! waiting for their reduce-scatter, at their peak in the step's own program
//! (`build_micro_sharded`: a layer gathered just before use with the next one prefetched,
//! gathered again for the backward, each gradient reduce-scattered once complete), read
//! off its memory plan ([`collective_peak_bytes`]) - so about two layers' parameters and
//! one gradient, the largest units (embedding, head) setting it. Activations: an estimate,
//! not a measurement (see [`activation_bytes`]).

use super::plan::ShardPlan;
use anyhow::{bail, Result};
use gidd_engine::{DType, Op, Program};
use gidd_model::GiddConfig;

/// Bytes one rank holds, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RankBytes {
    pub params: usize,
    /// mu and nu
    pub optimizer: usize,
    /// the gradient shard after the reduce-scatter
    pub grads: usize,
    /// gathered parameters and full gradients at their peak during the step
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
    let master = match master_bytes {
        8 => DType::F64,
        4 => DType::F32,
        b => bail!("{b}-byte parameters: the master precision is f32 or f64"),
    };
    Ok(RankBytes {
        params: shard,
        optimizer: 2 * shard,
        grads: shard,
        transient: transient_bytes(cfg, &plan, master)?,
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

/// The collective transients ([`collective_peak_bytes`]) of the step's micro-batch program
/// at `plan`'s world size with `master` parameters: they do not depend on the batch, the
/// sequence length or the noise, so one row of 8 tokens stands for any.
pub fn transient_bytes(cfg: &GiddConfig, plan: &ShardPlan, master: DType) -> Result<usize> {
    let (sched, no) = probe_opts(cfg);
    let lo = crate::trainer::step::LossOpts {
        beta_is_div: 1.0,
        sum: true,
        loss_scale: 1.0,
    };
    let seq = cfg.max_position_embeddings.min(8);
    let p = crate::trainer::step::build_micro_sharded(cfg, &sched, &no, &lo, 1, seq, master, plan)?;
    Ok(collective_peak_bytes(&p))
}

/// Bytes of a program's collective transients at their peak: the gathered tensors (outputs
/// of all_gather nodes) and the full gradients waiting for their reduce-scatter (its
/// operands) alive together at one node of the program's order, each from the node that
/// makes it to the last one that reads it (or a view of it), as the memory plan keeps them.
pub fn collective_peak_bytes(p: &Program) -> usize {
    let nv = p.values.len();
    let end = p.nodes.len();
    // the value whose storage each value is (reshapes that do not run are views)
    let mut root: Vec<usize> = (0..nv).collect();
    for (ni, node) in p.nodes.iter().enumerate() {
        if matches!(node.op, Op::Reshape { .. }) && !p.runs[ni] {
            root[node.outputs[0]] = root[node.inputs[0]];
        }
    }
    let mut tracked = vec![false; nv];
    let mut last = vec![0usize; nv];
    for (ni, node) in p.nodes.iter().enumerate() {
        if matches!(node.op, Op::AllGather { .. }) {
            node.outputs.iter().for_each(|&o| tracked[o] = true);
        }
        if matches!(node.op, Op::ReduceScatter { .. }) {
            tracked[root[node.inputs[0]]] = true;
        }
        for &v in &node.inputs {
            last[root[v]] = last[root[v]].max(ni);
        }
    }
    for &o in &p.outputs {
        last[root[o]] = end;
    }
    let mut delta = vec![0i64; end + 2];
    for v in (0..nv).filter(|&v| tracked[v] && root[v] == v) {
        let ty = &p.values[v].ty;
        let b = (ty.numel() * ty.dtype.size()) as i64;
        delta[p.values[v].node] += b;
        delta[last[v].max(p.values[v].node) + 1] -= b;
    }
    let (mut live, mut peak) = (0i64, 0i64);
    for d in delta {
        live += d;
        peak = peak.max(live);
    }
    peak as usize
}

/// A noise schedule and noise options for building `cfg`'s step program where their values
/// do not matter (the program's shape and memory plan do not depend on them).
pub(crate) fn probe_opts(cfg: &GiddConfig) -> (gidd_model::Schedule, gidd_model::noise::NoiseOpts) {
    let sched = gidd_model::Schedule {
        min_log_snr: -9.0,
        max_log_snr: 9.0,
        scale: 1.0,
        shift: 0.0,
        vocab_size: cfg.vocab_size,
        mask_id: gidd_model::schedule::MASK,
    };
    let no = gidd_model::noise::NoiseOpts {
        p_independent: 1.0,
        p_linear: 0.0,
        p_prompt: 0.0,
        p_infilling: 0.0,
        causal_prompt_attn: false,
        clean_log_snr: 10.0,
    };
    (sched, no)
}
