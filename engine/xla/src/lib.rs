//! gidd-xla: the TPU path. Engine programs become StableHLO MLIR modules
//! ([`emit`]), compiled and run through a PJRT C-API plugin loaded at run time
//! ([`pjrt`]: libtpu on TPUs, the XLA GPU plugin, the XLA CPU plugin in CI), behind
//! the engine's `Executor` trait ([`XlaExecutor`]). [`spmd`] partitions a program
//! over several devices of one client (FSDP: parameters and batch split on dim 0);
//! [`FsdpExecutor`] puts that behind the `Executor` trait for the trainer.
//!
//! ```ignore
//! let xla = XlaExecutor::new(None)?; // --pjrt_plugin, $GIDD_PJRT_PLUGIN or .xla-plugin/
//! let mut lp = xla.load(&program)?;  // emit StableHLO + compile
//! let params: Vec<DeviceBuffer> = host_params.iter().map(|t| xla.upload(t)).collect::<Result<_>>()?;
//! let outs = xla.run(&mut lp, &refs)?; // device buffers; feed them back next step
//! ```

pub mod cache;
pub mod emit;
pub mod error;
pub mod executor;
mod ffi;
pub mod fsdp;
mod hlo_text;
pub mod pjrt;
pub mod plugin;
pub mod spmd;

pub use cache::{CompileCache, Origin};
pub use emit::{emit_graph, emit_module, emit_module_with, Sharding};
pub use error::{Result, XlaError};
pub use executor::{XlaExecutor, XlaProgram};
pub use fsdp::{fsdp_module, FsdpExecutor};
pub use pjrt::{
    find_plugin, load_plugin, Client, CompileOptions, DeviceBuffer, Executable, MemoryStats,
};
pub use spmd::{
    fsdp_layout, sdy_sharding_text, Partitioner, ShardedBuffer, Split, SpmdExecutor, SpmdProgram,
};
