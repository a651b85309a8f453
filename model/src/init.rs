//! Parameter roles and the training init (SPEC.md section 1, "Training init").

use crate::GiddConfig;
use gidd_engine::rng::HostRng;
use gidd_engine::{Data, HostTensor};

/// What a parameter is, told from its HF name. The optimizer's four groups and the init
/// are both functions of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    /// RMSNorm weights (layer, q/k and final norms).
    Norm,
    /// The token embedding.
    Embedding,
    /// Attention and MLP biases.
    Bias,
    /// The output projection (`lm_head`).
    Head,
    /// Every other matrix: attention and MLP weights.
    Weight,
}

/// First match wins, in the reference's order (so `...norm.bias` would be a norm).
pub fn role_of(name: &str) -> ParamRole {
    if name.contains("norm") {
        ParamRole::Norm
    } else if name.contains("embed_tokens") {
        ParamRole::Embedding
    } else if name.contains("bias") {
        ParamRole::Bias
    } else if name.contains("lm_head") {
        ParamRole::Head
    } else {
        ParamRole::Weight
    }
}

/// The init's scales, named as the reference's args.
#[derive(Clone, Copy, Debug)]
pub struct InitOpts {
    /// Weights ~ N(0, (init_scale / sqrt d)^2).
    pub init_scale: f64,
    /// The embedding ~ N(0, aux_init_scale^2).
    pub aux_init_scale: f64,
    /// lm_head starts at zero (else like the weights).
    pub zero_head_init: bool,
}

/// CompleteP-style init, in `cfg.param_shapes()` order: weights ~ N(0, (init_scale/sqrt d)^2),
/// embedding ~ N(0, aux^2), lm_head zero, norms and biases zero. Deterministic in `seed`.
pub fn init_params(cfg: &GiddConfig, o: &InitOpts, seed: u64) -> Vec<(String, HostTensor)> {
    let mut rng = HostRng::new(seed ^ 0x1417);
    let d = cfg.hidden_size as f64;
    cfg.param_shapes()
        .into_iter()
        .map(|(n, s)| {
            let numel: usize = s.iter().product();
            let std = match role_of(&n) {
                ParamRole::Norm | ParamRole::Bias => 0.0,
                ParamRole::Head if o.zero_head_init => 0.0,
                ParamRole::Head | ParamRole::Weight => o.init_scale / d.sqrt(),
                ParamRole::Embedding => o.aux_init_scale,
            };
            // A zero std draws nothing, so the stream of later tensors does not depend on it.
            let v: Vec<f32> = (0..numel)
                .map(|_| {
                    if std == 0.0 {
                        0.0
                    } else {
                        (rng.normal() * std) as f32
                    }
                })
                .collect();
            let t = HostTensor {
                shape: s,
                data: Data::F32(v),
            };
            (n, t)
        })
        .collect()
}
