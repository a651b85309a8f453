//! Elementwise maps: unary, binary, compare, select, convert, iota.
//!
//! $$y_i = f(x_i), \quad y_i = g(x_i, z_i), \quad b_i = [x_i \bowtie z_i], \quad
//!   y_i = p_i \ne 0 \;?\; a_i : c_i$$
//!
//! # Numerics
//! * f32 computes in f32 with the standard library's math; bf16 and f16 widen exactly to
//!   f32, compute there and round to nearest even once (f16 overflows to inf past 65504); f64 computes in f64.
//! * `max`/`min` propagate NaN (StableHLO's, unlike `f32::max`). Integer-only ops
//!   (`and`, `or`, `xor`, shifts) on floats give NaN.
//! * Integers wrap (two's complement, as StableHLO); division or remainder by zero gives 0;
//!   a shift by a negative amount or by at least the bit width gives 0; `pow` gives 0.
//!   The integer unary ops are `neg`, `abs` and `not`; unsigned `neg` and `abs` are the identity.
//! * `u8` stores booleans (0 or 1): `not` is `1 - x`, shifts return `x`.
//! * Converting f32 <-> bf16 or f16 rounds to nearest even ([`crate::element::Half`]); integer <-> integer
//!   conversions wrap ([`wrap_int`]); every other pair goes through f64 ([`convert`]).
//!
//! # Shapes
//! Every operand is a flat slice of the output's length, or a [`Src::Scalar`] standing for
//! one (an unmaterialised splat). `iota` takes the row-major output shape.
//!
//! # Strategy
//! [`cpu`]: one monomorphised loop per op and operand form, so the compiler vectorises the
//! cheap ops (the f32 ones compiled once per instruction set in [`simd_f32`], AVX2 or
//! AVX-512 chosen at run time, with the portable loop's bits); rayon over 16K-element
//! chunks once the output exceeds 32K elements. Results do
//! not depend on the chunking: every element is computed independently.
//! [`reference`](mod@reference) computes every float op in f64 and every integer op on
//! i128.

pub mod cpu;
mod int;
pub mod reference;
pub mod simd_f32;

#[cfg(test)]
mod tests;

pub use cpu::{
    binary_f32, binary_f64, binary_half, binary_int, compare, compare_f32, compare_half, convert,
    iota, round_to_half, select, select_f32, unary_f32, unary_f64, unary_half, unary_int,
    widen_half, wrap_int,
};
pub use int::Int;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unary {
    Neg,
    Exp,
    Log,
    Tanh,
    /// `1 / (1 + e^-x)`
    Logistic,
    Sqrt,
    /// `1 / sqrt(x)`
    Rsqrt,
    Abs,
    Sin,
    Cos,
    /// Boolean or bitwise not; the identity on floats.
    Not,
    Floor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
    /// Remainder with the sign of the dividend (`fmod`, Rust's `%`).
    Rem,
    And,
    Or,
    Xor,
    ShiftLeft,
    ShiftRightLogical,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// An operand: a slice, or a scalar standing for a slice of any length.
#[derive(Clone, Copy, Debug)]
pub enum Src<'a, T> {
    Slice(&'a [T]),
    Scalar(T),
}

impl<'a, T: Copy> Src<'a, T> {
    /// The operand from element `s` on (a scalar stays itself).
    #[inline(always)]
    pub fn from(self, s: usize) -> Src<'a, T> {
        match self {
            Src::Slice(v) => Src::Slice(&v[s..]),
            x => x,
        }
    }
    #[inline(always)]
    pub fn at(&self, i: usize) -> T {
        match self {
            Src::Slice(s) => s[i],
            Src::Scalar(x) => *x,
        }
    }
}
