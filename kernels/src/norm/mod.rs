//! RMSNorm with a `(1 + w)` gain, as every GIDD norm (embedding norms, QK-norm, final norm).
//!
//! $$r_i = \Big(\tfrac{1}{n}\textstyle\sum_j x_{ij}^2 + \varepsilon\Big)^{-1/2}, \qquad
//!   y_{ij} = x_{ij} \, r_i \, (1 + w_j)$$
//!
//! Backward, with $g_j = 1 + w_j$ and $a_i = \sum_j dy_{ij} g_j x_{ij}$:
//! $$dx_{ij} = r_i g_j dy_{ij} - x_{ij} \, r_i^3 a_i / n, \qquad
//!   dw_j = \textstyle\sum_i dy_{ij} \, x_{ij} \, r_i$$
//!
//! # Shapes
//! `x`, `y`, `dy`, `dx`: `[rows, n]` row-major; `w`, `dw`: `[n]`; `rstd`: `[rows]` (the `r_i`,
//! written by the forward for the backward).
//!
//! # Strategy
//! `rms_norm.ptx`: the cuda executor's kernels (engine/cuda/src/rows.rs), assembled by ptxas and
//! emulated against the cpu executor in CI; not yet run on a GPU.
//! [`cpu`]: one row at a time with SIMD (AVX-512, AVX2 or portable), sums of squares in f32
//! lanes, `r` in f64. The backward splits rows into chunks (rayon for large inputs); `dw` is
//! summed in f32 over blocks of at most 32 rows, then in f64 across blocks and chunks.

pub mod cpu;
pub mod reference;

#[cfg(test)]
mod tests;

/// `y = x * rsqrt(mean(x^2) + eps) * (1 + w)` per row; also writes `rstd` for the backward.
pub fn rms_norm_fwd(
    rows: usize,
    n: usize,
    eps: f32,
    x: &[f32],
    w: &[f32],
    y: &mut [f32],
    rstd: &mut [f32],
) {
    cpu::rms_norm_fwd(crate::simd::level(), rows, n, eps, x, w, y, rstd)
}

/// `dx` `[rows, n]` and `dw` `[n]` (both overwritten) from the forward's `rstd` and `dy`.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_bwd(
    rows: usize,
    n: usize,
    x: &[f32],
    w: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dw: &mut [f32],
) {
    cpu::rms_norm_bwd(crate::simd::level(), rows, n, x, w, rstd, dy, dx, dw)
}
