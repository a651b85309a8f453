//! The WGSL kernels of the wgpu executor (hand-written, one file per kernel family beside its
//! reference and CPU kernel), embedded as text, and the frame of the kernels the executor
//! generates for chains of elementwise ops ([`generated_source`]).
//!
//! WGSL has no includes: a module is [`PRELUDE`] (shared helpers: bf16 rounding, NaN tests,
//! the emulated i64 arithmetic), then for elementwise kernels `elementwise/operands.wgsl` (the
//! bindings and the operand loads that stand a splat in for a buffer), then the kernel file;
//! [`source`] puts them together. Every buffer is an `array<u32>`; the dtype encodings are in
//! the prelude's header. Ops are chosen per pipeline through override constants (`OP` is the
//! position of the variant: [`unary_code`], [`binary_code`], [`cmp_code`]), so one module
//! serves every op of its family and the driver compiles each pipeline with its branch folded.

use crate::elementwise::{Binary, Cmp, Unary};

pub const PRELUDE: &str = include_str!("common/prelude.wgsl");
const OPERANDS: &str = include_str!("elementwise/operands.wgsl");
/// The per-element op functions, shared by the elementwise entry points and generated kernels.
const OPS: &str = include_str!("elementwise/ops.wgsl");

/// The kernel modules, each one WGSL file (entry points listed with the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Module {
    /// `unary_f`, `unary_i`, `unary_l`
    Unary,
    /// `binary_f`, `binary_i`, `binary_l`
    Binary,
    /// `compare_f`, `compare_i`, `compare_l`, `select_w`
    CompareSelect,
    /// `convert_{ff,fi,fl,if,ii,il,li,lf}`, `iota_{f,i,l}`, `fill`
    Convert,
    /// `strided_copy`
    StridedCopy,
    /// `reduce_f_cols`, `reduce_f_rows`, `reduce_i_cols`, `reduce_l_cols`
    Reduce,
    /// `gemm` (GPUs)
    Gemm,
    /// `gemm_blocked` (CPU adapters) over f32 (or widened bf16) operands
    GemmBlocked,
    /// `gemm_blocked` over packed bf16 operands (bf16 dot_general on every adapter)
    GemmBlockedBf16,
    /// `peak_fma`
    Peak,
    /// `gather`, `gather_h`, `zero`, `scatter_add`
    GatherScatter,
    /// softmax, log-softmax and their backward over the last axis (fused op kernels)
    Softmax,
    /// rms_norm forward and backward
    RmsNorm,
    /// RoPE forward and backward
    Rope,
    /// flash-style attention forward and backward
    Attention,
    /// the fused GIDD diffusion KL over the vocabulary, forward and backward
    DiffusionKl,
    /// a generation step's sampling per position, in f64 (needs SHADER_F64)
    Sample,
}

impl Module {
    pub const ALL: [Module; 17] = [
        Module::Unary,
        Module::Binary,
        Module::CompareSelect,
        Module::Convert,
        Module::StridedCopy,
        Module::Reduce,
        Module::Gemm,
        Module::GemmBlocked,
        Module::GemmBlockedBf16,
        Module::Peak,
        Module::GatherScatter,
        Module::Softmax,
        Module::RmsNorm,
        Module::Rope,
        Module::Attention,
        Module::DiffusionKl,
        Module::Sample,
    ];

    /// The kernel file's own text.
    pub fn body(self) -> &'static str {
        match self {
            Module::Unary => include_str!("elementwise/unary.wgsl"),
            Module::Binary => include_str!("elementwise/binary.wgsl"),
            Module::CompareSelect => include_str!("elementwise/compare_select.wgsl"),
            Module::Convert => include_str!("elementwise/convert.wgsl"),
            Module::StridedCopy => include_str!("movement/strided_copy.wgsl"),
            Module::Reduce => include_str!("reduce/reduce.wgsl"),
            Module::Gemm => include_str!("matmul/gemm.wgsl"),
            Module::GemmBlocked | Module::GemmBlockedBf16 => {
                include_str!("matmul/gemm_blocked.wgsl")
            }
            Module::Peak => include_str!("matmul/peak.wgsl"),
            Module::GatherScatter => include_str!("index/gather_scatter.wgsl"),
            Module::Softmax => include_str!("softmax/softmax.wgsl"),
            Module::RmsNorm => include_str!("norm/rms_norm.wgsl"),
            Module::Rope => include_str!("rope/rope.wgsl"),
            Module::Attention => include_str!("attention/attention.wgsl"),
            Module::DiffusionKl => include_str!("gidd_loss/diffusion_kl.wgsl"),
            Module::Sample => include_str!("sample/sample.wgsl"),
        }
    }

    /// Whether the module computes in f64 (SHADER_F64; naga's FLOAT64 capability).
    pub fn needs_f64(self) -> bool {
        matches!(self, Module::Sample)
    }

    /// Whether the file uses the elementwise operand bindings (`elementwise/operands.wgsl`).
    fn elementwise(self) -> bool {
        matches!(
            self,
            Module::Unary | Module::Binary | Module::CompareSelect | Module::Convert
        )
    }

    /// What goes between the prelude and the body: the bindings and loads of the modules
    /// whose one kernel text serves two operand encodings.
    fn head(self) -> &'static str {
        match self {
            Module::GemmBlocked => include_str!("matmul/gemm_blocked_f32.wgsl"),
            Module::GemmBlockedBf16 => include_str!("matmul/gemm_blocked_bf16.wgsl"),
            _ => "",
        }
    }
}

/// The complete WGSL text of a module.
pub fn source(m: Module) -> String {
    let mut s = String::from(PRELUDE);
    if m.elementwise() {
        s.push_str(OPERANDS);
        s.push_str(OPS);
    }
    s.push_str(m.head());
    s.push_str(m.body());
    s
}

/// The complete WGSL text of a generated elementwise kernel whose text is `body` (bindings and
/// entry point): the prelude and the per-element op functions, then `body`.
pub fn generated_source(body: &str) -> String {
    let mut s = String::from(PRELUDE);
    s.push_str(OPS);
    s.push_str(body);
    s
}

/// `OP` of the unary kernels.
pub fn unary_code(u: Unary) -> u32 {
    match u {
        Unary::Neg => 0,
        Unary::Exp => 1,
        Unary::Log => 2,
        Unary::Tanh => 3,
        Unary::Logistic => 4,
        Unary::Sqrt => 5,
        Unary::Rsqrt => 6,
        Unary::Abs => 7,
        Unary::Sin => 8,
        Unary::Cos => 9,
        Unary::Not => 10,
        Unary::Floor => 11,
    }
}

/// `OP` of the binary kernels.
pub fn binary_code(b: Binary) -> u32 {
    match b {
        Binary::Add => 0,
        Binary::Sub => 1,
        Binary::Mul => 2,
        Binary::Div => 3,
        Binary::Max => 4,
        Binary::Min => 5,
        Binary::Pow => 6,
        Binary::Rem => 7,
        Binary::And => 8,
        Binary::Or => 9,
        Binary::Xor => 10,
        Binary::ShiftLeft => 11,
        Binary::ShiftRightLogical => 12,
    }
}

/// `OP` of the comparison kernels.
pub fn cmp_code(c: Cmp) -> u32 {
    match c {
        Cmp::Eq => 0,
        Cmp::Ne => 1,
        Cmp::Lt => 2,
        Cmp::Le => 3,
        Cmp::Gt => 4,
        Cmp::Ge => 5,
    }
}
