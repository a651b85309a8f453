//! The "direct frontier" (SCALING.md §5: the raw minimum loss at each budget, fitted as
//! L = A·C^a over its own window), the M ↔ N conversion law (§1: OLS of ln M on ln N
//! over a ladder) and the nats/token → bits/byte conversion of the frontier plots (§8).

use super::batch::Slope;
use super::laws::{power_law, PowerLaw};
use super::numeric::ols;
use super::tables::{by_budget, FlopRow};
use serde::Serialize;

/// The direct frontier of one noise type and method.
#[derive(Clone, Debug, Serialize)]
pub struct Frontier {
    pub law: PowerLaw,
    /// (C, min loss) of every budget, whether inside the window or not.
    pub points: Vec<(f64, f64)>,
    /// Budgets inside the window (the ones fitted).
    pub used: Vec<bool>,
}

/// Per budget, the minimum loss over every row (any size, batch and lr: no minimum number
/// of sizes, unlike an iso-FLOP); the power law L = A·C^a is fitted to the minima with C
/// in [lo, hi], Huber threshold `delta`, `replicates` bootstrap resamples.
pub fn direct_frontier(
    rows: &[FlopRow],
    lo: f64,
    hi: f64,
    replicates: usize,
    seed: u64,
    delta: f64,
) -> Result<Frontier, String> {
    let points: Vec<(f64, f64)> = by_budget(rows)
        .into_iter()
        .filter_map(|(c, g)| {
            g.iter()
                .map(|r| r.loss)
                .filter(|l| l.is_finite())
                .min_by(f64::total_cmp)
                .map(|l| (c, l))
        })
        .collect();
    let used: Vec<bool> = points.iter().map(|p| p.0 >= lo && p.0 <= hi).collect();
    let (x, y): (Vec<f64>, Vec<f64>) = points
        .iter()
        .zip(&used)
        .filter(|p| *p.1)
        .map(|p| *p.0)
        .unzip();
    let law = power_law(&x, &y, replicates, seed, delta).ok_or_else(|| {
        format!(
            "{} budgets in the frontier window [{lo:.2e}, {hi:.2e}] (need 3)",
            x.len()
        )
    })?;
    Ok(Frontier { law, points, used })
}

/// The M ↔ N conversion: OLS ln M = intercept + slope·ln N over distinct (N, M) sizes.
/// M* and N* of an iso-FLOP come from separate parabolas; this law converts one into the
/// other (the reference fits it on a wider ladder for its plots).
pub fn conversion_law(sizes: &[(f64, f64)]) -> Result<Slope, String> {
    let mut s: Vec<(f64, f64)> = sizes
        .iter()
        .copied()
        .filter(|(n, m)| *n > 0.0 && *m > 0.0 && n.is_finite() && m.is_finite())
        .collect();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    s.dedup_by(|a, b| a.0 == b.0);
    let (ln, lm): (Vec<f64>, Vec<f64>) = s.iter().map(|(n, m)| (n.ln(), m.ln())).unzip();
    let f = ols(&ln, &lm).ok_or_else(|| format!("{} distinct sizes (need 2)", s.len()))?;
    Ok(Slope {
        slope: f.slope,
        slope_ci99: 2.58 * f.slope_se,
        intercept: f.intercept,
        r2: f.r2,
        points: f.n,
    })
}

impl Slope {
    /// y of x on this log-log line: exp(intercept + slope·ln x).
    pub fn at(&self, x: f64) -> f64 {
        (self.intercept + self.slope * x.ln()).exp()
    }
    /// x of y (the inverse law).
    pub fn inverse(&self, y: f64) -> f64 {
        ((y.ln() - self.intercept) / self.slope).exp()
    }
}

/// Bits per byte of a loss in nats per token, for text of `bytes_per_token` bytes per
/// token (the reference's ×0.34124 is 1/(ln 2 · 4.228 bytes/token)).
pub fn bits_per_byte(nats_per_token: f64, bytes_per_token: f64) -> f64 {
    nats_per_token / std::f64::consts::LN_2 / bytes_per_token
}

/// The bytes per token of a set of runs: the mean of the runs that know it (each
/// measured on its own held-out rows, which differ a little with the batch size), None
/// when none does, an error when they spread by more than 5% (different text or
/// tokenizers: one conversion would be wrong for some runs).
pub fn common_bytes_per_token(values: &[Option<f64>]) -> Result<Option<f64>, String> {
    let known: Vec<f64> = values.iter().flatten().copied().collect();
    if known.is_empty() {
        return Ok(None);
    }
    let (lo, hi) = known
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
    if !(lo > 0.0) || hi / lo > 1.05 {
        return Err(format!(
            "runs disagree on bytes per token ({lo} to {hi}): different data or tokenizers; pass --bytes_per_token to choose one"
        ));
    }
    Ok(Some(known.iter().sum::<f64>() / known.len() as f64))
}
