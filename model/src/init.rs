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
    let mut s = InitStream::new(cfg, o, seed);
    let mut out = vec![];
    while let Some((n, shape, std)) = s.next_param() {
        let mut v = vec![0f32; shape.iter().product()];
        s.fill(std, &mut v);
        let t = HostTensor {
            shape,
            data: Data::F32(v),
        };
        out.push((n, t));
    }
    out
}

/// [`init_params`] one parameter at a time, for models larger than memory: `next_param`
/// gives each parameter's name, shape and std in `param_shapes` order, and `fill` draws
/// its values, in as many chunks as the caller likes, from the one stream `init_params`
/// draws from (so both give the same values).
pub struct InitStream {
    rng: HostRng,
    d: f64,
    o: InitOpts,
    shapes: std::vec::IntoIter<(String, Vec<usize>)>,
}

impl InitStream {
    pub fn new(cfg: &GiddConfig, o: &InitOpts, seed: u64) -> InitStream {
        InitStream {
            rng: HostRng::new(seed ^ 0x1417),
            d: cfg.hidden_size as f64,
            o: *o,
            shapes: cfg.param_shapes().into_iter(),
        }
    }

    /// The next parameter: (name, shape, std of its values).
    pub fn next_param(&mut self) -> Option<(String, Vec<usize>, f64)> {
        let (n, s) = self.shapes.next()?;
        let std = match role_of(&n) {
            ParamRole::Norm | ParamRole::Bias => 0.0,
            ParamRole::Head if self.o.zero_head_init => 0.0,
            ParamRole::Head | ParamRole::Weight => self.o.init_scale / self.d.sqrt(),
            ParamRole::Embedding => self.o.aux_init_scale,
        };
        Some((n, s, std))
    }

    /// The next `out.len()` values of a parameter of standard deviation `std`.
    pub fn fill(&mut self, std: f64, out: &mut [f32]) {
        if std == 0.0 {
            // a zero std draws nothing, so the stream of later tensors does not depend on it
            out.fill(0.0);
            return;
        }
        for x in out {
            *x = (self.rng.normal() * std) as f32;
        }
    }
}
