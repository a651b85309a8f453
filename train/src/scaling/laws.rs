//! Iso-FLOP optima (SCALING.md §4), power laws y = A·x^a with bootstrap intervals (§5–6)
//! and the loss surface L(M, D) = a·M^(−α) + b·D^(−β) + E with its compute-optimal
//! allocation (§5, Chinchilla approach 3).

use super::numeric::{huber_line, huber_lm, percentile, polyfit2};
use super::tables::{by_budget, FlopRow};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

/// The compute-optimal point of one iso-FLOP.
#[derive(Clone, Debug, Serialize)]
pub struct Optimum {
    /// Target budget.
    pub c: f64,
    /// D*·M*: what the fit window tests for "sq. fit" (C itself for "raw").
    pub c_opt: f64,
    pub d: f64,
    pub n: f64,
    pub m: f64,
    pub loss: f64,
    pub sizes: usize,
    /// All three parabolas open upwards (c₂ > 0); a concave one gives no optimum and the
    /// point is excluded from the laws.
    pub convex: bool,
    /// Every vertex lies within the sizes the iso-FLOP measured (else it is extrapolated).
    pub in_range: bool,
}

/// "sq. fit": per budget, a quadratic of ln L in ln x for x ∈ {D, N, M}; x* is the vertex
/// and L* the D-parabola at D*. Concave or extrapolated vertices are pushed to `warnings`
/// and marked on the point, never silently used as an optimum.
pub fn sq_optima(rows: &[FlopRow], label: &str, warnings: &mut Vec<String>) -> Vec<Optimum> {
    let mut out = Vec::new();
    for (c, g) in by_budget(rows) {
        let ll: Vec<f64> = g.iter().map(|r| r.loss.ln()).collect();
        let mut convex = true;
        let mut in_range = true;
        let mut vertex = |xs: Vec<f64>, what: &str| -> Option<(f64, f64)> {
            let q = polyfit2(&xs, &ll)?;
            if q[2] <= 0.0 {
                convex = false;
                warnings.push(format!(
                    "{label}: iso-FLOP C={c:.3e} is not convex in ln {what} (c2 = {:.3e}): no optimum",
                    q[2]
                ));
                return None;
            }
            let v = -q[1] / (2.0 * q[2]);
            let (lo, hi) = xs
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    (a.min(x), b.max(x))
                });
            if v < lo || v > hi {
                in_range = false;
                warnings.push(format!(
                    "{label}: iso-FLOP C={c:.3e}: {what}* = {:.3e} lies outside the measured {:.3e}..{:.3e} (extrapolated)",
                    v.exp(),
                    lo.exp(),
                    hi.exp()
                ));
            }
            Some((v.exp(), (q[0] + q[1] * v + q[2] * v * v).exp()))
        };
        let d = vertex(g.iter().map(|r| r.tokens.ln()).collect(), "D");
        let n = vertex(g.iter().map(|r| r.n.ln()).collect(), "N");
        let m = vertex(g.iter().map(|r| r.m.ln()).collect(), "M");
        let nan = (f64::NAN, f64::NAN);
        let (d, n, m) = (d.unwrap_or(nan), n.unwrap_or(nan), m.unwrap_or(nan));
        out.push(Optimum {
            c,
            c_opt: d.0 * m.0,
            d: d.0,
            n: n.0,
            m: m.0,
            loss: d.1,
            sizes: g.len(),
            convex,
            in_range,
        });
    }
    out
}

/// "raw": per budget, the single minimum-loss row.
pub fn raw_optima(rows: &[FlopRow]) -> Vec<Optimum> {
    by_budget(rows)
        .into_iter()
        .filter_map(|(c, g)| {
            let r = g.iter().min_by(|a, b| a.loss.total_cmp(&b.loss))?;
            Some(Optimum {
                c,
                c_opt: c,
                d: r.tokens,
                n: r.n,
                m: r.m,
                loss: r.loss,
                sizes: g.len(),
                convex: true,
                in_range: true,
            })
        })
        .collect()
}

/// y = A·x^a fitted in log space (Huber loss, or least squares), with percentile
/// bootstrap intervals.
#[derive(Clone, Debug, Serialize)]
pub struct PowerLaw {
    #[serde(rename = "A")]
    pub coef: f64,
    #[serde(rename = "a")]
    pub exponent: f64,
    /// 2.5 and 97.5 percentiles over the replicates.
    #[serde(rename = "A_ci")]
    pub coef_ci: [f64; 2],
    #[serde(rename = "a_ci")]
    pub exponent_ci: [f64; 2],
    /// In log space.
    pub r2: f64,
    pub points: usize,
    /// Replicates that gave a fit (a resample with one distinct x gives none).
    pub replicates: usize,
    /// (ln A, a) of each replicate, for curve bands.
    #[serde(skip)]
    pub boot: Vec<(f64, f64)>,
}

impl PowerLaw {
    pub fn at(&self, x: f64) -> f64 {
        self.coef * x.powf(self.exponent)
    }
    /// Pointwise 2.5/97.5 percentiles of the replicate predictions at x.
    pub fn band(&self, x: f64) -> (f64, f64) {
        let mut ys: Vec<f64> = self
            .boot
            .iter()
            .map(|(la, a)| (la + a * x.ln()).exp())
            .collect();
        ys.sort_by(f64::total_cmp);
        (percentile(&ys, 0.025), percentile(&ys, 0.975))
    }
}

/// Fits y = A·x^a to the positive finite points (at least 3) by minimizing the Huber loss
/// (threshold `delta`) of the log residuals ln y − ln A − a·ln x, as the reference's
/// `least_squares(loss="huber", f_scale=1)` does; `delta` = ∞ is OLS of ln y on ln x.
/// `replicates` bootstrap resamples: replicate i draws n indices with replacement from a
/// generator seeded `seed + i`, so the intervals do not depend on the thread count.
pub fn power_law(
    x: &[f64],
    y: &[f64],
    replicates: usize,
    seed: u64,
    delta: f64,
) -> Option<PowerLaw> {
    let (lx, ly): (Vec<f64>, Vec<f64>) = x
        .iter()
        .zip(y)
        .filter(|(a, b)| **a > 0.0 && **b > 0.0 && a.is_finite() && b.is_finite())
        .map(|(a, b)| (a.ln(), b.ln()))
        .unzip();
    if lx.len() < 3 {
        return None;
    }
    let fit = huber_line(&lx, &ly, delta)?;
    let n = lx.len();
    let boot: Vec<(f64, f64)> = (0..replicates)
        .into_par_iter()
        .filter_map(|i| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(i as u64));
            let (bx, by): (Vec<f64>, Vec<f64>) = (0..n)
                .map(|_| {
                    let j = rng.random_range(0..n);
                    (lx[j], ly[j])
                })
                .unzip();
            huber_line(&bx, &by, delta).map(|f| (f.intercept, f.slope))
        })
        .collect();
    let pct = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        [percentile(&v, 0.025), percentile(&v, 0.975)]
    };
    let coef_ci = pct(boot.iter().map(|b| b.0.exp()).collect());
    let exponent_ci = pct(boot.iter().map(|b| b.1).collect());
    Some(PowerLaw {
        coef: fit.intercept.exp(),
        exponent: fit.slope,
        coef_ci,
        exponent_ci,
        r2: fit.r2,
        points: n,
        replicates: boot.len(),
        boot,
    })
}

/// L(M, D) = a·M^(−α) + b·D^(−β) + E.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Surface {
    pub a: f64,
    pub alpha: f64,
    pub b: f64,
    pub beta: f64,
    pub e: f64,
    /// RMS of ln f − ln L over the fitted rows.
    pub rmse_log: f64,
    pub points: usize,
}

impl Surface {
    pub fn at(&self, m: f64, d: f64) -> f64 {
        self.a * m.powf(-self.alpha) + self.b * d.powf(-self.beta) + self.e
    }
    /// Exponents of M* ∝ K^(β/(α+β)) and D* ∝ K^(α/(α+β)) under M·D = K.
    pub fn exponents(&self) -> (f64, f64) {
        let s = self.alpha + self.beta;
        (self.beta / s, self.alpha / s)
    }
    /// The compute-optimal (M*, D*, L*) under M·D = K, closed form:
    /// M* = G·K^(β/(α+β)), G = (αa/(βb))^(1/(α+β)), D* = K/M*.
    pub fn optimal(&self, k: f64) -> (f64, f64, f64) {
        let s = self.alpha + self.beta;
        let g = (self.alpha * self.a / (self.beta * self.b)).powf(1.0 / s);
        let m = g * k.powf(self.beta / s);
        let d = k / m;
        (m, d, self.at(m, d))
    }
}

/// Fits the surface to (M, D, L) by LM on the Huber loss (threshold `delta`; ∞ = least
/// squares) of the log residual ln f − ln L, every parameter fitted as its logarithm,
/// which keeps all five positive (the reference's bounds [1e-8, ∞)). Starts: the
/// reference's p0 (20, .23, 300, .29, 1), which suits paper-scale M and D, plus a grid
/// of data-scaled starts for other scales; the lowest cost wins.
pub fn fit_surface(m: &[f64], d: &[f64], l: &[f64], delta: f64) -> Option<Surface> {
    let n = l.len();
    if n < 6 {
        return None;
    }
    let resid = |p: &[f64], out: &mut [f64]| {
        let (a, al, b, be, e) = (p[0].exp(), p[1].exp(), p[2].exp(), p[3].exp(), p[4].exp());
        for i in 0..n {
            let f = a * m[i].powf(-al) + b * d[i].powf(-be) + e;
            out[i] = f.ln() - l[i].ln();
        }
    };
    let gm = (m.iter().map(|v| v.ln()).sum::<f64>() / n as f64).exp();
    let gd = (d.iter().map(|v| v.ln()).sum::<f64>() / n as f64).exp();
    let lmin = l.iter().copied().fold(f64::INFINITY, f64::min);
    let lmean = l.iter().sum::<f64>() / n as f64;
    let mut starts = vec![[20f64, 0.23, 300.0, 0.29, 1.0]];
    for &al in &[0.1, 0.3, 0.6] {
        for &be in &[0.1, 0.3, 0.6] {
            for &ef in &[0.3, 0.8] {
                let e = ef * lmin;
                let excess = ((lmean - e) / 2.0).max(1e-3);
                starts.push([excess * gm.powf(al), al, excess * gd.powf(be), be, e]);
            }
        }
    }
    let best = starts
        .par_iter()
        .map(|s| {
            let p0: Vec<f64> = s.iter().map(|v| v.ln()).collect();
            huber_lm(&p0, n, delta, resid)
        })
        .filter(|f| f.cost.is_finite() && f.params.iter().all(|v| v.is_finite()))
        .min_by(|a, b| a.cost.total_cmp(&b.cost))?;
    let mut r = vec![0.0; n];
    resid(&best.params, &mut r);
    let p: Vec<f64> = best.params.iter().map(|v| v.exp()).collect();
    Some(Surface {
        a: p[0],
        alpha: p[1],
        b: p[2],
        beta: p[3],
        e: p[4],
        rmse_log: (r.iter().map(|v| v * v).sum::<f64>() / n as f64).sqrt(),
        points: n,
    })
}
