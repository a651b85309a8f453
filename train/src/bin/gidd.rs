//! The `gidd` command: train | generate | audit | info | bench.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use gidd_engine::DType;
use gidd_train::generate::Canvas;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "gidd",
    version,
    about = "Train, sample, evaluate and audit GIDD discrete-diffusion language models."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a GIDD model (default: the tiny preset on the embedded corpus).
    Train(gidd_train::trainer::TrainArgs),
    /// Compare a checkpoint with a golden file written by the reference; non-zero exit on any failure.
    Audit {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        golden: PathBuf,
        #[arg(long, default_value = "f32")]
        dtype: String,
    },
    /// Print a checkpoint's config, parameter count and FLOPs per token.
    Info {
        #[arg(long)]
        checkpoint: PathBuf,
    },
    /// Generate text with a trained or released model.
    Generate(gidd_train::generate_cli::GenArgs),
    /// Self-correction: re-predict a text and replace its least-confident tokens.
    Correct(CorrectArgs),
    /// Negative ELBO per token of a dataset (nats, bits, perplexity bound) with its standard error.
    Eval(gidd_train::eval::EvalArgs),
    /// Write the training step the train flags describe as a StableHLO module.
    ExportHlo {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        train: gidd_train::trainer::TrainArgs,
    },
    /// Benchmarks: `gidd bench kernels [--json]` or `gidd bench step [flags of torch_gidd.py]`.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// GEMM and attention kernels: time, GFLOP/s, fraction of peak.
    Kernels {
        #[arg(long)]
        json: bool,
    },
    /// One step of a synthetic model; one JSON line (for shared/baselines/run_bench.py).
    Step(gidd_train::bench_step::StepArgs),
    /// Sampling throughput, and what the KV cache and logits reuse save (same tokens generated).
    Generate(gidd_train::bench_generate::GenBenchArgs),
}

#[derive(clap::Args)]
#[command(rename_all = "snake_case")]
struct CorrectArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long)]
    text: String,
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Step budget.
    #[arg(long, default_value_t = 16)]
    steps: usize,
    /// Tokens replaced per step.
    #[arg(long, default_value_t = 1)]
    tokens_per_step: usize,
    /// 0 = argmax.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Train(a) => gidd_train::trainer::run(&a),
        Cmd::Audit {
            checkpoint,
            golden,
            dtype,
        } => audit(&checkpoint, &golden, &dtype),
        Cmd::Info { checkpoint } => info(&checkpoint),
        Cmd::Generate(g) => gidd_train::generate_cli::run(&g),
        Cmd::Eval(e) => gidd_train::eval::run(&e),
        Cmd::Correct(c) => correct(&c),
        Cmd::ExportHlo { out, train } => export_hlo(&out, &train),
        Cmd::Bench {
            what: BenchCmd::Kernels { json },
        } => {
            gidd_train::bench::run(json);
            Ok(())
        }
        Cmd::Bench {
            what: BenchCmd::Step(a),
        } => gidd_train::bench_step::run(&a),
        Cmd::Bench {
            what: BenchCmd::Generate(a),
        } => gidd_train::bench_generate::run(&a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn audit(checkpoint: &std::path::Path, golden: &std::path::Path, dtype: &str) -> Result<()> {
    let rows = gidd_train::audit::audit(
        checkpoint,
        golden,
        gidd_train::session::parse_audit_dtype(dtype)?,
    )?;
    print!("{}", gidd_train::audit::format_table(&rows));
    if rows.iter().any(|r| !r.pass) {
        bail!("audit failed");
    }
    Ok(())
}

fn info(checkpoint: &std::path::Path) -> Result<()> {
    let cfg = gidd_train::session::load_config(checkpoint)?;
    println!("{}", serde_json::to_string_pretty(&cfg.to_json())?);
    println!(
        "parameters: {} ({:.3}M)",
        cfg.num_params(),
        cfg.num_params() as f64 / 1e6
    );
    let l = cfg.max_position_embeddings;
    println!(
        "forward FLOPs per token at L={l}: {:.4e} (train step: 3x = {:.4e})",
        cfg.flops_per_token(l),
        3.0 * cfg.flops_per_token(l)
    );
    Ok(())
}

fn export_hlo(out: &std::path::Path, a: &gidd_train::trainer::TrainArgs) -> Result<()> {
    let p = gidd_train::trainer::step_program(a)?;
    let text = if a.devices > 1 {
        let part = gidd_train::trainer::partitioner(a)?;
        gidd_xla::fsdp_module(&p, a.devices, part)?
    } else {
        gidd_xla::emit_module(&p)?
    };
    gidd_ports::write_atomic(out, text.as_bytes())?;
    eprintln!(
        "wrote {} ({} bytes, {} inputs, {} outputs)",
        out.display(),
        text.len(),
        p.inputs.len(),
        p.outputs.len()
    );
    Ok(())
}

fn correct(a: &CorrectArgs) -> Result<()> {
    let m = gidd_train::session::load_checkpoint(&a.checkpoint)?;
    let Some(tok) = gidd_train::session::load_tokenizer(&a.checkpoint, a.tokenizer.as_deref())?
    else {
        bail!(
            "{} not found: self-correction reads text, pass --tokenizer",
            a.checkpoint.join("tokenizer.json").display()
        );
    };
    let mut ids = vec![0u32];
    ids.extend(tok.encode(&a.text)?);
    let mut canvas = Canvas::new(
        &m.cfg,
        &m.params,
        1,
        m.cfg.max_position_embeddings,
        DType::F32,
    )?;
    let (out, changes) = gidd_train::correct::self_correct(
        &mut canvas,
        &ids,
        1,
        a.steps,
        a.tokens_per_step,
        a.temperature,
        a.seed,
    )?;
    for c in &changes {
        eprintln!(
            "step {}: position {}: {:?} -> {:?}",
            c.step,
            c.position,
            tok.decode(&[c.from])?,
            tok.decode(&[c.to])?
        );
    }
    eprintln!("{} changes", changes.len());
    println!("{}", tok.decode(&out)?);
    Ok(())
}
