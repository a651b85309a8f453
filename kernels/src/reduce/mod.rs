//! Reductions (sum, max) over any set of dims.
//!
//! $$y_{\text{kept}} = \bigoplus_{\text{reduced}} x, \qquad \oplus \in \{+, \max\}$$
//!
//! # Numerics
//! Every element widens to f64 ([`Acc`]) and sums accumulate there, so long sums of f32,
//! bf16 or f16 stay accurate; the result rounds to the element type once. `max` propagates NaN;
//! the max over nothing is `-inf` for floats and 0 for integers, the sum over nothing 0.
//!
//! # Shapes
//! `x`: row-major `shape`; `dims`: the reduced dims, increasing; `out`: the kept dims in
//! order, row-major (at least their product long).
//!
//! # Strategy
//! [`cpu`]: a sum over a contiguous tail reads each output's run as a slice; a sum over
//! leading dims (bias gradients) adds whole rows into a vector of accumulators; everything
//! else walks precomputed offsets of the reduced positions. Outputs split over rayon once
//! the input reaches 64K elements; one long sum splits into 16 fixed chunks and a leading
//! sum into 8, added in order, so no result depends on the thread count.
//! [`reference`](mod@reference): one pass in row-major order, accumulating in f64.

pub mod cpu;
pub mod reference;

#[cfg(test)]
mod tests;

pub use cpu::reduce;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
}

/// An element type reductions accumulate in f64.
pub trait Acc: Copy + Send + Sync + 'static {
    fn to_acc(self) -> f64;
    /// The accumulator rounded (floats) or truncated and saturated (integers) to this type.
    fn from_acc(x: f64) -> Self;
    fn is_float() -> bool;
}

impl Acc for f32 {
    fn to_acc(self) -> f64 {
        self as f64
    }
    fn from_acc(x: f64) -> Self {
        x as f32
    }
    fn is_float() -> bool {
        true
    }
}

impl Acc for f64 {
    fn to_acc(self) -> f64 {
        self
    }
    fn from_acc(x: f64) -> Self {
        x
    }
    fn is_float() -> bool {
        true
    }
}

impl Acc for half::bf16 {
    fn to_acc(self) -> f64 {
        crate::convert::bf16_to_f32(self) as f64
    }
    fn from_acc(x: f64) -> Self {
        half::bf16::from_f64(x)
    }
    fn is_float() -> bool {
        true
    }
}

/// Sums past 65504 round to inf, as the f16 result of any f16 op does.
impl Acc for half::f16 {
    fn to_acc(self) -> f64 {
        self.to_f64()
    }
    fn from_acc(x: f64) -> Self {
        half::f16::from_f64(x)
    }
    fn is_float() -> bool {
        true
    }
}

macro_rules! acc_int {
    ($($t:ty),*) => {
        $(impl Acc for $t {
            fn to_acc(self) -> f64 {
                self as f64
            }
            fn from_acc(x: f64) -> Self {
                x as $t
            }
            fn is_float() -> bool {
                false
            }
        })*
    };
}
acc_int!(i32, u32, i64, u8);
