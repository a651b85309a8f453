//! FSDP with one process per rank, launched as torchrun launches them (RANK, WORLD_SIZE,
//! LOCAL_RANK, MASTER_ADDR, MASTER_PORT), meeting over TCP on loopback: the losses are the
//! thread ranks' (`--nproc`), and a killed rank stops every other rank with an error
//! naming it, leaving no half-written checkpoint.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn cache() -> &'static Path {
    static C: std::sync::OnceLock<gidd_tests::TempDir> = std::sync::OnceLock::new();
    C.get_or_init(|| gidd_tests::TempDir::new("fsdp-proc-cache"))
        .path()
}

/// `gidd train` on the tiny preset, batches of 8, no evaluation or samples.
fn train(dtype: &str, steps: usize, dir: &Path, extra: &[&str]) -> Command {
    let mut c = gidd_tests::gidd();
    c.env("GIDD_CACHE", cache())
        .env_remove("WORLD_SIZE")
        .env_remove("RANK")
        .args(["train", "--preset", "tiny", "--batch_size", "8"])
        .args([
            "--max_training_steps",
            &steps.to_string(),
            "--warmup_steps",
            "4",
        ])
        .args(["--eval_steps", "0", "--num_samples", "0", "--threads", "1"])
        .args(["--dtype", dtype, "--save_directory"])
        .arg(dir)
        .args(extra);
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Rank `rank` of `world` processes, as torchrun would start it.
fn launch(mut c: Command, rank: usize, world: usize, port: u16) -> Child {
    c.env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a rank")
}

fn losses(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .filter_map(|v| v.get("loss").and_then(|l| l.as_f64()))
        .collect()
}

#[test]
fn process_ranks_give_the_thread_ranks_losses() {
    for (dtype, steps, tol) in [("f64", 20, 1e-12), ("f32", 10, 1e-4)] {
        let threads = gidd_tests::TempDir::new(&format!("fsdp-threads-{dtype}"));
        let out = train(dtype, steps, &threads, &["--nproc", "2"])
            .output()
            .expect("thread ranks");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = losses(&threads);
        let procs = gidd_tests::TempDir::new(&format!("fsdp-procs-{dtype}"));
        let port = free_port();
        let ranks: Vec<Child> = (0..2)
            .map(|r| launch(train(dtype, steps, &procs, &[]), r, 2, port))
            .collect();
        for (r, c) in ranks.into_iter().enumerate() {
            let o = c.wait_with_output().expect("rank output");
            assert!(
                o.status.success(),
                "rank {r}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let got = losses(&procs);
        assert_eq!(
            got.len(),
            steps,
            "one loss per step, written by rank 0 alone"
        );
        let d = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{dtype}: 2 processes vs 2 threads, max |loss difference| over {steps} steps = {d:.3e}"
        );
        assert!(d <= tol, "{got:?} vs {want:?}");
        assert!(procs
            .join(format!("checkpoint-{steps}/fsdp_index.json"))
            .is_file());
    }
}

#[test]
fn a_killed_rank_stops_the_others_naming_it_and_leaves_no_half_checkpoint() {
    // one plain step first: the tokenizer cache is written before three processes read it
    let warm = gidd_tests::TempDir::new("fsdp-kill-warm");
    let o = train("f32", 1, &warm, &[]).output().expect("warm-up run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = gidd_tests::TempDir::new("fsdp-kill");
    let port = free_port();
    // 4 ranks of 2 rows each; a checkpoint every step: the kill lands in a step or a save
    let run = |r| {
        launch(
            train(
                "f32",
                100_000,
                &dir,
                &["--save_steps", "1", "--save_total_limit", "0"],
            ),
            r,
            4,
            port,
        )
    };
    let mut ranks: Vec<Child> = (0..4).map(run).collect();
    let t0 = Instant::now();
    while !dir.join("checkpoint-2").is_dir() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no checkpoint written within 300 s"
        );
        // a rank that stopped before the kill: its error, not a timeout
        for r in 0..4 {
            if ranks[r].try_wait().expect("try_wait").is_some() {
                let o = ranks.swap_remove(r).wait_with_output().expect("output");
                panic!("rank {r} exited: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ranks[1].kill().expect("kill rank 1");
    for (r, c) in ranks.into_iter().enumerate() {
        let o = c.wait_with_output().expect("rank output");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "rank {r} went on: {err}");
        if r != 1 {
            assert!(err.contains("rank 1 failed"), "rank {r}: {err}");
        }
    }
    // every checkpoint left is whole: its index and every rank's shards
    let mut seen = 0;
    for e in std::fs::read_dir(&*dir).expect("save dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("checkpoint-") {
            seen += 1;
            assert!(
                e.path().join("fsdp_index.json").is_file(),
                "{name}: no index"
            );
            for r in 0..4 {
                let s = e
                    .path()
                    .join(format!("shards/rank-{r:05}-of-00004/model.safetensors"));
                assert!(s.is_file(), "{name}: {} missing", s.display());
            }
        }
    }
    assert!(seen > 0, "the checkpoints written before the kill are kept");
}
