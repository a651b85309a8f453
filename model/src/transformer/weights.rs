//! A GIDD model's parameters (SPEC.md section 1, "Parameter names"): [`Params`], the graph
//! inputs keyed by HF checkpoint name, and [`Weights`], a typed view of them that the
//! forward pass reads by field.
//!
//! The view is filled once, before any node is recorded, so a missing or misshapen
//! parameter is one error naming the tensor, not a failed lookup inside a layer.

use crate::config::GiddConfig;
use gidd_engine::{DType, Error, Graph, Result, Tensor};
use std::collections::BTreeMap;

/// Checkpoint keys outside the layers.
const EMBED_TOKENS: &str = "model.embed_tokens.weight";
const FINAL_NORM: &str = "model.norm.weight";
const LM_HEAD: &str = "lm_head.weight";

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
        Params::declare_each(g, cfg, |_| dtype)
    }
    /// Declares every parameter as an input of the dtype `dtype_of(name)` gives: bf16
    /// weights read in place from a mapped checkpoint are declared bf16, and the forward
    /// pass converts each where it is used (exactly: bf16 widens without rounding).
    pub fn declare_each(g: &Graph, cfg: &GiddConfig, dtype_of: impl Fn(&str) -> DType) -> Params {
        let list: Vec<(String, Tensor)> = cfg
            .param_shapes()
            .into_iter()
            .map(|(n, s)| {
                let t = g.input(&n, &s, dtype_of(&n));
                (n, t)
            })
            .collect();
        let index = list
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        Params { list, index }
    }
    /// Parameters the caller already has as graph values (gathered from shards, say),
    /// named by their HF keys; `forward` checks them against the config by name and shape.
    pub fn from_tensors(list: Vec<(String, Tensor)>) -> Params {
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
            .ok_or_else(|| Error::Msg(format!("no parameter named {name}")))
    }
    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|(n, _)| n.clone()).collect()
    }
    pub fn tensors(&self) -> Vec<Tensor> {
        self.list.iter().map(|(_, t)| t.clone()).collect()
    }
}

/// The whole model's weights by role. Shapes use V vocab, d hidden, H heads, Dh head
/// dim, I intermediate; projections are [out, in] as in the checkpoint.
pub(super) struct Weights {
    /// [V, d]; also the output projection when `tie_word_embeddings`
    pub embed: Tensor,
    pub layers: Vec<LayerWeights>,
    /// [d], the norm before the head
    pub norm: Tensor,
    /// [V, d]; None when `tie_word_embeddings`
    pub lm_head: Option<Tensor>,
}

/// One layer's weights by role (`model.layers.{i}.*`).
pub(super) struct LayerWeights {
    /// [d], before attention
    pub attn_norm: Tensor,
    /// [H*Dh, d] each
    pub q_proj: Tensor,
    pub k_proj: Tensor,
    pub v_proj: Tensor,
    /// [d, H*Dh]
    pub o_proj: Tensor,
    /// (q_norm, k_norm) [d] each, when `use_qk_norm`
    pub qk_norm: Option<(Tensor, Tensor)>,
    /// (k_bias, v_bias) [H, Dh] each, the bias slot, when `attention_bias`
    pub kv_bias: Option<(Tensor, Tensor)>,
    /// [d], before the MLP
    pub mlp_norm: Tensor,
    /// [I, d]
    pub up_proj: Tensor,
    /// [d, I]
    pub down_proj: Tensor,
    /// (up [I], down [d]), when `mlp_bias`
    pub mlp_bias: Option<(Tensor, Tensor)>,
}

impl Weights {
    /// Reads every weight `cfg` uses out of `p`, checking each against the shape `cfg`
    /// declares (a `Params` declared for another config fails here, by name).
    pub fn view(cfg: &GiddConfig, p: &Params) -> Result<Weights> {
        let shapes: BTreeMap<String, Vec<usize>> = cfg.param_shapes().into_iter().collect();
        let take = |name: &str| -> Result<Tensor> {
            let t = p.get(name)?;
            match shapes.get(name) {
                Some(want) if t.shape() == want.as_slice() => Ok(t.clone()),
                Some(want) => Err(Error::Msg(format!(
                    "parameter {name} is {:?}, the config declares {want:?} \
                     (Params declared for another config?)",
                    t.shape()
                ))),
                None => Err(Error::Msg(format!(
                    "the config declares no parameter {name}"
                ))),
            }
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| LayerWeights::view(cfg, |leaf| take(&format!("model.layers.{i}.{leaf}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Weights {
            embed: take(EMBED_TOKENS)?,
            layers,
            norm: take(FINAL_NORM)?,
            lm_head: (!cfg.tie_word_embeddings)
                .then(|| take(LM_HEAD))
                .transpose()?,
        })
    }
}

impl LayerWeights {
    /// `take` maps a key below `model.layers.{i}.` to its tensor.
    fn view(cfg: &GiddConfig, take: impl Fn(&str) -> Result<Tensor>) -> Result<LayerWeights> {
        let pair = |on: bool, a: &str, b: &str| -> Result<Option<(Tensor, Tensor)>> {
            on.then(|| Ok((take(a)?, take(b)?))).transpose()
        };
        Ok(LayerWeights {
            attn_norm: take("attn_layernorm.weight")?,
            q_proj: take("self_attn.q_proj.weight")?,
            k_proj: take("self_attn.k_proj.weight")?,
            v_proj: take("self_attn.v_proj.weight")?,
            o_proj: take("self_attn.o_proj.weight")?,
            qk_norm: pair(
                cfg.use_qk_norm,
                "self_attn.q_norm.weight",
                "self_attn.k_norm.weight",
            )?,
            kv_bias: pair(cfg.attention_bias, "self_attn.k_bias", "self_attn.v_bias")?,
            mlp_norm: take("mlp_layernorm.weight")?,
            up_proj: take("mlp.up_proj.weight")?,
            down_proj: take("mlp.down_proj.weight")?,
            mlp_bias: pair(cfg.mlp_bias, "mlp.up_proj.bias", "mlp.down_proj.bias")?,
        })
    }
}
