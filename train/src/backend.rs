//! The backend registry: the one place that turns `--backend` (and its companion flags)
//! into an executor. Every subcommand that runs a model takes [`BackendArgs`] and runs its
//! generic code on whatever [`Opened`] holds through [`with_executor!`]; adding an executor
//! means one variant here and one arm in the macro, nowhere else.

use anyhow::{bail, Result};
use gidd_engine::{BackendKind, CpuExecutor, DType};
use std::path::{Path, PathBuf};

/// `--backend`: where programs run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// This machine's cores (AVX-512/AVX2 kernels chosen at run time, rayon threads).
    #[default]
    Cpu,
    /// A PJRT plugin (XLA CPU, libtpu, XLA GPU) running the program as StableHLO.
    Xla,
    /// NVIDIA GPUs through hand-written PTX (primitives; fused ops as decompositions),
    /// driver loaded at run time: without one, a clean error.
    Cuda,
    /// Vulkan/Metal/DX12 GPUs (lavapipe, Mesa's software Vulkan, without one) through
    /// hand-written WGSL on wgpu.
    Wgpu,
}

impl Backend {
    pub fn kind(self) -> BackendKind {
        match self {
            Backend::Cpu => BackendKind::Cpu,
            Backend::Xla => BackendKind::Xla,
            Backend::Cuda => BackendKind::Cuda,
            Backend::Wgpu => BackendKind::Wgpu,
        }
    }
    pub fn name(self) -> &'static str {
        self.kind().name()
    }
}

/// `--partitioner`: which of XLA's SPMD partitioners splits a program over `--devices`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PartitionerArg {
    #[default]
    Gspmd,
    Shardy,
}

impl From<PartitionerArg> for gidd_xla::Partitioner {
    fn from(p: PartitionerArg) -> Self {
        match p {
            PartitionerArg::Gspmd => gidd_xla::Partitioner::Gspmd,
            PartitionerArg::Shardy => gidd_xla::Partitioner::Shardy,
        }
    }
}

/// The flags that choose an executor, shared by every subcommand that runs a model.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(rename_all = "snake_case")]
pub struct BackendArgs {
    /// Where programs run: cpu, xla (a PJRT plugin: --pjrt_plugin, $GIDD_PJRT_PLUGIN, or
    /// .xla-plugin/ from engine/xla/install-plugin.sh), or wgpu (the first Vulkan/Metal/DX12
    /// adapter; WGPU_ADAPTER_NAME picks another); cuda needs an NVIDIA driver.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub backend: Backend,
    /// The PJRT plugin (.so) of --backend xla.
    #[arg(long, alias = "pjrt-plugin")]
    pub pjrt_plugin: Option<PathBuf>,
    /// Devices to shard over (FSDP; --backend xla). The XLA CPU plugin is asked for that many.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// The SPMD partitioner of --devices > 1.
    #[arg(long, value_enum, default_value_t = PartitionerArg::Gspmd)]
    pub partitioner: PartitionerArg,
}

/// An executor opened from [`BackendArgs`].
pub enum Opened {
    Cpu(CpuExecutor),
    Xla(gidd_xla::XlaExecutor),
    /// Several XLA devices: state and batch split on dim 0.
    XlaFsdp(gidd_xla::FsdpExecutor),
    Wgpu(gidd_wgpu::WgpuExecutor),
    Cuda(gidd_cuda::CudaExecutor),
}

/// Runs `$body` with `$e` bound to the executor an [`Opened`] holds (by value; each arm
/// is compiled for its own executor type, so `$body` may call generic code).
#[macro_export]
macro_rules! with_executor {
    ($opened:expr, $e:ident => $body:expr) => {
        match $opened {
            $crate::backend::Opened::Cpu($e) => $body,
            $crate::backend::Opened::Xla($e) => $body,
            $crate::backend::Opened::XlaFsdp($e) => $body,
            $crate::backend::Opened::Wgpu($e) => $body,
            $crate::backend::Opened::Cuda($e) => $body,
        }
    };
}

impl BackendArgs {
    /// Checks the flags without opening anything (a bad flag is reported before a large
    /// checkpoint is read); `doing` names the command's work for the error.
    pub fn check(&self, doing: &str) -> Result<()> {
        if self.devices == 0 || (self.devices > 1 && self.backend != Backend::Xla) {
            bail!(
                "--devices {} --backend {}: {doing} over several devices needs --backend xla (and at least 1 device)",
                self.devices,
                self.backend.name()
            );
        }
        Ok(())
    }

    /// Opens the executor the flags name.
    pub fn open(&self, doing: &str) -> Result<Opened> {
        self.check(doing)?;
        Ok(match self.backend {
            Backend::Xla if self.devices > 1 => Opened::XlaFsdp(gidd_xla::FsdpExecutor::new(
                xla_client(self.pjrt_plugin.as_deref(), self.devices)?,
                self.devices,
                self.partitioner.into(),
            )?),
            Backend::Xla => Opened::Xla(gidd_xla::XlaExecutor::new(self.pjrt_plugin.as_deref())?),
            Backend::Wgpu => Opened::Wgpu(gidd_wgpu::WgpuExecutor::new()?),
            Backend::Cuda => Opened::Cuda(gidd_cuda::CudaExecutor::new(0)?),
            Backend::Cpu => Opened::Cpu(CpuExecutor),
        })
    }
}

/// A PJRT client with at least `devices` devices: the XLA CPU plugin is asked for that
/// many (`cpu_device_count`); other plugins have the devices they have.
pub fn xla_client(plugin: Option<&Path>, devices: usize) -> Result<gidd_xla::Client> {
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

/// `--dtype`: the precision programs compute in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    #[value(alias = "fp32")]
    F32,
    Bf16,
    /// IEEE half: stored and rounded like bf16 (f32 math), 3 more significand bits, range
    /// to 65504 only.
    #[value(alias = "fp16")]
    F16,
    /// The audit precision of `gidd train` and `gidd audit`: parameters, optimizer state
    /// and every accumulation in f64 (fused ops run as their decompositions).
    #[value(alias = "fp64")]
    F64,
}

impl Precision {
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
            Precision::F64 => DType::F64,
        }
    }
    /// The dtype of a command that has no f64 path (generation, evaluation, benchmarks).
    pub fn activations(self, command: &str) -> Result<DType> {
        if self == Precision::F64 {
            bail!(
                "--dtype f64: f64 is the audit precision of `gidd train` and `gidd audit`; `gidd {command}` runs f32, bf16 or f16 (an f64 checkpoint loads rounded to f32)"
            );
        }
        Ok(self.dtype())
    }
}
