//! Loading a model directory (config.json + safetensors) into host tensors, and
//! running forward programs on it.

use crate::data::tokenizer::Tok;
use anyhow::bail;
use gidd_engine::{DType, HostTensor};
use gidd_model::GiddConfig;
use gidd_ports::TensorStore;
use std::path::Path;

/// `--dtype`: the activation dtype, f32 or bf16.
pub fn parse_dtype(s: &str) -> anyhow::Result<DType> {
    match s {
        "f32" | "fp32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f64" | "fp64" => bail!(
            "--dtype {s}: f64 is the audit precision of `gidd train` (and `gidd audit`); this command runs f32 or bf16 (an f64 checkpoint loads rounded to f32)"
        ),
        d => bail!("--dtype {d}: use f32 or bf16"),
    }
}

/// `--dtype` of `gidd train` and `gidd audit`: f32, bf16, or f64, the audit precision, which
/// makes parameters, optimizer state and every accumulation f64 too: a run with rounding
/// taken out of a comparison (of two executors, or against the reference).
pub fn parse_audit_dtype(s: &str) -> anyhow::Result<DType> {
    match s {
        "f64" | "fp64" => Ok(DType::F64),
        d => parse_dtype(d).map_err(|_| anyhow::anyhow!("--dtype {d}: use f32, bf16 or f64")),
    }
}

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
    Ok(GiddConfig::from_json(serde_json::Value::Object(obj))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
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
    let store = TensorStore::open(dir)?;
    let expected = cfg.param_shapes();
    gidd_ports::check_names(&store, &expected)?;
    let params = expected
        .iter()
        .map(|(n, _)| {
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

/// The SPMD partitioner a `--partitioner` flag names: gspmd or shardy.
pub fn parse_partitioner(s: &str) -> anyhow::Result<gidd_xla::Partitioner> {
    Ok(match s {
        "gspmd" => gidd_xla::Partitioner::Gspmd,
        "shardy" => gidd_xla::Partitioner::Shardy,
        p => bail!("--partitioner {p}: use gspmd or shardy"),
    })
}

/// `--devices N` is for `--backend xla`, and N >= 1; `doing` names the command's work.
pub fn check_devices(devices: usize, backend: &str, doing: &str) -> anyhow::Result<()> {
    if devices == 0 || (devices > 1 && backend != "xla") {
        bail!(
            "--devices {devices} --backend {backend}: {doing} over several devices needs --backend xla (and at least 1 device)"
        );
    }
    Ok(())
}

/// A PJRT client with at least `devices` devices: the XLA CPU plugin is asked for that
/// many (`cpu_device_count`); other plugins have the devices they have.
pub fn xla_client(plugin: Option<&Path>, devices: usize) -> anyhow::Result<gidd_xla::Client> {
    let api = gidd_xla::load_plugin(&gidd_xla::find_plugin(plugin)?)?;
    let c = gidd_xla::Client::new(api)?;
    if c.device_count() >= devices || c.platform() != "cpu" {
        return Ok(c);
    }
    drop(c);
    Ok(gidd_xla::Client::with_options(
        api,
        &[("cpu_device_count", devices as i64)],
    )?)
}
