//! `gidd bench generate`: sampling throughput on a synthetic model, and what the KV
//! cache and logits reuse save against recomputing the whole canvas every step.
//!
//! The four variants generate the same tokens (the cache is exact; reuse skips only
//! calls whose inputs did not change), so the table compares work for the same output.

use crate::step::{cpu_seconds, print_profile, random_params, synthetic_config};
use anyhow::{bail, Result};
use gidd_engine::backend::cpu::CpuProgram;
use gidd_engine::rng::HostRng;
use gidd_engine::{CpuExecutor, DType, Executor};
use gidd_model::generate::{generate, Canvas, CanvasStats, GenOpts, Method, NoiseSchedule};
use gidd_model::GiddConfig;
use gidd_train::backend::Opened;
use gidd_train::backend::{BackendArgs, Precision};
use gidd_train::with_executor;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(clap::Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct GenBenchArgs {
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 4096)]
    pub vocab: usize,
    /// Canvas length (max_position_embeddings).
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 16)]
    pub prompt_len: usize,
    #[arg(long, default_value_t = 192)]
    pub max_length: usize,
    #[arg(long, default_value_t = 32)]
    pub block_length: usize,
    /// Denoising steps per block.
    #[arg(long, default_value_t = 64)]
    pub steps: usize,
    #[arg(long, value_enum, default_value_t = Method::Ancestral)]
    pub sampling_method: Method,
    /// The hybrid shift: -1000 masked (where reuse pays), +1000 uniform.
    #[arg(long, default_value_t = -1000.0)]
    pub shift: f64,
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// One JSON line per variant instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Which variants to time (comma-separated; the first is the one the others must match).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Variant::ALL)]
    pub variants: Vec<Variant>,
    /// Per-op times of the cpu executor over each variant's timed run (stderr).
    #[arg(long)]
    pub profile: bool,
    /// Download every step's logits and sample on the host, even where the executor runs
    /// the fused sampling step (to compare what the step brings back).
    #[arg(long)]
    pub host_sampling: bool,
    #[command(flatten)]
    pub exec: BackendArgs,
}

/// A way of running the sampler's model calls.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// the whole canvas every step
    Full,
    /// the whole canvas, skipping calls whose inputs did not change
    Reuse,
    /// the clean prefix in a KV cache, the lm_head on the block only
    Kv,
    /// both
    KvReuse,
}

impl Variant {
    const ALL: [Variant; 4] = [Variant::Full, Variant::Reuse, Variant::Kv, Variant::KvReuse];

    /// (table name, KV cache, logits reuse)
    fn spec(self) -> (&'static str, bool, bool) {
        match self {
            Variant::Full => ("full canvas every step", false, false),
            Variant::Reuse => ("logits reuse", false, true),
            Variant::Kv => ("KV cache", true, false),
            Variant::KvReuse => ("KV cache + logits reuse", true, true),
        }
    }
}

pub fn run(a: &GenBenchArgs) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global()
        .ok();
    let dtype = a.dtype.activations("bench generate")?;
    if a.prompt_len == 0 || a.prompt_len >= a.seq {
        bail!(
            "--prompt_len {} must be in 1..{} (--seq)",
            a.prompt_len,
            a.seq
        );
    }
    let method = a.sampling_method;
    let cfg = synthetic_config(a.layers, a.hidden, a.heads, a.vocab, a.seq, a.shift)?;
    let mut rng = HostRng::new(0);
    let params = random_params(&cfg, 0.05, &mut rng);
    let prompts: Vec<Vec<u32>> = (0..a.batch)
        .map(|_| {
            let mut p = vec![0];
            p.extend((1..a.prompt_len).map(|_| 4 + rng.below(a.vocab as u32 - 4)));
            p
        })
        .collect();
    let o = GenOpts {
        max_length: a.max_length,
        min_length: a.max_length, // no early stop: every variant runs every block
        block_length: a.block_length,
        steps: a.steps,
        method,
        schedule: NoiseSchedule::Cosine,
        temperature: 1.0,
        top_k: None,
        top_p: None,
        tokens_per_step: (a.block_length / a.steps).max(1),
        seed: 1,
    };
    if a.variants.is_empty() {
        bail!("--variants names none: give one or more of full, reuse, kv, kv-reuse");
    }
    if a.profile {
        let Opened::Cpu(exec) = a.exec.open("benchmarking")? else {
            bail!("--profile times the cpu executor's ops: use it with --backend cpu");
        };
        let hooks = Hooks {
            enable: |lp: &mut CpuProgram| lp.enable_profile(),
            report: |c: &mut Canvas<CpuExecutor>, calls: usize| {
                let mut sum: BTreeMap<String, (f64, usize)> = BTreeMap::new();
                for lp in c.programs_mut() {
                    for (k, t, n) in lp.profile() {
                        let e = sum.entry(k).or_default();
                        e.0 += t;
                        e.1 += n;
                    }
                }
                let mut rows: Vec<(String, f64, usize)> =
                    sum.into_iter().map(|(k, (t, n))| (k, t, n)).collect();
                rows.sort_by(|a, b| b.1.total_cmp(&a.1));
                print_profile(&rows, calls.max(1), "calls");
            },
        };
        return measure(exec, a, &cfg, &params, &prompts, &o, dtype, hooks);
    }
    with_executor!(a.exec.open("benchmarking")?, exec => {
        let hooks = Hooks { enable: |_: &mut _| {}, report: |_: &mut _, _| {} };
        measure(exec, a, &cfg, &params, &prompts, &o, dtype, hooks)
    })
}

/// What `measure` does to a variant's programs before its timed run, and after it (with
/// the number of model calls): the cpu executor's per-op profile under `--profile`.
struct Hooks<En, Re> {
    enable: En,
    report: Re,
}

/// Times the chosen sampling variants on `exec` and prints the table (or JSON lines).
#[allow(clippy::too_many_arguments)]
fn measure<E: Executor + Clone, En: Fn(&mut E::Loaded), Re: Fn(&mut Canvas<E>, usize)>(
    exec: E,
    a: &GenBenchArgs,
    cfg: &GiddConfig,
    params: &[(String, gidd_engine::HostTensor)],
    prompts: &[Vec<u32>],
    o: &GenOpts,
    dtype: DType,
    hooks: Hooks<En, Re>,
) -> Result<()> {
    let method = o.method;
    // GFLOP/s of the peak; NaN (printed as such) where the device's peak is unknown.
    let peak = exec.peak_flops(dtype).map_or(f64::NAN, |p| p / 1e9);
    let mut rows: Vec<(&str, f64, f64, CanvasStats)> = vec![];
    let mut reference: Option<Vec<Vec<u32>>> = None;
    for (name, kv, reuse) in a.variants.iter().map(|v| v.spec()) {
        let mut c = Canvas::with_executor(exec.clone(), cfg, params, a.batch, a.seq, dtype)?;
        c.kv_cache = kv;
        c.reuse_logits = reuse;
        c.sample_on_device = !a.host_sampling;
        // compile every shape first so the timing is of sampling alone
        generate(
            &mut c,
            cfg,
            prompts,
            &GenOpts {
                steps: 1,
                ..o.clone()
            },
            None,
            |_, _| {},
        )?;
        c.stats = CanvasStats::default();
        c.programs_mut().for_each(&hooks.enable);
        let (t0, cpu0) = (Instant::now(), cpu_seconds());
        let out = generate(&mut c, cfg, prompts, o, None, |_, _| {})?;
        let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        if a.profile {
            eprintln!("{name}: per-op times over its model calls");
        }
        let calls = c.stats.step_calls + c.stats.prefix_calls;
        (hooks.report)(&mut c, calls);
        match &reference {
            None => reference = Some(out),
            Some(r) if *r != out => {
                bail!("{name}: generated tokens differ from the {} run", rows[0].0)
            }
            Some(_) => {}
        }
        rows.push((name, secs, cpu, c.stats));
    }
    let new_tokens = (a.batch * a.max_length.min(a.seq - a.prompt_len)) as f64;
    let base = rows[0].1;
    if !a.json {
        println!(
            "generate: {} layers d{} V{} canvas {} batch {} prompt {} -> {} new tokens, block {} x {} steps, {:?} ({}), peak {peak:.0} GFLOP/s",
            a.layers, a.hidden, a.vocab, a.seq, a.batch, a.prompt_len, new_tokens, a.block_length, a.steps, method, dtype
        );
        println!(
            "| variant | s | cpu s | model s | sampling s | tokens/s | speedup | model calls | prefix calls | positions | logit rows | GFLOP | model GFLOP/s | of peak | KiB down/call |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    }
    for (name, secs, cpu, s) in &rows {
        let gf = s.flops / 1e9;
        if a.json {
            println!(
                "{}",
                serde_json::json!({
                    "variant": name, "seconds": secs, "cpu_seconds": cpu, "tokens_per_s": new_tokens / secs, "speedup": base / secs,
                    "step_calls": s.step_calls, "prefix_calls": s.prefix_calls, "positions": s.positions,
                    "logit_positions": s.logit_positions, "gflop": gf, "model_s": s.model_s,
                    "sampling_s": secs - s.model_s, "model_gflop_s": gf / s.model_s,
                    "fraction_of_peak": gf / s.model_s / peak,
                    "step_download_bytes": s.step_download_bytes,
                    "download_bytes_per_step": s.step_download_bytes / s.step_calls.max(1),
                })
            );
        } else {
            println!(
                "| {name} | {secs:.2} | {cpu:.2} | {:.2} | {:.2} | {:.0} | {:.2}x | {} | {} | {} | {} | {gf:.1} | {:.0} | {:.0}% | {:.1} |",
                s.model_s,
                secs - s.model_s,
                new_tokens / secs,
                base / secs,
                s.step_calls,
                s.prefix_calls,
                s.positions,
                s.logit_positions,
                gf / s.model_s,
                100.0 * gf / s.model_s / peak,
                s.step_download_bytes as f64 / 1024.0 / s.step_calls.max(1) as f64
            );
        }
    }
    Ok(())
}
