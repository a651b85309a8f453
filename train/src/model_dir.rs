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
    check_against(&store, &expected, dir)?;
    let params = expected
        .iter()
        .map(|(n, _)| {
            if let Some((d, _)) = store.info(n) {
                check_float(dir, n, d)?;
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

/// [`gidd_ports::check_names`], with the file of every mis-shaped tensor named (a sharded
/// checkpoint has several).
fn check_against(
    store: &TensorStore,
    expected: &[(String, Vec<usize>)],
    dir: &Path,
) -> anyhow::Result<()> {
    match gidd_ports::check_names(store, expected) {
        Ok(()) => Ok(()),
        Err(e) => {
            let mut msg = format!("{}: {e}", dir.display());
            if let gidd_ports::PortError::Mismatch { misshaped, .. } = &e {
                for (name, _, _) in misshaped {
                    if let Some(f) = store.file_of(name) {
                        msg.push_str(&format!("\n  {name} is stored in {}", f.display()));
                    }
                }
            }
            bail!(msg)
        }
    }
}

/// Whether a stored dtype can be a parameter.
fn check_float(dir: &Path, name: &str, d: gidd_ports::StoredDType) -> anyhow::Result<()> {
    use gidd_ports::StoredDType as S;
    if !matches!(d, S::F32 | S::F16 | S::BF16 | S::F64) {
        bail!(
            "{}: tensor {name} is stored as {d:?}; parameters must be f32, f16, bf16 or f64",
            dir.display()
        );
    }
    Ok(())
}

/// What [`load_checkpoint_mapped`] read in place and what it copied.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MapStats {
    /// tensors (and their bytes) the parameters read in place from the mapped files
    pub in_place: usize,
    pub in_place_bytes: u64,
    /// tensors (and the bytes of their copies) that had to be converted: f16 or f64
    /// stored, unaligned, or an FSDP-sharded checkpoint (consolidated in memory)
    pub copied: usize,
    pub copied_bytes: u64,
    /// safetensors files mapped
    pub files: usize,
}

/// Loads a checkpoint for inference without copying its weights: f32, bf16 and f16 tensors
/// stay in the memory-mapped file pages (`Data::Mapped`, bf16 and f16 keep their dtype) and
/// the CPU executor
/// reads them in place, so resident memory is the page cache the OS can drop, not a heap
/// copy; f64 tensors are converted to f32. Single files and HF sharded checkpoints
/// (`model.safetensors.index.json`) alike; strictly checked as [`load_checkpoint`] does.
/// Programs declare each parameter in its dtype (`Params::declare_each`).
pub fn load_checkpoint_mapped(dir: &Path) -> anyhow::Result<(Loaded, MapStats)> {
    if crate::fsdp::checkpoint::is_sharded(dir) {
        let m = load_checkpoint(dir)?;
        let stats = MapStats {
            copied: m.params.len(),
            copied_bytes: m
                .params
                .iter()
                .map(|(_, t)| t.data.as_bytes().len() as u64)
                .sum(),
            ..MapStats::default()
        };
        return Ok((m, stats));
    }
    let cfg = load_config(dir)?;
    let store = TensorStore::open(dir)?;
    let expected = cfg.param_shapes();
    check_against(&store, &expected, dir)?;
    let mut stats = MapStats::default();
    let mut files = std::collections::BTreeSet::new();
    let mut params = Vec::with_capacity(expected.len());
    for (n, _) in &expected {
        let Some((d, _)) = store.info(n) else {
            bail!("{}: tensor {n} vanished after the check", dir.display());
        };
        check_float(dir, n, d)?;
        if let Some(f) = store.file_of(n) {
            files.insert(f.to_path_buf());
        }
        use gidd_ports::StoredDType as S;
        let (t, in_place) = match d {
            S::F32 | S::BF16 | S::F16 => store.get_mapped(n)?,
            _ => (store.get_f32(n)?, false),
        };
        let bytes = t.data.as_bytes().len() as u64;
        if in_place {
            stats.in_place += 1;
            stats.in_place_bytes += bytes;
        } else {
            stats.copied += 1;
            stats.copied_bytes += bytes;
        }
        params.push((n.clone(), t));
    }
    stats.files = files.len();
    Ok((Loaded { cfg, params }, stats))
}
