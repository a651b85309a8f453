//! The GIDD transformer, as SPEC.md section 1 reads: RMSNorm (1 + w), QK-norm over
//! the full hidden size, neox RoPE, soft-capped attention with the bias slot,
//! squared-ReLU MLP, residual branches scaled by resid_scale / num_layers.
//!
//! ```text
//! h = embed[ids]
//! per layer:  h += r attn(norm1(h));  h += r mlp(norm2(h))     r = resid_scale / num_layers
//! logits = lm_head(norm(h)) * head_scaling                     (tied: norm(h) E^T, unscaled)
//! ```
//!
//! Shapes: B batch, L (= Lq) this call's positions, Lp cached positions, Lk = Lp + Lq keys,
//! d hidden, H heads, Dh head dim, rd = d / H rotary dim, I intermediate, V vocab.
//!
//! Every function here only records graph nodes, in the order of its calls; keep that
//! order when editing: the compiled programs, and so their rounding, follow it.

mod weights;

pub use weights::Params;
use weights::{LayerWeights, Weights};

use crate::config::GiddConfig;
use gidd_engine::api::attention_with_bias_slot;
use gidd_engine::op::DotDims;
use gidd_engine::{AttnSpec, DType, Graph, HostTensor, Result, Tensor};

/// [B, L, H, Dh] <-> [B, H, L, Dh]; the permutation is its own inverse.
const SWAP_SEQ_AND_HEADS: [usize; 4] = [0, 2, 1, 3];
/// The key axis of per-head keys and values [B, H, Lk, Dh].
const KEY_AXIS: usize = 2;
/// The key axis of an attention mask [B, Lq, Lk].
const MASK_KEY_AXIS: usize = 2;
/// A mask of this rank is per key [B, Lk], shared by every query.
const KEY_MASK_RANK: usize = 2;
/// The RoPE tables [max_pos, rd/2] are indexed by position id along their rows.
const TABLE_ROW_AXIS: usize = 0;
/// q.k in [`attention_probs`]: batched over (B, H), contracted over Dh.
const BATCH_AND_HEAD_AXES: [usize; 2] = [0, 1];
const HEAD_DIM_AXIS: usize = 3;
/// A bool splat of this value is all true.
const TRUE: f64 = 1.0;
/// ScaledLinear's s when there is none: [`scaled_linear`] then records no multiply.
const UNSCALED: f64 = 1.0;

/// What a forward pass returns.
pub struct ForwardOut {
    /// [B, L, V] in f32 (f64 in an f64 run)
    pub logits: Tensor,
    /// HF `output_hidden_states`: embeddings, outputs of layers 0..n-2, norm(output of layer n-1)
    pub hidden_states: Vec<Tensor>,
    /// the last layer's output before the final norm
    pub last_prenorm: Tensor,
    /// per layer [B, H, Lq, Lk] attention probabilities, when requested (decomposed path)
    pub attentions: Vec<Tensor>,
}

/// Options of one forward pass.
#[derive(Clone, Copy, Debug)]
pub struct ForwardOpts {
    /// activation dtype (parameters are f32, f64 for f64, and are converted at use)
    pub dtype: DType,
    /// also return each layer's attention probabilities (costs an [L, L] matrix per head)
    pub attentions: bool,
}

impl Default for ForwardOpts {
    fn default() -> Self {
        ForwardOpts {
            dtype: DType::F32,
            attentions: false,
        }
    }
}

/// Keys and values of earlier positions, per layer: (k, v) [B, H, Lp, hd] after QK-norm and
/// RoPE, without the bias slot (the attention adds that once, whatever the cache holds).
pub type KvCache = Vec<(Tensor, Tensor)>;

/// RoPE tables (cos, sin) [max_pos, rd/2], computed in f32 as the reference does
/// (SPEC.md section 1, "RoPE": inv_freq_j = theta^(-2j/rd), angle = position * inv_freq_j).
/// rd is hidden / heads even where `head_dim` is set (SPEC.md section 8).
pub fn rope_tables(cfg: &GiddConfig) -> (HostTensor, HostTensor) {
    let rd = cfg.hidden_size / cfg.num_attention_heads;
    let half = rd / 2;
    let theta = cfg.rope_theta as f32;
    let inv: Vec<f32> = (0..half)
        .map(|j| 1.0 / theta.powf((2 * j) as f32 / rd as f32))
        .collect();
    let mut cos = Vec::with_capacity(cfg.max_position_embeddings * half);
    let mut sin = Vec::with_capacity(cfg.max_position_embeddings * half);
    for p in 0..cfg.max_position_embeddings {
        for &f in &inv {
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let shape = vec![cfg.max_position_embeddings, half];
    (
        HostTensor {
            shape: shape.clone(),
            data: gidd_engine::Data::F32(cos),
        },
        HostTensor {
            shape,
            data: gidd_engine::Data::F32(sin),
        },
    )
}

/// The forward pass.
///
/// # Shapes
/// ids [B, L] (i32), mask bool [B, L] (keys) or [B, L, L], pos [B, L] (i32) -> logits [B, L, V]
pub fn forward(
    cfg: &GiddConfig,
    p: &Params,
    ids: &Tensor,
    mask: &Tensor,
    pos: &Tensor,
    opts: ForwardOpts,
) -> Result<ForwardOut> {
    Ok(forward_cached(cfg, p, ids, mask, pos, None, None, opts)?.0)
}

/// The forward pass over `ids` that follow the positions held in `past` (SPEC.md section 1,
/// "KV cache"): the queries attend to the cached keys, then to their own. Returns the
/// outputs and this call's own keys and values (not including `past`).
///
/// Exact for generation's clean prefix: a clean query attends only to clean keys, so the
/// prefix's keys do not depend on anything after it.
///
/// `logit_rows` = (start, end) computes logits only for those query rows (generation reads
/// one block's rows). Then the last layer, too, runs on those rows only, past its key and
/// value projections: nothing after the last layer's keys and values mixes positions, so
/// the other rows' attention, o_proj and MLP there would feed only logits nobody reads
/// (generation's canvas tail: most of its positions). Every row kept is computed by the
/// same ops as in the full pass; `last_prenorm` and the final hidden state then hold the
/// kept rows only.
///
/// # Shapes
/// ids [B, Lq], mask bool [B, Lp + Lq] (keys) or [B, Lq, Lp + Lq], pos [B, Lq],
/// past per layer [B, H, Lp, hd] -> logits [B, Lq or end - start, V]
#[allow(clippy::too_many_arguments)]
pub fn forward_cached(
    cfg: &GiddConfig,
    p: &Params,
    ids: &Tensor,
    mask: &Tensor,
    pos: &Tensor,
    past: Option<&KvCache>,
    logit_rows: Option<(usize, usize)>,
    opts: ForwardOpts,
) -> Result<(ForwardOut, KvCache)> {
    let lp = cached_len(cfg, past)?;
    let w = Weights::view(cfg, p)?;
    let (b, l) = (ids.dim(0), ids.dim(1));
    let mask = query_key_mask(mask, b, l, lp + l)?; // [B, Lq, Lk]
    let (cos, sin) = rope_rows(ids.graph(), cfg, pos)?; // [B, Lq, rd/2] each
    let pass = Pass {
        cfg,
        b,
        l,
        eps: cfg.rms_norm_eps as f32,
        dtype: opts.dtype,
        mask,
        cos,
        sin,
        spec: AttnSpec {
            scale: (cfg.head_dim() as f32).powf(-0.5), // Dh^-1/2
            // a cap of 0 turns the soft cap off
            softcap: Some(cfg.attn_soft_cap as f32).filter(|c| *c > 0.0),
        },
        resid: cfg.resid_scale / cfg.num_hidden_layers as f64,
        want_probs: opts.attentions,
    };

    let mut h = pass.embed(&w.embed, ids)?; // [B, L, d]
    let mut hidden_states = vec![h.clone()];
    let (mut attentions, mut present) = (vec![], vec![]);
    let last = cfg.num_hidden_layers.saturating_sub(1);
    for (i, lw) in w.layers.iter().enumerate() {
        let rows = logit_rows.filter(|_| i == last);
        let out = pass.block(&h, lw, past.map(|c| &c[i]), rows)?;
        h = out.h;
        present.push(out.kv);
        attentions.extend(out.probs);
        // HF's tuple holds the last layer's output only after the final norm (SPEC.md 8)
        if i + 1 < cfg.num_hidden_layers {
            hidden_states.push(h.clone());
        }
    }
    let last_prenorm = h.clone();
    let hn = h.rms_norm(&w.norm, pass.eps)?; // [B, L, d]
    hidden_states.push(hn.clone());
    // without layers the rows are still to be cut
    let head_rows = logit_rows.filter(|_| cfg.num_hidden_layers == 0);
    let logits = pass.head(&hn, &w, head_rows)?; // [B, L or end - start, V]
    Ok((
        ForwardOut {
            logits,
            hidden_states,
            last_prenorm,
            attentions,
        },
        present,
    ))
}

/// Lp, the number of positions in `past`, after checking it has one entry per layer.
fn cached_len(cfg: &GiddConfig, past: Option<&KvCache>) -> Result<usize> {
    let Some(c) = past else { return Ok(0) };
    if c.len() != cfg.num_hidden_layers {
        return Err(gidd_engine::Error::Msg(format!(
            "KV cache holds {} layers, the model has {}",
            c.len(),
            cfg.num_hidden_layers
        )));
    }
    Ok(c.first().map_or(0, |(k, _)| k.shape()[KEY_AXIS]))
}

/// The mask as [B, Lq, Lk]: a key mask [B, Lk] is the same row for every query.
fn query_key_mask(mask: &Tensor, b: usize, lq: usize, lk: usize) -> Result<Tensor> {
    if mask.rank() == KEY_MASK_RANK {
        mask.reshape(&[b, 1, lk])?.broadcast_to(&[b, lq, lk])
    } else {
        Ok(mask.clone())
    }
}

/// The rows of the RoPE tables for each position id.
///
/// # Shapes
/// pos [B, L] (i32) -> (cos, sin) [B, L, rd/2] each
fn rope_rows(g: &Graph, cfg: &GiddConfig, pos: &Tensor) -> Result<(Tensor, Tensor)> {
    let (cos, sin) = rope_tables(cfg);
    let cos = g.constant(cos).gather(TABLE_ROW_AXIS, pos)?;
    let sin = g.constant(sin).gather(TABLE_ROW_AXIS, pos)?;
    Ok((cos, sin))
}

/// ScaledLinear (SPEC.md section 1): y = (x W^T) * s + b for W [out, in], computed in
/// x's dtype.
///
/// # Shapes
/// x [.., in], w [out, in], b [out] -> [.., out]
fn scaled_linear(x: &Tensor, w: &Tensor, s: f64, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.linear(&w.to(x.dtype())?)?;
    let y = if s == UNSCALED { y } else { y.mul_scalar(s)? };
    match b {
        Some(b) => y.add(&b.to(x.dtype())?),
        None => Ok(y),
    }
}

/// What every layer of one forward call shares.
struct Pass<'a> {
    cfg: &'a GiddConfig,
    /// batch size B and this call's length Lq
    b: usize,
    l: usize,
    eps: f32,
    /// activation dtype
    dtype: DType,
    /// bool [B, Lq, Lk]: which keys each query sees (the bias slot not yet included)
    mask: Tensor,
    /// RoPE rows of each query position [B, Lq, rd/2]
    cos: Tensor,
    sin: Tensor,
    spec: AttnSpec,
    /// resid_scale / num_layers, the weight of every residual branch
    resid: f64,
    /// record each layer's attention probabilities too
    want_probs: bool,
}

/// One layer's results.
struct BlockOut {
    /// [B, L, d]
    h: Tensor,
    /// this call's keys and values [B, H, L, Dh], for a KV cache
    kv: (Tensor, Tensor),
    /// [B, H, Lq, Lk (+1 with the bias slot)], when requested
    probs: Option<Tensor>,
}

impl Pass<'_> {
    /// Token embeddings in the activation dtype (no scaling, no positions: RoPE adds those).
    ///
    /// # Shapes
    /// embed [V, d], ids [B, L] -> [B, L, d]
    fn embed(&self, embed: &Tensor, ids: &Tensor) -> Result<Tensor> {
        embed.embedding(ids)?.to(self.dtype)
    }

    /// One layer: two pre-norm residual branches (SPEC.md section 1, "Each layer"); with
    /// `rows` = (s, e), keys and values from every position but the rest on rows s..e only.
    ///
    /// # Shapes
    /// h [B, L, d], past (k, v) [B, H, Lp, Dh] -> h [B, L or e - s, d]
    fn block(
        &self,
        h: &Tensor,
        w: &LayerWeights,
        past: Option<&(Tensor, Tensor)>,
        rows: Option<(usize, usize)>,
    ) -> Result<BlockOut> {
        let x = h.rms_norm(&w.attn_norm, self.eps)?;
        let (a, kv, probs) = self.attention(&x, w, past, rows)?;
        let h = match rows {
            Some(r) => self.rows(h, r)?,
            None => h.clone(),
        };
        let h = self.residual(&h, &a)?;
        let x = h.rms_norm(&w.mlp_norm, self.eps)?;
        let m = self.mlp(&x, w)?;
        let h = self.residual(&h, &m)?;
        Ok(BlockOut { h, kv, probs })
    }

    /// h + (resid_scale / num_layers) * branch.
    fn residual(&self, h: &Tensor, branch: &Tensor) -> Result<Tensor> {
        h.add(&branch.mul_scalar(self.resid)?)
    }

    /// Self-attention (SPEC.md section 1, "Attention"): q, k, v projections; QK-norm over
    /// all heads at once (its weight is [d], not [Dh]); RoPE on q and k; the bias slot and
    /// soft cap inside the attention; o_proj. Also returns this call's keys and values
    /// (after RoPE, before `past` is prepended) and, when requested, the probabilities.
    ///
    /// With `rows` = (s, e), the queries (and so the output and probabilities) are those of
    /// rows s..e; keys and values are still every position's.
    ///
    /// # Shapes
    /// x [B, L, d], past (k, v) [B, H, Lp, Dh] -> out [B, Lr, d], (k, v) [B, H, L, Dh],
    /// probs [B, H, Lr, Lk (+1)], Lr = L or e - s
    fn attention(
        &self,
        x: &Tensor,
        w: &LayerWeights,
        past: Option<&(Tensor, Tensor)>,
        rows: Option<(usize, usize)>,
    ) -> Result<(Tensor, (Tensor, Tensor), Option<Tensor>)> {
        let (d, hdim) = self.dims();
        let s_in = self.cfg.linear_scale(d, hdim);
        let (xq, lr, cos, sin, mask) = match rows {
            Some(r) => (
                self.rows(x, r)?,
                r.1 - r.0,
                self.rows(&self.cos, r)?,
                self.rows(&self.sin, r)?,
                self.rows(&self.mask, r)?,
            ),
            None => (
                x.clone(),
                self.l,
                self.cos.clone(),
                self.sin.clone(),
                self.mask.clone(),
            ),
        };
        let q = scaled_linear(&xq, &w.q_proj, s_in, None)?; // [B, Lr, H*Dh]
        let k = scaled_linear(x, &w.k_proj, s_in, None)?; // [B, L, H*Dh]
        let v = scaled_linear(x, &w.v_proj, s_in, None)?;
        let (q, k) = match &w.qk_norm {
            Some((qn, kn)) => (q.rms_norm(qn, self.eps)?, k.rms_norm(kn, self.eps)?),
            None => (q, k),
        };
        let q = heads_first(&self.split_heads(&q, lr)?.rope(&cos, &sin)?)?; // [B, H, Lr, Dh]
        let k = heads_first(&self.split_heads(&k, self.l)?.rope(&self.cos, &self.sin)?)?;
        let v = heads_first(&self.split_heads(&v, self.l)?)?;
        let kv = (k.clone(), v.clone());
        let (k, v) = match past {
            // the cache may be held in another dtype than this call's activations
            Some((pk, pv)) => (
                Tensor::concat(&[&pk.to(k.dtype())?, &k], KEY_AXIS)?, // [B, H, Lk, Dh]
                Tensor::concat(&[&pv.to(v.dtype())?, &v], KEY_AXIS)?,
            ),
            None => (k, v),
        };
        let bias = w.kv_bias.as_ref().map(|(kb, vb)| (kb, vb));
        let probs = if self.want_probs {
            let kb = bias.map(|(kb, _)| kb);
            Some(attention_probs(&q, &k, &mask, kb, self.spec)?)
        } else {
            None
        };
        let o = attention_with_bias_slot(&q, &k, &v, &mask, bias, self.spec)?; // [B, H, Lr, Dh]
        let o = self.merge_heads(&o, lr)?; // [B, Lr, H*Dh]
        let out = scaled_linear(&o, &w.o_proj, self.cfg.linear_scale(hdim, d), None)?; // [B, Lr, d]
        Ok((out, kv, probs))
    }

    /// MLP (SPEC.md section 1, "MLP"): down(relu(up(x))^2).
    ///
    /// # Shapes
    /// x [B, L, d] -> [B, L, d]
    fn mlp(&self, x: &Tensor, w: &LayerWeights) -> Result<Tensor> {
        let (d, i) = (self.cfg.hidden_size, self.cfg.intermediate_size);
        let (up_b, down_b) = match &w.mlp_bias {
            Some((ub, db)) => (Some(ub), Some(db)),
            None => (None, None),
        };
        let u = scaled_linear(x, &w.up_proj, self.cfg.linear_scale(d, i), up_b)?
            .relu()?
            .square()?; // [B, L, I]
        scaled_linear(&u, &w.down_proj, self.cfg.linear_scale(i, d), down_b)
    }

    /// Logits of the rows `rows` (all rows when None) of the final-normed hidden state,
    /// in the accumulation dtype: lm_head * head_scaling, or E^T unscaled when tied
    /// (SPEC.md section 1).
    ///
    /// # Shapes
    /// hn [B, L, d] -> [B, L or end - start, V]
    fn head(&self, hn: &Tensor, w: &Weights, rows: Option<(usize, usize)>) -> Result<Tensor> {
        let hl = match rows {
            Some(r) => self.rows(hn, r)?,
            None => hn.clone(),
        }; // [B, L or e - s, d]
        let (proj, scale) = match &w.lm_head {
            Some(lm_head) => (lm_head, self.cfg.head_scaling),
            None => (&w.embed, UNSCALED),
        };
        scaled_linear(&hl, proj, scale, None)?.to(self.dtype.accum())
    }

    /// [B, L, H*Dh] -> [B, L, H, Dh] (L = `l`)
    fn split_heads(&self, x: &Tensor, l: usize) -> Result<Tensor> {
        let (h, hd) = (self.cfg.num_attention_heads, self.cfg.head_dim());
        x.reshape(&[self.b, l, h, hd])
    }

    /// [B, H, L, Dh] -> [B, L, H*Dh] (L = `l`)
    fn merge_heads(&self, x: &Tensor, l: usize) -> Result<Tensor> {
        let (_, hdim) = self.dims();
        x.transpose(&SWAP_SEQ_AND_HEADS)?
            .reshape(&[self.b, l, hdim])
    }

    /// Rows s..e of a per-query tensor [B, L, ..] -> [B, e - s, ..]
    fn rows(&self, x: &Tensor, (s, e): (usize, usize)) -> Result<Tensor> {
        let shape = x.shape();
        let mut start = vec![0; shape.len()];
        start[1] = s;
        let mut end = shape.to_vec();
        end[1] = e;
        x.slice(&start, &end)
    }

    /// (d, H*Dh): the widths of the residual stream and of all heads together.
    fn dims(&self) -> (usize, usize) {
        let c = self.cfg;
        (c.hidden_size, c.num_attention_heads * c.head_dim())
    }
}

/// [B, L, H, Dh] -> [B, H, L, Dh]
fn heads_first(x: &Tensor) -> Result<Tensor> {
    x.transpose(&SWAP_SEQ_AND_HEADS)
}

/// Attention probabilities written out (for audits): softmax of masked, capped scores,
/// the same math as the fused attention, in the accumulation dtype.
///
/// # Shapes
/// q [B, H, Lq, Dh], k [B, H, Lk, Dh], mask bool [B, Lq, Lk], k_bias [H, Dh]
/// -> [B, H, Lq, Lk (+1 with the bias slot)]
fn attention_probs(
    q: &Tensor,
    k: &Tensor,
    mask: &Tensor,
    kb: Option<&Tensor>,
    spec: AttnSpec,
) -> Result<Tensor> {
    let (b, h, lq, hd) = (q.dim(0), q.dim(1), q.dim(2), q.dim(3));
    let acc = q.dtype().accum();
    let (q, mut k, mut m) = (q.to(acc)?, k.to(acc)?, mask.clone());
    if let Some(kb) = kb {
        let slot = kb
            .to(acc)?
            .reshape(&[1, h, 1, hd])?
            .broadcast_to(&[b, h, 1, hd])?; // [B, H, 1, Dh]
        k = Tensor::concat(&[&slot, &k], KEY_AXIS)?; // [B, H, 1 + Lk, Dh]
        let always = m.graph().splat(TRUE, &[b, lq, 1], DType::Bool);
        m = Tensor::concat(&[&always, &m], MASK_KEY_AXIS)?; // [B, Lq, 1 + Lk]
    }
    let qk = DotDims {
        lhs_batch: BATCH_AND_HEAD_AXES.to_vec(),
        rhs_batch: BATCH_AND_HEAD_AXES.to_vec(),
        lhs_contract: vec![HEAD_DIM_AXIS],
        rhs_contract: vec![HEAD_DIM_AXIS],
    };
    let mut s = q.dot_general(&k, qk)?.mul_scalar(spec.scale as f64)?; // [B, H, Lq, Lk]
    if let Some(c) = spec.softcap {
        s = s.mul_scalar(1.0 / c as f64)?.tanh()?.mul_scalar(c as f64)?; // c tanh(s / c)
    }
    let m4 = m
        .reshape(&[b, 1, lq, m.shape()[MASK_KEY_AXIS]])?
        .broadcast_to(s.shape())?; // [B, H, Lq, Lk]

    // masked scores take f32's minimum, as the fused attention does (SPEC.md section 8)
    let s = m4.select(&s, &s.full_like(DType::F32.min_value()))?;
    s.softmax()
}
