//! f64 reference of the fused pass: materialises x_hat, p and q per row.

use super::Marginal;

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// (kl, log p[z], log q[z]) per row, in f64 (safe_log floored at ln(f32 tiny), as the reference does).
pub fn forward_f64(
    m: &Marginal,
    logits: &[f64],
    z: &[i64],
    x: &[i64],
    l: &[f64],
) -> Vec<(f64, f64, f64)> {
    let v = m.vocab;
    let floor = (f32::MIN_POSITIVE as f64).ln();
    let slog = |y: f64| {
        if y > 0.0 {
            y.max(f32::MIN_POSITIVE as f64).ln()
        } else {
            floor
        }
    };
    (0..l.len())
        .map(|r| {
            let lg: Vec<f64> = (0..v)
                .map(|k| {
                    if k == m.mask_id {
                        -1e6
                    } else {
                        logits[r * v + k]
                    }
                })
                .collect();
            let mx = lg.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let se: f64 = lg.iter().map(|y| (y - mx).exp()).sum();
            let alpha = sig(l[r].clamp(m.min_log_snr as f64, m.max_log_snr as f64));
            let beta = sig(m.scale as f64 * l[r] + m.shift as f64);
            let mut kl = 0.0;
            let (mut a, mut b) = (0.0, 0.0);
            for (k, &y) in lg.iter().enumerate() {
                let pi = if k == m.mask_id {
                    1.0 - beta
                } else {
                    beta / (v as f64 - 1.0)
                };
                let p = alpha * (y - mx).exp() / se + (1.0 - alpha) * pi;
                let q = alpha * if k as i64 == x[r] { 1.0 } else { 0.0 } + (1.0 - alpha) * pi;
                let (lp, lq) = (slog(p), slog(q));
                kl += lq.exp() * (lq - lp);
                if k as i64 == z[r] {
                    a = lp;
                    b = lq;
                }
            }
            (kl, a, b)
        })
        .collect()
}
