//! `GiddConfig`: the HF `config.json` of a GIDD model (SPEC.md section 1).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Weight scaling of ScaledLinear: s = in^-1/2 ("fan_in"), out^-1/2 ("fan_out"), or a constant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WeightScaling {
    Named(String),
    Value(f64),
}

fn d_vocab() -> usize {
    131072
}
fn d_hidden() -> usize {
    768
}
fn d_inter() -> usize {
    3072
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_softcap() -> f64 {
    30.0
}
fn d_maxpos() -> usize {
    1024
}
fn d_resid() -> f64 {
    4.0
}
fn d_eps() -> f64 {
    1e-6
}
fn d_true() -> bool {
    true
}
fn d_init() -> f64 {
    0.4
}
fn d_emb_init() -> f64 {
    0.1
}
fn d_ws() -> WeightScaling {
    WeightScaling::Named("fan_in".into())
}
fn d_one() -> f64 {
    1.0
}
fn d_theta() -> f64 {
    10000.0
}
fn d_min_snr() -> f64 {
    -9.0
}
fn d_max_snr() -> f64 {
    9.0
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GiddConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default)]
    pub is_causal: bool,
    #[serde(default = "d_softcap")]
    pub attn_soft_cap: f64,
    #[serde(default = "d_maxpos")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_resid")]
    pub resid_scale: f64,
    #[serde(default = "d_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "d_true")]
    pub use_qk_norm: bool,
    #[serde(default = "d_init")]
    pub init_scale: f64,
    #[serde(default = "d_emb_init")]
    pub emb_init_scale: f64,
    #[serde(default)]
    pub head_init_scale: f64,
    #[serde(default = "d_ws")]
    pub weight_scaling: WeightScaling,
    #[serde(default = "d_one")]
    pub head_scaling: f64,
    #[serde(default = "d_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// The hybrid mixing shift: +1000 uniform noise, -1000 masked.
    #[serde(default)]
    pub noise_type: f64,
    #[serde(default = "d_min_snr")]
    pub min_log_snr: f64,
    #[serde(default = "d_max_snr")]
    pub max_log_snr: f64,
    /// Keys we do not interpret (dtype, auto_map, architectures, ...), kept on re-save.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config.json: {0}")]
    Invalid(String),
    #[error("config.json is not a valid GIDD config: {0}")]
    Parse(#[from] serde_json::Error),
}

impl GiddConfig {
    /// Parses a config.json object and validates it.
    pub fn from_json(v: Value) -> Result<Self, ConfigError> {
        let mut c: GiddConfig = serde_json::from_value(v)?;
        // The reference ignores auto_map (remote code); we never run it either.
        c.extra.remove("auto_map");
        c.validate()?;
        Ok(c)
    }

    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.entry("model_type")
                .or_insert_with(|| Value::String("gidd".into()));
            m.entry("architectures")
                .or_insert_with(|| Value::Array(vec![Value::String("GiddForDiffusionLM".into())]));
            m.insert("head_dim".into(), Value::from(self.head_dim()));
        }
        v
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// ScaledLinear's scale for a weight [out, in].
    pub fn linear_scale(&self, fan_in: usize, fan_out: usize) -> f64 {
        match &self.weight_scaling {
            WeightScaling::Value(v) => *v,
            WeightScaling::Named(n) if n == "fan_out" => (fan_out as f64).powf(-0.5),
            WeightScaling::Named(_) => (fan_in as f64).powf(-0.5),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "num_attention_heads ({}) must divide hidden_size ({})",
                self.num_attention_heads, self.hidden_size
            ));
        }
        if self.head_dim() * self.num_attention_heads != self.hidden_size {
            return bad(format!(
                "head_dim {} x num_attention_heads {} must equal hidden_size {} (RoPE uses hidden/heads)",
                self.head_dim(),
                self.num_attention_heads,
                self.hidden_size
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if let WeightScaling::Named(n) = &self.weight_scaling {
            if n != "fan_in" && n != "fan_out" {
                return bad(format!(
                    "weight_scaling must be \"fan_in\", \"fan_out\" or a number, got \"{n}\""
                ));
            }
        }
        if self.vocab_size <= 3 {
            return bad(format!(
                "vocab_size {} must exceed the 4 special ids (bos 0, eos 1, pad 2, mask 3)",
                self.vocab_size
            ));
        }
        // 2^40 parameters (4 TiB in f32) is past anything one process can hold.
        let p = self.num_params() as f64;
        if p > (1u64 << 40) as f64 {
            return bad(format!("{p:.3e} parameters would not fit in memory"));
        }
        if self.min_log_snr >= self.max_log_snr {
            return bad(format!(
                "min_log_snr {} must be below max_log_snr {}",
                self.min_log_snr, self.max_log_snr
            ));
        }
        Ok(())
    }

    /// Parameter names and shapes, in the HF checkpoint's names (SPEC.md section 1).
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (v, d, i, h, hd) = (
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_attention_heads,
            self.head_dim(),
        );
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, d])];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.attn_layernorm.weight"), vec![d]));
            out.push((format!("{p}.mlp_layernorm.weight"), vec![d]));
            for n in ["q", "k", "v"] {
                out.push((format!("{p}.self_attn.{n}_proj.weight"), vec![h * hd, d]));
            }
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![d, h * hd]));
            if self.use_qk_norm {
                out.push((format!("{p}.self_attn.q_norm.weight"), vec![d]));
                out.push((format!("{p}.self_attn.k_norm.weight"), vec![d]));
            }
            if self.attention_bias {
                out.push((format!("{p}.self_attn.k_bias"), vec![h, hd]));
                out.push((format!("{p}.self_attn.v_bias"), vec![h, hd]));
            }
            out.push((format!("{p}.mlp.up_proj.weight"), vec![i, d]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![d, i]));
            if self.mlp_bias {
                out.push((format!("{p}.mlp.up_proj.bias"), vec![i]));
                out.push((format!("{p}.mlp.down_proj.bias"), vec![d]));
            }
        }
        out.push(("model.norm.weight".to_string(), vec![d]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, d]));
        }
        out
    }

    pub fn num_params(&self) -> usize {
        self.param_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Forward FLOPs per token at sequence length `seq`: 2 per multiply-add of
    /// every matmul, plus attention's scores and values (4 L d per layer).
    pub fn flops_per_token(&self, seq: usize) -> f64 {
        let (d, i, v, n) = (
            self.hidden_size as f64,
            self.intermediate_size as f64,
            self.vocab_size as f64,
            self.num_hidden_layers as f64,
        );
        let keys = seq as f64 + if self.attention_bias { 1.0 } else { 0.0 };
        n * (2.0 * 4.0 * d * d + 2.0 * 2.0 * d * i + 4.0 * keys * d) + 2.0 * d * v
    }
}
