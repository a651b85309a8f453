//! The GIDD transformer, as SPEC.md section 1 reads: RMSNorm (1 + w), QK-norm over
//! the full hidden size, neox RoPE, soft-capped attention with the bias slot,
//! squared-ReLU MLP, residual branches scaled by resid_scale / num_layers.

use crate::config::GiddConfig;
use gidd_engine::api::attention_with_bias_slot;
use gidd_engine::{AttnSpec, DType, Graph, HostTensor, Result, Tensor};
use std::collections::BTreeMap;

/// Graph inputs for every parameter, keyed by HF checkpoint name (f32, or f64 in an f64
/// run), in `GiddConfig::param_shapes` order.
#[derive(Clone, Debug)]
pub struct Params {
    list: Vec<(String, Tensor)>,
    index: BTreeMap<String, usize>,
}

impl Params {
    /// Declares every parameter of `cfg` as a graph input named by its HF key.
    pub fn declare(g: &Graph, cfg: &GiddConfig) -> Params {
        Params::declare_as(g, cfg, DType::F32)
    }
    /// Declares every parameter as an input of `dtype`: f32, or f64 for an f64 run
    /// (`ForwardOpts::dtype.accum()`, the master precision).
    pub fn declare_as(g: &Graph, cfg: &GiddConfig, dtype: DType) -> Params {
        let list: Vec<(String, Tensor)> = cfg
            .param_shapes()
            .into_iter()
            .map(|(n, s)| (n.clone(), g.input(&n, &s, dtype)))
            .collect();
        let index = list
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        Params { list, index }
    }
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.index
            .get(name)
            .map(|&i| &self.list[i].1)
            .ok_or_else(|| gidd_engine::Error::Msg(format!("no parameter named {name}")))
    }
    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|(n, _)| n.clone()).collect()
    }
    pub fn tensors(&self) -> Vec<Tensor> {
        self.list.iter().map(|(_, t)| t.clone()).collect()
    }
}

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

/// RoPE tables (cos, sin) [max_pos, rd/2], computed in f32 as the reference does.
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

/// y = (x W^T) * s + b for W [out, in].
fn scaled_linear(x: &Tensor, w: &Tensor, s: f64, b: Option<&Tensor>) -> Result<Tensor> {
    let y = x.linear(&w.to(x.dtype())?)?;
    let y = if s == 1.0 { y } else { y.mul_scalar(s)? };
    match b {
        Some(b) => y.add(&b.to(x.dtype())?),
        None => Ok(y),
    }
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

/// Keys and values of earlier positions, per layer: (k, v) [B, H, Lp, hd] after QK-norm and
/// RoPE, without the bias slot (the attention adds that once, whatever the cache holds).
pub type KvCache = Vec<(Tensor, Tensor)>;

/// The forward pass over `ids` that follow the positions held in `past` (SPEC.md section 1,
/// "KV cache"): the queries attend to the cached keys, then to their own. Returns the
/// outputs and this call's own keys and values (not including `past`).
///
/// Exact for generation's clean prefix: a clean query attends only to clean keys, so the
/// prefix's keys do not depend on anything after it.
///
/// `logit_rows` = (start, end) computes logits only for those query rows (the lm_head is
/// the widest matmul; generation reads one block's rows).
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
    let g = ids.graph().clone();
    let (b, l) = (ids.dim(0), ids.dim(1));
    let (d, h, hd) = (cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim());
    let lp = past
        .and_then(|c| c.first())
        .map(|(k, _)| k.dim(2))
        .unwrap_or(0);
    if let Some(c) = past {
        if c.len() != cfg.num_hidden_layers {
            return Err(gidd_engine::Error::Msg(format!(
                "KV cache holds {} layers, the model has {}",
                c.len(),
                cfg.num_hidden_layers
            )));
        }
    }
    let eps = cfg.rms_norm_eps as f32;
    let dt = opts.dtype;
    let mask = if mask.rank() == 2 {
        mask.reshape(&[b, 1, lp + l])?
            .broadcast_to(&[b, l, lp + l])? // keys -> (B, Lq, Lk)
    } else {
        mask.clone()
    };
    let (cos_t, sin_t) = rope_tables(cfg);
    let cos = g.constant(cos_t).gather(0, pos)?; // (B, L, hd/2)
    let sin = g.constant(sin_t).gather(0, pos)?;
    let spec = AttnSpec {
        scale: (hd as f32).powf(-0.5),
        softcap: Some(cfg.attn_soft_cap as f32).filter(|c| *c > 0.0),
    };
    let rs = cfg.resid_scale / cfg.num_hidden_layers as f64;

    let mut hcur = p.get("model.embed_tokens.weight")?.embedding(ids)?.to(dt)?; // (B, L, d)
    let mut hidden = vec![hcur.clone()];
    let mut attentions = vec![];
    let mut present = vec![];
    for li in 0..cfg.num_hidden_layers {
        let pre = format!("model.layers.{li}");
        let w = |n: &str| p.get(&format!("{pre}.{n}"));
        // attention branch
        let x = hcur.rms_norm(w("attn_layernorm.weight")?, eps)?;
        let s_in = cfg.linear_scale(d, h * hd);
        let mut q = scaled_linear(&x, w("self_attn.q_proj.weight")?, s_in, None)?; // (B, L, H*hd)
        let mut k = scaled_linear(&x, w("self_attn.k_proj.weight")?, s_in, None)?;
        let v = scaled_linear(&x, w("self_attn.v_proj.weight")?, s_in, None)?;
        if cfg.use_qk_norm {
            q = q.rms_norm(w("self_attn.q_norm.weight")?, eps)?;
            k = k.rms_norm(w("self_attn.k_norm.weight")?, eps)?;
        }
        let q = q
            .reshape(&[b, l, h, hd])?
            .rope(&cos, &sin)?
            .transpose(&[0, 2, 1, 3])?; // (B, H, L, hd)
        let k = k
            .reshape(&[b, l, h, hd])?
            .rope(&cos, &sin)?
            .transpose(&[0, 2, 1, 3])?;
        let v = v.reshape(&[b, l, h, hd])?.transpose(&[0, 2, 1, 3])?;
        present.push((k.clone(), v.clone()));
        let (k, v) = match past {
            Some(c) => {
                let (pk, pv) = &c[li];
                (
                    Tensor::concat(&[&pk.to(k.dtype())?, &k], 2)?,
                    Tensor::concat(&[&pv.to(v.dtype())?, &v], 2)?,
                )
            }
            None => (k, v),
        };
        let bias = if cfg.attention_bias {
            Some((w("self_attn.k_bias")?, w("self_attn.v_bias")?))
        } else {
            None
        };
        if opts.attentions {
            attentions.push(attention_probs(&q, &k, &mask, bias.map(|x| x.0), spec)?);
        }
        let a = attention_with_bias_slot(&q, &k, &v, &mask, bias, spec)?; // (B, H, L, hd)
        let a = a.transpose(&[0, 2, 1, 3])?.reshape(&[b, l, h * hd])?; // (B, L, H*hd)
        let a = scaled_linear(
            &a,
            w("self_attn.o_proj.weight")?,
            cfg.linear_scale(h * hd, d),
            None,
        )?;
        hcur = hcur.add(&a.mul_scalar(rs)?)?;
        // MLP branch
        let x = hcur.rms_norm(w("mlp_layernorm.weight")?, eps)?;
        let i = cfg.intermediate_size;
        let ub = if cfg.mlp_bias {
            Some(w("mlp.up_proj.bias")?)
        } else {
            None
        };
        let db = if cfg.mlp_bias {
            Some(w("mlp.down_proj.bias")?)
        } else {
            None
        };
        let u = scaled_linear(&x, w("mlp.up_proj.weight")?, cfg.linear_scale(d, i), ub)?
            .relu()?
            .square()?; // (B, L, I)
        let m = scaled_linear(&u, w("mlp.down_proj.weight")?, cfg.linear_scale(i, d), db)?;
        hcur = hcur.add(&m.mul_scalar(rs)?)?;
        if li + 1 < cfg.num_hidden_layers {
            hidden.push(hcur.clone());
        }
    }
    let last_prenorm = hcur.clone();
    let hn = hcur.rms_norm(p.get("model.norm.weight")?, eps)?;
    hidden.push(hn.clone());
    let hl = match logit_rows {
        Some((s, e)) => hn.slice(&[0, s, 0], &[b, e, d])?,
        None => hn,
    };
    let logits = if cfg.tie_word_embeddings {
        hl.linear(&p.get("model.embed_tokens.weight")?.to(dt)?)?
    } else {
        scaled_linear(&hl, p.get("lm_head.weight")?, cfg.head_scaling, None)?
    };
    Ok((
        ForwardOut {
            logits: logits.to(dt.accum())?,
            hidden_states: hidden,
            last_prenorm,
            attentions,
        },
        present,
    ))
}

/// Attention probabilities written out (for audits): softmax of masked, capped scores.
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
            .broadcast_to(&[b, h, 1, hd])?;
        k = Tensor::concat(&[&slot, &k], 2)?;
        m = Tensor::concat(&[&m.graph().splat(1.0, &[b, lq, 1], DType::Bool), &m], 2)?;
    }
    let dd = gidd_engine::op::DotDims {
        lhs_batch: vec![0, 1],
        rhs_batch: vec![0, 1],
        lhs_contract: vec![3],
        rhs_contract: vec![3],
    };
    let mut s = q.dot_general(&k, dd)?.mul_scalar(spec.scale as f64)?;
    if let Some(c) = spec.softcap {
        s = s.mul_scalar(1.0 / c as f64)?.tanh()?.mul_scalar(c as f64)?;
    }
    let m4 = m.reshape(&[b, 1, lq, m.dim(2)])?.broadcast_to(s.shape())?;
    let s = m4.select(&s, &s.full_like(DType::F32.min_value()))?;
    s.softmax()
}
