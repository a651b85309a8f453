//! The sweep grid (a JSON file or a preset) and its expansion into runs.

use super::accounting;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One model size. `heads` defaults to the ladder's rule (head_dim 64 up to d 1024, 128 above).
/// The optional fields override the grid's for this size only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub layers: usize,
    pub hidden: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// This size's batch sizes (the paper adds B = 1024 for its largest size only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_sizes: Option<Vec<usize>>,
    /// This size's learning rates, for every batch size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lrs: Option<Vec<f64>>,
    /// This size's largest budget (see `Grid::max_flops`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_flops: Option<f64>,
}

impl Size {
    pub fn new(layers: usize, hidden: usize, heads: usize) -> Size {
        Size {
            layers,
            hidden,
            heads: Some(heads),
            ..Size::default()
        }
    }
}

/// A run length by batch size: runs with batch >= `min_batch` (and, when set, at most
/// `max_layers` layers) train `steps` steps instead of the grid's. The paper's 40k-step
/// rule: `[{"min_batch": 512, "max_layers": 19, "steps": 40000},
/// {"min_batch": 1024, "steps": 40000}]` (B = 512 below L20, and B = 1024).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRule {
    pub min_batch: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_layers: Option<usize>,
    pub steps: usize,
}

/// A noise type: a name (masked, low-uniform, balanced, high-uniform, uniform) or a
/// numeric `hybrid_mixing_shift`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Noise {
    Shift(f64),
    Name(String),
}

/// The named noise types and their shifts (SCALING.md section 9).
pub const NOISE_NAMES: [(&str, f64); 5] = [
    ("masked", -1000.0),
    ("low-uniform", -2.0),
    ("balanced", 0.0),
    ("high-uniform", 2.0),
    ("uniform", 1000.0),
];

impl Noise {
    /// (label, shift). A numeric shift is labelled by its name when it is one of the named
    /// shifts, else as in the paper's plots (≤ −100 masked, ≥ 100 uniform), else `shift<b>`.
    pub fn resolve(&self) -> Result<(String, f64)> {
        match self {
            Noise::Name(n) => match NOISE_NAMES.iter().find(|(k, _)| k == n) {
                Some(&(k, b)) => Ok((k.to_string(), b)),
                None => bail!(
                    "unknown noise type {n:?}: use one of {} or a number (the hybrid_mixing_shift)",
                    NOISE_NAMES.map(|(k, _)| k).join(", ")
                ),
            },
            Noise::Shift(b) if !b.is_finite() => bail!("noise shift {b} is not finite"),
            Noise::Shift(b) => {
                let label = match NOISE_NAMES.iter().find(|(_, s)| s == b) {
                    Some((k, _)) => k.to_string(),
                    None if *b <= -100.0 => "masked".into(),
                    None if *b >= 100.0 => "uniform".into(),
                    None => format!("shift{b}"),
                };
                Ok((label, *b))
            }
        }
    }
}

pub(super) fn d_beta2() -> f64 {
    0.99
}
pub(super) fn d_beta2_large() -> f64 {
    0.98
}
pub(super) fn d_large_batch() -> usize {
    256
}

/// A sweep: every size × noise × batch size × learning rate of that batch size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    pub sizes: Vec<Size>,
    pub noise: Vec<Noise>,
    /// Batch sizes in sequences.
    pub batch_sizes: Vec<usize>,
    /// Learning rates per batch size: keys are batch sizes, or "*" for any batch size
    /// without its own list.
    pub lrs: BTreeMap<String, Vec<f64>>,
    /// Learning rates by noise label (e.g. "uniform"), for every batch size: noise types
    /// that are unstable at the others' rates get their own (a size's `lrs` still wins).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub noise_lrs: BTreeMap<String, Vec<f64>>,
    /// Training steps of every run (unless `max_flops` is set).
    pub steps: usize,
    /// Exceptions to `steps` by batch size (the first rule that matches a run applies);
    /// not used with `max_flops`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_rules: Vec<StepRule>,
    /// When set, each run trains until it has spent this Method-1 compute C = M·D (steps
    /// rounded up), so every size reaches the same largest budget.
    #[serde(default)]
    pub max_flops: Option<f64>,
    pub warmup: usize,
    /// Cooldown steps (below 1: a fraction of the steps); the paper's sweeps used 0.
    #[serde(default)]
    pub cooldown: f64,
    /// Sequence length T.
    pub seq: usize,
    /// β2 below `large_batch`, and from it on (the paper: 0.99 for B ≤ 128, 0.98 for B ≥ 256).
    #[serde(default = "d_beta2")]
    pub beta2: f64,
    #[serde(default = "d_beta2_large")]
    pub beta2_large: f64,
    #[serde(default = "d_large_batch")]
    pub large_batch: usize,
    /// Checkpoint every this many steps, so a killed run resumes (default: only the final one).
    #[serde(default)]
    pub save_steps: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    /// Flags appended to every run's `gidd train` command line (they override the sweep's).
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// One run of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPlan {
    pub name: String,
    pub noise: String,
    pub shift: f64,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub seq: usize,
    pub batch: usize,
    pub lr: f64,
    pub beta2: f64,
    pub steps: usize,
    pub warmup: usize,
    pub cooldown: f64,
    pub save_steps: usize,
    pub seed: u64,
}

impl RunPlan {
    /// SCALING's N.
    pub fn n_params(&self) -> f64 {
        accounting::n_params(self.layers, self.hidden)
    }
    /// Method-1 FLOPs per token at this run's sequence length.
    pub fn flops_per_token(&self) -> f64 {
        accounting::flops_per_token(self.layers, self.hidden, self.seq)
    }
    pub fn tokens(&self) -> f64 {
        (self.steps * self.batch * self.seq) as f64
    }
    /// Method-1 compute C = M·D of the whole run.
    pub fn flops(&self) -> f64 {
        accounting::compute(self.flops_per_token(), self.tokens())
    }

    /// The `gidd train` flags of this run (without the subcommand and the pass-through ones).
    pub fn train_args(&self, dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = vec![];
        // `--flag=value`: a negative value (a masked shift) would read as a flag otherwise
        let mut f = |k: &str, x: String| v.push(format!("--{k}={x}"));
        f("num_layers", self.layers.to_string());
        f("hidden_size", self.hidden.to_string());
        f("num_attn_heads", self.heads.to_string());
        f("max_seq_len", self.seq.to_string());
        f("batch_size", self.batch.to_string());
        f("lr", self.lr.to_string());
        f("beta2", self.beta2.to_string());
        f("max_training_steps", self.steps.to_string());
        f("warmup_steps", self.warmup.to_string());
        f("cooldown_steps", self.cooldown.to_string());
        f("hybrid_mixing_shift", self.shift.to_string());
        // the study's runs condition as the reference's did (SPEC.md section 4), whatever
        // `gidd train`'s own main-job defaults are
        f("noise_p_independent", "0.2".into());
        f("noise_mask_p_prompt", "0.2".into());
        f("save_steps", self.save_steps.to_string());
        f("seed", self.seed.to_string());
        // held-out ELBO only at the end (the fits use the training ELBO), no samples
        f("eval_steps", "0".into());
        f("num_samples", "0".into());
        f("save_directory", dir.display().to_string());
        v
    }
}

/// A run's directory name: noise, size, batch, lr and steps (unique within a grid).
pub fn run_name(
    noise: &str,
    layers: usize,
    hidden: usize,
    heads: usize,
    batch: usize,
    lr: f64,
    steps: usize,
) -> String {
    format!("{noise}-L{layers}-d{hidden}-h{heads}-B{batch}-lr{lr}-S{steps}")
}

impl Grid {
    pub fn from_file(path: &Path) -> Result<Grid> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the grid file {} (pass a JSON grid, or --preset toy|smoke)",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a sweep grid: want a JSON object with sizes [{{layers, hidden, heads?}}], noise [names or shifts], batch_sizes, lrs {{\"<batch>\" or \"*\": [lr]}}, steps, warmup, seq",
                path.display()
            )
        })
    }

    /// `steps`, or the first step rule's that matches.
    fn steps_for(&self, batch: usize, layers: usize) -> usize {
        self.step_rules
            .iter()
            .find(|r| batch >= r.min_batch && r.max_layers.is_none_or(|l| layers <= l))
            .map_or(self.steps, |r| r.steps)
    }

    fn lrs_for(&self, batch: usize) -> Option<&Vec<f64>> {
        self.lrs
            .get(&batch.to_string())
            .or_else(|| self.lrs.get("*"))
    }

    /// Every run of the grid, in order size × noise × batch × lr; errors name the bad entry.
    pub fn plan(&self) -> Result<Vec<RunPlan>> {
        for (what, empty) in [
            ("sizes", self.sizes.is_empty()),
            ("noise", self.noise.is_empty()),
            ("batch_sizes", self.batch_sizes.is_empty()),
        ] {
            if empty {
                bail!("the grid's {what} list is empty: give it at least one entry");
            }
        }
        if self.seq < 2 {
            bail!("seq {} is too short: rows need at least 2 tokens", self.seq);
        }
        let budgeted = self.max_flops.is_some() || self.sizes.iter().all(|s| s.max_flops.is_some());
        if !budgeted && self.steps == 0 {
            bail!("steps is 0: give the grid steps > 0 (or max_flops)");
        }
        let bad_c = |c: &f64| !(c.is_finite() && *c > 0.0);
        if let Some(c) = self.max_flops.filter(bad_c) {
            bail!("max_flops {c} must be a positive number");
        }
        if let Some(c) = self.sizes.iter().filter_map(|s| s.max_flops).find(bad_c) {
            bail!("a size's max_flops {c} must be a positive number");
        }
        if self.max_flops.is_none() && !self.step_rules.is_empty() {
            if let Some(r) = self.step_rules.iter().find(|r| r.steps == 0) {
                bail!("step rule for batch >= {} has 0 steps", r.min_batch);
            }
        }
        let noise = self
            .noise
            .iter()
            .map(Noise::resolve)
            .collect::<Result<Vec<_>>>()?;
        if let Some(k) = self
            .noise_lrs
            .keys()
            .find(|k| !noise.iter().any(|(label, _)| label == *k))
        {
            let labels: Vec<&str> = noise.iter().map(|(l, _)| l.as_str()).collect();
            bail!(
                "noise_lrs names {k:?}, which is not a noise type of this grid ({})",
                labels.join(", ")
            );
        }
        let mut out = vec![];
        for s in &self.sizes {
            let heads = s.heads.unwrap_or_else(|| accounting::heads_for(s.hidden));
            if s.layers == 0 || s.hidden == 0 || heads == 0 || s.hidden % heads != 0 {
                bail!(
                    "size layers {} hidden {} heads {heads}: layers and hidden must be > 0 and heads must divide hidden",
                    s.layers,
                    s.hidden
                );
            }
            let batches = s.batch_sizes.as_ref().unwrap_or(&self.batch_sizes);
            if batches.is_empty() {
                bail!(
                    "size L{} d{} has an empty batch_sizes list",
                    s.layers,
                    s.hidden
                );
            }
            for (label, shift) in &noise {
                for &batch in batches {
                    let lrs = s
                        .lrs
                        .as_ref()
                        .or_else(|| self.noise_lrs.get(label))
                        .or_else(|| self.lrs_for(batch));
                    let Some(lrs) = lrs.filter(|l| !l.is_empty()) else {
                        bail!("no learning rates for batch size {batch}: add \"{batch}\": [..] or \"*\": [..] to lrs");
                    };
                    if batch == 0 {
                        bail!("batch size 0 in batch_sizes");
                    }
                    for &lr in lrs {
                        if !(lr.is_finite() && lr > 0.0) {
                            bail!("learning rate {lr} (batch {batch}) must be a positive number");
                        }
                        let m = accounting::flops_per_token(s.layers, s.hidden, self.seq);
                        let steps = match s.max_flops.or(self.max_flops) {
                            Some(c) => {
                                (c / (m * (batch * self.seq) as f64)).ceil().max(1.0) as usize
                            }
                            None => self.steps_for(batch, s.layers),
                        };
                        if self.warmup > steps {
                            bail!(
                                "warmup {} is longer than the {steps} steps of a run",
                                self.warmup
                            );
                        }
                        out.push(RunPlan {
                            name: run_name(label, s.layers, s.hidden, heads, batch, lr, steps),
                            noise: label.clone(),
                            shift: *shift,
                            layers: s.layers,
                            hidden: s.hidden,
                            heads,
                            seq: self.seq,
                            batch,
                            lr,
                            beta2: if batch >= self.large_batch {
                                self.beta2_large
                            } else {
                                self.beta2
                            },
                            steps,
                            warmup: self.warmup,
                            cooldown: self.cooldown,
                            save_steps: self.save_steps.filter(|&k| k > 0).unwrap_or(steps),
                            seed: self.seed,
                        });
                    }
                }
            }
        }
        let mut names: Vec<&str> = out.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!(
                "the grid names run {} twice: remove the duplicate entry",
                w[0]
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::super::presets::smoke;
    use super::*;

    #[test]
    fn parses_names_and_shifts() {
        let g: Grid = serde_json::from_str(
            r#"{"sizes": [{"layers": 2, "hidden": 64}, {"layers": 20, "hidden": 1536}],
                "noise": ["masked", 0.5, 1000, "low-uniform"],
                "batch_sizes": [8, 512], "lrs": {"8": [0.1, 0.2], "*": [1]},
                "steps": 100, "warmup": 10, "seq": 32}"#,
        )
        .unwrap();
        let p = g.plan().unwrap();
        assert_eq!(p.len(), 2 * 4 * 3);
        assert_eq!(p[0].name, "masked-L2-d64-h1-B8-lr0.1-S100");
        assert_eq!((p[0].shift, p[0].beta2), (-1000.0, 0.99));
        assert_eq!(p[2].name, "masked-L2-d64-h1-B512-lr1-S100");
        assert_eq!(p[2].beta2, 0.98);
        assert_eq!((p[3].noise.as_str(), p[3].shift), ("shift0.5", 0.5));
        assert_eq!(p[6].noise, "uniform");
        assert_eq!((p[9].noise.as_str(), p[9].shift), ("low-uniform", -2.0));
        assert_eq!(p[12].heads, 12);
        assert_eq!(p[0].tokens(), (100 * 8 * 32) as f64);
        assert_eq!(p[0].flops(), p[0].flops_per_token() * p[0].tokens());
    }

    #[test]
    fn bad_grids_say_what_to_fix() {
        let mut g = smoke();
        g.noise.push(Noise::Name("maskd".into()));
        let e = g.plan().unwrap_err().to_string();
        assert!(e.contains("maskd") && e.contains("balanced"), "{e}");
        let mut g = smoke();
        g.sizes.clear();
        assert!(g
            .plan()
            .unwrap_err()
            .to_string()
            .contains("sizes list is empty"));
        let mut g = smoke();
        g.lrs = BTreeMap::from([("16".to_string(), vec![1.0])]);
        assert!(g.plan().unwrap_err().to_string().contains("batch size 8"));
        let mut g = smoke();
        g.sizes.push(g.sizes[0].clone());
        assert!(g.plan().unwrap_err().to_string().contains("twice"));
        assert!(serde_json::from_str::<Grid>(r#"{"sizes": []}"#).is_err());
        let e = Grid::from_file(Path::new("/nonexistent/grid.json")).unwrap_err();
        assert!(format!("{e:#}").contains("cannot read the grid file"));
    }

    #[test]
    fn sizes_override_batches_lrs_and_budgets() {
        let g: Grid = serde_json::from_str(
            r#"{"sizes": [{"layers": 1, "hidden": 32, "lrs": [4, 8], "max_flops": 1e9},
                          {"layers": 2, "hidden": 64, "batch_sizes": [16, 32]}],
                "noise": ["masked"], "batch_sizes": [8], "lrs": {"*": [1]},
                "steps": 0, "max_flops": 1e10, "warmup": 1, "seq": 16}"#,
        )
        .unwrap();
        let p = g.plan().unwrap();
        let got: Vec<(usize, usize, f64)> = p.iter().map(|r| (r.layers, r.batch, r.lr)).collect();
        assert_eq!(got, [(1, 8, 4.0), (1, 8, 8.0), (2, 16, 1.0), (2, 32, 1.0)]);
        // each size runs to its own budget: the first just past 1e9, the others 1e10
        let c = |r: &RunPlan| (r.flops(), r.flops_per_token() * (r.batch * r.seq) as f64);
        let (f0, step0) = c(&p[0]);
        assert!(f0 >= 1e9 && f0 < 1e9 + step0);
        for r in &p[2..] {
            let (f, step) = c(r);
            assert!(f >= 1e10 && f < 1e10 + step);
        }
        let mut bad = g.clone();
        bad.sizes[0].max_flops = Some(-1.0);
        assert!(bad.plan().unwrap_err().to_string().contains("max_flops"));
        bad.sizes[0].max_flops = None;
        bad.sizes[1].batch_sizes = Some(vec![]);
        assert!(bad
            .plan()
            .unwrap_err()
            .to_string()
            .contains("empty batch_sizes"));
    }

    /// A noise type's own rates replace the batch's; a size's own rates replace both.
    #[test]
    fn noise_lrs_override_batch_lrs_but_not_size_lrs() {
        let g: Grid = serde_json::from_str(
            r#"{"sizes": [{"layers": 1, "hidden": 32}, {"layers": 2, "hidden": 32, "lrs": [4]}],
                "noise": ["masked", "uniform"], "batch_sizes": [8], "lrs": {"*": [2]},
                "noise_lrs": {"uniform": [0.5, 1]}, "steps": 10, "warmup": 1, "seq": 16}"#,
        )
        .unwrap();
        let got: Vec<(usize, String, f64)> = g
            .plan()
            .unwrap()
            .iter()
            .map(|r| (r.layers, r.noise.clone(), r.lr))
            .collect();
        let want = [
            (1, "masked", 2.0),
            (1, "uniform", 0.5),
            (1, "uniform", 1.0),
            (2, "masked", 4.0),
            (2, "uniform", 4.0),
        ]
        .map(|(l, n, lr)| (l, n.to_string(), lr));
        assert_eq!(got, want);
        let mut typo = g.clone();
        typo.noise_lrs = BTreeMap::from([("unifrom".to_string(), vec![1.0])]);
        let e = typo.plan().unwrap_err().to_string();
        assert!(
            e.contains("\"unifrom\"") && e.contains("masked, uniform"),
            "{e}"
        );
    }

    /// The paper's 40k-step rule: B = 512 below L20 and B = 1024 run 40k steps, the rest 80k.
    #[test]
    fn step_rules_shorten_large_batch_runs() {
        let g: Grid = serde_json::from_str(
            r#"{"sizes": [{"layers": 16, "hidden": 1024}, {"layers": 20, "hidden": 1536, "batch_sizes": [256, 512, 1024]}],
                "noise": ["masked"], "batch_sizes": [256, 512], "lrs": {"*": [1]},
                "steps": 80000, "warmup": 2000, "seq": 2048,
                "step_rules": [{"min_batch": 512, "max_layers": 19, "steps": 40000},
                               {"min_batch": 1024, "steps": 40000}]}"#,
        )
        .unwrap();
        let got: Vec<(usize, usize, usize)> = g
            .plan()
            .unwrap()
            .iter()
            .map(|r| (r.layers, r.batch, r.steps))
            .collect();
        assert_eq!(
            got,
            [
                (16, 256, 80000),
                (16, 512, 40000),
                (20, 256, 80000),
                (20, 512, 80000),
                (20, 1024, 40000)
            ]
        );
    }
}
