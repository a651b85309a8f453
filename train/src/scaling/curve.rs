//! Per-run loss curves L(s) = E + A·s^(−b) (SCALING.md §3.2) and what they give: the
//! loss at any step inside the run, and the step that reaches a target loss.

use super::numeric::levenberg_marquardt;
use serde::Serialize;

/// Fewer points than this after `min_step` and the run is not fitted.
pub const MIN_POINTS: usize = 10;

/// A fitted loss curve.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Curve {
    pub e: f64,
    pub a: f64,
    pub b: f64,
    /// Root-mean-square residual over the fitted points.
    pub rmse: f64,
    pub points: usize,
    /// "reference" (p0 = (0, 1, 1), the reference's start) or "fallback".
    pub start: &'static str,
}

impl Curve {
    /// L(s).
    pub fn at(&self, s: f64) -> f64 {
        self.e + self.a * s.powf(-self.b)
    }
    /// The step s with L(s) = loss, closed form ((loss − E)/A)^(−1/b); None where the curve
    /// never reaches it (loss ≤ E on a decreasing curve) or the parameters are degenerate.
    pub fn steps_to(&self, loss: f64) -> Option<f64> {
        let r = (loss - self.e) / self.a;
        let s = r.powf(-1.0 / self.b);
        (r > 0.0 && self.b != 0.0 && s.is_finite() && s > 0.0).then_some(s)
    }
}

/// Fits the curve to the finite (step, ELBO) points with step ≥ `min_step`. Unbounded LM
/// from the reference's p0 = (0, 1, 1); a second start from the data (E just under the
/// lowest loss, b = 0.5, A matching the mean excess) is always tried too, and the lower
/// cost wins: the reference start sits far from typical solutions in A and can stall or
/// diverge, which the reference itself never checked.
pub fn fit_curve(history: &[(f64, f64)], min_step: f64) -> Result<Curve, String> {
    let pts: Vec<(f64, f64)> = history
        .iter()
        .copied()
        .filter(|&(s, l)| s >= min_step && s > 0.0 && s.is_finite() && l.is_finite())
        .collect();
    if pts.len() < MIN_POINTS {
        return Err(format!(
            "{} finite points at step >= {min_step} (need {MIN_POINTS})",
            pts.len()
        ));
    }
    let resid = |p: &[f64], out: &mut [f64]| {
        for (o, &(s, l)) in out.iter_mut().zip(&pts) {
            *o = p[0] + p[1] * s.powf(-p[2]) - l;
        }
    };
    let lo = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let e0 = lo - 0.5 * (hi - lo).max(1e-3 * lo.abs().max(1e-3));
    let b0 = 0.5;
    let a0 = pts.iter().map(|&(s, l)| (l - e0) * s.powf(b0)).sum::<f64>() / pts.len() as f64;
    let mut best: Option<(f64, Vec<f64>, &'static str)> = None;
    for (p0, start) in [
        (vec![0.0, 1.0, 1.0], "reference"),
        (vec![e0, a0, b0], "fallback"),
    ] {
        let f = levenberg_marquardt(&p0, pts.len(), resid);
        if f.cost.is_finite()
            && f.params.iter().all(|v| v.is_finite())
            && best.as_ref().is_none_or(|b| f.cost < b.0)
        {
            best = Some((f.cost, f.params, start));
        }
    }
    let (cost, p, start) = best.ok_or("the fit diverged from both starts")?;
    Ok(Curve {
        e: p[0],
        a: p[1],
        b: p[2],
        rmse: (cost / pts.len() as f64).sqrt(),
        points: pts.len(),
        start,
    })
}
