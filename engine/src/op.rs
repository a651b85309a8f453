//! The op set. Primitives map one-to-one onto StableHLO; fused ops each carry a
//! decomposition into primitives (`crate::decompose`), which is their numerical
//! reference and what a backend without a kernel for them runs.

use crate::dtype::DType;
use crate::host::HostTensor;
use std::sync::Arc;

// The elementwise and reduction kinds are the kernels' own: one definition from the
// graph down to the loops, so adding one is one edit.
pub use gidd_kernels::elementwise::{Binary as BinaryOp, Cmp as CmpOp, Unary as UnaryOp};
pub use gidd_kernels::reduce::ReduceOp;
pub use gidd_kernels::sample::{
    Mode as SampleMode, Posterior as SamplePosterior, Step as SampleSpec,
};

/// dot_general dimension numbers (StableHLO): the result is laid out as
/// [batch dims..., lhs free dims..., rhs free dims...].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DotDims {
    pub lhs_batch: Vec<usize>,
    pub rhs_batch: Vec<usize>,
    pub lhs_contract: Vec<usize>,
    pub rhs_contract: Vec<usize>,
}

/// Soft-capped, masked attention parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnSpec {
    /// multiplies q.k (the reference uses head_dim^-1/2)
    pub scale: f32,
    /// c in c*tanh(s/c); None = no cap
    pub softcap: Option<f32>,
}

/// Schedule constants of the fused diffusion KL (the GIDD loss's pass over the vocabulary).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MarginalSpec {
    pub mask_id: u32,
    pub min_log_snr: f32,
    pub max_log_snr: f32,
    /// hybrid mixing scale a and shift b: beta_u = sigmoid(a l + b)
    pub scale: f32,
    pub shift: f32,
}

#[derive(Clone, Debug)]
pub enum Op {
    // ---- leaves ----
    /// A value supplied at run time (parameters, data, optimizer state).
    Input {
        name: String,
    },
    /// A literal tensor.
    Constant(Arc<HostTensor>),
    /// A scalar splatted over the node's shape (StableHLO `constant dense<x>`).
    Splat(f64),
    /// Index along `dim` (StableHLO `iota`).
    Iota {
        dim: usize,
    },

    // ---- elementwise ----
    Unary(UnaryOp),
    Binary(BinaryOp),
    Compare(CmpOp),
    /// select(pred, on_true, on_false)
    Select,
    Convert {
        to: DType,
    },

    // ---- movement ----
    /// StableHLO broadcast_in_dim: operand dim i maps to result dim dims[i].
    BroadcastInDim {
        shape: Vec<usize>,
        dims: Vec<usize>,
    },
    Reshape {
        shape: Vec<usize>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    Slice {
        start: Vec<usize>,
        limit: Vec<usize>,
    },
    Concatenate {
        dim: usize,
    },

    // ---- contraction, reduction, indexing ----
    DotGeneral(DotDims),
    Reduce {
        op: ReduceOp,
        dims: Vec<usize>,
    },
    /// out[pre.., idx.., post..] = x[pre.., indices[idx..], post..] along `axis`.
    Gather {
        axis: usize,
    },
    /// The adjoint of Gather: zeros of the node's shape with updates added at indices along `axis`.
    ScatterAdd {
        axis: usize,
        shape: Vec<usize>,
    },

    // ---- fused ops (each with a decomposition) ----
    /// softmax over the last axis, f32
    Softmax,
    /// log-softmax over the last axis, f32
    LogSoftmax,
    /// (y, dy) -> dx for softmax over the last axis
    SoftmaxBwd,
    /// (x [.., n], w [n]) -> (y, rstd [..]); y = x rsqrt(mean x^2 + eps) (1 + w)
    RmsNorm {
        eps: f32,
    },
    /// (x, w, rstd, dy) -> (dx, dw)
    RmsNormBwd,
    /// (x [R, H, D], cos [R, D/2], sin [R, D/2]) -> neox-rotated x
    Rope,
    /// (dy, cos, sin) -> dx (the transposed rotation)
    RopeBwd,
    /// (q [B,H,Lq,D], k [B,H,Lk,D], v, mask bool [B,Lq,Lk]) -> (out [B,H,Lq,D], lse [B,H,Lq])
    Attention(AttnSpec),
    /// (q, k, v, mask, out, lse, dout) -> (dq, dk, dv), recompute-based
    AttentionBwd(AttnSpec),
    /// (logits [.., V] f32, z [..] int, x [..] int, l [..] f32) -> (kl, log p_t[z], log q_t[z]) [..]:
    /// one pass over the vocabulary per token, p_t and q_t never stored (SPEC.md section 3)
    DiffusionKl(MarginalSpec),
    /// (logits, z, x, l, g_kl, g_log_p_z) -> d logits
    DiffusionKlBwd(MarginalSpec),
    /// (logits [R, V] f32, rows [R, 4] i32 = (z, banned id or -1, packed uniform hi, lo)) ->
    /// [R, 3] i32 = (drawn token, score's f64 bits hi, lo): one generation step's sampling
    /// per position in f64 (`gidd_kernels::sample`), so only tokens leave the device. A
    /// sequential categorical draw has no exact decomposition into primitives: executors
    /// without a kernel refuse it (`supports_fused`) and generation samples on the host.
    SampleStep(SampleSpec),

    // ---- collectives (FSDP): run by the rank's collective, in program order ----
    /// (shard_1 [ceil(n_1 / world)], ..) -> (full_1 of shapes[0], ..): every rank's shards of
    /// k tensors gathered in one collective, rank-order concatenation cut to each tensor's
    /// elements (the padding dropped). A layer's parameters are one gather.
    AllGather {
        world: usize,
        shapes: Vec<Vec<usize>>,
    },
    /// x (any shape, n elements) -> [ceil(n / world)]: this rank's segment of the rank-order
    /// sum of every rank's x, flattened and zero-padded to world segments (the shard layout
    /// of `AllGather`, whose adjoint it is).
    ReduceScatter {
        world: usize,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Constant(_) => "constant",
            Op::Splat(_) => "splat",
            Op::Iota { .. } => "iota",
            Op::Unary(_) => "unary",
            Op::Binary(_) => "binary",
            Op::Compare(_) => "compare",
            Op::Select => "select",
            Op::Convert { .. } => "convert",
            Op::BroadcastInDim { .. } => "broadcast_in_dim",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Slice { .. } => "slice",
            Op::Concatenate { .. } => "concatenate",
            Op::DotGeneral(_) => "dot_general",
            Op::Reduce { .. } => "reduce",
            Op::Gather { .. } => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::Softmax => "softmax",
            Op::LogSoftmax => "log_softmax",
            Op::SoftmaxBwd => "softmax_bwd",
            Op::RmsNorm { .. } => "rms_norm",
            Op::RmsNormBwd => "rms_norm_bwd",
            Op::Rope => "rope",
            Op::RopeBwd => "rope_bwd",
            Op::Attention(_) => "attention",
            Op::AttentionBwd(_) => "attention_bwd",
            Op::DiffusionKl(_) => "diffusion_kl",
            Op::DiffusionKlBwd(_) => "diffusion_kl_bwd",
            Op::SampleStep(_) => "sample_step",
            Op::AllGather { .. } => "all_gather",
            Op::ReduceScatter { .. } => "reduce_scatter",
        }
    }

    /// Collectives talk to the other ranks: only an executor given a rank's collective runs them.
    pub fn is_collective(&self) -> bool {
        matches!(self, Op::AllGather { .. } | Op::ReduceScatter { .. })
    }

    /// Fused ops have a decomposition into primitives (all but `SampleStep`, whose
    /// `decompose` is a refusal saying so).
    pub fn is_fused(&self) -> bool {
        matches!(
            self,
            Op::Softmax
                | Op::LogSoftmax
                | Op::SoftmaxBwd
                | Op::RmsNorm { .. }
                | Op::RmsNormBwd
                | Op::Rope
                | Op::RopeBwd
                | Op::Attention(_)
                | Op::AttentionBwd(_)
                | Op::DiffusionKl(_)
                | Op::DiffusionKlBwd(_)
                | Op::SampleStep(_)
        )
    }
}

/// The type of one graph value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorType {
    pub fn new(shape: Vec<usize>, dtype: DType) -> Self {
        TensorType { shape, dtype }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}{}", self.shape, self.dtype)
    }
}
