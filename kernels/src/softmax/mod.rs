//! Softmax and log-softmax over the last axis, and the softmax backward.
//!
//! $$y_{r,j} = \frac{e^{x_{r,j} - m_r}}{\sum_k e^{x_{r,k} - m_r}}, \quad m_r = \max_k x_{r,k}$$
//! $$\log y_{r,j} = x_{r,j} - m_r - \ln \textstyle\sum_k e^{x_{r,k} - m_r}$$
//! $$dx_{r,j} = y_{r,j} \, (dy_{r,j} - \textstyle\sum_k dy_{r,k} \, y_{r,k})$$
//!
//! # Shapes
//! `x`, `y`, `dy`, `dx`: `[rows, n]` row-major, contiguous.
//!
//! # Special values
//! `-inf` entries are fine (`e^{-inf} = 0`). A row that is entirely `-inf` has
//! `m = -inf` and `x - m = NaN`, so it comes out NaN, exactly as the math (and the f64
//! [`reference`]) does; callers that mask must use a finite fill (attention uses `f32::MIN`).
//! NaN inputs propagate to their whole row.
//!
//! # Strategy
//! `softmax.ptx`: the cuda executor's kernels (engine/cuda/src/rows.rs), assembled by ptxas and
//! emulated against the cpu executor in CI; not yet run on a GPU.
//! [`cpu`]: one row at a time with SIMD (AVX-512, AVX2 or portable, picked by
//! [`crate::simd::level`]) and the polynomial `exp` of [`crate::simd`]; rayon over row chunks
//! once the problem exceeds ~32K elements.

pub mod cpu;
pub mod reference;

#[cfg(test)]
mod tests;

/// `y = softmax(x)` along rows of length `n`.
pub fn softmax_fwd(rows: usize, n: usize, x: &[f32], y: &mut [f32]) {
    cpu::softmax_fwd(crate::simd::level(), rows, n, x, y)
}

/// `y = log_softmax(x)` along rows of length `n`.
pub fn log_softmax_fwd(rows: usize, n: usize, x: &[f32], y: &mut [f32]) {
    cpu::log_softmax_fwd(crate::simd::level(), rows, n, x, y)
}

/// `dx = y * (dy - sum(dy * y))` along rows, given the forward output `y`.
pub fn softmax_bwd(rows: usize, n: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    cpu::softmax_bwd(crate::simd::level(), rows, n, y, dy, dx)
}
