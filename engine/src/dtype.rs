//! Element types and static shapes.

use half::{bf16, f16};

/// Element types of graph values. Parameters and optimizer state are f32
/// (f64 in an f64 run, the audit precision); activations f32 or bf16 (f64);
/// integers for ids and the counter-based RNG.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    BF16,
    /// IEEE binary16: storage and activations only, computed in f32 like bf16 (10-bit
    /// significand, range 6.1e-5 .. 65504, subnormals to 6e-8).
    F16,
    I32,
    U32,
    I64,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::BF16 | DType::F16 => 2,
            DType::I64 | DType::F64 => 8,
            DType::Bool => 1,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::BF16 | DType::F16)
    }
    /// A 16-bit float (bf16 or f16): stored rounded, computed in f32, rounded once on store.
    pub fn is_half(self) -> bool {
        matches!(self, DType::BF16 | DType::F16)
    }
    /// The precision norms, softmaxes, attention and the loss compute in for values of
    /// this dtype: f64 for f64 (the audit precision), f32 for everything else.
    pub fn accum(self) -> DType {
        if self == DType::F64 {
            DType::F64
        } else {
            DType::F32
        }
    }
    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::U32 | DType::I64)
    }
    /// StableHLO element type name.
    pub fn hlo_name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::I32 => "i32",
            DType::U32 => "ui32",
            DType::I64 => "i64",
            DType::Bool => "i1",
        }
    }
    /// Smallest finite value; masked attention scores use it (as the reference does).
    pub fn min_value(self) -> f64 {
        match self {
            DType::F32 => f32::MIN as f64,
            DType::F64 => f64::MIN,
            DType::BF16 => bf16::MIN.to_f64(),
            DType::F16 => f16::MIN.to_f64(),
            DType::I32 => i32::MIN as f64,
            DType::U32 | DType::Bool => 0.0,
            DType::I64 => i64::MIN as f64,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.hlo_name())
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}
