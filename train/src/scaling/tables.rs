//! Iso-FLOP and iso-loss tables (SCALING.md §3): every fitted constant-LR run gives a
//! loss at each budget C its curve covers (s = C/(M·B·T), inside [min_step, steps]) and
//! the tokens to reach each target loss. Then the per-noise selection of §3.5.

use super::curve::Curve;
use super::results::Run;
use serde::Serialize;
use std::collections::BTreeMap;

/// A run with its fitted curve.
#[derive(Clone, Debug)]
pub struct Fitted {
    pub run: Run,
    pub curve: Curve,
    /// Last value of the bias-corrected EMA (γ = 0.96) of the history: ranking and dedup.
    pub ema: f64,
}

/// One run at one budget.
#[derive(Clone, Debug, Serialize)]
pub struct FlopRow {
    pub noise: String,
    pub run: String,
    pub n: f64,
    /// FLOPs per token of the table's method.
    pub m: f64,
    /// Target budget C.
    pub c: f64,
    pub batch: u64,
    pub lr: f64,
    /// s = C/(M·B·T), fractional.
    pub steps: f64,
    /// D = s·B·T.
    pub tokens: f64,
    pub loss: f64,
}

/// One run reaching one target loss.
#[derive(Clone, Debug, Serialize)]
pub struct LossRow {
    pub noise: String,
    pub run: String,
    pub n: f64,
    pub batch: u64,
    pub lr: f64,
    pub target_loss: f64,
    pub steps: f64,
    pub tokens: f64,
    /// tokens·M (Method 1).
    pub flops: f64,
}

/// Every valid (run, budget) pair, the method picked by `sixn` (M = 6N when true).
pub fn iso_flop_rows(fits: &[Fitted], budgets: &[f64], min_step: f64, sixn: bool) -> Vec<FlopRow> {
    let mut out = Vec::new();
    for f in fits {
        let (m, bt) = (f.run.m(sixn), f.run.batch_tokens());
        for &c in budgets {
            let s = c / (m * bt);
            if !(s >= min_step && s <= f.run.steps as f64) {
                continue;
            }
            let loss = f.curve.at(s);
            if !loss.is_finite() {
                continue;
            }
            out.push(FlopRow {
                noise: f.run.noise.clone(),
                run: f.run.run.clone(),
                n: f.run.n_params,
                m,
                c,
                batch: f.run.batch,
                lr: f.run.lr,
                steps: s,
                tokens: s * bt,
                loss,
            });
        }
    }
    out
}

/// Every valid (run, target loss) pair: the closed-form step inside [min_step, steps].
pub fn iso_loss_rows(fits: &[Fitted], losses: &[f64], min_step: f64) -> Vec<LossRow> {
    let mut out = Vec::new();
    for f in fits {
        let bt = f.run.batch_tokens();
        for &l in losses {
            let Some(s) = f.curve.steps_to(l) else {
                continue;
            };
            if !(s >= min_step && s <= f.run.steps as f64) {
                continue;
            }
            out.push(LossRow {
                noise: f.run.noise.clone(),
                run: f.run.run.clone(),
                n: f.run.n_params,
                batch: f.run.batch,
                lr: f.run.lr,
                target_loss: l,
                steps: s,
                tokens: s * bt,
                flops: s * bt * f.run.flops_per_token,
            });
        }
    }
    out
}

/// The thresholds of the §3.5 selection (paper values as the CLI defaults).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Selection {
    /// Rows with B ≥ this (sequences) are dropped.
    pub max_batch: u64,
    /// Kept: min_steps < s ≤ max_steps.
    pub min_steps: f64,
    pub max_steps: f64,
    /// Kept: loss < loss_cap.
    pub loss_cap: f64,
    /// An iso-FLOP needs at least this many model sizes.
    pub min_sizes: usize,
}

/// Sort key of a float that is never NaN here (budgets, sizes).
fn key(v: f64) -> u64 {
    v.to_bits()
}

/// The selection of one noise type's rows: drop B ≥ max_batch; per (N, C) keep the
/// min-loss row over (B, lr); keep the step window and loss cap; keep only budgets with
/// at least `min_sizes` sizes. Sorted by (C, N).
pub fn select(rows: &[FlopRow], sel: &Selection) -> Vec<FlopRow> {
    let mut best: BTreeMap<(u64, u64), &FlopRow> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.batch < sel.max_batch) {
        let e = best.entry((key(r.c), key(r.n))).or_insert(r);
        if r.loss < e.loss {
            *e = r;
        }
    }
    let kept: Vec<&FlopRow> = best
        .into_values()
        .filter(|r| r.steps > sel.min_steps && r.steps <= sel.max_steps && r.loss < sel.loss_cap)
        .collect();
    let mut sizes: BTreeMap<u64, usize> = BTreeMap::new();
    for r in &kept {
        *sizes.entry(key(r.c)).or_default() += 1;
    }
    kept.into_iter()
        .filter(|r| sizes[&key(r.c)] >= sel.min_sizes)
        .cloned()
        .collect()
}

/// Rows grouped by budget, in increasing C.
pub fn by_budget(rows: &[FlopRow]) -> Vec<(f64, Vec<&FlopRow>)> {
    let mut g: BTreeMap<u64, Vec<&FlopRow>> = BTreeMap::new();
    for r in rows {
        g.entry(key(r.c)).or_default().push(r);
    }
    g.into_iter().map(|(k, v)| (f64::from_bits(k), v)).collect()
}
