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
