//! The `gidd` command: train | sweep | fit | generate | correct | eval | serve | audit | check | info | export-hlo | bench.

mod eval;
mod generate;
mod info;
mod requests;
mod serve;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use gidd_model::generate::Canvas;
use gidd_train::backend::{BackendArgs, Precision};
use gidd_train::model_dir::{load_checkpoint, load_tokenizer};
use gidd_train::with_executor;
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
    /// The scaling sweep: every run of a grid (sizes × noise types × batch sizes × LRs) as a
    /// `gidd train` run under --out/runs/, resumable, then results.jsonl and results.csv
    /// (SCALING's N, FLOPs per token, tokens, final and EMA ELBO, ELBO history) for `gidd fit`.
    Sweep(gidd_train::sweep::SweepArgs),
    /// Compare a checkpoint with a golden file written by the reference; non-zero exit on any failure.
    Audit {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        golden: PathBuf,
        /// The reference's optimizer run (default: optim_golden.safetensors beside --golden, when there).
        #[arg(long)]
        optim_golden: Option<PathBuf>,
        /// The reference's likelihood run (default: likelihood_golden.safetensors beside --golden, when there).
        #[arg(long)]
        likelihood_golden: Option<PathBuf>,
        /// f32, bf16, f16, or f64 (the audit precision: rounding taken out of our side).
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        dtype: Precision,
        #[command(flatten)]
        exec: BackendArgs,
    },
    /// Op conformance of an executor: every op of the engine on random inputs of awkward
    /// shapes (forward and gradients, f32, bf16 and f64) against the cpu executor, exact
    /// integer, conversion and random-draw checks, and the golden audit of
    /// tests/golden/mask-small; one row per check, non-zero exit on any failure.
    Check(gidd_train::check::CheckArgs),
    /// Check a checkpoint (every tensor its config implies, right shapes and dtypes, nothing
    /// extra, files as long as their headers say) and print its config, parameter count and
    /// FLOPs per token; non-zero exit naming the first problem.
    ///
    /// With --nproc N: the per-rank memory of FSDP training (parameter, optimizer and
    /// gradient shards, the step's gathered copies, an activation estimate) for the released
    /// 3B and 10B configs, and the checkpoint's when one is given, at world sizes 1, 2, 4, ..
    /// up to N.
    Info {
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long)]
        nproc: Option<usize>,
        /// Tokens per row of the activation estimate.
        #[arg(long, default_value_t = 512)]
        seq: usize,
    },
    /// Write a checkpoint (sharded by `train --nproc`, or not) as a single-rank one: HF
    /// weights (model.safetensors, config.json), optimizer state, trainer state, tokenizer.
    Consolidate {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate text with a trained or released model.
    Generate(generate::GenArgs),
    /// Self-correction: re-predict a text and replace its least-confident tokens.
    Correct(CorrectArgs),
    /// Negative ELBO per token of a dataset (nats, bits, perplexity bound) with its standard error.
    Eval(eval::EvalArgs),
    /// An OpenAI-compatible HTTP server: /v1/completions (generation, streaming, and
    /// echo scoring with the ELBO of `eval --requests`), /v1/models, /health.
    Serve(serve::ServeArgs),
    /// Write the training step the train flags describe as a StableHLO module.
    ExportHlo {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        train: gidd_train::trainer::TrainArgs,
    },
    /// Benchmarks: `gidd bench kernels [--json]`, `gidd bench step [flags of torch_gidd.py]`,
    /// `gidd bench generate`, `gidd bench load --config 3b`, `gidd bench corpus`.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Scaling laws from `gidd sweep` results (JSONL): per-run loss curves, iso-FLOP and
    /// iso-loss tables, compute-optimal power laws with bootstrap intervals, the loss
    /// surface, batch-size/LR laws and the cooldown factor; fit.json and charts in --out.
    Fit(gidd_train::scaling::FitArgs),
}

#[derive(Subcommand)]
enum BenchCmd {
    /// GEMM, attention, softmax, rms_norm and loss kernels: time, GFLOP/s, fraction of peak
    /// (cpu: gidd-kernels' functions; xla, wgpu, cuda: one-op programs on the executor).
    Kernels {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        exec: gidd_train::backend::BackendArgs,
        /// The largest square GEMM of a device table (4096 on a GPU; lavapipe wants 1024).
        #[arg(long = "max_gemm", alias = "max-gemm", default_value_t = 4096)]
        max_gemm: usize,
        /// The longest attention sequence of a device table.
        #[arg(long = "max_seq", alias = "max-seq", default_value_t = 2048)]
        max_seq: usize,
        /// cpu: the GEMM rows only (no attention rows).
        #[arg(long = "gemm_only", alias = "gemm-only")]
        gemm_only: bool,
    },
    /// One step of a synthetic model; one JSON line (for shared/baselines/run_bench.py).
    Step(gidd_benches::step::StepArgs),
    /// Sampling throughput, and what the KV cache and logits reuse save (same tokens generated).
    Generate(gidd_benches::generate::GenBenchArgs),
    /// A released-size model (3b, 10b; synthetic bf16 weights, created when missing) loaded
    /// by mmap: create and load time, resident memory (file-backed vs anonymous), time to
    /// the first block of generation, tokens/s.
    Load(gidd_benches::load::LoadBenchArgs),
    /// The embedded corpus: entropy per word and token, tokens per word, build time.
    Corpus,
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
    #[command(flatten)]
    exec: BackendArgs,
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Train(a) => gidd_train::trainer::run(&a),
        Cmd::Sweep(a) => gidd_train::sweep::run(&a),
        Cmd::Audit {
            checkpoint,
            golden,
            optim_golden,
            likelihood_golden,
            dtype,
            exec,
        } => {
            let mut files = gidd_train::audit::GoldenFiles::beside(&golden);
            files.optim = optim_golden.or(files.optim);
            files.likelihood = likelihood_golden.or(files.likelihood);
            audit(&checkpoint, &files, dtype, &exec)
        }
        Cmd::Check(a) => gidd_train::check::main(&a),
        Cmd::Info {
            checkpoint,
            nproc,
            seq,
        } => info::run(checkpoint.as_deref(), nproc, seq),
        Cmd::Consolidate { checkpoint, out } => gidd_train::trainer::consolidate(&checkpoint, &out)
            .map(|()| {
                eprintln!("wrote {}", out.display());
            }),
        Cmd::Generate(g) => generate::run(&g),
        Cmd::Eval(e) => eval::run(&e),
        Cmd::Serve(s) => serve::run(&s),
        Cmd::Correct(c) => correct(&c),
        Cmd::ExportHlo { out, train } => export_hlo(&out, &train),
        Cmd::Fit(a) => gidd_train::scaling::run(&a),
        Cmd::Bench {
            what:
                BenchCmd::Kernels {
                    json,
                    exec,
                    max_gemm,
                    max_seq,
                    gemm_only,
                },
        } => {
            if exec.backend == gidd_train::backend::Backend::Cpu {
                gidd_benches::kernels::run(json, gemm_only);
                Ok(())
            } else {
                let sizes = gidd_benches::kernels_device::Sizes { max_gemm, max_seq };
                exec.open("benchmarking kernels").and_then(|o| {
                    gidd_train::with_executor!(o, e => gidd_benches::kernels_device::run_on(&e, sizes, json))
                })
            }
        }
        Cmd::Bench {
            what: BenchCmd::Corpus,
        } => gidd_benches::corpus::run(),
        Cmd::Bench {
            what: BenchCmd::Step(a),
        } => gidd_benches::step::run(&a),
        Cmd::Bench {
            what: BenchCmd::Generate(a),
        } => gidd_benches::generate::run(&a),
        Cmd::Bench {
            what: BenchCmd::Load(a),
        } => gidd_benches::load::run(&a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn audit(
    checkpoint: &std::path::Path,
    files: &gidd_train::audit::GoldenFiles,
    dtype: Precision,
    exec: &BackendArgs,
) -> Result<()> {
    let rows = with_executor!(exec.open("auditing")?, e => {
        gidd_train::audit::audit_files(&e, checkpoint, files, dtype.dtype())?
    });
    print!("{}", gidd_train::audit::format_table(&rows));
    if rows.iter().any(|r| !r.pass) {
        bail!("audit failed");
    }
    Ok(())
}

fn export_hlo(out: &std::path::Path, a: &gidd_train::trainer::TrainArgs) -> Result<()> {
    let p = gidd_train::trainer::step_program(a)?;
    let text = if a.exec.devices > 1 {
        gidd_xla::fsdp_module(&p, a.exec.devices, a.exec.partitioner.into())?
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
    a.exec.check("self-correcting")?;
    let m = load_checkpoint(&a.checkpoint)?;
    let Some(tok) = load_tokenizer(&a.checkpoint, a.tokenizer.as_deref())? else {
        bail!(
            "{} not found: self-correction reads text, pass --tokenizer",
            a.checkpoint.join("tokenizer.json").display()
        );
    };
    let mut ids = vec![gidd_model::schedule::BOS];
    ids.extend(tok.encode(&a.text)?);
    let (out, changes) = with_executor!(a.exec.open("self-correcting")?, exec => {
        let mut canvas = Canvas::with_executor(
            exec,
            &m.cfg,
            &m.params,
            1,
            m.cfg.max_position_embeddings,
            gidd_engine::DType::F32,
        )?;
        gidd_model::generate::self_correct(
            &mut canvas,
            &ids,
            1,
            a.steps,
            a.tokens_per_step,
            a.temperature,
            a.seed,
        )?
    });
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
