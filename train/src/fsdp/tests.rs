//! Sharded checkpoints in process: a save at one world size consolidates to the state
//! that was sharded, and a rank that fails mid-save stops the others with its name and
//! leaves no checkpoint behind.

use super::checkpoint::{consolidate, save, Meta};
use super::ShardPlan;
use gidd_engine::collective::{run_ranks, Collective};
use gidd_engine::HostTensor;
use std::time::Duration;

fn tiny_cfg() -> gidd_model::GiddConfig {
    gidd_model::GiddConfig::from_json(serde_json::json!({
        "vocab_size": 13, "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1,
        "num_attention_heads": 2, "head_dim": 4, "max_position_embeddings": 8,
    }))
    .expect("config")
}

/// Distinct values in every element of every tensor: a misplaced element shows.
fn state(cfg: &gidd_model::GiddConfig, base: f32) -> Vec<HostTensor> {
    cfg.param_shapes()
        .iter()
        .enumerate()
        .map(|(i, (_, s))| {
            let n: usize = s.iter().product();
            let v = (0..n)
                .map(|j| base + i as f32 * 1000.0 + j as f32)
                .collect();
            HostTensor::f32(s.clone(), v).expect("tensor")
        })
        .collect()
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gidd-fsdp-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

#[test]
fn a_save_at_3_ranks_consolidates_to_the_sharded_state() {
    let cfg = tiny_cfg();
    let plan = ShardPlan::new(&cfg.param_shapes(), 3).expect("plan");
    let (p, mu, nu) = (state(&cfg, 0.5), state(&cfg, 0.25), state(&cfg, 0.125));
    let root = scratch("save3");
    run_ranks(3, Duration::from_secs(30), |c| {
        let r = c.rank();
        let sh = [plan.shard(&p, r)?, plan.shard(&mu, r)?, plan.shard(&nu, r)?];
        let meta = (r == 0).then(|| Meta {
            cfg: &cfg,
            state: serde_json::json!({"step": 7}),
            tokenizer: None,
            keep: 0,
        });
        save(c, &root, &plan, [&sh[0], &sh[1], &sh[2]], meta, 7)
    })
    .expect("save");
    let got = consolidate(&root.join("checkpoint-7"), true).expect("load");
    assert_eq!(got.plan, plan);
    assert_eq!((got.params, got.mu, got.nu), (p, mu, nu));
    // and the weights alone load as a model does
    let m = crate::model_dir::load_checkpoint(&root.join("checkpoint-7")).expect("model");
    assert_eq!(m.params.len(), cfg.param_shapes().len());
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_rank_failing_mid_save_leaves_no_checkpoint_and_is_named() {
    let cfg = tiny_cfg();
    let plan = ShardPlan::new(&cfg.param_shapes(), 4).expect("plan");
    let p = state(&cfg, 1.0);
    let root = scratch("fail");
    let e = run_ranks(4, Duration::from_secs(30), |c| {
        let r = c.rank();
        let sh = plan.shard(&p, r)?;
        if r == 2 {
            // rank 2 dies after the others have begun writing
            c.barrier()?;
            anyhow::bail!("rank 2 was killed");
        }
        let meta = (r == 0).then(|| Meta {
            cfg: &cfg,
            state: serde_json::json!({"step": 3}),
            tokenizer: None,
            keep: 0,
        });
        save(c, &root, &plan, [&sh, &sh, &sh], meta, 3).map(|_| ())
    })
    .expect_err("rank 2 failed");
    assert_eq!(e.rank, 2, "{e}");
    assert!(e.to_string().contains("rank 2 was killed"), "{e}");
    for (r, msg) in &e.all {
        if *r != 2 {
            assert!(msg.contains("rank 2 failed"), "rank {r}: {msg}");
        }
    }
    assert!(
        !root.join("checkpoint-3").exists(),
        "a half-written checkpoint was moved into place"
    );
    std::fs::remove_dir_all(&root).ok();
}

/// A config whose layers outweigh its embedding and head: the gathered transients of the
/// step program are about two layers' parameters and a gradient, not the model's.
fn layered_cfg() -> gidd_model::GiddConfig {
    gidd_model::GiddConfig::from_json(serde_json::json!({
        "vocab_size": 37, "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 6,
        "num_attention_heads": 2, "head_dim": 16, "max_position_embeddings": 16,
        "attention_bias": true, "mlp_bias": true, "use_qk_norm": true,
        "tie_word_embeddings": false,
    }))
    .expect("config")
}

#[test]
fn the_step_program_holds_about_two_layers_gathered_not_the_model() {
    use super::memory::transient_bytes;
    let cfg = layered_cfg();
    let shapes = cfg.param_shapes();
    let numel = |s: &Vec<usize>| s.iter().product::<usize>();
    let layer: usize = shapes
        .iter()
        .filter(|(n, _)| n.starts_with("model.layers.0."))
        .map(|(_, s)| numel(s))
        .sum();
    let largest = shapes.iter().map(|(_, s)| numel(s)).max().expect("params");
    let model = cfg.num_params();
    assert!(
        6 * layer > model / 2,
        "layers dominate: {layer} x 6 of {model}"
    );
    for world in [1, 2, 4, 5] {
        let plan = ShardPlan::new(&shapes, world).expect("plan");
        let t = transient_bytes(&cfg, &plan, gidd_engine::DType::F32).expect("transient");
        eprintln!(
            "world {world}: transient {t} bytes; a layer {} bytes, the model {} bytes",
            4 * layer,
            4 * model
        );
        // at least one layer gathered; at most two (this one, the next in flight) and the
        // largest gradient waiting for its reduce-scatter
        assert!(t >= 4 * layer, "world {world}: {t}");
        assert!(t <= 4 * (2 * layer + largest), "world {world}: {t}");
        assert!(2 * t < 4 * model, "world {world}: {t} of {}", 4 * model);
    }
}

/// Deterministic values in [-0.5, 0.5) * scale, every element distinct enough to matter.
fn values(i: usize, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|j| {
            let h = (i as u64 * 0x9e37_79b9 + j as u64 * 0x85eb_ca6b) % 10_007;
            (h as f32 / 10_007.0 - 0.5) * scale
        })
        .collect()
}

/// The per-layer micro-batch program (gathers and reduce-scatters inside, scheduled) at
/// `world` ranks, each rank on its rows, gives the plain program's loss sums and the rank's
/// shard of the gradient summed over ranks: in f32, where the cpu executor runs the fused
/// kernels, and with every parameter non-zero (biases included).
fn sharded_micro_matches_plain(dtype: gidd_engine::DType, world: usize) {
    use crate::trainer::step::{build_micro, build_micro_sharded, LossOpts};
    use gidd_engine::{CpuExecutor, Executor};
    let cfg = layered_cfg();
    let (rows, seq) = (2, 8);
    let (sched, no) = super::memory::probe_opts(&cfg);
    let lo = LossOpts {
        beta_is_div: 1.0,
        sum: true,
        loss_scale: 1.0,
    };
    let shapes = cfg.param_shapes();
    let plan = ShardPlan::new(&shapes, world).expect("plan");
    let master = dtype.accum();
    let full: Vec<HostTensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, (_, s))| {
            let v = values(i, s.iter().product(), 0.4);
            HostTensor::f32(s.clone(), v)
                .expect("param")
                .convert(master)
        })
        .collect();
    let labels: Vec<i32> = (0..world * rows * seq)
        .map(|j| ((j * 7 + 3) % cfg.vocab_size) as i32)
        .collect();
    let seed = HostTensor::u32(vec![2], vec![5, 9]).expect("seed");
    let step = HostTensor::u32(vec![], vec![3]).expect("step");
    let inputs = |r: usize| {
        let l = labels[r * rows * seq..(r + 1) * rows * seq].to_vec();
        (
            HostTensor::i32(vec![rows, seq], l).expect("labels"),
            HostTensor::u32(vec![], vec![(r * rows) as u32]).expect("row0"),
        )
    };
    // the reference: each rank's rows through the plain program, in rank order
    let plain = build_micro(&cfg, &sched, &no, &lo, rows, seq, dtype).expect("plain");
    let mut lp = CpuExecutor.load(&plain).expect("load");
    let mut sums = vec![0f64; 5];
    let mut gsum: Vec<HostTensor> = full
        .iter()
        .map(|t| HostTensor::zeros(master, t.shape.clone()))
        .collect();
    for r in 0..world {
        let (l, r0) = inputs(r);
        let mut rest: Vec<&HostTensor> = full.iter().collect();
        rest.extend([&l, &seed, &step, &r0]);
        let o = CpuExecutor
            .run_donating(&mut lp, std::mem::take(&mut gsum), &rest)
            .expect("plain run");
        for (s, t) in sums.iter_mut().zip(&o) {
            *s += t.to_f64_vec()[0];
        }
        gsum = o.into_iter().skip(5).collect();
    }
    let p = build_micro_sharded(&cfg, &sched, &no, &lo, rows, seq, dtype, &plan).expect("sharded");
    let got = run_ranks(world, Duration::from_secs(60), |c| {
        let mut lp = CpuExecutor.load(&p)?;
        let sh = plan.shard(&full, c.rank())?;
        let (l, r0) = inputs(c.rank());
        let mut rest: Vec<&HostTensor> = sh.iter().collect();
        rest.extend([&l, &seed, &step, &r0]);
        Ok::<_, anyhow::Error>(CpuExecutor.run_donating_with(
            &mut lp,
            c,
            plan.zeros(master),
            &rest,
        )?)
    })
    .expect("ranks");
    // f32: the same rows, their gradient sums added in another order
    let tol = if dtype == gidd_engine::DType::F64 {
        1e-12
    } else {
        2e-4
    };
    let mut bad = vec![];
    for (r, o) in got.iter().enumerate() {
        let want = plan.shard(&gsum, r).expect("shard");
        for (i, (g, w)) in o[5..].iter().zip(&want).enumerate() {
            let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
            let scale = w.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
            let d = g
                .iter()
                .zip(&w)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            if d > tol * scale {
                bad.push(format!(
                    "rank {r}: gradient of {} off by {d:.3e} (scale {scale:.3e})",
                    plan.names[i]
                ));
            }
        }
    }
    let total: f64 = got.iter().map(|o| o[0].to_f64_vec()[0]).sum();
    eprintln!(
        "{dtype:?} world {world}: loss {total} plain {}; {} bad",
        sums[0],
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "{dtype:?} world {world}:\n{}",
        bad.join("\n")
    );
    // the loss sums of all ranks are the plain ones
    let total: f64 = got.iter().map(|o| o[0].to_f64_vec()[0]).sum();
    assert!(
        (total - sums[0]).abs() <= tol * sums[0].abs().max(1.0),
        "{dtype:?} world {world}: loss sum {total} vs {}",
        sums[0]
    );
}

#[test]
fn the_per_layer_program_gives_the_plain_gradients_in_f32() {
    for world in [1, 2, 3] {
        sharded_micro_matches_plain(gidd_engine::DType::F32, world);
    }
}

#[test]
fn the_per_layer_program_gives_the_plain_gradients_in_f64() {
    for world in [1, 2] {
        sharded_micro_matches_plain(gidd_engine::DType::F64, world);
    }
}
