//! Scaled dot-product attention with an optional tanh soft cap and a key mask, forward and
//! backward, without ever materialising the `[Lq, Lk]` score matrix (flash-attention style).
//!
//! Per batch `b`, head `h`, query `i`, key `j`:
//! $$s_{ij} = \sigma \, q_i \cdot k_j, \qquad
//!   \tilde s_{ij} = c \tanh(s_{ij} / c) \ \text{(soft cap, when on)}, \qquad
//!   \hat s_{ij} = \begin{cases} \tilde s_{ij} & \text{mask}_{b,i,j} \ne 0 \\
//!                 \texttt{f32::MIN} & \text{otherwise} \end{cases}$$
//! $$p_{ij} = \operatorname{softmax}_j(\hat s_{ij}), \qquad o_i = \textstyle\sum_j p_{ij} v_j,
//!   \qquad \mathrm{lse}_i = \log \textstyle\sum_j e^{\hat s_{ij}}$$
//!
//! Masked scores are the finite `f32::MIN`, not `-inf` (like the reference's
//! `masked_fill(finfo.min)`): a row whose keys are *all* masked is therefore uniform over all
//! `Lk` keys (`o_i` = mean of `v`), and its `lse` rounds to `f32::MIN`.
//!
//! Backward (recompute-based, flash-attention-2): with $D_i = do_i \cdot o_i$,
//! $dp_{ij} = do_i \cdot v_j$, $ds_{ij} = p_{ij} (dp_{ij} - D_i)$, chained through the soft cap
//! ($\partial \tilde s / \partial s = 1 - \tanh^2(s/c)$) and zero where masked:
//! $$dq_i = \sigma \textstyle\sum_j ds_{ij} k_j, \quad dk_j = \sigma \textstyle\sum_i ds_{ij} q_i,
//!   \quad dv_j = \textstyle\sum_i p_{ij} \, do_i$$
//! `p` is recomputed from `lse` (for fully masked rows, where `lse` cannot carry `log Lk`,
//! from the mask: `p = 1/Lk`).
//!
//! # Shapes
//! * `q`, `out`, `dout`, `dq`: `[B, H, Lq, D]`; `k`, `v`, `dk`, `dv`: `[B, H, Lk, D]`;
//!   `lse`: `[B, H, Lq]`; all f32, row-major, contiguous.
//! * `mask`: `[B, Lq, Lk]` bytes, `0` = masked, shared by all heads; `None` = attend to all.
//! * `Lk >= 1` whenever `Lq >= 1`; any `D` (64 and 128 are the fast paths).
//!
//! # Strategy
//! [`cpu`]: tiles of 64 queries (AVX-512; 32 with 8-lane SIMD) by 64 keys in a per-task
//! buffer, with the queries in SIMD lanes so the online-softmax statistics are plain vectors.
//! Rayon over (batch, head, query block) in the forward and over (batch, head, key chunk) in
//! the backward (each task owns its `dk`, `dv` rows; `dq` partials are summed when a head is
//! split). Fully masked tiles are skipped unless a fully masked row needs them.
//!
//! `attention.ptx` and `attention_rows.ptx`: the cuda executor's kernels (launched by
//! engine/cuda/src/attention.rs; their header comments give the tiling). Assembled by ptxas
//! and emulated against the cpu executor in CI; not yet run on a GPU.

pub mod cpu;
mod mask;
pub mod mma_ptx;
pub mod reference;
mod tile;

#[cfg(test)]
mod tests;

/// Problem size: `batch` x `heads` independent attentions of `lq` queries over `lk` keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub batch: usize,
    pub heads: usize,
    pub lq: usize,
    pub lk: usize,
    pub head_dim: usize,
}

/// Score scale `sigma` (usually `head_dim^-1/2`) and the optional soft cap `c`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnParams {
    pub scale: f32,
    pub softcap: Option<f32>,
}

/// Forward: writes `out [B,H,Lq,D]` and `lse [B,H,Lq]` (see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn attention_fwd(
    sh: &AttnShape,
    p: &AttnParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[u8]>,
    out: &mut [f32],
    lse: &mut [f32],
) {
    cpu::attention_fwd(crate::simd::level(), sh, p, q, k, v, mask, out, lse)
}

/// Backward: from `dout` and the forward's `out` and `lse`, overwrites `dq`, `dk`, `dv`.
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    sh: &AttnShape,
    p: &AttnParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[u8]>,
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    cpu::attention_bwd(
        crate::simd::level(),
        sh,
        p,
        q,
        k,
        v,
        mask,
        out,
        lse,
        dout,
        dq,
        dk,
        dv,
    )
}
