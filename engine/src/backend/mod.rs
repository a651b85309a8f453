//! Executors run compiled programs. The trait assumes nothing about where
//! buffers live: a device executor keeps them in device memory between runs.

pub mod cpu;

use crate::dtype::DType;
use crate::error::Result;
use crate::host::HostTensor;
use crate::op::Op;
use crate::program::Program;

/// The executors `--backend` names. Engine code knows them by name only; each one that
/// binds an outside runtime lives in its own crate (engine/xla, ...), and the CLI's
/// registry (`gidd_train::backend`) opens them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Cpu,
    Xla,
    Cuda,
    Wgpu,
}

impl BackendKind {
    pub const ALL: [BackendKind; 4] = [Self::Cpu, Self::Xla, Self::Cuda, Self::Wgpu];

    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Xla => "xla",
            Self::Cuda => "cuda",
            Self::Wgpu => "wgpu",
        }
    }
}

pub trait Executor {
    /// A tensor resident wherever this executor computes.
    type Buffer;
    /// A program prepared for this executor (kernels chosen, memory reserved).
    type Loaded;

    fn name(&self) -> String;
    /// Whether this executor runs fused `op` with `dtype` operands as a kernel of its own;
    /// where it does not, [`Executor::load`] runs the op's decomposition into primitives
    /// (`crate::decompose`). The default, no fused kernels at all, is always correct.
    fn supports_fused(&self, _op: &Op, _dtype: DType) -> bool {
        false
    }
    /// The device's peak FLOP/s for matrix products with `dtype` operands (measured or
    /// from the device's properties), for MFU and roofline fractions; None when unknown.
    fn peak_flops(&self, _dtype: DType) -> Option<f64> {
        None
    }
    /// Waits until all work queued on the device is done, so that a host clock read after
    /// it times the work. Executors whose `run` returns only when the work is done need
    /// nothing.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn upload(&self, t: &HostTensor) -> Result<Self::Buffer>;
    fn download(&self, b: &Self::Buffer) -> Result<HostTensor>;
    fn load(&self, p: &Program) -> Result<Self::Loaded>;
    /// Runs a loaded program on inputs in the program's input order.
    fn run(&self, p: &mut Self::Loaded, inputs: &[&Self::Buffer]) -> Result<Vec<Self::Buffer>>;
    /// A line on the device memory one run of `p` takes, where the executor plans it.
    fn memory_plan(&self, _p: &Self::Loaded) -> Option<String> {
        None
    }
    /// Like `run`, with the first `donated.len()` inputs given up: an executor may write
    /// the outputs the program aliases to them (`Program::aliases`) into their storage
    /// instead of new memory. `rest` are the remaining inputs, in order. The default
    /// keeps nothing in place; the donated buffers are freed when the run returns.
    fn run_donating(
        &self,
        p: &mut Self::Loaded,
        donated: Vec<Self::Buffer>,
        rest: &[&Self::Buffer],
    ) -> Result<Vec<Self::Buffer>> {
        let mut ins: Vec<&Self::Buffer> = donated.iter().collect();
        ins.extend_from_slice(rest);
        self.run(p, &ins)
    }
}

/// An executor that runs programs with collective nodes (`Op::is_collective`: FSDP's
/// gathers and reduce-scatters), talking to the other ranks through `comm`, this rank's
/// collective; every rank runs the same program. The cpu executor runs them on its own
/// buffers, the GPU executors through host memory (`crate::collective::nodes`).
pub trait CollectiveExecutor: Executor {
    /// [`Executor::run_donating`] of a program with collective nodes.
    fn run_donating_with(
        &self,
        p: &mut Self::Loaded,
        comm: crate::collective::nodes::Comm,
        donated: Vec<Self::Buffer>,
        rest: &[&Self::Buffer],
    ) -> Result<Vec<Self::Buffer>>;
}
