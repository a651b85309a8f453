//! `gidd fit RESULTS`: the paper's scaling-law analysis (shared/SCALING.md §3–§8) over the
//! JSONL of `gidd sweep`.
//!
//! 1. Per run: L(s) = E + A·s^(−b) on the training ELBO at s ≥ min_step (`curve`).
//! 2. Iso-FLOP tables for Method 1 (M = 6N + 12LdT) and Method 2 (M = 6N) and an
//!    iso-loss table, then the per-noise selection (`tables`).
//! 3. Iso-FLOP optima, "sq. fit" parabolas and "raw" minima (`laws`).
//! 4. Power laws D*, M*, N*, L* vs C and the token-bound L* vs D*, with bootstrap
//!    intervals; the loss surface L(M, D) and its compute-optimal allocation (`laws`).
//! 5. B*(D), η*(B*) and the cooldown factor where the runs support them (`batch`).
//!
//! Out: fit.json (atomically), a summary on stdout, charts (`plots`).

mod batch;
mod curve;
mod frontier;
mod laws;
pub mod numeric;
mod output;
mod plots;
mod plots_more;
mod results;
pub mod synth;
mod tables;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_more;

pub use batch::{BatchLaw, Cooldown, LrLaw, LrVertex, Slope};
pub use curve::{fit_curve, Curve};
pub use frontier::{
    bits_per_byte, common_bytes_per_token, conversion_law, direct_frontier, Frontier,
};
pub use laws::{fit_surface, power_law, raw_optima, sq_optima, Optimum, PowerLaw, Surface};
pub use results::{Results, ResultsError, Run};
pub use tables::{iso_flop_rows, iso_loss_rows, select, Fitted, FlopRow, LossRow, Selection};

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The flags of `gidd fit`. Threshold defaults are the paper's (SCALING.md §3.5), or with
/// `--scale toy|smoke` rescaled for the sweep presets of the same names (§11).
#[derive(clap::Args, Clone, Debug, serde::Serialize)]
#[command(rename_all = "snake_case")]
pub struct FitArgs {
    /// RESULTS: the JSONL `gidd sweep` writes, one run per line.
    pub results: PathBuf,
    /// Directory for fit.json and the charts.
    #[arg(long, default_value = "fit")]
    pub out: PathBuf,
    /// Which thresholds the flags below default to: the paper's (SCALING.md §3.5), or
    /// rescaled for `gidd sweep --preset toy` runs (hundreds to thousands of steps, budgets
    /// of 1e10-1e14 FLOPs), or none at all for the seconds-long smoke preset.
    #[arg(long, value_enum, default_value_t = FitScale::Paper)]
    pub scale: FitScale,
    /// Curve fits use the history at steps >= this (>= 10 points, else the run is skipped).
    /// Default: paper 2000, toy 1500, smoke 5.
    #[arg(long)]
    pub min_step: Option<f64>,
    /// Number of log-spaced budgets C over the range the runs cover.
    #[arg(long, default_value_t = 24)]
    pub budgets: usize,
    /// Explicit budgets (comma-separated FLOPs); overrides --budgets.
    #[arg(long, value_delimiter = ',')]
    pub budget_grid: Vec<f64>,
    /// Number of log-spaced target losses over the range the fitted curves cover.
    #[arg(long, default_value_t = 24)]
    pub losses: usize,
    /// Explicit target losses (comma-separated nats); overrides --losses.
    #[arg(long, value_delimiter = ',')]
    pub loss_grid: Vec<f64>,
    /// Rows with batch (sequences) >= this are dropped.
    #[arg(long, default_value_t = 1024)]
    pub max_batch: u64,
    /// Selected rows have select_min_steps < s <= select_max_steps.
    /// Defaults: paper 5000 and 80000, toy 1500 and 1e6, smoke 0 and unbounded.
    #[arg(long)]
    pub select_min_steps: Option<f64>,
    #[arg(long)]
    pub select_max_steps: Option<f64>,
    /// Selected rows have loss < this. Default: paper 4.0, toy 10, smoke unbounded.
    #[arg(long)]
    pub loss_cap: Option<f64>,
    /// An iso-FLOP needs at least this many model sizes.
    #[arg(long, default_value_t = 3)]
    pub min_sizes: usize,
    /// The power-law fit window: budgets in [c_lo, c_hi].
    /// Defaults: paper [5e17, 2e20], toy [1e9, 1e15], smoke unbounded.
    #[arg(long)]
    pub c_lo: Option<f64>,
    #[arg(long)]
    pub c_hi: Option<f64>,
    /// The "direct frontier" window: raw per-budget minima with C in [frontier_lo,
    /// frontier_hi] give L = A·C^a. Defaults: paper [1e17, 1e22], toy [1e8, 1e16], smoke
    /// unbounded.
    #[arg(long)]
    pub frontier_lo: Option<f64>,
    #[arg(long)]
    pub frontier_hi: Option<f64>,
    /// The laws minimize the Huber loss of their log residuals with this threshold (the
    /// reference's scipy `loss="huber", f_scale=1`); 0 or inf: plain least squares.
    #[arg(long, default_value_t = 1.0)]
    pub huber_delta: f64,
    /// Bytes per token of the text for the bits/byte plots (default: the mean the runs
    /// measured on their held-out text; runs without it and no flag: no bits/byte plots).
    #[arg(long)]
    pub bytes_per_token: Option<f64>,
    /// The compute frontier plot extrapolates the fitted laws to this budget (dash-dot past
    /// the fit window). Default: paper 1e27, else 100× the largest budget.
    #[arg(long)]
    pub extrapolate_to: Option<f64>,
    /// A vertical line on the token frontier plot at this many tokens (the paper marks 4e10).
    #[arg(long)]
    pub data_tokens: Option<f64>,
    /// Also leave extrapolated iso-FLOP vertices (outside the measured sizes) out of the
    /// laws; by default they are kept, warned about and marked.
    #[arg(long)]
    pub strict_range: bool,
    /// Bootstrap replicates per power law.
    #[arg(long, default_value_t = 10000)]
    pub bootstrap: usize,
    /// Replicate i uses the generator seeded seed + i.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the PNG/SVG charts.
    #[arg(long)]
    pub no_plots: bool,
}

/// `--scale`: the family of threshold defaults.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FitScale {
    Paper,
    Toy,
    Smoke,
}

/// The thresholds in effect: the flags, else `--scale`'s defaults.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Thresholds {
    pub min_step: f64,
    pub select_min_steps: f64,
    pub select_max_steps: f64,
    pub loss_cap: f64,
    pub c_lo: f64,
    pub c_hi: f64,
    pub frontier_lo: f64,
    pub frontier_hi: f64,
}

impl FitScale {
    fn defaults(self) -> Thresholds {
        let inf = f64::INFINITY;
        let (min_step, select_min_steps, select_max_steps, loss_cap, c_lo, c_hi) = match self {
            FitScale::Paper => (2000.0, 5000.0, 80000.0, 4.0, 5e17, 2e20),
            // the toy preset's runs sit on the unigram plateau for their first ~600-1000
            // steps: curves fitted from step 100 degenerate (b -> 0, E -> -5700 measured),
            // from 1500 they do not (E 4.4-5.0), as the paper starts after its warmup
            FitScale::Toy => (1500.0, 1500.0, 1e6, 10.0, 1e9, 1e15),
            FitScale::Smoke => (5.0, 0.0, inf, inf, 0.0, inf),
        };
        let (frontier_lo, frontier_hi) = match self {
            FitScale::Paper => (1e17, 1e22),
            FitScale::Toy => (1e8, 1e16),
            FitScale::Smoke => (0.0, inf),
        };
        Thresholds {
            min_step,
            select_min_steps,
            select_max_steps,
            loss_cap,
            c_lo,
            c_hi,
            frontier_lo,
            frontier_hi,
        }
    }
}

impl FitArgs {
    /// The thresholds in effect (explicit flags win over `--scale`'s defaults).
    pub fn thresholds(&self) -> Thresholds {
        let d = self.scale.defaults();
        Thresholds {
            min_step: self.min_step.unwrap_or(d.min_step),
            select_min_steps: self.select_min_steps.unwrap_or(d.select_min_steps),
            select_max_steps: self.select_max_steps.unwrap_or(d.select_max_steps),
            loss_cap: self.loss_cap.unwrap_or(d.loss_cap),
            c_lo: self.c_lo.unwrap_or(d.c_lo),
            c_hi: self.c_hi.unwrap_or(d.c_hi),
            frontier_lo: self.frontier_lo.unwrap_or(d.frontier_lo),
            frontier_hi: self.frontier_hi.unwrap_or(d.frontier_hi),
        }
    }

    /// The Huber threshold in effect (∞ = least squares).
    pub fn delta(&self) -> f64 {
        if self.huber_delta > 0.0 {
            self.huber_delta
        } else {
            f64::INFINITY
        }
    }

    /// The flags' defaults for `results` (what the command line gives with no flags).
    pub fn new(results: PathBuf) -> FitArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: FitArgs,
        }
        let mut a = P::parse_from(["fit", "RESULTS"]).a;
        a.results = results;
        a
    }
    fn selection(&self) -> Selection {
        Selection {
            max_batch: self.max_batch,
            min_steps: self.thresholds().select_min_steps,
            max_steps: self.thresholds().select_max_steps,
            loss_cap: self.thresholds().loss_cap,
            min_sizes: self.min_sizes,
        }
    }
    fn in_window(&self, c: f64) -> bool {
        c >= self.thresholds().c_lo && c <= self.thresholds().c_hi
    }
}

/// Optima of one kind ("sq" or "raw") and the laws fitted to those in the window.
#[derive(Clone, Debug)]
pub struct Variant {
    pub optima: Vec<Optimum>,
    /// Whether each optimum entered the laws (window, convexity, range).
    pub used: Vec<bool>,
    /// "D", "M", "N", "L" vs C; "L_vs_D", "M_vs_D" token-bound.
    pub laws: BTreeMap<&'static str, PowerLaw>,
}

/// One FLOP-counting method of one noise type.
#[derive(Clone, Debug)]
pub struct MethodFit {
    /// "method1" (M = 6N + 12LdT) or "6n".
    pub method: &'static str,
    /// Every valid (run, budget) row, before selection.
    pub all_rows: Vec<FlopRow>,
    /// The §3.5 selection.
    pub rows: Vec<FlopRow>,
    pub sq: Variant,
    pub raw: Variant,
    pub surface: Result<Surface, String>,
    /// The direct frontier: raw minima over every row in the frontier window.
    pub frontier: Result<Frontier, String>,
    /// ln M = c + k·ln N over this noise type's sizes (the M* ↔ N* conversion).
    pub conversion: Result<Slope, String>,
}

/// Everything fitted for one noise type.
#[derive(Clone, Debug)]
pub struct NoiseFit {
    pub noise: String,
    pub shift: f64,
    pub methods: Vec<MethodFit>,
    pub batch_law: Result<BatchLaw, String>,
    pub lr_law: Result<LrLaw, String>,
    /// η* per (N, C, B) where the LR grid brackets it (Method 1 rows).
    pub lr_vertices: Vec<LrVertex>,
}

/// The whole analysis.
#[derive(Clone, Debug)]
pub struct Analysis {
    pub fits: Vec<Fitted>,
    /// (run, why) of runs left out.
    pub skipped: Vec<(String, String)>,
    pub warnings: Vec<String>,
    pub budgets: Vec<f64>,
    pub losses: Vec<f64>,
    pub iso_loss: Vec<LossRow>,
    pub noises: Vec<NoiseFit>,
    pub batch_law_all: Result<BatchLaw, String>,
    pub cooldown: Result<Cooldown, String>,
    /// Bytes per token for bits/byte: the flag, else the runs' mean; Err says why none.
    pub bytes_per_token: Result<f64, String>,
}

/// Fits curves to the runs, dropping (with a reason) cooled runs, unfittable runs and
/// duplicate configurations (the lowest final EMA-ELBO is kept, as the reference does).
fn fit_runs(runs: &[Run], min_step: f64, skipped: &mut Vec<(String, String)>) -> Vec<Fitted> {
    use rayon::prelude::*;
    let fitted: Vec<(Run, Result<Curve, String>)> = runs
        .par_iter()
        .filter(|r| r.cooldown <= 0.0)
        .map(|r| (r.clone(), fit_curve(&r.history, min_step)))
        .collect();
    for r in runs.iter().filter(|r| r.cooldown > 0.0) {
        skipped.push((
            r.run.clone(),
            "cooled down (cooldown > 0): used only for the cooldown factor".into(),
        ));
    }
    let mut best: BTreeMap<(String, u64, u64, u64, u64, u64), Fitted> = BTreeMap::new();
    for (run, c) in fitted {
        let curve = match c {
            Ok(c) => c,
            Err(why) => {
                skipped.push((run.run.clone(), format!("no loss curve: {why}")));
                continue;
            }
        };
        let ema = numeric::ema_last(run.history.iter().map(|p| p.1), 0.96);
        let k = (
            run.noise.clone(),
            run.layers,
            run.hidden,
            run.batch,
            run.lr.to_bits(),
            run.steps,
        );
        let f = Fitted { run, curve, ema };
        match best.get(&k) {
            Some(old) if old.ema <= f.ema => {
                skipped.push((f.run.run.clone(), format!("duplicate of {}", old.run.run)))
            }
            Some(old) => {
                skipped.push((old.run.run.clone(), format!("duplicate of {}", f.run.run)));
                best.insert(k, f);
            }
            None => {
                best.insert(k, f);
            }
        }
    }
    best.into_values().collect()
}

/// Runs the analysis on parsed results.
pub fn analyze(results: &Results, args: &FitArgs) -> Analysis {
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    let fits = fit_runs(&results.runs, args.thresholds().min_step, &mut skipped);
    for (run, why) in &skipped {
        warnings.push(format!("run {run} skipped: {why}"));
    }
    let budgets = if args.budget_grid.is_empty() {
        let range = fits.iter().flat_map(|f| {
            let bt = f.run.batch_tokens();
            [false, true].map(|six| {
                let m = f.run.m(six) * bt;
                (
                    m * args.thresholds().min_step.max(1.0),
                    m * f.run.steps as f64,
                )
            })
        });
        let (lo, hi) = range.fold((f64::INFINITY, 0.0f64), |(a, b), (l, h)| {
            (a.min(l), b.max(h))
        });
        if lo < hi {
            numeric::log_grid(lo, hi, args.budgets)
        } else {
            Vec::new()
        }
    } else {
        args.budget_grid.clone()
    };
    let losses = if args.loss_grid.is_empty() {
        let ends = fits.iter().map(|f| {
            let (s0, s1) = (args.thresholds().min_step.max(1.0), f.run.steps as f64);
            (f.curve.at(s1), f.curve.at(s0))
        });
        let (lo, hi) = ends.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (l, h)| {
            (a.min(l), b.max(h))
        });
        if lo > 0.0 && lo < hi && hi.is_finite() {
            numeric::log_grid(lo, hi, args.losses)
        } else {
            Vec::new()
        }
    } else {
        args.loss_grid.clone()
    };
    let iso_loss = iso_loss_rows(&fits, &losses, args.thresholds().min_step);
    let mut names: Vec<(f64, String)> = fits
        .iter()
        .map(|f| (f.run.shift, f.run.noise.clone()))
        .collect();
    names.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    names.dedup_by(|a, b| a.1 == b.1);
    let seq = fits.first().map_or(1.0, |f| f.run.seq as f64);
    let noises: Vec<NoiseFit> = names
        .into_iter()
        .map(|(shift, noise)| {
            let mine: Vec<Fitted> = fits
                .iter()
                .filter(|f| f.run.noise == noise)
                .cloned()
                .collect();
            let methods = ["method1", "6n"]
                .map(|method| fit_method(&mine, &noise, method, &budgets, args, &mut warnings))
                .to_vec();
            let loss_rows: Vec<&LossRow> = iso_loss.iter().filter(|r| r.noise == noise).collect();
            let batch_law = batch::batch_law(&loss_rows, seq, args.max_batch);
            let lr_rows: Vec<&FlopRow> = methods[0]
                .all_rows
                .iter()
                .filter(|r| r.batch < args.max_batch)
                .collect();
            let lr_law = match &batch_law {
                Ok((b, _)) => batch::lr_law(&lr_rows, seq, b),
                Err(_) => Err("needs the B*(D) law".into()),
            };
            let lr_vertices = batch::lr_vertices(&lr_rows, seq);
            NoiseFit {
                noise,
                shift,
                methods,
                batch_law,
                lr_law,
                lr_vertices,
            }
        })
        .collect();
    let all_loss: Vec<&LossRow> = iso_loss.iter().collect();
    let batch_law_all = batch::batch_law(&all_loss, seq, args.max_batch);
    let cooldown = batch::cooldown(&results.runs);
    let bytes_per_token = match args.bytes_per_token {
        Some(b) if b > 0.0 && b.is_finite() => Ok(b),
        Some(b) => Err(format!("--bytes_per_token {b} is not a positive number")),
        None => {
            let v: Vec<Option<f64>> = results.runs.iter().map(|r| r.bytes_per_token).collect();
            common_bytes_per_token(&v).and_then(|b| {
                b.ok_or_else(|| "no run reports bytes_per_token; pass --bytes_per_token".into())
            })
        }
    };
    if let Err(why) = &bytes_per_token {
        warnings.push(format!("no bits/byte plots: {why}"));
    }
    Analysis {
        fits,
        skipped,
        warnings,
        budgets,
        losses,
        iso_loss,
        noises,
        batch_law_all,
        cooldown,
        bytes_per_token,
    }
}

fn fit_method(
    fits: &[Fitted],
    noise: &str,
    method: &'static str,
    budgets: &[f64],
    args: &FitArgs,
    warnings: &mut Vec<String>,
) -> MethodFit {
    let all_rows = iso_flop_rows(fits, budgets, args.thresholds().min_step, method == "6n");
    let rows = select(&all_rows, &args.selection());
    let label = format!("{noise} {method}");
    let sq_opt = sq_optima(&rows, &label, warnings);
    let sq_used: Vec<bool> = sq_opt
        .iter()
        .map(|o| o.convex && (o.in_range || !args.strict_range) && args.in_window(o.c_opt))
        .collect();
    let raw_opt = raw_optima(&rows);
    let raw_used: Vec<bool> = raw_opt.iter().map(|o| args.in_window(o.c)).collect();
    let sq = variant(sq_opt, sq_used, args, &format!("{label} sq"), warnings);
    let raw = variant(raw_opt, raw_used, args, &format!("{label} raw"), warnings);
    let win: Vec<&FlopRow> = rows.iter().filter(|r| args.in_window(r.c)).collect();
    let col = |f: fn(&FlopRow) -> f64| win.iter().map(|r| f(r)).collect::<Vec<f64>>();
    let surface = fit_surface(
        &col(|r| r.m),
        &col(|r| r.tokens),
        &col(|r| r.loss),
        args.delta(),
    )
    .ok_or_else(|| {
        format!(
            "{} selected rows in the window (need 6) or no fit",
            win.len()
        )
    });
    let t = args.thresholds();
    // the frontier takes every row the selection would keep, whatever the sizes per budget
    let one_size = Selection {
        min_sizes: 1,
        ..args.selection()
    };
    let frontier = direct_frontier(
        &select(&all_rows, &one_size),
        t.frontier_lo,
        t.frontier_hi,
        args.bootstrap,
        args.seed,
        args.delta(),
    );
    if let Err(why) = &frontier {
        warnings.push(format!("{label}: no direct frontier: {why}"));
    }
    let sizes: Vec<(f64, f64)> = fits
        .iter()
        .map(|f| (f.run.n_params, f.run.m(method == "6n")))
        .collect();
    let conversion = conversion_law(&sizes);
    MethodFit {
        method,
        all_rows,
        rows,
        sq,
        raw,
        surface,
        frontier,
        conversion,
    }
}

fn variant(
    optima: Vec<Optimum>,
    used: Vec<bool>,
    args: &FitArgs,
    label: &str,
    warnings: &mut Vec<String>,
) -> Variant {
    let pick = |f: fn(&Optimum) -> f64| -> Vec<f64> {
        optima
            .iter()
            .zip(&used)
            .filter(|p| *p.1)
            .map(|p| f(p.0))
            .collect()
    };
    let c = pick(|o| o.c);
    let d = pick(|o| o.d);
    let specs: [(&'static str, &[f64], Vec<f64>); 6] = [
        ("D", &c, d.clone()),
        ("M", &c, pick(|o| o.m)),
        ("N", &c, pick(|o| o.n)),
        ("L", &c, pick(|o| o.loss)),
        ("L_vs_D", &d, pick(|o| o.loss)),
        ("M_vs_D", &d, pick(|o| o.m)),
    ];
    let mut laws = BTreeMap::new();
    for (name, x, y) in specs {
        match power_law(x, &y, args.bootstrap, args.seed, args.delta()) {
            Some(l) => {
                laws.insert(name, l);
            }
            None => warnings.push(format!(
                "{label}: law {name} not fitted: {} usable optima in the window (need 3)",
                y.len()
            )),
        }
    }
    Variant { optima, used, laws }
}

/// `gidd fit`: read, analyze, write fit.json and the charts, print the summary.
pub fn run(args: &FitArgs) -> anyhow::Result<()> {
    let results = Results::read(&args.results)?;
    let a = analyze(&results, args);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", args.out.display()))?;
    let json = output::fit_json(&a, args);
    let path = args.out.join("fit.json");
    let text = serde_json::to_string_pretty(&json)? + "\n";
    gidd_ports::write_atomic(&path, text.as_bytes())?;
    let charts = if args.no_plots {
        Vec::new()
    } else {
        let mut c = plots::write_all(&a, args)?;
        c.extend(plots_more::write_more(&a, &results.runs, args)?);
        c
    };
    for w in &a.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", output::summary(&a));
    println!(
        "wrote {} and {} charts in {}",
        path.display(),
        charts.len(),
        args.out.display()
    );
    Ok(())
}
