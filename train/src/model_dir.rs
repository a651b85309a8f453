//! A model directory (config.json + safetensors, optionally tokenizer.json) loaded into
//! host tensors, strictly checked against the config.

use anyhow::bail;
use gidd_engine::{DType, HostTensor};
use gidd_model::GiddConfig;
use gidd_ports::data::Tok;
use gidd_ports::TensorStore;
use std::path::Path;

/// The tokenizer of a model directory: `explicit` when given (it must exist), else the
/// directory's tokenizer.json when it has one.
pub fn load_tokenizer(dir: &Path, explicit: Option<&Path>) -> anyhow::Result<Option<Tok>> {
    match explicit {
        Some(p) if !p.exists() => bail!("--tokenizer {}: not found", p.display()),
        Some(p) => Ok(Some(Tok::from_file(p)?)),
        None => {
            let p = dir.join("tokenizer.json");
            Ok(if p.exists() {
                Some(Tok::from_file(&p)?)
            } else {
                None
            })
        }
    }
}

/// A model: its config and its parameters (f32, in `GiddConfig::param_shapes` order).
pub struct Loaded {
    pub cfg: GiddConfig,
    pub params: Vec<(String, HostTensor)>,
}

pub fn load_config(dir: &Path) -> anyhow::Result<GiddConfig> {
    let path = dir.join("config.json");
    if !path.exists() {
        anyhow::bail!("{} not found: a model directory holds config.json and model.safetensors (or a sharded index)", path.display());
    }
    let obj = gidd_ports::read_json_object(&path)?;
    GiddConfig::from_json(serde_json::Value::Object(obj))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Loads and strictly checks a checkpoint: every expected tensor present with its shape,
/// nothing extra. Parameters come as f32 (bf16 widened, f64 rounded to nearest).
pub fn load_checkpoint(dir: &Path) -> anyhow::Result<Loaded> {
    load_checkpoint_in(dir, false)
}

/// `params` with every tensor in `dtype`: borrowed when they already are (the usual case),
/// converted otherwise (an f64 run's parameters for f32 generation, or f32 ones for an
/// f64 audit).
pub fn params_as(
    params: &[(String, HostTensor)],
    dtype: DType,
) -> std::borrow::Cow<'_, [(String, HostTensor)]> {
    if params.iter().all(|(_, t)| t.dtype() == dtype) {
        return std::borrow::Cow::Borrowed(params);
    }
    std::borrow::Cow::Owned(
        params
            .iter()
            .map(|(n, t)| (n.clone(), t.convert(dtype)))
            .collect(),
    )
}

/// [`load_checkpoint`], keeping f64 parameters f64 (resuming an f64 run exactly).
pub fn load_checkpoint_exact(dir: &Path) -> anyhow::Result<Loaded> {
    load_checkpoint_in(dir, true)
}

fn load_checkpoint_in(dir: &Path, keep_f64: bool) -> anyhow::Result<Loaded> {
    let cfg = load_config(dir)?;
    if crate::fsdp::checkpoint::is_sharded(dir) {
        return load_sharded(dir, cfg, keep_f64);
    }
    let store = TensorStore::open(dir)?;
    let expected = cfg.param_shapes();
    gidd_ports::check_names(&store, &expected)?;
    let params = expected
        .iter()
        .map(|(n, _)| {
            if let Some((d, _)) = store.info(n) {
                use gidd_ports::StoredDType as S;
                if !matches!(d, S::F32 | S::F16 | S::BF16 | S::F64) {
                    bail!(
                        "{}: tensor {n} is stored as {d:?}; parameters must be f32, f16, bf16 or f64",
                        dir.display()
                    );
                }
            }
            let f64_stored = matches!(store.info(n), Some((gidd_ports::StoredDType::F64, _)));
            let t = if keep_f64 && f64_stored {
                store.get(n)?
            } else {
                store.get_f32(n)?
            };
            Ok((n.clone(), t))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Loaded { cfg, params })
}

/// A checkpoint written by FSDP ranks, consolidated: its index must name exactly the
/// config's parameters with their shapes.
fn load_sharded(dir: &Path, cfg: GiddConfig, keep_f64: bool) -> anyhow::Result<Loaded> {
    let crate::fsdp::checkpoint::Consolidated { plan, params, .. } =
        crate::fsdp::checkpoint::consolidate(dir, false)?;
    let expected = cfg.param_shapes();
    let got: Vec<(String, Vec<usize>)> = plan
        .names
        .iter()
        .cloned()
        .zip(plan.shapes.clone())
        .collect();
    if got != expected {
        let want: Vec<&String> = expected.iter().map(|(n, _)| n).collect();
        bail!(
            "{}: the shard index's parameters {:?} are not the config's {:?}",
            dir.display(),
            got.iter()
                .map(|(n, s)| format!("{n} {s:?}"))
                .collect::<Vec<_>>(),
            want
        );
    }
    let params = plan
        .names
        .into_iter()
        .zip(params)
        .map(|(n, t)| {
            let t = if keep_f64 || t.dtype() == DType::F32 {
                t
            } else {
                t.convert(DType::F32)
            };
            (n, t)
        })
        .collect();
    Ok(Loaded { cfg, params })
}
