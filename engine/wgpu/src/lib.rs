//! gidd-wgpu: the `wgpu` executor. Engine programs run as hand-written WGSL compute kernels
//! (gidd-kernels' `*.wgsl`, embedded) on any Vulkan, Metal or DX12 adapter; CI runs them on
//! lavapipe, Mesa's software Vulkan driver.
//!
//! ```ignore
//! let exec = WgpuExecutor::new()?; // a clean error when no adapter is installed
//! let mut lp = exec.load(&program)?;
//! let outs = exec.run(&mut lp, &[&exec.upload(&x)?])?;
//! let y = exec.download(&outs[0])?;
//! ```
//!
//! Dtypes: f32, bf16 (stored widened to f32, computed in f32, rounded once per op), i32, u32,
//! bool, i64 (emulated on pairs of words: the Philox noise needs 64-bit products). f64
//! programs are refused at load.

mod buffer;
mod device;
mod error;
mod executor;
mod fuse;
mod fused;
mod load;
mod lower;
mod movement;
mod ops;
mod peak;
mod pipelines;
mod plan;

pub use buffer::WgpuBuffer;
pub use error::WgpuError;
pub use executor::{GemmStrategy, WgpuExecutor, WgpuProgram};
