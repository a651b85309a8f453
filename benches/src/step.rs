//! `gidd bench step`: one training / forward / sampling step on a synthetic model,
//! with the flags of shared/baselines/torch_gidd.py, printing one JSON line that
//! shared/baselines/run_bench.py compares with PyTorch in one interleaved run.

use anyhow::{bail, Result};
use gidd_engine::rng::HostRng;
use gidd_engine::{CpuExecutor, DType, Executor, HostTensor};
use gidd_model::noise::NoiseOpts;
use gidd_model::{GiddConfig, Schedule};
use gidd_train::backend::{BackendArgs, Opened, Precision};
use gidd_train::trainer::optim::OptimOpts;
use gidd_train::trainer::step::{build_eval, build_step, LossOpts};
use gidd_train::with_executor;
use std::borrow::Cow;
use std::time::Instant;

/// `--mode` of `gidd bench step`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepMode {
    /// Forward, loss, backward and the LaProp update: one training step.
    Train,
    /// Forward and loss (the held-out ELBO's program).
    Forward,
    /// The logits of one sampling step.
    SampleStep,
}

impl StepMode {
    /// The name torch_gidd.py and run_bench.py use.
    pub fn name(self) -> &'static str {
        match self {
            StepMode::Train => "train",
            StepMode::Forward => "forward",
            StepMode::SampleStep => "sample-step",
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct StepArgs {
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    #[arg(long, default_value_t = 4096)]
    pub vocab: usize,
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    #[arg(long, value_enum, default_value_t = StepMode::Train)]
    pub mode: StepMode,
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[arg(long, default_value_t = 1000.0)]
    pub shift: f64,
    /// Print time per op kind (cpu) or per kernel (wgpu) on stderr over the timed steps.
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub exec: BackendArgs,
}

/// The benchmarks' synthetic model: the training recipe's shape (SPEC.md section 1,
/// "Training init": intermediate 4d, biases, head scaling 512/d) at the given sizes.
pub(crate) fn synthetic_config(
    layers: usize,
    hidden: usize,
    heads: usize,
    vocab: usize,
    seq: usize,
    shift: f64,
) -> Result<GiddConfig> {
    GiddConfig::from_json(serde_json::json!({
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": 4 * hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "max_position_embeddings": seq,
        "attention_bias": true, "mlp_bias": true, "weight_scaling": 1.0, "head_scaling": 512.0 / hidden as f64,
        "noise_type": shift,
    }))
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Every parameter of `cfg` drawn from N(0, std^2).
pub(crate) fn random_params(
    cfg: &GiddConfig,
    std: f64,
    rng: &mut HostRng,
) -> Vec<(String, HostTensor)> {
    cfg.param_shapes()
        .into_iter()
        .map(|(n, shape)| {
            let k: usize = shape.iter().product();
            let data = (0..k).map(|_| (rng.normal() * std) as f32).collect();
            (
                n,
                HostTensor {
                    shape,
                    data: gidd_engine::Data::F32(data),
                },
            )
        })
        .collect()
}

/// What one timed step runs (and so which inputs its program takes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// noise, forward, loss, backward, LaProp
    Train,
    /// forward + loss on a fixed batch
    Forward,
    /// forward + one ancestral draw on every position
    SampleStep,
}

/// (utime + stime) seconds of this process, from /proc.
pub(crate) fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn peak_rss_mb() -> f64 {
    gidd_ports::procfs::status_bytes(None, "VmHWM").unwrap_or(0) as f64 / (1 << 20) as f64
}

pub fn run(a: &StepArgs) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global()
        .ok();
    let dtype = a.dtype.activations("bench step")?;
    let cfg = synthetic_config(a.layers, a.hidden, a.heads, a.vocab, a.seq, a.shift)?;
    let sched = Schedule {
        min_log_snr: -9.0,
        max_log_snr: 9.0,
        scale: 1.0,
        shift: a.shift,
        vocab_size: a.vocab,
        mask_id: 3,
    };
    // The baseline's step: per-token log-SNR shared per row w.p. 0.8, no prompts.
    let no = NoiseOpts {
        p_independent: 0.2,
        p_linear: 0.0,
        p_prompt: 0.0,
        p_infilling: 0.0,
        causal_prompt_attn: false,
        clean_log_snr: 10.0,
    };
    let mut rng = HostRng::new(0);
    let params: Vec<HostTensor> = random_params(&cfg, 0.02, &mut rng)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let labels = HostTensor::i32(
        vec![a.batch, a.seq],
        (0..a.batch * a.seq)
            .map(|_| 4 + rng.below(a.vocab as u32 - 4) as i32)
            .collect(),
    )?;
    let seed = HostTensor::u32(vec![2], vec![1, 2])?;
    let t_compile = Instant::now();
    let (prog, mode): (gidd_engine::Program, Mode) = match a.mode {
        StepMode::Train => {
            let oo = OptimOpts {
                laprop: true,
                lr: 0.5,
                aux_lr_factor: 0.02,
                beta1: 0.9,
                beta2: 0.99,
                adam_eps: 1e-8,
                weight_decay: 0.0,
                ln_wd: 0.0,
                bias_wd: 0.0,
                hidden: a.hidden,
                layers: a.layers,
                warmup_steps: 0,
                cooldown_steps: 0.0,
                max_steps: 1,
            };
            let lo = LossOpts {
                beta_is_div: 1.0,
                sum: true,
                loss_scale: 1.0,
            };
            (
                build_step(&cfg, &sched, &no, &oo, &lo, a.batch, a.seq, dtype)?.0,
                Mode::Train,
            )
        }
        StepMode::Forward => (
            build_eval(&cfg, &sched, &no, a.batch, a.seq, dtype)?.0,
            Mode::Forward,
        ),
        StepMode::SampleStep => (build_logits(&cfg, a.batch, a.seq, dtype)?, Mode::SampleStep),
    };
    if a.profile
        && !matches!(
            a.exec.backend,
            gidd_train::backend::Backend::Cpu
                | gidd_train::backend::Backend::Wgpu
                | gidd_train::backend::Backend::Cuda
        )
    {
        bail!("--profile times the cpu executor's ops or the wgpu and cuda executors' kernels: use it with --backend cpu, wgpu or cuda");
    }
    let inputs = StepInputs {
        params: &params,
        labels: &labels,
        seed: &seed,
        batch: a.batch,
        seq: a.seq,
    };
    let ((times, util, cpu_ms), compile_s, peak) = match a.exec.open("benchmarking")? {
        Opened::Cpu(_) => {
            let mut lp = CpuExecutor.load(&prog)?;
            let compile_s = t_compile.elapsed().as_secs_f64();
            // The cpu executor's buffers are host tensors: read in place, no copy.
            let r = time_steps(
                &CpuExecutor,
                &mut lp,
                a,
                &cfg,
                mode,
                &inputs,
                |lp| {
                    if a.profile {
                        lp.enable_profile()
                    }
                },
                |b| Ok(Cow::Borrowed(b)),
            )?;
            if a.profile {
                print_profile(&lp.profile(), a.steps, "calls");
            }
            (r, compile_s, CpuExecutor.peak_flops(dtype))
        }
        Opened::Wgpu(x) => {
            let mut lp = x.load(&prog)?;
            let compile_s = t_compile.elapsed().as_secs_f64();
            if let Some(plan) = x.memory_plan(&lp) {
                eprintln!("{plan}");
            }
            let r = time_steps(
                &x,
                &mut lp,
                a,
                &cfg,
                mode,
                &inputs,
                |lp| {
                    if a.profile {
                        lp.enable_profile()
                    }
                },
                |b| Ok(Cow::Owned(x.download(b)?)),
            )?;
            if a.profile {
                // profiled steps run one dispatch per pass: their sum is above a plain step's
                eprintln!("per-kernel times: {}", x.profile_clock());
                print_profile(&lp.profile(), a.steps, "dispatches");
                eprintln!("{} dispatches per step", lp.dispatch_count());
            }
            (r, compile_s, x.peak_flops(dtype))
        }
        Opened::Cuda(x) => {
            let mut lp = x.load(&prog)?;
            let compile_s = t_compile.elapsed().as_secs_f64();
            if let Some(plan) = x.memory_plan(&lp) {
                eprintln!("{plan}");
            }
            let r = time_steps(
                &x,
                &mut lp,
                a,
                &cfg,
                mode,
                &inputs,
                |lp| {
                    if a.profile {
                        lp.enable_profile()
                    }
                },
                |b| Ok(Cow::Owned(x.download(b)?)),
            )?;
            if a.profile {
                // profiled steps time each launch with a CUDA event pair and run no graph
                eprintln!("per-kernel times: CUDA events around each launch");
                print_profile(&lp.profile(), a.steps, "launches");
                eprintln!("{} launches per step", lp.launch_count());
            } else {
                let (caps, reps, direct) = lp.graph_counts();
                eprintln!("CUDA graphs: {caps} captures, {reps} replays, {direct} direct runs");
            }
            (r, compile_s, x.peak_flops(dtype))
        }
        device => with_executor!(device, exec => {
            let (r, compile_s) = time_on_device(&exec, &prog, a, &cfg, mode, &inputs, t_compile)?;
            (r, compile_s, exec.peak_flops(dtype))
        }),
    };
    let mut times = times;
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    let tokens = (a.batch * a.seq) as f64;
    let flops =
        cfg.flops_per_token(a.seq) * tokens * if a.mode == StepMode::Train { 3.0 } else { 1.0 };
    let frac = peak.map(|p| flops / med / p);
    let reliable = frac.map(crate::peak_reliable);
    if reliable == Some(false) {
        eprintln!("{}", crate::PEAK_NOTE);
    }
    println!(
        "{}",
        serde_json::json!({
            "impl": "gidd", "backend": a.exec.backend.name(), "devices": a.exec.devices, "mode": a.mode.name(), "dtype": format!("{dtype}"), "ms_per_step": med * 1e3, "ms_per_step_min": times[0] * 1e3,
            "tokens_per_s": tokens / med, "tokens_per_step": tokens, "achieved_gflop_s": flops / med / 1e9,
            "peak_gflop_s": peak.map(|p| p / 1e9), "frac_peak": frac, "peak_reliable": reliable, "cpu_util": util, "cpu_ms_per_step": cpu_ms,
            "peak_rss_mb": peak_rss_mb(), "threads": a.threads, "compile_s": compile_s,
            "planned_mib": prog.planned_bytes() as f64 / 1048576.0,
        })
    );
    Ok(())
}

/// Prints the 25 slowest rows of a profile ((kind, seconds, calls) over `steps` steps);
/// every row with `GIDD_PROFILE_SHAPES` set (rows per operand types, for roofline tables).
pub(crate) fn print_profile(prof: &[(String, f64, usize)], steps: usize, calls: &str) {
    let total: f64 = prof.iter().map(|p| p.1).sum();
    let rows = if std::env::var_os("GIDD_PROFILE_SHAPES").is_some() {
        prof.len()
    } else {
        25
    };
    for (k, t, n) in prof.iter().take(rows) {
        eprintln!(
            "{:>8.1} ms/step {:>5.1}%  {:>6} {calls}/step  {k}",
            t * 1e3 / steps as f64,
            100.0 * t / total,
            n / steps
        );
    }
}

/// Timed steps: (step seconds, cpu utilisation, cpu ms per step).
type Timed = (Vec<f64>, f64, f64);

/// Loads `prog` on a device executor and times it: ((step seconds, cpu utilisation,
/// cpu ms per step), seconds from `t_compile` to loaded).
#[allow(clippy::too_many_arguments)]
fn time_on_device<E: Executor>(
    exec: &E,
    prog: &gidd_engine::Program,
    a: &StepArgs,
    cfg: &GiddConfig,
    mode: Mode,
    inputs: &StepInputs,
    t_compile: Instant,
) -> Result<(Timed, f64)> {
    let mut lp = exec.load(prog)?;
    let compile_s = t_compile.elapsed().as_secs_f64();
    let r = time_steps(
        exec,
        &mut lp,
        a,
        cfg,
        mode,
        inputs,
        |_| {},
        |b| Ok(Cow::Owned(exec.download(b)?)),
    )?;
    Ok((r, compile_s))
}

/// The host-side inputs of every timed step.
struct StepInputs<'a> {
    params: &'a [HostTensor],
    labels: &'a HostTensor,
    seed: &'a HostTensor,
    batch: usize,
    seq: usize,
}

/// Runs `warmup + steps` steps of `lp` on `exec` and returns the timed steps' seconds,
/// the process's CPU utilisation over them and its CPU milliseconds per step. Parameters and the fixed inputs go to the
/// executor once; per step only the step counter (and, sampling, the canvas) moves.
/// `before_timing` runs once, when the timed steps start.
#[allow(clippy::too_many_arguments)]
fn time_steps<E: Executor>(
    exec: &E,
    lp: &mut E::Loaded,
    a: &StepArgs,
    cfg: &GiddConfig,
    mode: Mode,
    h: &StepInputs,
    mut before_timing: impl FnMut(&mut E::Loaded),
    read: impl for<'b> Fn(&'b E::Buffer) -> Result<Cow<'b, HostTensor>>,
) -> Result<(Vec<f64>, f64, f64)> {
    let up = |t: &HostTensor| exec.upload(t);
    let params: Vec<E::Buffer> = h
        .params
        .iter()
        .map(up)
        .collect::<gidd_engine::Result<_>>()?;
    let zeros: Vec<E::Buffer> = h
        .params
        .iter()
        .map(|p| up(&HostTensor::zeros(DType::F32, p.shape.clone())))
        .collect::<gidd_engine::Result<_>>()?;
    let labels = up(h.labels)?;
    let seed = up(h.seed)?;
    let valid = up(&HostTensor::f32(
        vec![h.batch, h.seq],
        vec![1.0; h.batch * h.seq],
    )?)?;
    let sc = [1e-3, 1e-4, 0.9, 0.99]
        .map(|x| up(&HostTensor::scalar_f32(x)))
        .into_iter()
        .collect::<gidd_engine::Result<Vec<_>>>()?;
    let mut canvas = h.labels.clone();
    let mut times = vec![];
    let (mut cpu0, mut wall0) = (0.0, Instant::now());
    for i in 0..a.warmup + a.steps {
        if i == a.warmup {
            before_timing(lp);
            cpu0 = cpu_seconds();
            wall0 = Instant::now();
        }
        let t = Instant::now();
        let step = up(&HostTensor::u32(vec![], vec![i as u32])?)?;
        let canvas_b = match mode {
            Mode::SampleStep => Some(up(&canvas)?),
            _ => None,
        };
        let mut ins: Vec<&E::Buffer> = params.iter().collect();
        match mode {
            Mode::SampleStep => ins.extend(canvas_b.as_ref()),
            Mode::Train => {
                ins.extend(zeros.iter());
                ins.extend(zeros.iter());
                ins.extend([&labels, &seed, &step]);
                ins.extend(sc.iter());
            }
            Mode::Forward => ins.extend([&labels, &valid, &seed, &step]),
        }
        let out = exec.run(lp, &ins)?;
        if mode == Mode::SampleStep {
            // the canvas carries over, as the baseline's state["z"] does
            canvas = ancestral_canvas(cfg, read(&out[0])?.as_ref(), &canvas, i as u64)?;
        } else {
            // A device run is done when its first result can be read.
            std::hint::black_box(read(&out[0])?);
        }
        // The updated state stays on the device: wait for all of it before the clock.
        exec.synchronize()?;
        let dt = t.elapsed().as_secs_f64();
        if i >= a.warmup {
            times.push(dt);
        }
    }
    let cpu = cpu_seconds() - cpu0;
    let util = cpu / wall0.elapsed().as_secs_f64().max(1e-9);
    Ok((times, util, cpu * 1e3 / a.steps.max(1) as f64))
}

/// The forward program of the sample step: logits of the whole canvas.
///
/// # Shapes
/// params..., canvas [B, L] i32 -> logits [B, L, V] f32
fn build_logits(
    cfg: &GiddConfig,
    batch: usize,
    seq: usize,
    dtype: DType,
) -> Result<gidd_engine::Program> {
    use gidd_model::transformer::{forward, ForwardOpts, Params};
    let g = gidd_engine::Graph::new();
    let p = Params::declare(&g, cfg);
    let z = g.input("canvas", &[batch, seq], DType::I32);
    let mask = g.splat(1.0, &[batch, seq], DType::Bool);
    let pos = g.iota(&[batch, seq], 1, DType::I32)?;
    let opts = ForwardOpts {
        dtype,
        attentions: false,
    };
    let logits = forward(cfg, &p, &z, &mask, &pos, opts)?.logits;
    let mut order = p.names();
    order.push("canvas".into());
    let refs: Vec<&str> = order.iter().map(String::as_str).collect();
    Ok(gidd_engine::Program::compile(&[logits], &refs)?)
}

/// The baseline's sample step after the forward: one ancestral GIDD step (l_t = -1,
/// l_s = -0.5) on every position of the canvas, as `gidd generate` draws it (f64, on
/// the host, positions in parallel).
fn ancestral_canvas(
    cfg: &GiddConfig,
    logits: &HostTensor,
    z: &HostTensor,
    step: u64,
) -> Result<HostTensor> {
    use rayon::prelude::*;
    let (lg, z_t) = (logits.as_f32()?, z.to_f64_vec());
    let v = cfg.vocab_size;
    let post = gidd_model::sample::host::Posterior::new(cfg, -1.0, -0.5);
    let next: Vec<i32> = (0..z_t.len())
        .into_par_iter()
        .map(|i| {
            let l = gidd_model::sample::host::predictable_logits(&lg[i * v..(i + 1) * v]);
            let xh = gidd_model::sample::host::probs_with_topk_topp(&l, 1.0, None, None);
            let u = gidd_engine::rng::uniform_f64_at(step, [i as u32, 0, 0, 0]);
            post.draw(&xh, z_t[i] as usize, u) as i32
        })
        .collect();
    Ok(HostTensor::i32(z.shape.clone(), next)?)
}
