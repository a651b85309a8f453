//! f64 attention that materialises the full score matrix: the specification.

use super::{AttnParams, AttnShape};

/// Final scores `s_hat [Lq, Lk]` of one (batch, head): scaled, soft-capped, masked.
/// Also returns `1 - tanh^2` (the soft cap's derivative; 0 where masked).
fn scores(
    sh: &AttnShape,
    p: &AttnParams,
    b: usize,
    q: &[f64],
    k: &[f64],
    mask: Option<&[u8]>,
) -> (Vec<f64>, Vec<f64>) {
    let (lq, lk, d) = (sh.lq, sh.lk, sh.head_dim);
    let mut s = vec![0.0; lq * lk];
    let mut g = vec![1.0; lq * lk];
    for i in 0..lq {
        for j in 0..lk {
            let mut x = p.scale as f64 * (0..d).map(|t| q[i * d + t] * k[j * d + t]).sum::<f64>();
            if let Some(c) = p.softcap {
                let t = (x / c as f64).tanh();
                x = c as f64 * t;
                g[i * lk + j] = 1.0 - t * t;
            }
            if mask.is_some_and(|m| m[(b * lq + i) * lk + j] == 0) {
                x = f32::MIN as f64;
                g[i * lk + j] = 0.0;
            }
            s[i * lk + j] = x;
        }
    }
    (s, g)
}

/// Row softmax in place; returns each row's log-sum-exp.
fn softmax_rows(lq: usize, lk: usize, s: &mut [f64]) -> Vec<f64> {
    (0..lq)
        .map(|i| {
            let row = &mut s[i * lk..(i + 1) * lk];
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
            let z: f64 = row.iter().map(|&x| (x - m).exp()).sum();
            row.iter_mut().for_each(|x| *x = (*x - m).exp() / z);
            m + z.ln()
        })
        .collect()
}

/// Returns `(out [B,H,Lq,D], lse [B,H,Lq])`.
pub fn attention_fwd_f64(
    sh: &AttnShape,
    p: &AttnParams,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    mask: Option<&[u8]>,
) -> (Vec<f64>, Vec<f64>) {
    let (lq, lk, d) = (sh.lq, sh.lk, sh.head_dim);
    let mut out = vec![0.0; sh.batch * sh.heads * lq * d];
    let mut lse = vec![0.0; sh.batch * sh.heads * lq];
    for b in 0..sh.batch {
        for h in 0..sh.heads {
            let bh = b * sh.heads + h;
            let (qh, kh, vh) = (&q[bh * lq * d..], &k[bh * lk * d..], &v[bh * lk * d..]);
            let (mut pm, _) = scores(sh, p, b, qh, kh, mask);
            lse[bh * lq..(bh + 1) * lq].copy_from_slice(&softmax_rows(lq, lk, &mut pm));
            for i in 0..lq {
                for t in 0..d {
                    out[(bh * lq + i) * d + t] =
                        (0..lk).map(|j| pm[i * lk + j] * vh[j * d + t]).sum();
                }
            }
        }
    }
    (out, lse)
}

/// Returns `(dq, dk, dv)` for upstream gradient `dout [B,H,Lq,D]` (recomputes everything).
pub fn attention_bwd_f64(
    sh: &AttnShape,
    p: &AttnParams,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    mask: Option<&[u8]>,
    dout: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (lq, lk, d) = (sh.lq, sh.lk, sh.head_dim);
    let sc = p.scale as f64;
    let mut dq = vec![0.0; q.len()];
    let mut dk = vec![0.0; k.len()];
    let mut dv = vec![0.0; v.len()];
    for b in 0..sh.batch {
        for h in 0..sh.heads {
            let bh = b * sh.heads + h;
            let (qo, ko) = (bh * lq * d, bh * lk * d);
            let (qh, kh, vh, doh) = (&q[qo..], &k[ko..], &v[ko..], &dout[qo..]);
            let (mut pm, g) = scores(sh, p, b, qh, kh, mask);
            softmax_rows(lq, lk, &mut pm);
            for i in 0..lq {
                let dp: Vec<f64> = (0..lk)
                    .map(|j| (0..d).map(|t| doh[i * d + t] * vh[j * d + t]).sum())
                    .collect();
                let di: f64 = (0..lk).map(|j| pm[i * lk + j] * dp[j]).sum();
                for j in 0..lk {
                    let pij = pm[i * lk + j];
                    let ds = pij * (dp[j] - di) * g[i * lk + j];
                    for t in 0..d {
                        dq[qo + i * d + t] += sc * ds * kh[j * d + t];
                        dk[ko + j * d + t] += sc * ds * qh[i * d + t];
                        dv[ko + j * d + t] += pij * doh[i * d + t];
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}

/// The probabilities `p [B, H, Lq, Lk]` (for error bounds in tests).
#[cfg(test)]
pub(crate) fn probs_f64(
    sh: &AttnShape,
    p: &AttnParams,
    q: &[f64],
    k: &[f64],
    mask: Option<&[u8]>,
) -> Vec<f64> {
    let (lq, lk, d) = (sh.lq, sh.lk, sh.head_dim);
    let mut all = Vec::with_capacity(sh.batch * sh.heads * lq * lk);
    for b in 0..sh.batch {
        for h in 0..sh.heads {
            let bh = b * sh.heads + h;
            let (mut pm, _) = scores(sh, p, b, &q[bh * lq * d..], &k[bh * lk * d..], mask);
            softmax_rows(lq, lk, &mut pm);
            all.extend(pm);
        }
    }
    all
}
