//! The `gidd` binary end to end: training, exact resume, and bad input.

use std::path::Path;
use std::process::Command;

/// One tokenizer cache for the whole test binary: the embedded corpus's BPE is trained
/// once, not once per test.
fn cache() -> &'static Path {
    static C: std::sync::OnceLock<gidd_tests::TempDir> = std::sync::OnceLock::new();
    C.get_or_init(|| gidd_tests::TempDir::new("cli-cache"))
        .path()
}

fn gidd() -> Command {
    let mut c = gidd_tests::gidd();
    c.env("GIDD_CACHE", cache());
    c
}

fn tmp(name: &str) -> gidd_tests::TempDir {
    gidd_tests::TempDir::new(&format!("cli-{name}"))
}

use gidd_tests::SMALL_TRAIN as SMALL;

/// (step, loss) of every training line of metrics.jsonl (held-out lines carry no loss).
fn losses(dir: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .filter(|v| v.get("loss").is_some())
        .map(|v| (v["step"].as_u64().expect("step"), v["loss"].to_string()))
        .collect()
}

#[test]
fn resume_is_bitwise_identical() {
    resume_case("f32");
}

/// An f64 run keeps its state in f64 through the checkpoint (saved F64, loaded as stored):
/// resuming it is exact too, not rounded to f32.
#[test]
fn f64_resume_is_bitwise_identical() {
    resume_case("f64");
}

fn resume_case(dtype: &str) {
    let a = tmp(&format!("full-{dtype}"));
    let b = tmp(&format!("resumed-{dtype}"));
    let run = |dir: &Path, extra: &[&str]| {
        let out = gidd()
            .args(SMALL)
            .arg("512")
            .args(["--dtype", dtype])
            .args([
                "--batch_size",
                "4",
                "--max_training_steps",
                "6",
                "--save_steps",
                "3",
                "--save_directory",
            ])
            .arg(dir)
            .args(extra)
            .output()
            .expect("run gidd");
        assert!(
            out.status.success(),
            "gidd train failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&a, &[]);
    // Run 3 steps (same total schedule), then resume from the step-3 checkpoint.
    run(&b, &[]);
    let ck = b.join("checkpoint-3");
    assert!(
        ck.join("model.safetensors").exists() && ck.join("config.json").exists(),
        "checkpoint layout"
    );
    std::fs::remove_file(b.join("metrics.jsonl")).ok();
    run(
        &b,
        &["--resume_from_checkpoint", ck.to_str().expect("utf8")],
    );
    let full = losses(&a);
    let resumed = losses(&b);
    assert_eq!(resumed.len(), 3, "resumed run trains steps 4..6");
    for (s, l) in &resumed {
        let want = full.iter().find(|(t, _)| t == s).expect("step in full run");
        assert_eq!(&want.1, l, "loss at step {s} differs after resume");
    }
}

/// The cpu executor's fused elementwise chains (the default) train to the same bits as
/// running every node alone (`GIDD_CPU_CHAINS=0`): losses and the saved weights and optimizer
/// state, byte for byte. Batch 16 puts the FFN's chains past the parallel threshold.
#[test]
fn fused_chains_train_to_the_same_bits() {
    let run = |chains: &str| {
        let dir = tmp(&format!("chains-{chains}"));
        let out = gidd()
            .env("GIDD_CPU_CHAINS", chains)
            .args(SMALL)
            .arg("512")
            .args(["--batch_size", "16", "--max_training_steps", "4"])
            .args(["--save_steps", "4", "--save_directory"])
            .arg(dir.path())
            .output()
            .expect("run gidd");
        assert!(
            out.status.success(),
            "gidd train failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    };
    let (fused, alone) = (run("1"), run("0"));
    assert_eq!(losses(&fused), losses(&alone), "losses");
    assert_eq!(losses(&fused).len(), 4);
    for f in ["model.safetensors", "optimizer/model.safetensors"] {
        let read = |d: &gidd_tests::TempDir| {
            std::fs::read(d.join("checkpoint-4").join(f)).expect("checkpoint file")
        };
        assert!(read(&fused) == read(&alone), "{f} differs");
    }
}

#[test]
fn bad_inputs_fail_clearly() {
    let expect_fail = |args: &[&str], needle: &str| {
        let out = gidd().args(args).output().expect("run gidd");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "expected failure for {args:?}");
        assert!(
            err.contains(needle),
            "error for {args:?} should mention '{needle}', got: {err}"
        );
    };
    let missing_dir = tmp("nothing");
    let missing = missing_dir.join("missing.jsonl");
    expect_fail(
        &[
            "train",
            "--data_files",
            missing.to_str().expect("utf8"),
            "--max_training_steps",
            "1",
        ],
        "missing.jsonl",
    );
    expect_fail(&["train", "--no_such_flag"], "no_such_flag");
    expect_fail(&["train", "--dtype", "f8"], "f8");
    // f64 is for train and audit; generation says so instead of failing in a kernel
    expect_fail(
        &["generate", "--checkpoint", "x", "--dtype", "f64"],
        "audit precision",
    );
    let empty_dir = tmp("empty");
    let empty = empty_dir.join("empty.jsonl");
    std::fs::write(&empty, "").expect("write");
    expect_fail(
        &[
            "train",
            "--data_files",
            empty.to_str().expect("utf8"),
            "--tokenizer",
            "/nonexistent/tokenizer.json",
        ],
        "tokenizer",
    );
    let badcfg = tmp("badcfg");
    std::fs::write(
        badcfg.join("config.json"),
        "{\n  \"vocab_size\": 10,\n  oops\n}",
    )
    .expect("write");
    expect_fail(
        &["info", "--checkpoint", badcfg.to_str().expect("utf8")],
        "config.json:3:",
    );
    expect_fail(
        &[
            "audit",
            "--checkpoint",
            "/nonexistent",
            "--golden",
            "/nonexistent/g.safetensors",
        ],
        "config.json",
    );
    // A plugin that is not there: the spelling of the flag is accepted too, and
    // the error says where it looked and how to get one.
    for flag in ["--pjrt_plugin", "--pjrt-plugin"] {
        expect_fail(
            &[
                "train",
                "--backend",
                "xla",
                flag,
                "/nonexistent/plugin.so",
                "--max_training_steps",
                "1",
            ],
            "no PJRT plugin found at /nonexistent/plugin.so: pass --pjrt_plugin PATH",
        );
    }
    expect_fail(
        &["train", "--devices", "2", "--max_training_steps", "1"],
        "needs --backend xla",
    );
    expect_fail(
        &[
            "train",
            "--backend",
            "xla",
            "--devices",
            "2",
            "--partitioner",
            "gshard",
        ],
        "[possible values: gspmd, shardy]",
    );
    // No NVIDIA driver on this machine (nor in CI): --backend cuda is a clean error.
    if !std::path::Path::new("/proc/driver/nvidia").exists() {
        let golden = gidd_tests::golden_case("mask-small");
        let g = golden.to_str().expect("utf8");
        let gs = format!("{g}/golden.safetensors");
        expect_fail(
            &[
                "audit",
                "--backend",
                "cuda",
                "--checkpoint",
                g,
                "--golden",
                &gs,
            ],
            "no CUDA driver",
        );
    }
    // Root ignores permission bits, but /proc refuses everyone.
    expect_fail(
        &[
            "train",
            "--save_directory",
            "/proc/gidd-cannot-write",
            "--max_training_steps",
            "1",
        ],
        "save directory",
    );
}

#[test]
fn gradient_accumulation_matches_the_full_batch() {
    let run = |name: &str, extra: &[&str]| -> Vec<f64> {
        let dir = tmp(name);
        let out = gidd()
            .args(SMALL)
            .arg("512")
            .args([
                "--batch_size",
                "8",
                "--max_training_steps",
                "4",
                "--warmup_steps",
                "2",
                "--save_directory",
            ])
            .arg(&dir)
            .args(extra)
            .output()
            .expect("run gidd");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        losses(&dir)
            .into_iter()
            .map(|(_, l)| l.parse::<f64>().expect("loss"))
            .collect()
    };
    let full = run("accum-full", &[]);
    for agg in ["sum", "mean"] {
        let full_agg = if agg == "sum" {
            full.clone()
        } else {
            run("accum-full-mean", &["--loss_aggregation", "mean"])
        };
        let acc = run(
            &format!("accum-4-{agg}"),
            &["--micro_batch_size", "2", "--loss_aggregation", agg],
        );
        assert_eq!(acc.len(), 4);
        for (s, (a, b)) in acc.iter().zip(&full_agg).enumerate() {
            // Same data, same noise (keyed by batch row); only the summation order of gradients differs.
            assert!(
                (a - b).abs() <= 1e-4 * b.abs(),
                "{agg}: step {}: accumulated {a} vs full batch {b}",
                s + 1
            );
        }
    }
}

#[test]
fn generate_and_eval_on_a_trained_checkpoint() {
    let dir = tmp("gen-eval");
    let out = gidd()
        .args(SMALL)
        .arg("512")
        .args([
            "--batch_size",
            "4",
            "--max_training_steps",
            "2",
            "--save_directory",
        ])
        .arg(&dir)
        .output()
        .expect("run gidd");
    assert!(
        out.status.success(),
        "train: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ck = dir.join("checkpoint-2");
    assert!(
        ck.join("tokenizer.json").exists(),
        "the checkpoint carries its tokenizer"
    );
    let generate = || {
        gidd()
            .args(["generate", "--checkpoint"])
            .arg(&ck)
            .args([
                "--prompt",
                "Bom",
                "--max_length",
                "12",
                "--block_length",
                "6",
                "--steps",
                "4",
                "--seed",
                "3",
            ])
            .output()
            .expect("generate")
    };
    let out = generate();
    assert!(
        out.status.success(),
        "generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = generate();
    assert_eq!(out.stdout, again.stdout, "same seed, same output");
    // A batch from repeated --prompt flags: one text per prompt, in order.
    let out = gidd()
        .args(["generate", "--checkpoint"])
        .arg(&ck)
        .args(["--prompt", "Bom", "--prompt", "yi wal", "--prompt", "Bom"])
        .args(["--max_length", "8", "--block_length", "4", "--steps", "2"])
        .output()
        .expect("generate");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        out.status.success() && lines.len() == 3,
        "batch of 3 prompts: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        lines[0].starts_with("Bom") && lines[1].starts_with("yi wal"),
        "{text}"
    );
    // The run above trained with --vocab_size 512: its corpus shard sits in the cache dir named for that vocabulary.
    let shard = std::fs::read_dir(cache())
        .expect("cache")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("vocab512") && p.join("corpus.bin").exists())
        .expect("corpus shard of the vocab-512 tokenizer")
        .join("corpus.bin");
    let out = gidd()
        .args(["eval", "--checkpoint"])
        .arg(&ck)
        .arg("--data_files")
        .arg(&shard)
        .args(["--max_rows", "8", "--draws", "2", "--batch_size", "4"])
        .output()
        .expect("eval");
    assert!(
        out.status.success(),
        "eval: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let e = v["elbo_nats_per_token"].as_f64().expect("elbo");
    assert!(
        e.is_finite() && e > 0.0 && v["stderr_nats"].as_f64().is_some(),
        "{v}"
    );
    // The same ELBO on a fixed grid of noise levels: another estimator of the same quantity.
    let out = gidd()
        .args(["eval", "--checkpoint"])
        .arg(&ck)
        .arg("--data_files")
        .arg(&shard)
        .args(["--max_rows", "8", "--grid", "16", "--batch_size", "4"])
        .output()
        .expect("eval --grid");
    assert!(
        out.status.success(),
        "eval --grid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let eg = g["elbo_nats_per_token"].as_f64().expect("elbo");
    let se = g["stderr_nats"].as_f64().expect("stderr");
    assert!(g["grid_levels"] == 16 && se.is_finite() && se > 0.0, "{g}");
    assert!(
        (eg - e).abs() <= 0.25 * e,
        "grid ELBO {eg} far from the Monte Carlo one {e}"
    );
    let out = gidd()
        .args(["correct", "--checkpoint"])
        .arg(&ck)
        .args(["--text", "Bom wal yi woze.", "--steps", "3"])
        .output()
        .expect("correct");
    assert!(
        out.status.success(),
        "correct: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let n: usize = err
        .lines()
        .find_map(|l| l.strip_suffix(" changes"))
        .and_then(|x| x.parse().ok())
        .expect("change count");
    assert!(n <= 3, "at most one change per step: {err}");
    assert!(
        std::path::Path::new(&dir).join("curves.svg").exists(),
        "the run plots its curves"
    );
    let out = gidd()
        .args(["generate", "--checkpoint"])
        .arg(&ck)
        .args(["--prompt_ids", "0,99999"])
        .output()
        .expect("generate");
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("99999"),
        "out-of-range prompt ids are refused"
    );
}

// ---------------------------------------------------------------------------------------------
// What `gidd train` shows and writes (issue 4, item 6): curves.png beside curves.svg, and the
// periodic held-out ELBO beside the true entropy of the same held-out text (embedded corpus).
// Stderr is a pipe here, so the run prints the plain progress lines, not the redrawing bar.

#[test]
fn periodic_eval_shows_the_true_entropy_and_the_run_writes_curves_png() {
    let dir = tmp("eval-entropy");
    let out = gidd()
        .args(SMALL)
        .arg("512")
        .args([
            "--batch_size",
            "4",
            "--max_training_steps",
            "4",
            "--eval_steps",
            "2",
            "--save_directory",
        ])
        .arg(&dir)
        .output()
        .expect("run gidd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "train: {err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("step      1/4 [ 25.0%] loss ")),
        "plain progress lines when stderr is not a terminal: {err}"
    );
    let shown = err
        .lines()
        .find(|l| l.trim_start().starts_with("held-out ELBO"))
        .expect("a periodic held-out ELBO line");
    assert!(
        shown.contains("nats/token")
            && shown.contains("; true entropy ")
            && shown.contains("; gap "),
        "{shown}"
    );
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    let evals: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .filter(|v: &serde_json::Value| v.get("heldout_elbo").is_some())
        .collect();
    assert_eq!(evals.len(), 1, "one periodic eval (step 2): {metrics}");
    let (e, t) = (
        evals[0]["heldout_elbo"].as_f64().expect("elbo"),
        evals[0]["heldout_true_entropy"]
            .as_f64()
            .expect("true entropy"),
    );
    let gap = evals[0]["heldout_gap"].as_f64().expect("gap");
    assert!(
        t.is_finite() && t > 0.0 && (gap - (e - t)).abs() < 1e-9,
        "{}",
        evals[0]
    );
    assert!(
        shown.contains(&format!("true entropy {t:.4} nats/token")),
        "{shown}"
    );
    // The final report prints the same true entropy (computed once for the run).
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(&format!(
            "true entropy of the same held-out text: {t:.4} nats/token"
        )),
        "{report}"
    );
    let png = std::fs::read(dir.join("curves.png")).expect("curves.png beside curves.svg");
    assert!(dir.join("curves.svg").exists());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&png[12..16], b"IHDR");
    let size = |i: usize| u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]);
    assert_eq!((size(16), size(20)), (1440, 720), "curves.png size");
}
