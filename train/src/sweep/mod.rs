//! `gidd sweep`: the paper's scaling sweep (SCALING.md sections 1-3) as a command.
//!
//! Each run of the grid is an ordinary `gidd train` run directory under `<out>/runs/<name>`,
//! trained by a child `gidd train` process: processes give `--jobs N` parallel runs with
//! their own thread pools (the trainer's rayon pool is process-global), and a killed sweep
//! leaves runs that the next invocation skips (final checkpoint present) or resumes (the
//! latest checkpoint). After every finished run `<out>/results.jsonl` and `results.csv`
//! are rewritten atomically with every finished run, in plan order.

pub mod accounting;
pub mod grid;
pub mod presets;
pub mod results;

use crate::backend::BackendArgs;
use crate::trainer::TrainArgs;
use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use grid::{Grid, RunPlan};
use results::Record;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// `--preset` of `gidd sweep`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepPreset {
    /// A ladder of tiny sizes × masked, balanced, uniform on rows of 32 of the embedded
    /// corpus at constant LR, each size to its own budget: about an hour on a 2-core CPU
    /// (see --dry_run).
    Toy,
    /// 2 tiny sizes × masked, uniform × 30 steps: about a minute (the CI check).
    Smoke,
    /// The reference's grid (SCALING.md section 2): 5 sizes × 5 noise types × B 8…1024 ×
    /// their LRs, 80k steps (40k for large batches), rows of 2048: 510 runs, for a cluster.
    Paper,
}

/// Flags of `gidd sweep`.
#[derive(clap::Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct SweepArgs {
    /// The grid as JSON: sizes, noise, batch_sizes, lrs, steps or max_flops, warmup, seq (see README).
    #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
    pub grid: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub preset: Option<SweepPreset>,
    /// The sweep directory: runs/<name>/ per run, results.jsonl, results.csv.
    #[arg(long, default_value = "sweep")]
    pub out: PathBuf,
    /// Runs trained at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Threads of each run (default: this machine's cores / jobs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the plan (runs, N, M, C) and the estimated time, and train nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Train nothing: write <out>/results_partial.jsonl and .csv from what the run
    /// directories hold now, finished runs and unfinished ones up to their last logged step
    /// (for `gidd fit` while a sweep is still running).
    #[arg(long, conflicts_with = "dry_run")]
    pub collect: bool,
    /// The time estimate's model of one step: this many GFLOP/s of the trainer's own count
    /// (3× forward FLOPs, embeddings and head included) … (defaults: a least-squares line
    /// through `gidd train` step times of L1 d32 … L4 d128, B 16, T 64, V 1024 on 2 cores:
    /// 30, 60, 103, 175 ms)
    #[arg(long, default_value_t = 40.0)]
    pub est_gflops: f64,
    /// … plus this fixed cost per step in milliseconds.
    #[arg(long, default_value_t = 23.0)]
    pub est_step_ms: f64,
    #[command(flatten)]
    pub exec: BackendArgs,
    /// Flags for every run's `gidd train`, after `--` (e.g. `-- --data_files data/ --tokenizer tok.json`).
    #[arg(last = true)]
    pub train_args: Vec<String>,
}

/// Lets `TrainArgs` parse a run's flag list before any child is started.
#[derive(Parser)]
#[command(name = "gidd train", no_binary_name = true)]
struct TrainFlags {
    #[command(flatten)]
    a: TrainArgs,
}

/// The backend flags as `gidd train` reads them, so a sweep runs where it was told to.
fn backend_flags(e: &BackendArgs) -> Vec<String> {
    let name = |v: Option<clap::builder::PossibleValue>| {
        v.map(|p| p.get_name().to_string()).unwrap_or_default()
    };
    let mut v = vec![
        "--backend".into(),
        name(e.backend.to_possible_value()),
        "--devices".into(),
        e.devices.to_string(),
        "--partitioner".into(),
        name(e.partitioner.to_possible_value()),
    ];
    if let Some(p) = &e.pjrt_plugin {
        v.extend(["--pjrt_plugin".into(), p.display().to_string()]);
    }
    v
}

/// Our transformer's exact parameter count (embeddings and head included) and training
/// FLOPs per token (3× `GiddConfig::flops_per_token`), for the time estimate.
fn ours(r: &RunPlan, vocab: usize) -> Result<(f64, f64)> {
    let cfg = gidd_model::GiddConfig::from_json(serde_json::json!({
        "vocab_size": vocab, "hidden_size": r.hidden, "intermediate_size": 4 * r.hidden,
        "num_hidden_layers": r.layers, "num_attention_heads": r.heads, "head_dim": r.hidden / r.heads,
        "max_position_embeddings": r.seq, "attention_bias": true, "mlp_bias": true,
    }))
    .map_err(|e| anyhow::anyhow!("run {}: {e}", r.name))?;
    Ok((cfg.num_params() as f64, 3.0 * cfg.flops_per_token(r.seq)))
}

/// The latest `checkpoint-K` under a run directory, if any.
fn latest_checkpoint(dir: &Path) -> Option<(usize, PathBuf)> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let k = e
                .file_name()
                .to_str()?
                .strip_prefix("checkpoint-")?
                .parse()
                .ok()?;
            e.path().join("config.json").exists().then(|| (k, e.path()))
        })
        .max_by_key(|(k, _)| *k)
}

pub fn run(a: &SweepArgs) -> Result<()> {
    let grid = match (&a.grid, a.preset) {
        (Some(p), _) => Grid::from_file(p)?,
        (None, Some(SweepPreset::Toy)) => presets::toy(),
        (None, Some(SweepPreset::Smoke)) => presets::smoke(),
        (None, Some(SweepPreset::Paper)) => presets::paper(),
        (None, None) => bail!("give --grid FILE or --preset toy|smoke|paper"),
    };
    let plan = grid.plan()?;
    if a.jobs == 0 {
        bail!("--jobs 0: give at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = a.threads.unwrap_or((cores / a.jobs).max(1));
    let mut common = backend_flags(&a.exec);
    common.extend(["--threads".into(), threads.to_string()]);
    common.extend(grid.extra_args.iter().cloned());
    common.extend(a.train_args.iter().cloned());
    // Every run's flags must parse before the first is started; the vocabulary is theirs.
    let mut vocab = 0;
    for r in &plan {
        let mut flags = r.train_args(&a.out.join("runs").join(&r.name));
        flags.extend(common.iter().cloned());
        let t = TrainFlags::try_parse_from(&flags)
            .map_err(|e| anyhow::anyhow!("run {}: the train flags do not parse: {e}", r.name))?;
        vocab = t.a.vocab_size;
    }
    print_plan(&plan, vocab, a)?;
    if a.dry_run {
        return Ok(());
    }
    if a.collect {
        let mut recs = Vec::new();
        for r in &plan {
            let dir = a.out.join("runs").join(&r.name);
            if let Some(rec) = results::Record::read_partial(r, &dir, vocab)? {
                recs.push(rec);
            }
        }
        let done = recs
            .iter()
            .filter(|x| x.steps == plan_steps(&plan, &x.run))
            .count();
        results::write_named(&a.out, "results_partial", &recs)?;
        eprintln!(
            "gidd sweep: {} of {} runs have a history ({done} finished); wrote {}",
            recs.len(),
            plan.len(),
            a.out.join("results_partial.jsonl").display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(a.out.join("runs"))
        .with_context(|| format!("cannot create {}", a.out.join("runs").display()))?;
    let exe =
        std::env::current_exe().context("cannot find the gidd executable to run `gidd train`")?;
    let done: Mutex<Vec<Option<Record>>> = Mutex::new(vec![None; plan.len()]);
    let mut todo = vec![];
    for (i, r) in plan.iter().enumerate() {
        let dir = a.out.join("runs").join(&r.name);
        if results::final_checkpoint(&dir, r.steps)
            .join("config.json")
            .exists()
        {
            let rec = Record::read(r, &dir)?;
            done.lock().map_err(|_| anyhow::anyhow!("poisoned"))?[i] = Some(rec);
        } else {
            todo.push(i);
        }
    }
    let skipped = plan.len() - todo.len();
    eprintln!("gidd sweep: {} runs, {skipped} already finished, {} to train, {} at once, {threads} threads each", plan.len(), todo.len(), a.jobs);
    let write = |d: &[Option<Record>]| -> Result<()> {
        let recs: Vec<Record> = d.iter().flatten().cloned().collect();
        results::write(&a.out, &recs)
    };
    write(&done.lock().map_err(|_| anyhow::anyhow!("poisoned"))?)?;
    let next = AtomicUsize::new(0);
    let failed: Mutex<Vec<String>> = Mutex::new(vec![]);
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..a.jobs.min(todo.len()) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = todo.get(k) else { break };
                let r = &plan[i];
                let dir = a.out.join("runs").join(&r.name);
                let res = train_one(&exe, r, &dir, &common).and_then(|()| Record::read(r, &dir));
                match res {
                    Ok(rec) => {
                        eprintln!(
                            "  [{}/{}] {} done: final elbo {:.4}, ema {:.4} ({:.0}s into the sweep)",
                            k + 1,
                            todo.len(),
                            r.name,
                            rec.final_elbo,
                            rec.ema_elbo,
                            t0.elapsed().as_secs_f64()
                        );
                        let Ok(mut d) = done.lock() else { break };
                        d[i] = Some(rec);
                        if let Err(e) = write(&d) {
                            eprintln!("  cannot write the results: {e:#}");
                        }
                    }
                    Err(e) => {
                        eprintln!("  {} failed: {e:#}", r.name);
                        if let Ok(mut f) = failed.lock() {
                            f.push(r.name.clone());
                        }
                    }
                }
            });
        }
    });
    let failed = failed
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    eprintln!(
        "gidd sweep: {} of {} runs finished in {:.1}s; results in {}",
        plan.len() - failed.len(),
        plan.len(),
        t0.elapsed().as_secs_f64(),
        a.out.join("results.jsonl").display()
    );
    if !failed.is_empty() {
        bail!(
            "{} runs failed (their train.log says why; rerun to retry them): {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// The planned steps of the run named `name`.
fn plan_steps(plan: &[RunPlan], name: &str) -> usize {
    plan.iter().find(|r| r.name == name).map_or(0, |r| r.steps)
}

/// Trains one run as a child `gidd train`, resuming from its latest checkpoint when a
/// killed sweep left one; its output goes to `<dir>/train.log`.
fn train_one(exe: &Path, r: &RunPlan, dir: &Path, common: &[String]) -> Result<()> {
    let resume = latest_checkpoint(dir);
    if resume.is_none() && dir.exists() {
        // started but never checkpointed: start over rather than append to its metrics
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join("train.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut c = std::process::Command::new(exe);
    c.arg("train").args(r.train_args(dir)).args(common);
    if let Some((k, ck)) = &resume {
        eprintln!("  {}: resuming from step {k}", r.name);
        c.arg("--resume_from_checkpoint").arg(ck);
    }
    c.stdout(log.try_clone()?)
        .stderr(log)
        .stdin(std::process::Stdio::null());
    let st = c
        .status()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    if !st.success() {
        bail!("gidd train exited with {st}; see {}", log_path.display());
    }
    Ok(())
}

fn print_plan(plan: &[RunPlan], vocab: usize, a: &SweepArgs) -> Result<()> {
    println!(
        "{:<36} {:>10} {:>10} {:>7} {:>10} {:>10} {:>10}",
        "run", "N", "M", "steps", "tokens", "C", "est s"
    );
    let (mut total_c, mut total_s) = (0.0, 0.0);
    for r in plan {
        let (_, train_flops) = ours(r, vocab)?;
        let per_step =
            train_flops * (r.batch * r.seq) as f64 / (a.est_gflops * 1e9) + a.est_step_ms / 1e3;
        let est = per_step * r.steps as f64;
        total_c += r.flops();
        total_s += est;
        println!(
            "{:<36} {:>10.4e} {:>10.4e} {:>7} {:>10.4e} {:>10.4e} {:>10.0}",
            r.name,
            r.n_params(),
            r.flops_per_token(),
            r.steps,
            r.tokens(),
            r.flops(),
            est
        );
    }
    let jobs = a.jobs.max(1) as f64;
    println!(
        "{} runs, total C {:.4e} FLOPs (Method 1, SCALING's N), estimated {:.1} min at {} GFLOP/s + {} ms/step per run, {} at once",
        plan.len(),
        total_c,
        total_s / 60.0 / jobs,
        a.est_gflops,
        a.est_step_ms,
        a.jobs
    );
    Ok(())
}
