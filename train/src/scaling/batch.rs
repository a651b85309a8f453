//! The batch-size and learning-rate laws (SCALING.md §7) and the cooldown factor (§8).
//! Both need sweeps over B and lr (or cooled twins of runs) that a toy sweep may lack:
//! each returns Err with the reason instead of a number the data cannot support.

use super::numeric::{ols, polyfit2};
use super::results::Run;
use super::tables::{FlopRow, LossRow};
use serde::Serialize;
use std::collections::BTreeMap;

/// 99% two-sided normal quantile: the reference's analytic slope interval.
const Z99: f64 = 2.58;

/// An OLS law ln y = c + k·ln x with the 99% interval of k.
#[derive(Clone, Debug, Serialize)]
pub struct Slope {
    pub slope: f64,
    pub slope_ci99: f64,
    pub intercept: f64,
    pub r2: f64,
    pub points: usize,
}

fn slope_law(x: &[f64], y: &[f64]) -> Option<Slope> {
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let f = ols(&lx, &ly)?;
    Some(Slope {
        slope: f.slope,
        slope_ci99: Z99 * f.slope_se,
        intercept: f.intercept,
        r2: f.r2,
        points: f.n,
    })
}

/// The vertex of a quadratic of y in ln x if convex and inside the x range: (x*, y*).
fn vertex(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let q = polyfit2(&lx, y)?;
    let v = -q[1] / (2.0 * q[2]);
    let (lo, hi) = lx
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &t| {
            (a.min(t), b.max(t))
        });
    (q[2] > 0.0 && v >= lo && v <= hi).then(|| (v.exp(), q[0] + q[1] * v + q[2] * v * v))
}

/// The B*(D) law and its points (D, B*·T).
pub type BatchLaw = (Slope, Vec<(f64, f64)>);

fn bits(v: f64) -> u64 {
    v.to_bits()
}

/// B*(D): per (N, target loss), the min tokens over lr at each B < max_batch; the vertex
/// of ln D = quadratic(ln B) where convex and inside the B range gives (D, B*·T); then
/// OLS ln B*_tok = c + k·ln D. Returns the law and its points (D, B*_tok).
pub fn batch_law(rows: &[&LossRow], seq: f64, max_batch: u64) -> Result<BatchLaw, String> {
    let mut g: BTreeMap<(u64, u64), BTreeMap<u64, f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.batch < max_batch) {
        let e = g
            .entry((bits(r.n), bits(r.target_loss)))
            .or_default()
            .entry(r.batch)
            .or_insert(f64::INFINITY);
        *e = e.min(r.tokens);
    }
    let mut pts = Vec::new();
    for per_b in g.values().filter(|m| m.len() >= 3) {
        let bs: Vec<f64> = per_b.keys().map(|&b| b as f64 * seq).collect();
        let ld: Vec<f64> = per_b.values().map(|d| d.ln()).collect();
        if let Some((b, ld)) = vertex(&bs, &ld) {
            pts.push((ld.exp(), b));
        }
    }
    if pts.len() < 3 {
        return Err(format!(
            "{} accepted B* vertices (need 3; an iso-loss needs >= 3 batch sizes with a convex, in-range minimum of tokens)",
            pts.len()
        ));
    }
    let (x, y): (Vec<f64>, Vec<f64>) = pts.iter().copied().unzip();
    let law = slope_law(&x, &y).ok_or("no spread in D across the B* vertices")?;
    Ok((law, pts))
}

/// η* of one (N, C, B): the vertex of ln loss = quadratic(ln lr), convex and inside the
/// LRs measured.
#[derive(Clone, Debug, Serialize)]
pub struct LrVertex {
    pub n: f64,
    pub c: f64,
    /// FLOPs per token of the size.
    pub m: f64,
    /// B·T, tokens per step.
    pub batch_tokens: f64,
    pub eta: f64,
    pub loss: f64,
}

/// Every (N, C, B) with >= 3 LRs whose loss has a convex, in-range vertex in ln lr.
pub fn lr_vertices(rows: &[&FlopRow], seq: f64) -> Vec<LrVertex> {
    let mut g: BTreeMap<(u64, u64, u64), Vec<&FlopRow>> = BTreeMap::new();
    for r in rows {
        g.entry((bits(r.n), bits(r.c), r.batch))
            .or_default()
            .push(r);
    }
    g.into_iter()
        .filter(|(_, v)| v.len() >= 3)
        .filter_map(|((n, c, b), v)| {
            let lr: Vec<f64> = v.iter().map(|r| r.lr).collect();
            let ll: Vec<f64> = v.iter().map(|r| r.loss.ln()).collect();
            vertex(&lr, &ll).map(|(eta, l)| LrVertex {
                n: f64::from_bits(n),
                c: f64::from_bits(c),
                m: v[0].m,
                batch_tokens: b as f64 * seq,
                eta,
                loss: l.exp(),
            })
        })
        .collect()
}

/// The η*(B*) law and its points (B*_tok, η*).
pub type LrLaw = (Slope, Vec<(f64, f64)>);

/// η*(B*): per (N, C), OLS ln η* on ln(B·T) over the [`lr_vertices`] of >= 2 batch sizes,
/// evaluated at B*_tok(D) of the batch law with D = C/M (if inside the measured B range);
/// then OLS ln η* on ln B*_tok.
pub fn lr_law(rows: &[&FlopRow], seq: f64, bstar: &Slope) -> Result<LrLaw, String> {
    let mut g: BTreeMap<(u64, u64), Vec<LrVertex>> = BTreeMap::new();
    for v in lr_vertices(rows, seq) {
        g.entry((bits(v.n), bits(v.c))).or_default().push(v);
    }
    let mut pts = Vec::new();
    for etas in g.values().filter(|v| v.len() >= 2) {
        let bx: Vec<f64> = etas.iter().map(|v| v.batch_tokens).collect();
        let ey: Vec<f64> = etas.iter().map(|v| v.eta).collect();
        let Some(f) = slope_law(&bx, &ey) else {
            continue;
        };
        let d = etas[0].c / etas[0].m;
        let b_star = bstar.at(d);
        let (lo, hi) = bx
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &t| {
                (a.min(t), b.max(t))
            });
        if b_star >= lo && b_star <= hi {
            pts.push((b_star, f.at(b_star)));
        }
    }
    if pts.len() < 3 {
        return Err(format!(
            "{} η* points (need 3; each needs >= 3 LRs with a convex, in-range minimum at >= 2 batch sizes bracketing B*)",
            pts.len()
        ));
    }
    let (x, y): (Vec<f64>, Vec<f64>) = pts.iter().copied().unzip();
    let law = slope_law(&x, &y).ok_or("no spread in B* across the η* points")?;
    Ok((law, pts))
}

/// The cooldown factor: mean of final ELBO (no cooldown) / final ELBO (cooled) over pairs
/// of runs equal in noise, size, B, lr and steps, the final ELBO being the mean of the
/// last 10 logged values (the reference's convention).
#[derive(Clone, Debug, Serialize)]
pub struct Cooldown {
    pub ratio: f64,
    pub ci99: f64,
    pub pairs: usize,
}

/// A cooled run and its constant-LR twin.
#[derive(Clone, Debug)]
pub struct CooldownPair {
    pub name: String,
    pub lr: f64,
    /// Final ELBO (mean of the last 10 logged values) of the constant-LR run.
    pub flat: f64,
    /// The same of the cooled run.
    pub cooled: f64,
    pub flat_history: Vec<(f64, f64)>,
    pub cooled_history: Vec<(f64, f64)>,
}

/// Every cooled run with a constant-LR twin equal in noise, size, B, lr and steps.
pub fn cooldown_pairs(runs: &[Run]) -> Vec<CooldownPair> {
    let last10 = |r: &Run| {
        let v: Vec<f64> = r
            .history
            .iter()
            .map(|p| p.1)
            .filter(|v| v.is_finite())
            .collect();
        let t = &v[v.len().saturating_sub(10)..];
        (!t.is_empty()).then(|| t.iter().sum::<f64>() / t.len() as f64)
    };
    let same = |a: &Run, b: &Run| {
        a.noise == b.noise
            && a.layers == b.layers
            && a.hidden == b.hidden
            && a.batch == b.batch
            && a.lr == b.lr
            && a.steps == b.steps
    };
    let mut out = Vec::new();
    for cd in runs.iter().filter(|r| r.cooldown > 0.0) {
        if let Some(flat) = runs.iter().find(|r| r.cooldown == 0.0 && same(r, cd)) {
            if let (Some(a), Some(b)) = (last10(flat), last10(cd)) {
                out.push(CooldownPair {
                    name: flat.run.clone(),
                    lr: flat.lr,
                    flat: a,
                    cooled: b,
                    flat_history: flat.history.clone(),
                    cooled_history: cd.history.clone(),
                });
            }
        }
    }
    out
}

pub fn cooldown(runs: &[Run]) -> Result<Cooldown, String> {
    let ratios: Vec<f64> = cooldown_pairs(runs)
        .iter()
        .map(|p| p.flat / p.cooled)
        .collect();
    if ratios.len() < 2 {
        return Err(format!(
            "{} cooled runs with a constant-LR twin (same noise, size, batch, lr, steps); need 2",
            ratios.len()
        ));
    }
    let n = ratios.len() as f64;
    let mean = ratios.iter().sum::<f64>() / n;
    let sd = (ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    Ok(Cooldown {
        ratio: mean,
        ci99: Z99 * sd / n.sqrt(),
        pairs: ratios.len(),
    })
}
