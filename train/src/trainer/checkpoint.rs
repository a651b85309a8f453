//! Checkpoints: HF-format weights (config.json + model.safetensors) that the
//! reference loads, plus optimizer state and the data position for exact resume.
//! A checkpoint is written into a temporary directory and renamed into place, so
//! a crash or a full disk never leaves a half-written checkpoint behind.

use crate::packer::PackerState;
use anyhow::{Context, Result};
use gidd_engine::HostTensor;
use gidd_model::GiddConfig;
use std::path::{Path, PathBuf};

pub struct State {
    pub cfg: GiddConfig,
    pub params: Vec<(String, HostTensor)>,
    pub mu: Vec<HostTensor>,
    pub nu: Vec<HostTensor>,
    pub step: usize,
    pub packer: PackerState,
}

#[allow(clippy::too_many_arguments)]
pub fn save(
    root: &Path,
    step: usize,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    mu: &[HostTensor],
    nu: &[HostTensor],
    packer: &PackerState,
    data: &serde_json::Value,
    keep: usize,
) -> Result<PathBuf> {
    let dir = root.join(format!("checkpoint-{step}"));
    // `data` says what the run trained on, so `gidd eval` can find its held-out split.
    let state = serde_json::json!({ "step": step, "packer": packer, "data": data });
    save_to(&dir, cfg, params, mu, nu, &state, None)?;
    prune(root, keep)?;
    Ok(dir)
}

/// Writes a checkpoint directory `dir` (through `.{name}.tmp` beside it, renamed into
/// place): config, weights, optimizer state, `state` as trainer_state.json, the tokenizer.
fn save_to(
    dir: &Path,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    mu: &[HostTensor],
    nu: &[HostTensor],
    state: &serde_json::Value,
    tokenizer: Option<&Path>,
) -> Result<()> {
    let name = dir
        .file_name()
        .with_context(|| format!("{} names no directory", dir.display()))?
        .to_string_lossy();
    let tmp = dir.with_file_name(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    gidd_ports::write_json_pretty(&tmp.join("config.json"), &cfg.to_json())?;
    gidd_ports::save_tensors(&tmp, params, None)?;
    let mut opt: Vec<(String, HostTensor)> = vec![];
    for (i, (n, _)) in params.iter().enumerate() {
        opt.push((format!("mu.{n}"), mu[i].clone()));
        opt.push((format!("nu.{n}"), nu[i].clone()));
    }
    let opt_dir = tmp.join("optimizer");
    std::fs::create_dir_all(&opt_dir)?;
    gidd_ports::save_tensors(&opt_dir, &opt, None)?;
    gidd_ports::write_json_pretty(&tmp.join("trainer_state.json"), state)?;
    if let Some(t) = tokenizer {
        let bytes = std::fs::read(t).with_context(|| format!("reading {}", t.display()))?;
        gidd_ports::write_atomic(&tmp.join("tokenizer.json"), &bytes)?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("cannot move {} into place", dir.display()))?;
    Ok(())
}

/// `gidd consolidate`: a checkpoint (sharded by FSDP ranks, or not) written to `out` as a
/// single-rank one: HF weights for any reader, optimizer state to resume from.
pub fn consolidate(src: &Path, out: &Path) -> Result<()> {
    let st = load(src)?;
    let mut state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(src.join("trainer_state.json"))
            .with_context(|| format!("{}/trainer_state.json", src.display()))?,
    )?;
    if let Some(o) = state.as_object_mut() {
        o.remove("fsdp_world");
    }
    let tok = src.join("tokenizer.json");
    let tok = tok.is_file().then_some(tok.as_path());
    save_to(out, &st.cfg, &st.params, &st.mu, &st.nu, &state, tok)
}

/// Keeps the `keep` most recent checkpoints (0 keeps all).
pub(crate) fn prune(root: &Path, keep: usize) -> Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_prefix("checkpoint-")
                .and_then(|s| s.parse().ok())
                .map(|s| (s, e.path()))
        })
        .collect();
    found.sort();
    while found.len() > keep {
        let (_, p) = found.remove(0);
        std::fs::remove_dir_all(&p).ok();
    }
    Ok(())
}

pub fn load(dir: &Path) -> Result<State> {
    let loaded = crate::model_dir::load_checkpoint_exact(dir)?;
    let (mu, nu) = if crate::fsdp::checkpoint::is_sharded(dir) {
        // saved by FSDP ranks: consolidated here, re-sharded by the run at its own world size
        let c = crate::fsdp::checkpoint::consolidate(dir, true)?;
        (c.mu, c.nu)
    } else {
        load_optimizer(dir, &loaded.params)?
    };
    let st: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("trainer_state.json"))
            .with_context(|| format!("{}/trainer_state.json", dir.display()))?,
    )?;
    let step = st["step"].as_u64().context("trainer_state.json: step")? as usize;
    let packer: PackerState =
        serde_json::from_value(st["packer"].clone()).context("trainer_state.json: packer")?;
    Ok(State {
        cfg: loaded.cfg,
        params: loaded.params,
        mu,
        nu,
        step,
        packer,
    })
}

/// mu and nu of a single-rank checkpoint, as stored: an f64 run's state resumes exactly
/// (the run converts to its precision).
fn load_optimizer(
    dir: &Path,
    params: &[(String, HostTensor)],
) -> Result<(Vec<HostTensor>, Vec<HostTensor>)> {
    let opt = gidd_ports::TensorStore::open(&dir.join("optimizer")).with_context(|| format!("{} has no optimizer state: it is a weights-only checkpoint and cannot be resumed exactly", dir.display()))?;
    let mut mu = vec![];
    let mut nu = vec![];
    for (n, _) in params {
        mu.push(opt.get(&format!("mu.{n}"))?);
        nu.push(opt.get(&format!("nu.{n}"))?);
    }
    Ok((mu, nu))
}
