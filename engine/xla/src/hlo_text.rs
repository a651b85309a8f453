//! StableHLO text pieces: tensor types, literals, attribute values and op names.

use gidd_engine::op::{BinaryOp, CmpOp, DotDims, TensorType, UnaryOp};
use gidd_engine::DType;
use half::bf16;
use std::fmt::Write as _;

/// `tensor<2x3xf32>`, `tensor<f32>`.
pub fn tensor_type(shape: &[usize], d: DType) -> String {
    tensor_of(shape, d.hlo_name())
}

pub(crate) fn tensor_of(shape: &[usize], elem: &str) -> String {
    let mut s = String::from("tensor<");
    for x in shape {
        let _ = write!(s, "{x}x");
    }
    s.push_str(elem);
    s.push('>');
    s
}

pub(crate) fn tty(t: &TensorType) -> String {
    tensor_type(&t.shape, t.dtype)
}

pub(crate) fn list(v: &[usize]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `array<i64: 1, 2>` (or `array<i64>` when empty).
pub(crate) fn i64_array(v: &[usize]) -> String {
    if v.is_empty() {
        "array<i64>".into()
    } else {
        format!("array<i64: {}>", list(v))
    }
}

/// A scalar as a dense literal of dtype `d`, rounded as the CPU executor stores splats
/// (floats as exact bit patterns).
pub(crate) fn literal(x: f64, d: DType) -> String {
    match d {
        DType::F32 => format!("0x{:08X}", (x as f32).to_bits()),
        DType::F64 => format!("0x{:016X}", x.to_bits()),
        DType::BF16 => format!("0x{:04X}", bf16::from_f64(x).to_bits()),
        DType::F16 => format!("0x{:04X}", half::f16::from_f64(x).to_bits()),
        DType::I32 => (x as i32).to_string(),
        DType::U32 => (x as u32).to_string(),
        DType::I64 => (x as i64).to_string(),
        DType::Bool => (x != 0.0).to_string(),
    }
}

/// The identity of max: -inf for floats, the smallest integer, false.
pub(crate) fn lowest(d: DType) -> String {
    match d {
        DType::F32 => "0xFF800000".into(),
        DType::F64 => "0xFFF0000000000000".into(),
        DType::BF16 => "0xFF80".into(),
        DType::F16 => "0xFC00".into(),
        DType::I32 => i32::MIN.to_string(),
        DType::U32 => "0".into(),
        DType::I64 => i64::MIN.to_string(),
        DType::Bool => "false".into(),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

pub(crate) fn unary_name(u: UnaryOp) -> &'static str {
    match u {
        UnaryOp::Neg => "negate",
        UnaryOp::Exp => "exponential",
        UnaryOp::Log => "log",
        UnaryOp::Tanh => "tanh",
        UnaryOp::Logistic => "logistic",
        UnaryOp::Sqrt => "sqrt",
        UnaryOp::Rsqrt => "rsqrt",
        UnaryOp::Abs => "abs",
        UnaryOp::Sin => "sine",
        UnaryOp::Cos => "cosine",
        UnaryOp::Not => "not",
        UnaryOp::Floor => "floor",
    }
}

pub(crate) fn binary_name(b: BinaryOp) -> &'static str {
    match b {
        BinaryOp::Add => "add",
        BinaryOp::Sub => "subtract",
        BinaryOp::Mul => "multiply",
        BinaryOp::Div => "divide",
        BinaryOp::Max => "maximum",
        BinaryOp::Min => "minimum",
        BinaryOp::Pow => "power",
        BinaryOp::Rem => "remainder",
        BinaryOp::And => "and",
        BinaryOp::Or => "or",
        BinaryOp::Xor => "xor",
        BinaryOp::ShiftLeft => "shift_left",
        BinaryOp::ShiftRightLogical => "shift_right_logical",
    }
}

pub(crate) fn cmp_name(c: CmpOp) -> &'static str {
    match c {
        CmpOp::Eq => "EQ",
        CmpOp::Ne => "NE",
        CmpOp::Lt => "LT",
        CmpOp::Le => "LE",
        CmpOp::Gt => "GT",
        CmpOp::Ge => "GE",
    }
}

pub(crate) fn cmp_type(d: DType) -> &'static str {
    match d {
        DType::F32 | DType::F64 | DType::BF16 | DType::F16 => "FLOAT",
        DType::I32 | DType::I64 => "SIGNED",
        DType::U32 | DType::Bool => "UNSIGNED",
    }
}

pub(crate) fn dot_attrs(dd: &DotDims, d: DType) -> String {
    let mut parts = vec![];
    if !dd.lhs_batch.is_empty() {
        parts.push(format!(
            "lhs_batching_dimensions = [{}]",
            list(&dd.lhs_batch)
        ));
        parts.push(format!(
            "rhs_batching_dimensions = [{}]",
            list(&dd.rhs_batch)
        ));
    }
    if !dd.lhs_contract.is_empty() {
        parts.push(format!(
            "lhs_contracting_dimensions = [{}]",
            list(&dd.lhs_contract)
        ));
        parts.push(format!(
            "rhs_contracting_dimensions = [{}]",
            list(&dd.rhs_contract)
        ));
    }
    let mut s = format!(
        "dot_dimension_numbers = #stablehlo.dot<{}>",
        parts.join(", ")
    );
    if matches!(d, DType::F32 | DType::F64) {
        s.push_str(
            ", precision_config = [#stablehlo<precision HIGHEST>, #stablehlo<precision HIGHEST>]",
        );
    }
    s
}
