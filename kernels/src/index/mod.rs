//! Gather and scatter-add along one axis.
//!
//! $$\text{gather}: \; y[p, j, q] = x[p, \hat\imath_j, q] \qquad
//!   \text{scatter\_add}: \; y[p, \hat\imath_j, q] \mathrel{+}= u[p, j, q]$$
//! with $\hat\imath_j$ = `ids[j]` clamped to `[0, len)` (as StableHLO gather clamps), so a
//! bad id never reads or writes outside a buffer.
//!
//! # Shapes
//! The indexed operand is `[pre, len, post]` (its row-major shape split at `axis`); `ids` is
//! `[m]`; the other operand is `[pre, m, post]`. `len >= 1` whenever `pre * m * post > 0`.
//!
//! # Numerics
//! Gather copies bits. [`scatter_add_f32`] accumulates in f32, updates in index order;
//! [`scatter_add_wide`] accumulates any type in f64 in the same order and rounds once.
//!
//! # Strategy
//! [`cpu`]: one contiguous `post`-long run per (p, j): a `copy_from_slice` or an add loop
//! the compiler vectorises. [`reference`](mod@reference): element by element, accumulating
//! in f64.

pub mod cpu;
pub mod reference;

#[cfg(test)]
mod tests;

pub use cpu::{gather, scatter_add_f32, scatter_add_wide};

/// `(pre, len, post)`: the products of the dims before `axis`, at it, and after it.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// `id` clamped to `[0, len)` (0 when `len` is 0: nothing is then read or written).
#[inline(always)]
pub fn clamp_id(id: i64, len: usize) -> usize {
    (id.max(0) as usize).min(len.saturating_sub(1))
}
