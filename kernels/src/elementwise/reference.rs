//! The elementwise spec: float ops in f64, integer ops on i128 wrapped to the type's width.
//! Written from the definitions in the [module docs](super), not from the fast loops.

use super::{Binary, Cmp, Unary};

/// `op(x)` in f64; the caller rounds to the output type.
pub fn unary_f64(op: Unary, x: f64) -> f64 {
    match op {
        Unary::Neg => -x,
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Tanh => x.tanh(),
        Unary::Logistic => 1.0 / (1.0 + (-x).exp()),
        Unary::Sqrt => x.sqrt(),
        Unary::Rsqrt => 1.0 / x.sqrt(),
        Unary::Abs => x.abs(),
        Unary::Sin => x.sin(),
        Unary::Cos => x.cos(),
        Unary::Floor => x.floor(),
        Unary::Not => x,
    }
}

/// `op(x, y)` in f64; NaN-propagating max/min; integer-only ops give NaN.
pub fn binary_f64(op: Binary, x: f64, y: f64) -> f64 {
    match op {
        Binary::Add => x + y,
        Binary::Sub => x - y,
        Binary::Mul => x * y,
        Binary::Div => x / y,
        Binary::Max | Binary::Min if x.is_nan() || y.is_nan() => f64::NAN,
        Binary::Max => x.max(y),
        Binary::Min => x.min(y),
        Binary::Pow => x.powf(y),
        Binary::Rem => x % y,
        Binary::And | Binary::Or | Binary::Xor | Binary::ShiftLeft | Binary::ShiftRightLogical => {
            f64::NAN
        }
    }
}

/// `x op y` on any ordered values (floats compare as IEEE: NaN is unordered, -0 == 0).
pub fn compare<T: PartialOrd>(op: Cmp, x: T, y: T) -> bool {
    match op {
        Cmp::Eq => x == y,
        Cmp::Ne => x != y,
        Cmp::Lt => x < y,
        Cmp::Le => x <= y,
        Cmp::Gt => x > y,
        Cmp::Ge => x >= y,
    }
}

/// An integer type's width and signedness; values travel as i128.
#[derive(Clone, Copy, Debug)]
pub struct IntType {
    pub bits: u32,
    pub signed: bool,
}

impl IntType {
    /// `x` reduced modulo 2^bits into the type's range (two's complement).
    pub fn wrap(self, x: i128) -> i128 {
        let m = 1i128 << self.bits;
        let u = x.rem_euclid(m);
        if self.signed && u >= m / 2 {
            u - m
        } else {
            u
        }
    }
    /// The bit pattern of `x` as an unsigned number.
    fn pattern(self, x: i128) -> i128 {
        x.rem_euclid(1i128 << self.bits)
    }
}

/// `op(x)` on an integer type: two's-complement negation and absolute value for signed types
/// (wrapping at the minimum), the identity for unsigned ones; bitwise complement. The float
/// functions are not part of the integer contract (`None`).
pub fn unary_int(op: Unary, t: IntType, x: i128) -> Option<i128> {
    Some(match op {
        Unary::Neg | Unary::Abs if !t.signed => x,
        Unary::Neg => t.wrap(-x),
        Unary::Abs => t.wrap(x.abs()),
        Unary::Not => t.wrap(!x),
        _ => return None,
    })
}

/// `op(x, y)` on an integer type, wrapping; total division; out-of-range shifts give 0.
pub fn binary_int(op: Binary, t: IntType, x: i128, y: i128) -> i128 {
    let shift_ok = y >= 0 && y < t.bits as i128;
    match op {
        Binary::Add => t.wrap(x + y),
        Binary::Sub => t.wrap(x - y),
        Binary::Mul => t.wrap(x * y),
        Binary::Div | Binary::Rem if y == 0 => 0,
        // i128 division truncates toward zero like the fixed-width types; MIN / -1 wraps.
        Binary::Div => t.wrap(x / y),
        Binary::Rem => t.wrap(x % y),
        Binary::Max => x.max(y),
        Binary::Min => x.min(y),
        Binary::And => t.wrap(t.pattern(x) & t.pattern(y)),
        Binary::Or => t.wrap(t.pattern(x) | t.pattern(y)),
        Binary::Xor => t.wrap(t.pattern(x) ^ t.pattern(y)),
        Binary::ShiftLeft | Binary::ShiftRightLogical if !shift_ok => 0,
        Binary::ShiftLeft => t.wrap(t.pattern(x) << y),
        Binary::ShiftRightLogical => t.wrap(t.pattern(x) >> y),
        Binary::Pow => 0,
    }
}

/// `op(x)` on booleans stored as 0/1: `not` flips, `neg` and `abs` are the identity.
pub fn unary_bool(op: Unary, x: u8) -> Option<u8> {
    match op {
        Unary::Not => Some(u8::from(x == 0)),
        Unary::Neg | Unary::Abs => Some(x),
        _ => None,
    }
}

/// `op(x, y)` on booleans: the logical ops, max (or) and min (and).
/// Arithmetic on booleans is not part of the contract.
pub fn binary_bool(op: Binary, x: u8, y: u8) -> Option<u8> {
    let (a, b) = (x != 0, y != 0);
    Some(u8::from(match op {
        Binary::And | Binary::Min => a && b,
        Binary::Or | Binary::Max => a || b,
        Binary::Xor => a != b,
        _ => return None,
    }))
}

/// `if p[i] != 0 { a[i] } else { b[i] }`.
pub fn select<T: Copy>(p: &[u8], a: &[T], b: &[T]) -> Vec<T> {
    (0..p.len())
        .map(|i| if p[i] != 0 { a[i] } else { b[i] })
        .collect()
}

/// The index along `dim` of every row-major position in `shape`.
pub fn iota(shape: &[usize], dim: usize) -> Vec<usize> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| crate::layout::unravel(i, shape)[dim])
        .collect()
}
