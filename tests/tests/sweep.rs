//! `gidd sweep` end to end: the smoke preset trains, writes results.jsonl and results.csv
//! with every key `gidd fit` reads, and a second invocation skips every finished run.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::Path;
use std::process::{Command, Output};

fn cache() -> &'static Path {
    static C: std::sync::OnceLock<gidd_tests::TempDir> = std::sync::OnceLock::new();
    C.get_or_init(|| gidd_tests::TempDir::new("sweep-cache"))
        .path()
}

fn gidd() -> Command {
    let mut c = gidd_tests::gidd();
    c.env("GIDD_CACHE", cache());
    c
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "gidd sweep failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const KEYS: [&str; 23] = [
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
    "history",
];

#[test]
fn smoke_sweep_trains_then_skips() {
    let dir = gidd_tests::TempDir::new("sweep-smoke");
    let run = || {
        ok(gidd()
            .args(["sweep", "--preset", "smoke", "--out"])
            .arg(dir.path())
            .output()
            .expect("run gidd sweep"))
    };
    let t0 = std::time::Instant::now();
    run();
    eprintln!("smoke sweep: {:.1}s", t0.elapsed().as_secs_f64());
    let first = std::fs::read_to_string(dir.join("results.jsonl")).expect("results.jsonl");
    let lines: Vec<serde_json::Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 4, "{first}");
    for v in &lines {
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, KEYS, "{v}");
        let h = v["history"].as_array().unwrap();
        assert_eq!(h.len(), 30);
        assert!(h.iter().all(|p| p[1].as_f64().is_some_and(f64::is_finite)));
        for k in ["final_elbo", "ema_elbo", "n_params", "flops"] {
            assert!(v[k].as_f64().is_some_and(f64::is_finite), "{k}: {v}");
        }
        assert_eq!(v["tokens"].as_f64(), Some(30.0 * 8.0 * 32.0));
        // the embedded corpus's text is known: its bytes per token come with every run
        let bpt = v["bytes_per_token"].as_f64().unwrap();
        assert!((1.0..16.0).contains(&bpt), "bytes/token {bpt}");
        assert!(v["heldout_elbo"].as_f64().is_some_and(f64::is_finite));
        assert_eq!(v["vocab"].as_u64().map(|x| x > 4), Some(true));
    }
    let csv = std::fs::read_to_string(dir.join("results.csv")).expect("results.csv");
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.starts_with("run,noise,shift,"));

    // The second run trains nothing and writes the same results.
    let t1 = std::time::Instant::now();
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("4 already finished, 0 to train"), "{err}");
    assert!(t1.elapsed().as_secs_f64() < 20.0);
    let second = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    assert_eq!(first, second);

    // The study's next command reads what the sweep wrote: every run gets a loss curve.
    let fit = dir.join("fit");
    let out = ok(gidd()
        .args([
            "fit",
            "--scale",
            "smoke",
            "--bootstrap",
            "200",
            "--no_plots",
            "--out",
        ])
        .arg(&fit)
        .arg(dir.join("results.jsonl"))
        .output()
        .expect("run gidd fit"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("4 runs fitted, 0 skipped"), "{said}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fit.join("fit.json")).expect("fit.json"))
            .expect("fit.json is JSON");
    assert_eq!(
        j["thresholds"]["min_step"].as_f64(),
        Some(5.0),
        "{}",
        j["thresholds"]
    );
}

#[test]
fn a_killed_run_is_retrained_and_a_finished_one_is_not() {
    let dir = gidd_tests::TempDir::new("sweep-resume");
    let grid = dir.join("grid.json");
    std::fs::write(
        &grid,
        r#"{"sizes": [{"layers": 1, "hidden": 32, "heads": 2}], "noise": ["masked", -2],
            "batch_sizes": [4], "lrs": {"*": [1]}, "steps": 6, "warmup": 1, "seq": 32,
            "save_steps": 3, "extra_args": ["--vocab_size", "512"]}"#,
    )
    .unwrap();
    let sweep = || {
        gidd()
            .args(["sweep", "--grid"])
            .arg(&grid)
            .arg("--out")
            .arg(dir.path())
            .output()
            .expect("run gidd sweep")
    };
    ok(sweep());
    let runs = dir.join("runs");
    let a = runs.join("masked-L1-d32-h2-B4-lr1-S6");
    let b = runs.join("low-uniform-L1-d32-h2-B4-lr1-S6");
    // A finished run's metrics are never touched again: mark it so a rerun would show.
    let marked = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    // Kill-resume: b loses its final checkpoint, keeps the step-3 one, and resumes there.
    std::fs::remove_dir_all(b.join("checkpoint-6")).unwrap();
    // ... as if killed after step 4: --collect reports it as a 4-step run, trains nothing
    let m = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    let four: String = m
        .lines()
        .filter(|l| l.contains("\"loss\""))
        .take(4)
        .map(|l| l.to_string() + "\n")
        .collect();
    std::fs::write(b.join("metrics.jsonl"), four).unwrap();
    let out = ok(gidd()
        .args(["sweep", "--collect", "--grid"])
        .arg(&grid)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 of 2 runs have a history (1 finished)"),
        "{err}"
    );
    let part = std::fs::read_to_string(dir.join("results_partial.jsonl")).unwrap();
    let v: serde_json::Value = serde_json::from_str(part.lines().nth(1).unwrap()).unwrap();
    assert_eq!(v["steps"].as_u64(), Some(4));
    assert_eq!(v["tokens"].as_f64(), Some(4.0 * 4.0 * 32.0));
    assert_eq!(v["history"].as_array().unwrap().len(), 4);
    assert!(!b.join("checkpoint-6").exists());
    let out = ok(sweep());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 already finished, 1 to train"), "{err}");
    assert!(err.contains("resuming from step 3"), "{err}");
    assert_eq!(
        std::fs::read_to_string(a.join("metrics.jsonl")).unwrap(),
        marked
    );
    let res = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    assert_eq!(res.lines().count(), 2);
    let v: serde_json::Value = serde_json::from_str(res.lines().nth(1).unwrap()).unwrap();
    assert_eq!(
        (v["noise"].as_str(), v["shift"].as_f64()),
        (Some("low-uniform"), Some(-2.0))
    );
    assert_eq!(v["history"].as_array().unwrap().len(), 6);
}

#[test]
fn bad_input_fails_with_a_fix() {
    let dir = gidd_tests::TempDir::new("sweep-bad");
    let grid = dir.join("grid.json");
    std::fs::write(
        &grid,
        r#"{"sizes": [{"layers": 1, "hidden": 32}], "noise": ["maskd"], "batch_sizes": [4],
            "lrs": {"*": [1]}, "steps": 6, "warmup": 1, "seq": 32}"#,
    )
    .unwrap();
    for (args, want) in [
        (
            vec!["--grid", grid.to_str().unwrap()],
            "unknown noise type \"maskd\"",
        ),
        (
            vec!["--grid", "/nonexistent/grid.json"],
            "cannot read the grid file",
        ),
        (
            vec!["--preset", "smoke", "--", "--no_such_flag"],
            "do not parse",
        ),
    ] {
        let out = gidd()
            .arg("sweep")
            .args(&args)
            .arg("--out")
            .arg(dir.join("out"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    }
    std::fs::write(&grid, r#"{"sizes": [], "noise": ["masked"], "batch_sizes": [4], "lrs": {"*": [1]}, "steps": 6, "warmup": 1, "seq": 32}"#).unwrap();
    let out = gidd()
        .args(["sweep", "--dry_run", "--grid"])
        .arg(&grid)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("sizes list is empty"));
    // --dry_run prints the plan and trains nothing
    let out = ok(gidd()
        .args(["sweep", "--preset", "toy", "--dry_run", "--out"])
        .arg(dir.join("dry"))
        .output()
        .unwrap());
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("18 runs, total C"), "{plan}");
    assert!(!dir.join("dry").exists());
    // the paper's grid plans without training: 510 runs, the 40k-step rule applied
    let out = ok(gidd()
        .args(["sweep", "--preset", "paper", "--dry_run", "--out"])
        .arg(dir.join("paper"))
        .output()
        .unwrap());
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("510 runs, total C"), "{plan}");
    assert!(
        plan.contains("masked-L8-d512-h8-B512-lr0.5-S40000"),
        "{plan}"
    );
    assert!(
        plan.contains("masked-L20-d1536-h12-B512-lr0.5-S80000"),
        "{plan}"
    );
}
