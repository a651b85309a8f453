//! Rotary position embedding, NeoX style (the head is split in halves, not interleaved).
//!
//! For each row `r` (a token) and head `h`, with `x1 = x[r, h, ..d/2]`, `x2 = x[r, h, d/2..]`
//! and the position's tables `c = cos[r]`, `s = sin[r]` (length `d/2`):
//! $$o_1 = x_1 c - x_2 s, \qquad o_2 = x_2 c + x_1 s$$
//! The backward is the transpose (the inverse rotation):
//! $$dx_1 = do_1 c + do_2 s, \qquad dx_2 = do_2 c - do_1 s$$
//!
//! # Shapes
//! `x`, `out`, `dout`, `dx`: `[rows, heads, d]`, `d` even; `cos`, `sin`: `[rows, d/2]`, already
//! gathered by position id (one table row per token; `inv_freq_j = theta^(-2j/d)`).
//!
//! # Strategy
//! `rope.ptx`: the cuda executor's kernels (engine/cuda/src/rows.rs), assembled by ptxas and
//! emulated against the cpu executor in CI; not yet run on a GPU.
//! [`cpu`]: SIMD over the half-dimension (AVX-512, AVX2 or portable), rayon over rows for
//! large inputs. The backward is the forward with `sin` negated.

pub mod cpu;
pub mod reference;

#[cfg(test)]
mod tests;

/// `out = rope(x)` (see the module docs). `x` and `out` must not overlap.
pub fn rope_fwd(
    rows: usize,
    heads: usize,
    d: usize,
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    out: &mut [f32],
) {
    cpu::rope(crate::simd::level(), rows, heads, d, x, cos, sin, 1.0, out)
}

/// `dx = rope^T(dout)`: the rotation by `-angle`.
pub fn rope_bwd(
    rows: usize,
    heads: usize,
    d: usize,
    dout: &[f32],
    cos: &[f32],
    sin: &[f32],
    dx: &mut [f32],
) {
    cpu::rope(
        crate::simd::level(),
        rows,
        heads,
        d,
        dout,
        cos,
        sin,
        -1.0,
        dx,
    )
}
