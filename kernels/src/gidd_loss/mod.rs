//! The GIDD loss's pass over the vocabulary, fused (SPEC.md section 3).
//!
//! Per row (token) with logits lg [V], noisy id z, label x, log-SNR l:
//! lg[mask] = -1e6; x_hat = softmax(lg); alpha = sigmoid(clip(l, min, max));
//! beta = sigmoid(scale l + shift); pi[v] = beta / (V-1) for v != mask, 1 - beta at the mask;
//! p = alpha x_hat + (1 - alpha) pi; q = alpha onehot(x) + (1 - alpha) pi;
//! safe_log(y) = ln(max(y, tiny)) if y > 0 else ln(tiny);
//! kl = sum_v exp(log q_v) (log q_v - log p_v); also log p[z] and log q[z].
//! One pass per row after the softmax statistics: q_t and p_t are never stored.
//! The backward takes cotangents of kl and log p[z] and writes d logits.
//!
//! `diffusion_kl.wgsl` (wgpu) and `diffusion_kl.ptx` (cuda: a block per token, an online
//! softmax pass then the KL or gradient passes; assembled by ptxas and emulated against the
//! cpu executor in CI, not yet run on a GPU) implement the same contract.

mod fastmath;
pub mod reference;
#[cfg(test)]
mod tests;

use crate::simd::vector::{simd_entry, Simd};
use crate::simd::Level;
use rayon::prelude::*;

/// Schedule constants of the marginal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Marginal {
    pub vocab: usize,
    pub mask_id: usize,
    pub min_log_snr: f32,
    pub max_log_snr: f32,
    pub scale: f32,
    pub shift: f32,
}

const TINY: f32 = f32::MIN_POSITIVE;

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Per-row constants: alpha, (1 - alpha) pi at a non-mask id and at the mask.
struct RowConst {
    alpha: f32,
    pi_other: f32,
    pi_mask: f32,
}

impl Marginal {
    fn row(&self, l: f32) -> RowConst {
        let alpha = sigmoid(l.clamp(self.min_log_snr, self.max_log_snr));
        let beta = sigmoid(self.scale * l + self.shift);
        let u = 1.0f32 / (self.vocab as f32 - 1.0);
        RowConst {
            alpha,
            pi_other: beta * u,
            pi_mask: 1.0 - beta,
        }
    }
}

/// The marginals p_v, q_v of one entry.
#[inline(always)]
fn pq(m: &Marginal, c: &RowConst, v: usize, xh: f32, x: usize) -> (f32, f32) {
    let pi = if v == m.mask_id {
        c.pi_mask
    } else {
        c.pi_other
    };
    let rest = (1.0 - c.alpha) * pi;
    let p = c.alpha * xh + rest;
    let q = c.alpha * if v == x { 1.0 } else { 0.0 } + rest;
    (p, q)
}

/// One row's softmax: e[k] = exp(lg[k] - max) (mask logit as -1e6); returns 1 / sum(e).
#[inline(always)]
fn row_softmax(m: &Marginal, lg: &[f32], e: &mut [f32]) -> f32 {
    // The max over every entry but the mask's, as two plain slices so the loop vectorises.
    let (head, tail) = lg.split_at(m.mask_id);
    let mx = fastmath::max(head, -1e6).max(fastmath::max(&tail[1..], -1e6));
    for (o, &y) in e.iter_mut().zip(lg) {
        *o = fastmath::exp(y - mx);
    }
    e[m.mask_id] = fastmath::exp(-1e6 - mx);
    (1.0 / fastmath::sum(e)) as f32
}

#[inline(always)]
fn safe_ln(y: f32) -> f32 {
    let l = fastmath::ln(y.max(TINY));
    if y > 0.0 {
        l
    } else {
        fastmath::ln(TINY)
    }
}

/// Per-row values of q: log q and exp(log q) elsewhere, at x, and at the mask.
struct RowQ {
    lq: [f32; 3],
    eq: [f32; 3],
}

#[inline(always)]
fn row_q(m: &Marginal, c: &RowConst, xi: usize) -> RowQ {
    let other = (0..m.vocab)
        .find(|&k| k != xi && k != m.mask_id)
        .unwrap_or(0);
    let lq = [other, xi, m.mask_id].map(|k| safe_ln(pq(m, c, k, 0.0, xi).1));
    RowQ {
        lq,
        eq: lq.map(fastmath::exp),
    }
}

/// Fills e with p_k = alpha x_hat_k + (1 - alpha) pi_k from the softmax numerators.
#[inline(always)]
fn row_p(m: &Marginal, c: &RowConst, inv: f32, e: &mut [f32]) {
    let a = c.alpha * inv;
    let rest_o = (1.0 - c.alpha) * c.pi_other;
    for t in e.iter_mut() {
        *t = a * *t + rest_o;
    }
    let km = m.mask_id;
    e[km] += (1.0 - c.alpha) * c.pi_mask - rest_o;
}

/// One row of the forward: (kl, log p[z], log q[z]); `e` is scratch of V entries.
/// Generic over the ISA only so that [`simd_entry!`] compiles it once per instruction set
/// (the loops auto-vectorise; no lane is combined differently, so every level gives the
/// same bits).
#[inline(always)]
unsafe fn forward_row<S: Simd>(
    m: &Marginal,
    lg: &[f32],
    zi: usize,
    xi: usize,
    l: f32,
    e: &mut [f32],
) -> (f32, f32, f32) {
    let v = m.vocab;
    let c = m.row(l);
    let q = row_q(m, &c, xi);
    let inv = row_softmax(m, lg, e);
    row_p(m, &c, inv, e);
    for t in e.iter_mut() {
        *t = safe_ln(*t);
    }
    // kl = sum_k eq_k (lq_k - lp_k): the bulk as if every entry were "elsewhere", then x and the mask.
    let mut acc = q.eq[0] as f64 * (v as f64 * q.lq[0] as f64 - fastmath::sum(e));
    let mut fix = |k: usize, j: usize| {
        acc += (q.eq[j] * (q.lq[j] - e[k]) - q.eq[0] * (q.lq[0] - e[k])) as f64;
    };
    fix(xi, 1);
    if m.mask_id != xi {
        fix(m.mask_id, 2);
    }
    let j = if zi == xi {
        1
    } else if zi == m.mask_id {
        2
    } else {
        0
    };
    (acc as f32, e[zi], q.lq[j])
}

/// One row of the backward: writes d logits into `out`; `xh` is scratch of V entries.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn backward_row<S: Simd>(
    m: &Marginal,
    lg: &[f32],
    zi: usize,
    xi: usize,
    l: f32,
    gk: f32,
    gz: f32,
    out: &mut [f32],
    xh: &mut [f32],
) {
    let c = m.row(l);
    let q = row_q(m, &c, xi);
    let inv = row_softmax(m, lg, xh);
    out.copy_from_slice(xh);
    row_p(m, &c, inv, out); // out = p
    for t in xh.iter_mut() {
        *t *= inv; // x_hat
    }
    // g_k = d loss / d x_hat_k = alpha (-g_kl eq_k + [k = z] g_lpz) / p_k where p_k > tiny
    // (the clip in safe_log stops the gradient below).
    let g = |p: f32, eq: f32| {
        if p > TINY {
            c.alpha * (-gk * eq) / p
        } else {
            0.0
        }
    };
    let (pz, px, pm) = (out[zi], out[xi], out[m.mask_id]);
    for t in out.iter_mut() {
        *t = g(*t, q.eq[0]);
    }
    out[xi] = g(px, q.eq[1]);
    if m.mask_id != xi {
        out[m.mask_id] = g(pm, q.eq[2]);
    }
    if pz > TINY {
        out[zi] += c.alpha * gz / pz;
    }
    let mut dot = [0f32; 16];
    let (ch_o, ch_x) = (out.chunks_exact(16), xh.chunks_exact(16));
    let (ro, rx) = (ch_o.remainder(), ch_x.remainder());
    for (a, b) in ch_o.zip(ch_x) {
        for i in 0..16 {
            dot[i] += a[i] * b[i];
        }
    }
    let dot = (dot.iter().map(|&d| d as f64).sum::<f64>()
        + ro.iter().zip(rx).map(|(a, b)| (a * b) as f64).sum::<f64>()) as f32;
    for (o, &h) in out.iter_mut().zip(xh.iter()) {
        *o = h * (*o - dot);
    }
    out[m.mask_id] = 0.0;
}

simd_entry!(fn forward_row_at(m: &Marginal, lg: &[f32], zi: usize, xi: usize, l: f32, e: &mut [f32]) -> (f32, f32, f32) => forward_row);
simd_entry!(fn backward_row_at(m: &Marginal, lg: &[f32], zi: usize, xi: usize, l: f32, gk: f32, gz: f32, out: &mut [f32], xh: &mut [f32]) => backward_row);

/// Forward. logits [rows, V]; z, x [rows] (ids); l [rows]. Writes kl, log p[z], log q[z] [rows].
#[allow(clippy::too_many_arguments)]
pub fn forward(
    m: &Marginal,
    logits: &[f32],
    z: &[i64],
    x: &[i64],
    l: &[f32],
    kl: &mut [f32],
    lpz: &mut [f32],
    lqz: &mut [f32],
) {
    forward_at(crate::simd::level(), m, logits, z, x, l, kl, lpz, lqz)
}

/// [`forward`] on a chosen SIMD level (clamped to the CPU's); every level gives the same bits.
#[allow(clippy::too_many_arguments)]
pub fn forward_at(
    level: Level,
    m: &Marginal,
    logits: &[f32],
    z: &[i64],
    x: &[i64],
    l: &[f32],
    kl: &mut [f32],
    lpz: &mut [f32],
    lqz: &mut [f32],
) {
    let v = m.vocab;
    let rows = l.len();
    let one = |r: usize, e: &mut Vec<f32>| -> (f32, f32, f32) {
        e.resize(v, 0.0);
        let lg = &logits[r * v..(r + 1) * v];
        forward_row_at(level, m, lg, z[r] as usize, x[r] as usize, l[r], e)
    };
    let outs: Vec<(f32, f32, f32)> = if rows * v >= 1 << 15 {
        (0..rows)
            .into_par_iter()
            .map_init(Vec::new, |e, r| one(r, e))
            .collect()
    } else {
        let mut e = Vec::new();
        (0..rows).map(|r| one(r, &mut e)).collect()
    };
    for (r, (k, a, b)) in outs.into_iter().enumerate() {
        kl[r] = k;
        lpz[r] = a;
        lqz[r] = b;
    }
}

/// Backward: d logits [rows, V] from cotangents g_kl, g_lpz [rows].
#[allow(clippy::too_many_arguments)]
pub fn backward(
    m: &Marginal,
    logits: &[f32],
    z: &[i64],
    x: &[i64],
    l: &[f32],
    g_kl: &[f32],
    g_lpz: &[f32],
    dlogits: &mut [f32],
) {
    backward_at(
        crate::simd::level(),
        m,
        logits,
        z,
        x,
        l,
        g_kl,
        g_lpz,
        dlogits,
    )
}

/// [`backward`] on a chosen SIMD level (clamped to the CPU's); every level gives the same bits.
#[allow(clippy::too_many_arguments)]
pub fn backward_at(
    level: Level,
    m: &Marginal,
    logits: &[f32],
    z: &[i64],
    x: &[i64],
    l: &[f32],
    g_kl: &[f32],
    g_lpz: &[f32],
    dlogits: &mut [f32],
) {
    let v = m.vocab;
    let one = |r: usize, out: &mut [f32], xh: &mut Vec<f32>| {
        xh.resize(v, 0.0);
        let lg = &logits[r * v..(r + 1) * v];
        let (zi, xi) = (z[r] as usize, x[r] as usize);
        backward_row_at(level, m, lg, zi, xi, l[r], g_kl[r], g_lpz[r], out, xh);
    };
    if dlogits.len() >= 1 << 15 {
        dlogits
            .par_chunks_mut(v)
            .enumerate()
            .for_each_init(Vec::new, |xh, (r, out)| one(r, out, xh));
    } else {
        let mut xh = Vec::new();
        dlogits
            .chunks_mut(v)
            .enumerate()
            .for_each(|(r, out)| one(r, out, &mut xh));
    }
}
