//! `gidd train --backend xla` against `--backend cpu` on the tiny preset's first 20 steps.
//!
//! Two comparisons:
//! 1. Teacher-forced, the executor check: every step's loss (and ELBO, KL, IS, gradient
//!    norm, noisy-token count) computed by both executors from the *same* state, namely the
//!    cpu run's state after the previous step (step 1 from the shared initialisation).
//!    They agree within 1e-4 relative (measured: <= 1.8e-6).
//! 2. Free-running, two independent runs: they agree within 1e-4 until the first update of
//!    the transformer body lands, then may drift apart. That drift is not an executor defect
//!    and no pair of f32 executors can bound it by 1e-4 on this preset, as measured
//!    (issue 6 item 5) against an f64 evaluation of the same steps:
//!    - the lm_head starts at zero, so the body's first non-zero gradient is at step 3, when
//!      LaProp's mu and nu are still empty: its update is exactly 0.636 lr sign(g), however
//!      small |g| is;
//!    - a few body weights have a true gradient of ~1e-6 (rms 1.6) there, below the f32
//!      noise of the gradient that reaches them: the lm_head backward d h = d logits W
//!      cancels (softmax-gradient rows sum to zero and the once-updated lm_head has nearly
//!      equal rows), so its f32 accumulation error is ~10x its rounding (cpu GEMM 3.4e-6,
//!      XLA 1.8e-6, f64-accumulated 4.6e-7 relative). Those signs are coin tosses: the cpu
//!      executor gets 2 wrong (up_proj.0[5832], down_proj.0[2101]), xla 1 (the latter);
//!    - cpu vs f64 losses then differ by 3.0e-4 at step 5 and 5.6e-3 at step 20; setting
//!      just those 2 elements of the cpu state after step 3 to the f64 signs brings cpu
//!      within 2.5e-5 of f64 for all 20 steps, as close as perturbing every parameter by
//!      1 ulp gets (2.5e-5): the rest of the dynamics is not chaotic at 1e-4;
//!    - the one element the executors disagree on is the whole free-running gap: cpu vs xla
//!      reaches 3.1e-3 at step 20, and 5.0e-5 over all 20 steps once that element of the cpu
//!      state takes the sign xla (and f64) give it.
//!
//!    Free-running agreement within 1e-4 after step 3 would take the cpu executor's exact
//!    rounding, not more accuracy. The free-running table is printed; steps 1-3 are asserted.
//! 3. Free-running in f64 (`--dtype f64`, the audit precision): with the rounding that
//!    decided those signs taken out, two independent runs agree on all 20 losses within the
//!    1e-4 bar, and within 1e-9 (measured 1e-13).

use clap::Parser;
use gidd_engine::{CpuExecutor, Executor, HostTensor};
use gidd_train::packer::{Packer, PackerState};
use gidd_train::trainer::step::METRICS;
use gidd_train::trainer::TrainArgs;
use std::path::Path;

use std::sync::Arc;

const STEPS: usize = 20;
/// The bar: relative difference of each loss.
const TOL: f64 = 1e-4;

fn plugin_available() -> bool {
    gidd_tests::xla_available("xla_backend")
}

/// The flags both runs use (besides --backend and --save_directory).
fn flags() -> Vec<String> {
    [
        "--max_training_steps",
        &STEPS.to_string(),
        "--num_samples",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn workdir(tag: &str) -> gidd_tests::TempDir {
    gidd_tests::TempDir::new(&format!("xla-{tag}"))
}

/// Runs `gidd train` and returns its metrics, one JSON object per training step.
fn train(backend: &str, dir: &Path, cache: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    // metrics.jsonl is appended to: start from an empty directory.
    std::fs::remove_dir_all(dir).ok();
    let out = gidd_tests::gidd()
        .env("GIDD_CACHE", cache)
        .arg("train")
        .args(flags())
        .args(["--backend", backend])
        .args(extra)
        .arg("--save_directory")
        .arg(dir)
        .output()
        .expect("run gidd");
    assert!(
        out.status.success(),
        "{backend}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        // training steps only (held-out evaluations are logged there too)
        .filter(|m| m.get("loss").is_some())
        .collect()
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    train: TrainArgs,
}

/// The metrics of step `k + 1` (0-based k >= 1) on both executors, from the cpu run's
/// checkpoint-k: parameters, optimizer state and the data position after step k.
struct Forced {
    cpu: Vec<f64>,
    xla: Vec<f64>,
}

fn teacher_forced(cpu_dir: &Path, cache: &Path) -> Vec<Forced> {
    let mut argv = vec!["gidd".to_string()];
    argv.extend(flags());
    let args = Cli::parse_from(argv).train;
    let prog = gidd_train::trainer::step_program(&args).expect("step program");
    let xla = gidd_xla::XlaExecutor::new(None).expect("xla executor");
    let mut lx = xla.load(&prog).expect("compile on xla");
    let mut lc = CpuExecutor.load(&prog).expect("load on cpu");
    let (_, tok, texts) =
        gidd_ports::corpus::embedded_default(cache, args.vocab_size, 4000).expect("corpus");
    let source: Arc<dyn gidd_ports::data::DocSource> =
        Arc::from(gidd_ports::corpus::embedded_tokens(&tok, &texts).expect("tokens"));
    let seed = HostTensor::u32(
        vec![2],
        vec![args.seed as u32, (args.seed >> 32) as u32 ^ 0x9e37],
    )
    .expect("seed");
    let mut out = vec![];
    for k in 1..STEPS {
        let dir = cpu_dir.join(format!("checkpoint-{k}"));
        let model = gidd_train::model_dir::load_checkpoint(&dir).expect("checkpoint");
        let opt = gidd_ports::TensorStore::open(&dir.join("optimizer")).expect("optimizer");
        let st: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("trainer_state.json")).expect("state"))
                .expect("state json");
        assert_eq!(st["step"].as_u64(), Some(k as u64));
        let ps: PackerState = serde_json::from_value(st["packer"].clone()).expect("packer");
        // ps.rows rows went into k steps.
        let rows = Packer::from_state(source.clone(), &ps)
            .expect("packer")
            .next_batch(ps.rows as usize / k)
            .expect("batch");
        let seq = rows[0].len();
        let labels = HostTensor::i32(
            vec![rows.len(), seq],
            rows.iter().flatten().map(|&t| t as i32).collect(),
        )
        .expect("labels");
        let step = HostTensor::u32(vec![], vec![k as u32]).expect("step");
        // The update's scalars do not enter the metrics (they are computed before it).
        let scalar = HostTensor::scalar_f32(0.0);
        let mut ins: Vec<HostTensor> = model.params.iter().map(|(_, t)| t.clone()).collect();
        for pre in ["mu", "nu"] {
            for (n, _) in &model.params {
                ins.push(
                    opt.get_f32(&format!("{pre}.{n}"))
                        .expect("optimizer tensor"),
                );
            }
        }
        ins.extend([labels, seed.clone(), step]);
        ins.extend(std::iter::repeat_n(scalar, 4));
        let refs: Vec<&HostTensor> = ins.iter().collect();
        let metrics = |outs: &[HostTensor]| -> Vec<f64> {
            outs[..METRICS.len()]
                .iter()
                .map(|t| t.to_f64_vec()[0])
                .collect()
        };
        let cpu = metrics(&CpuExecutor.run(&mut lc, &refs).expect("cpu step"));
        let bufs: Vec<_> = refs
            .iter()
            .map(|t| xla.upload(t).expect("upload"))
            .collect();
        let outs = xla
            .run(&mut lx, &bufs.iter().collect::<Vec<_>>())
            .expect("xla step");
        let host: Vec<HostTensor> = outs[..METRICS.len()]
            .iter()
            .map(|b| xla.download(b).expect("download"))
            .collect();
        out.push(Forced {
            cpu,
            xla: metrics(&host),
        });
    }
    out
}

#[test]
fn tiny_preset_losses_match_between_cpu_and_xla() {
    if !plugin_available() {
        return;
    }
    let cache = workdir("cache");
    let (cpu_dir, xla_dir) = (workdir("cpu"), workdir("xla"));
    // Every step's checkpoint of the cpu run: the states the teacher-forced steps start from.
    let cpu = train(
        "cpu",
        &cpu_dir,
        &cache,
        &["--save_steps", "1", "--save_total_limit", "0"],
    );
    let xla = train("xla", &xla_dir, &cache, &[]);
    assert_eq!(cpu.len(), STEPS);
    assert_eq!(xla.len(), STEPS);
    let loss = |m: &serde_json::Value| m["loss"].as_f64().expect("loss");

    let forced = teacher_forced(&cpu_dir, &cache);
    eprintln!("step  cpu run      xla run      free-running  teacher-forced (cpu, xla, rel)");
    let mut worst = vec![];
    for s in 0..STEPS {
        let (c, x) = (loss(&cpu[s]), loss(&xla[s]));
        let (fc, fx, fr) = match s {
            // Step 1 starts from the shared initialisation: the two runs are teacher-forced.
            0 => (c, x, rel(c, x)),
            _ => {
                let f = &forced[s - 1];
                (f.cpu[0], f.xla[0], rel(f.cpu[0], f.xla[0]))
            }
        };
        eprintln!(
            "{:4}  {c:.8}  {x:.8}  {:.1e}       {fc:.8}  {fx:.8}  {fr:.1e}",
            s + 1,
            rel(c, x),
        );
        worst.push(fr);
    }
    // Step 1: both runs start from the same initialisation.
    for key in ["loss", "elbo", "kl", "is", "grad_norm"] {
        let (c, x) = (cpu[0][key].as_f64(), xla[0][key].as_f64());
        let (c, x) = (c.expect("cpu metric"), x.expect("xla metric"));
        let r = rel(c, x);
        assert!(r <= TOL, "step 1: {key} cpu {c} xla {x} differ by {r:.1e}");
    }
    for (k, f) in forced.iter().enumerate() {
        let step = k + 2;
        // The harness reproduces the cpu run's own step exactly.
        // (compared as the f32 values they are: JSON parsing may be 1 f64 ulp off)
        assert_eq!(
            f.cpu[0] as f32,
            loss(&cpu[step - 1]) as f32,
            "step {step}: the teacher-forced cpu loss is not the cpu run's"
        );
        for (i, name) in METRICS.iter().enumerate() {
            let r = rel(f.cpu[i], f.xla[i]);
            assert!(
                r <= TOL,
                "step {step}: {name} cpu {} xla {} differ by {r:.1e} from the same state",
                f.cpu[i],
                f.xla[i]
            );
        }
    }
    let max = worst.iter().cloned().fold(0.0, f64::max);
    eprintln!("teacher-forced: max relative loss difference over {STEPS} steps {max:.1e}");
    // Free-running: identical until the body's first update (step 3) reaches the loss.
    for s in 0..3 {
        let r = rel(loss(&cpu[s]), loss(&xla[s]));
        assert!(
            r <= TOL,
            "free-running step {}: losses differ by {r:.1e}",
            s + 1
        );
    }
    for d in [&cpu_dir, &xla_dir, &cache] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// The bar as worded, free-running: two independent 20-step runs of the tiny preset,
/// `--backend cpu` and `--backend xla`, in the audit precision (`--dtype f64`: parameters,
/// optimizer state, noise arithmetic, every accumulation). Rounding no longer decides the
/// sign of LaProp's first body update (the f32 gradients it amplifies carry ~1e-6 noise;
/// f64 ones ~1e-15, below eps = 1e-8 / d / L), so nothing amplifies: every loss agrees
/// within 1e-4 (the bar), and in fact within 1e-9 (measured: 1e-13 at step 20); so does
/// the same run partitioned over four devices (FSDP, GSPMD).
#[test]
fn tiny_preset_f64_runs_agree_for_all_20_steps() {
    if !plugin_available() {
        return;
    }
    let cache = workdir("f64-cache");
    let (cpu_dir, xla_dir, fsdp_dir) =
        (workdir("f64-cpu"), workdir("f64-xla"), workdir("f64-fsdp"));
    let cpu = train("cpu", &cpu_dir, &cache, &["--dtype", "f64"]);
    let xla = train("xla", &xla_dir, &cache, &["--dtype", "f64"]);
    // and partitioned: FSDP over four devices of the CPU plugin
    let fsdp = train(
        "xla",
        &fsdp_dir,
        &cache,
        &["--dtype", "f64", "--devices", "4", "--partitioner", "gspmd"],
    );
    assert_eq!((cpu.len(), xla.len(), fsdp.len()), (STEPS, STEPS, STEPS));
    eprintln!("step  cpu f64 run          xla f64 run          rel      xla FSDP x4 rel");
    let (mut max, mut max_fsdp): (f64, f64) = (0.0, 0.0);
    for s in 0..STEPS {
        let loss = |m: &[serde_json::Value]| m[s]["loss"].as_f64().expect("loss");
        let (c, x, f) = (loss(&cpu), loss(&xla), loss(&fsdp));
        let (r, rf) = (rel(c, x), rel(c, f));
        eprintln!("{:4}  {c:.16}  {x:.16}  {r:.1e}   {rf:.1e}", s + 1);
        assert!(
            r <= TOL && rf <= TOL,
            "f64 free-running step {}: cpu {c} xla {x} xla x4 {f}: {r:.1e} / {rf:.1e} > {TOL:e}",
            s + 1
        );
        (max, max_fsdp) = (max.max(r), max_fsdp.max(rf));
        for key in ["elbo", "kl", "is", "grad_norm"] {
            for (what, other) in [("xla", &xla), ("xla x4", &fsdp)] {
                let (c, x) = (cpu[s][key].as_f64(), other[s][key].as_f64());
                let r = rel(c.expect("cpu metric"), x.expect("xla metric"));
                assert!(
                    r <= 1e-9,
                    "f64 step {}: {what} {key} differs by {r:.1e}",
                    s + 1
                );
            }
        }
    }
    eprintln!(
        "f64 free-running: max relative loss difference over {STEPS} steps {max:.1e} (xla), {max_fsdp:.1e} (xla FSDP x4)"
    );
    // Far inside the bar: an op that narrowed to f32 on either executor shows as >= 1e-8.
    assert!(
        max.max(max_fsdp) <= 1e-9,
        "f64 runs differ by {max:.1e} / {max_fsdp:.1e}: something computes in f32"
    );
    for d in [&cpu_dir, &xla_dir, &fsdp_dir, &cache] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// `gidd train --backend xla --devices 4`: FSDP over four devices of the CPU plugin, with
/// either partitioner, trains the tiny preset as one device does: the same bar as the
/// single-device run (steps 1-3, before the body's first sign-only update, within 1e-4;
/// the rest printed).
#[test]
fn fsdp_over_four_devices_trains_as_one_device() {
    if !plugin_available() {
        return;
    }
    let cache = workdir("fsdp-cache");
    let cpu_dir = workdir("fsdp-cpu");
    let cpu = train("cpu", &cpu_dir, &cache, &[]);
    let loss = |m: &serde_json::Value| m["loss"].as_f64().expect("loss");
    for part in ["gspmd", "shardy"] {
        let dir = workdir(&format!("fsdp-{part}"));
        let x = train(
            "xla",
            &dir,
            &cache,
            &["--devices", "4", "--partitioner", part],
        );
        assert_eq!(x.len(), STEPS, "{part}: every step logged");
        let r: Vec<f64> = (0..STEPS)
            .map(|s| rel(loss(&cpu[s]), loss(&x[s])))
            .collect();
        eprintln!(
            "fsdp x4 ({part}) vs cpu, relative loss difference per step: {}",
            r.iter()
                .map(|v| format!("{v:.1e}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (s, v) in r.iter().enumerate().take(3) {
            assert!(*v <= TOL, "{part}: step {} losses differ by {v:.1e}", s + 1);
        }
        std::fs::remove_dir_all(&dir).ok();
    }
    for d in [&cpu_dir, &cache] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// Gradient accumulation on xla (one and four devices): the running gradient sums stay on
/// the device (donated to each micro-batch's program) and the update equals the cpu run's.
#[test]
fn gradient_accumulation_on_xla_matches_cpu() {
    if !plugin_available() {
        return;
    }
    let cache = workdir("accum-cache");
    let micro = ["--micro_batch_size", "8"];
    let cpu_dir = workdir("accum-cpu");
    let cpu = train("cpu", &cpu_dir, &cache, &micro);
    for devices in ["1", "4"] {
        let dir = workdir(&format!("accum-xla{devices}"));
        let mut extra = micro.to_vec();
        extra.extend(["--devices", devices]);
        let x = train("xla", &dir, &cache, &extra);
        assert_eq!(x.len(), STEPS);
        for s in 0..3 {
            for key in ["loss", "grad_norm"] {
                let (c, v) = (
                    cpu[s][key].as_f64().expect("a number"),
                    x[s][key].as_f64().expect("a number"),
                );
                let r = rel(c, v);
                assert!(
                    r <= TOL,
                    "x{devices} step {}: {key} cpu {c} xla {v} differ by {r:.1e}",
                    s + 1
                );
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
    for d in [&cpu_dir, &cache] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// `gidd generate --backend xla` (the KV-cached canvas: one prefix and one step program per
/// block shape, compiled by XLA), on one device and over four, writes exactly what the cpu
/// executor writes: same seed, same tokens, on the golden mask-small checkpoint.
#[test]
fn generation_on_xla_equals_cpu_token_for_token() {
    if !plugin_available() {
        return;
    }
    let dir = gidd_tests::golden_case("mask-small");
    let gen = |backend: &[&str]| {
        let out = gidd_tests::gidd()
            .args(["generate", "--checkpoint"])
            .arg(&dir)
            .args([
                "--prompt_ids",
                "0,17,23",
                "--max_length",
                "18",
                "--block_length",
                "5",
            ])
            .args(["--steps", "6", "--seed", "9", "--temperature", "0.8"])
            .args(backend)
            .output()
            .expect("run gidd");
        assert!(
            out.status.success(),
            "generate {backend:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cpu = gen(&["--backend", "cpu"]);
    assert!(!cpu.trim().is_empty());
    assert_eq!(
        cpu,
        gen(&["--backend", "xla"]),
        "xla and cpu generations differ"
    );
    // Parameters split over four devices (FSDP layout), Shardy partitioner.
    let fsdp = [
        "--backend",
        "xla",
        "--devices",
        "4",
        "--partitioner",
        "shardy",
    ];
    assert_eq!(cpu, gen(&fsdp), "xla x4 and cpu generations differ");
}

/// `gidd bench step --backend xla` times the same programs as the cpu executor does, for
/// every mode, and says which backend it measured.
#[test]
fn bench_step_runs_on_both_backends() {
    if !plugin_available() {
        return;
    }
    for mode in ["train", "forward", "sample-step"] {
        for backend in ["cpu", "xla"] {
            let out = gidd_tests::gidd()
                .args(["bench", "step", "--mode", mode, "--backend", backend])
                .args([
                    "--layers", "1", "--hidden", "64", "--heads", "1", "--vocab", "256",
                ])
                .args([
                    "--seq", "32", "--batch", "4", "--steps", "2", "--warmup", "1",
                ])
                .env("GIDD_XLA_CACHE", "off")
                .output()
                .expect("run gidd");
            assert!(
                out.status.success(),
                "bench step {mode} {backend}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
            assert_eq!(j["backend"], backend);
            assert_eq!(j["mode"], mode);
            assert_eq!(j["tokens_per_step"].as_f64(), Some(128.0));
            let ms = j["ms_per_step"].as_f64().expect("ms_per_step");
            assert!(ms > 0.0 && ms.is_finite(), "{mode} {backend}: {ms} ms");
        }
    }
}

/// `gidd audit --backend xla` passes on every golden case in f32 and f64 (exit status 0),
/// with the optimizer rows (the trainer's update program compiled by XLA) and the
/// likelihood rows (`gidd eval --requests`'s level program compiled by XLA) in its table.
#[test]
fn audit_on_xla_passes_with_optim_and_likelihood_rows() {
    if !plugin_available() {
        return;
    }
    for case in gidd_tests::golden_cases() {
        for dtype in ["f32", "f64"] {
            let out = gidd_tests::gidd()
                .args([
                    "audit",
                    "--backend",
                    "xla",
                    "--dtype",
                    dtype,
                    "--checkpoint",
                ])
                .arg(&case)
                .arg("--golden")
                .arg(case.join("golden.safetensors"))
                .output()
                .expect("run gidd");
            let table = String::from_utf8_lossy(&out.stdout);
            eprintln!("{} ({dtype}, xla)\n{table}", case.display());
            assert!(
                out.status.success(),
                "{} {dtype}: audit on xla failed\n{table}\n{}",
                case.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            for q in [
                "optim.lr.bulk",
                "optim.lr.aux",
                "optim.step6.lm_head.weight",
                "lik.nlls.level0",
                "lik.total_nll",
            ] {
                assert!(
                    table.lines().any(|l| l.starts_with(&format!("{q} "))),
                    "{} {dtype}: {q} missing from the xla audit",
                    case.display()
                );
            }
        }
    }
}
