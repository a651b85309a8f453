//! Sharded checkpoints: each rank writes its shards of the parameters and optimizer state,
//! rank 0 the config, trainer state and an index; a checkpoint saved at world size N loads
//! at any world size M, and as a plain model for `generate`, `eval` and `info`.
//!
//! Layout of `checkpoint-{step}/`:
//! - `config.json`, `trainer_state.json` (as a single-rank checkpoint), `tokenizer.json`;
//! - `fsdp_index.json`: `{"world", "dtype", "params": [{"name", "shape", "shard_len"}],
//!   "shards": ["shards/rank-00000-of-00004", ...]}`;
//! - `shards/rank-{r}-of-{N}/model.safetensors`: rank r's flat shards `{name}`, `mu.{name}`
//!   and `nu.{name}`, each [shard_len], in the plan's layout ([`ShardPlan`]).
//!
//! Every file is written atomically (temp, fsync, rename) into `.checkpoint-{step}.tmp`,
//! which rank 0 renames into place only after every rank has written its shards: a rank
//! that dies mid-save leaves no `checkpoint-{step}` behind.

use super::plan::ShardPlan;
use anyhow::{bail, Context, Result};
use gidd_engine::collective::data::concat;
use gidd_engine::collective::Collective;
use gidd_engine::{Data, HostTensor};
use gidd_model::GiddConfig;
use gidd_ports::TensorStore;
use serde_json::json;
use std::path::{Path, PathBuf};

pub const INDEX: &str = "fsdp_index.json";

/// Whether `dir` holds a sharded checkpoint.
pub fn is_sharded(dir: &Path) -> bool {
    dir.join(INDEX).is_file()
}

fn shard_dir(rank: usize, world: usize) -> String {
    format!("shards/rank-{rank:05}-of-{world:05}")
}

/// What rank 0 adds to the shards: everything but the tensors.
pub struct Meta<'a> {
    pub cfg: &'a GiddConfig,
    /// trainer_state.json's content
    pub state: serde_json::Value,
    pub tokenizer: Option<&'a Path>,
    pub keep: usize,
}

/// Every rank calls this with its shards; rank 0 passes `meta`. Returns the checkpoint's
/// directory (on every rank).
pub fn save(
    comm: &dyn Collective,
    root: &Path,
    plan: &ShardPlan,
    shards: [&[HostTensor]; 3],
    meta: Option<Meta>,
    step: usize,
) -> Result<PathBuf> {
    let (rank, world) = (comm.rank(), comm.world());
    let name = format!("checkpoint-{step}");
    let tmp = root.join(format!(".{name}.tmp"));
    let dir = root.join(&name);
    if rank == 0 {
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).ok();
        }
        std::fs::create_dir_all(tmp.join("shards"))
            .with_context(|| format!("cannot create {}", tmp.display()))?;
    }
    comm.barrier()?;
    let mut named = vec![];
    for (pre, ts) in ["", "mu.", "nu."].iter().zip(shards) {
        for (n, t) in plan.names.iter().zip(ts) {
            named.push((format!("{pre}{n}"), t.clone()));
        }
    }
    gidd_ports::save_tensors(&tmp.join(shard_dir(rank, world)), &named, None)
        .with_context(|| format!("rank {rank}: writing its shards"))?;
    comm.barrier()?;
    if let Some(m) = meta {
        gidd_ports::write_json_pretty(&tmp.join("config.json"), &m.cfg.to_json())?;
        gidd_ports::write_json_pretty(&tmp.join("trainer_state.json"), &m.state)?;
        if let Some(t) = m.tokenizer {
            let bytes = std::fs::read(t).with_context(|| format!("reading {}", t.display()))?;
            gidd_ports::write_atomic(&tmp.join("tokenizer.json"), &bytes)?;
        }
        let dtype = shards[0].first().map(|t| t.dtype());
        let index = json!({
            "world": world,
            "dtype": format!("{:?}", dtype.unwrap_or(gidd_engine::DType::F32)).to_lowercase(),
            "params": plan.names.iter().enumerate().map(|(i, n)| json!({
                "name": n, "shape": plan.shapes[i], "shard_len": plan.lens[i],
            })).collect::<Vec<_>>(),
            "shards": (0..world).map(|r| shard_dir(r, world)).collect::<Vec<_>>(),
        });
        // the index last: a directory with it has every shard
        gidd_ports::write_json_pretty(&tmp.join(INDEX), &index)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot replace {}", dir.display()))?;
        }
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("cannot move {} into place", dir.display()))?;
        crate::trainer::prune_checkpoints(root, m.keep)?;
    } else if rank == 0 {
        bail!("rank 0 saves the checkpoint's metadata: it was given none");
    }
    comm.barrier()?;
    Ok(dir)
}

/// The plan a sharded checkpoint was written with, from its index.
pub fn read_plan(dir: &Path) -> Result<ShardPlan> {
    let path = dir.join(INDEX);
    let v = gidd_ports::read_json_object(&path)?;
    let world = v
        .get("world")
        .and_then(|w| w.as_u64())
        .with_context(|| format!("{}: world", path.display()))? as usize;
    let params = v
        .get("params")
        .and_then(|p| p.as_array())
        .with_context(|| format!("{}: params", path.display()))?
        .iter()
        .map(|p| {
            let name = p["name"].as_str().context("name")?.to_string();
            let shape = p["shape"]
                .as_array()
                .context("shape")?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize).context("shape entry"))
                .collect::<Result<Vec<_>>>()?;
            Ok((name, shape))
        })
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("{}: a params entry", path.display()))?;
    let plan = ShardPlan::new(&params, world)?;
    for (i, p) in v["params"].as_array().into_iter().flatten().enumerate() {
        if p["shard_len"].as_u64() != Some(plan.lens[i] as u64) {
            bail!(
                "{}: {} has shard_len {}, but ceil(numel / world) is {}",
                path.display(),
                plan.names[i],
                p["shard_len"],
                plan.lens[i]
            );
        }
    }
    Ok(plan)
}

/// A sharded checkpoint's state put back together.
#[derive(Debug, PartialEq)]
pub struct Consolidated {
    pub plan: ShardPlan,
    /// full tensors in plan order, as stored (f32, or f64 from an f64 run)
    pub params: Vec<HostTensor>,
    /// empty unless asked for
    pub mu: Vec<HostTensor>,
    pub nu: Vec<HostTensor>,
}

/// The full (consolidated) tensors of a sharded checkpoint. `with_optimizer` false skips
/// mu and nu.
pub fn consolidate(dir: &Path, with_optimizer: bool) -> Result<Consolidated> {
    let plan = read_plan(dir)?;
    let stores = (0..plan.world)
        .map(|r| {
            let d = dir.join(shard_dir(r, plan.world));
            TensorStore::open(&d).with_context(|| {
                format!(
                    "{}: rank {r}'s shards are missing: the checkpoint is incomplete",
                    d.display()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let prefixes: &[&str] = if with_optimizer {
        &["", "mu.", "nu."]
    } else {
        &[""]
    };
    let mut out = vec![vec![], vec![], vec![]];
    for (k, pre) in prefixes.iter().enumerate() {
        // every rank's flat buffer end to end, then cut as an all_gather's result is
        let mut flats: Vec<Data> = vec![];
        for (r, st) in stores.iter().enumerate() {
            let shards = plan
                .names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let key = format!("{pre}{n}");
                    let t = st.get(&key).with_context(|| format!("rank {r}: {key}"))?;
                    if t.shape != [plan.lens[i]] {
                        bail!(
                            "rank {r}: {key} has shape {:?}, expected [{}]",
                            t.shape,
                            plan.lens[i]
                        );
                    }
                    Ok(t)
                })
                .collect::<Result<Vec<_>>>()?;
            flats.push(plan.flatten(&shards)?);
        }
        let refs: Vec<&Data> = flats.iter().collect();
        out[k] = plan.unshard(&concat(&refs, "consolidate")?)?;
    }
    let nu = out.pop().unwrap_or_default();
    let mu = out.pop().unwrap_or_default();
    let params = out.pop().unwrap_or_default();
    Ok(Consolidated {
        plan,
        params,
        mu,
        nu,
    })
}
