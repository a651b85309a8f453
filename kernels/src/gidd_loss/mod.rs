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

pub mod reference;
#[cfg(test)]
mod tests;

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

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn safe_log(y: f32) -> f32 {
    if y > 0.0 {
        y.max(TINY).ln()
    } else {
        TINY.ln()
    }
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

/// Max and sum of exp(lg - max) with the mask logit replaced by -1e6.
fn softmax_stats(m: &Marginal, lg: &[f32]) -> (f32, f32) {
    let mut mx = f32::NEG_INFINITY;
    for (v, &y) in lg.iter().enumerate() {
        let y = if v == m.mask_id { -1e6 } else { y };
        mx = mx.max(y);
    }
    let mut se = 0.0f64;
    for (v, &y) in lg.iter().enumerate() {
        let y = if v == m.mask_id { -1e6 } else { y };
        se += ((y - mx).exp()) as f64;
    }
    (mx, se as f32)
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
    let v = m.vocab;
    let rows = l.len();
    let one = |r: usize| -> (f32, f32, f32) {
        let lg = &logits[r * v..(r + 1) * v];
        let c = m.row(l[r]);
        let (mx, se) = softmax_stats(m, lg);
        let (zi, xi) = (z[r] as usize, x[r] as usize);
        // q takes three values per row (at x, at the mask, elsewhere): its logs are per-row constants.
        let lq_of = |k: usize| safe_log(pq(m, &c, k, 0.0, xi).1);
        let other = (0..v).find(|&k| k != xi && k != m.mask_id).unwrap_or(0);
        let (lq_o, lq_x, lq_m) = (lq_of(other), lq_of(xi), lq_of(m.mask_id));
        let mut acc = 0.0f64;
        let mut a = 0.0;
        for (k, &y) in lg.iter().enumerate() {
            let y = if k == m.mask_id { -1e6 } else { y };
            let xh = (y - mx).exp() / se;
            let (p, _) = pq(m, &c, k, xh, xi);
            let lp = safe_log(p);
            let lq = if k == xi {
                lq_x
            } else if k == m.mask_id {
                lq_m
            } else {
                lq_o
            };
            acc += (lq.exp() * (lq - lp)) as f64;
            if k == zi {
                a = lp;
            }
        }
        let b = lq_of(zi);
        (acc as f32, a, b)
    };
    let outs: Vec<(f32, f32, f32)> = if rows * v >= 1 << 15 {
        (0..rows).into_par_iter().map(one).collect()
    } else {
        (0..rows).map(one).collect()
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
    let v = m.vocab;
    let one = |(r, out): (usize, &mut [f32])| {
        let lg = &logits[r * v..(r + 1) * v];
        let c = m.row(l[r]);
        let (mx, se) = softmax_stats(m, lg);
        let (zi, xi) = (z[r] as usize, x[r] as usize);
        // g_k = d loss / d x_hat_k, kept in `out`; then the softmax backward in place.
        // exp(log q) takes three values per row (at x, at the mask, elsewhere).
        let eq_of = |k: usize| safe_log(pq(m, &c, k, 0.0, xi).1).exp();
        let other = (0..v).find(|&k| k != xi && k != m.mask_id).unwrap_or(0);
        let (eq_o, eq_x, eq_m) = (eq_of(other), eq_of(xi), eq_of(m.mask_id));
        let mut dot = 0.0f64;
        for (k, &y) in lg.iter().enumerate() {
            let y = if k == m.mask_id { -1e6 } else { y };
            let xh = (y - mx).exp() / se;
            let (p, _) = pq(m, &c, k, xh, xi);
            // d safe_log(p)/dp = 1/p where p > tiny (the clip and the where stop it below)
            let dlogp = if p > TINY { 1.0 / p } else { 0.0 };
            let eq = if k == xi {
                eq_x
            } else if k == m.mask_id {
                eq_m
            } else {
                eq_o
            };
            let mut g = -g_kl[r] * eq * dlogp;
            if k == zi {
                g += g_lpz[r] * dlogp;
            }
            let g = g * c.alpha;
            out[k] = g;
            dot += (g * xh) as f64;
        }
        let dot = dot as f32;
        for (k, &y) in lg.iter().enumerate() {
            if k == m.mask_id {
                out[k] = 0.0;
                continue;
            }
            let xh = (y - mx).exp() / se;
            out[k] = xh * (out[k] - dot);
        }
    };
    if dlogits.len() >= 1 << 15 {
        dlogits.par_chunks_mut(v).enumerate().for_each(one);
    } else {
        dlogits.chunks_mut(v).enumerate().for_each(one);
    }
}
