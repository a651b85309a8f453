//! A finished run's record (read back from its directory) and the sweep's results files,
//! `results.jsonl` (what `gidd fit` reads) and `results.csv` (the same without history).

use super::grid::RunPlan;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One finished run. Field order is the column order of both files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub run: String,
    pub noise: String,
    pub shift: f64,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub seq: usize,
    pub vocab: usize,
    /// SCALING's non-embedding N.
    pub n_params: f64,
    /// Method 1: 6N + 12·L·d·T.
    pub flops_per_token: f64,
    /// Method 2: 6N.
    pub flops_per_token_6n: f64,
    pub batch: usize,
    pub lr: f64,
    pub steps: usize,
    pub warmup: usize,
    pub cooldown: f64,
    /// steps·batch·seq.
    pub tokens: f64,
    /// flops_per_token·tokens.
    pub flops: f64,
    /// The last logged training ELBO.
    pub final_elbo: f64,
    /// The bias-corrected EMA (γ = 0.96) of the logged training ELBO at its last step.
    pub ema_elbo: f64,
    /// The final held-out ELBO (nats/token), from the run's heldout.json.
    #[serde(default)]
    pub heldout_elbo: Option<f64>,
    /// UTF-8 bytes per token of the held-out text (heldout.json): nats/token ÷ ln 2 ÷ this
    /// is bits/byte. None when the data's text is not known (token files).
    #[serde(default)]
    pub bytes_per_token: Option<f64>,
    /// (step, training ELBO) of every logged step.
    pub history: Vec<(u64, f64)>,
}

/// The smoothing of the paper's per-run ranking (SCALING.md section 3): weight 0.04 on the
/// new value.
pub const EMA_GAMMA: f64 = 0.96;

/// Bias-corrected EMA: m ← γm + (1−γ)x from m = 0, divided by 1 − γ^k after k values;
/// non-finite values are skipped (a diverged step does not poison the rest). NaN when
/// nothing is finite.
pub fn ema(xs: impl IntoIterator<Item = f64>, gamma: f64) -> f64 {
    let (mut m, mut k) = (0.0, 0i32);
    for x in xs.into_iter().filter(|x| x.is_finite()) {
        m = gamma * m + (1.0 - gamma) * x;
        k += 1;
    }
    if k == 0 {
        f64::NAN
    } else {
        m / (1.0 - gamma.powi(k))
    }
}

/// (step, elbo) of the training lines of a run's metrics.jsonl, in step order. A resumed
/// run logs the steps after its checkpoint again: the later line of a step wins.
pub fn history(metrics: &Path) -> Result<Vec<(u64, f64)>> {
    let text = std::fs::read_to_string(metrics)
        .with_context(|| format!("cannot read {}", metrics.display()))?;
    let mut by_step = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            // a run killed mid-write leaves a torn last line; anything else is corrupt
            if i + 1 == text.lines().count() {
                continue;
            }
            bail!("{} line {}: not JSON", metrics.display(), i + 1);
        };
        if let (Some(step), Some(e)) = (v["step"].as_u64(), v.get("elbo")) {
            by_step.insert(step, e.as_f64().unwrap_or(f64::NAN));
        }
    }
    Ok(by_step.into_iter().collect())
}

impl Record {
    /// The record of a finished run: the plan's settings, the vocabulary of its final
    /// checkpoint's config and the ELBO history of its metrics.
    pub fn read(plan: &RunPlan, dir: &Path) -> Result<Record> {
        let cfg_path = final_checkpoint(dir, plan.steps).join("config.json");
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&cfg_path)
                .with_context(|| format!("cannot read {}", cfg_path.display()))?,
        )
        .with_context(|| format!("{} is not JSON", cfg_path.display()))?;
        let vocab = cfg["vocab_size"]
            .as_u64()
            .with_context(|| format!("{} has no vocab_size", cfg_path.display()))?;
        let history = history(&dir.join("metrics.jsonl"))?;
        if history.is_empty() {
            bail!(
                "{} logs no training ELBO",
                dir.join("metrics.jsonl").display()
            );
        }
        // written by the trainer after its final held-out ELBO; absent from older runs
        let held: serde_json::Value = std::fs::read_to_string(dir.join("heldout.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Ok(Record {
            run: plan.name.clone(),
            noise: plan.noise.clone(),
            shift: plan.shift,
            layers: plan.layers,
            hidden: plan.hidden,
            heads: plan.heads,
            seq: plan.seq,
            vocab: vocab as usize,
            n_params: plan.n_params(),
            flops_per_token: plan.flops_per_token(),
            flops_per_token_6n: super::accounting::flops_per_token_6n(plan.layers, plan.hidden),
            batch: plan.batch,
            lr: plan.lr,
            steps: plan.steps,
            warmup: plan.warmup,
            cooldown: plan.cooldown,
            tokens: plan.tokens(),
            flops: plan.flops(),
            final_elbo: history.last().map_or(f64::NAN, |h| h.1),
            ema_elbo: ema(history.iter().map(|h| h.1), EMA_GAMMA),
            heldout_elbo: held["heldout_elbo"].as_f64(),
            bytes_per_token: held["bytes_per_token"].as_f64(),
            history,
        })
    }
}

impl Record {
    /// The record of a run as far as it got: finished runs as [`Record::read`]; an
    /// unfinished one with a logged history as if its plan had ended at its last logged
    /// step (steps, tokens and FLOPs of that step; `vocab` from the sweep's flags); None
    /// when the run has not logged a step yet.
    pub fn read_partial(plan: &RunPlan, dir: &Path, vocab: usize) -> Result<Option<Record>> {
        if final_checkpoint(dir, plan.steps)
            .join("config.json")
            .exists()
        {
            return Record::read(plan, dir).map(Some);
        }
        let m = dir.join("metrics.jsonl");
        if !m.exists() {
            return Ok(None);
        }
        let history = history(&m)?;
        let Some(&(last, last_elbo)) = history.last() else {
            return Ok(None);
        };
        let cut = RunPlan {
            steps: last as usize,
            ..plan.clone()
        };
        Ok(Some(Record {
            run: plan.name.clone(),
            noise: plan.noise.clone(),
            shift: plan.shift,
            layers: plan.layers,
            hidden: plan.hidden,
            heads: plan.heads,
            seq: plan.seq,
            vocab,
            n_params: plan.n_params(),
            flops_per_token: plan.flops_per_token(),
            flops_per_token_6n: super::accounting::flops_per_token_6n(plan.layers, plan.hidden),
            batch: plan.batch,
            lr: plan.lr,
            steps: cut.steps,
            warmup: plan.warmup,
            cooldown: plan.cooldown,
            tokens: cut.tokens(),
            flops: cut.flops(),
            final_elbo: last_elbo,
            ema_elbo: ema(history.iter().map(|h| h.1), EMA_GAMMA),
            heldout_elbo: None,
            bytes_per_token: None,
            history,
        }))
    }
}

/// The checkpoint the trainer writes after a run's last step: its presence marks the run
/// finished.
pub fn final_checkpoint(dir: &Path, steps: usize) -> std::path::PathBuf {
    dir.join(format!("checkpoint-{steps}"))
}

/// The columns of results.csv: every field but history.
pub const CSV_COLUMNS: [&str; 22] = [
    "run",
    "noise",
    "shift",
    "layers",
    "hidden",
    "heads",
    "seq",
    "vocab",
    "n_params",
    "flops_per_token",
    "flops_per_token_6n",
    "batch",
    "lr",
    "steps",
    "warmup",
    "cooldown",
    "tokens",
    "flops",
    "final_elbo",
    "ema_elbo",
    "heldout_elbo",
    "bytes_per_token",
];

/// Writes results.jsonl and results.csv under `out`, each atomically (temp file + rename),
/// so a reader never sees half a file.
pub fn write(out: &Path, records: &[Record]) -> Result<()> {
    write_named(out, "results", records)
}

/// [`write`] to `<out>/<stem>.jsonl` and `<out>/<stem>.csv`.
pub fn write_named(out: &Path, stem: &str, records: &[Record]) -> Result<()> {
    let mut jsonl = String::new();
    let mut csv = CSV_COLUMNS.join(",") + "\n";
    for r in records {
        let v = serde_json::to_value(r)?;
        jsonl += &serde_json::to_string(&v)?;
        jsonl.push('\n');
        let cells: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| match &v[*c] {
                serde_json::Value::String(s) if s.contains([',', '"', '\n']) => {
                    format!("\"{}\"", s.replace('"', "\"\""))
                }
                serde_json::Value::String(s) => s.clone(),
                // serde_json writes NaN as null: keep it readable as a number column
                serde_json::Value::Null => "NaN".into(),
                x => x.to_string(),
            })
            .collect();
        csv += &(cells.join(",") + "\n");
    }
    gidd_ports::write_atomic(&out.join(format!("{stem}.jsonl")), jsonl.as_bytes())?;
    gidd_ports::write_atomic(&out.join(format!("{stem}.csv")), csv.as_bytes())?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn ema_is_bias_corrected() {
        // a constant series is its own EMA from the first value on
        assert!((ema([3.0; 5], EMA_GAMMA) - 3.0).abs() < 1e-12);
        // two values: (0.96·0.04·a + 0.04·b) / (1 − 0.96²)
        let want = (0.96 * 0.04 * 2.0 + 0.04 * 4.0) / (1.0 - 0.96f64.powi(2));
        assert!((ema([2.0, f64::NAN, 4.0], EMA_GAMMA) - want).abs() < 1e-12);
        assert!(ema([], EMA_GAMMA).is_nan());
    }

    #[test]
    fn history_keeps_the_last_line_of_a_step() {
        let dir = std::env::temp_dir().join(format!("gidd-sweep-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let m = dir.join("metrics.jsonl");
        std::fs::write(
            &m,
            "{\"step\":1,\"loss\":9,\"elbo\":5.0}\n{\"step\":2,\"loss\":9,\"elbo\":4.0}\n\
             {\"step\":2,\"heldout_elbo\":3.0}\n{\"step\":2,\"loss\":9,\"elbo\":4.5}\n{\"step\":3,\"elb",
        )
        .unwrap();
        assert_eq!(history(&m).unwrap(), vec![(1, 5.0), (2, 4.5)]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
