//! gidd-cuda: the `cuda` executor. Engine programs run as hand-written PTX kernels
//! (gidd-kernels' `*.ptx`, embedded and JIT-assembled by the driver: no nvcc or NVRTC at build
//! or run time) on one stream of an NVIDIA GPU of compute capability 8.0 or later, through the
//! CUDA driver API loaded at run time (cudarc, `dynamic-loading`): one binary runs on machines
//! with and without CUDA, and without a driver `CudaExecutor::new` is a clean error.
//!
//! ```ignore
//! let exec = CudaExecutor::new(0)?; // "no CUDA driver (libcuda.so) found: ..." without one
//! let mut lp = exec.load(&program)?;
//! let outs = exec.run(&mut lp, &[&exec.upload(&x)?])?;
//! let y = exec.download(&outs[0])?;
//! ```
//!
//! Layout: [`plan`] and [`lower`] (+ [`movement`], [`ops`]) turn a program into steps with no
//! device (kernel choice, launch geometry, argument slots, arena offsets: unit-tested on any
//! machine); [`driver`] is the only code that calls CUDA; [`executor`] joins them.
//!
//! [`nccl`]: the engine's collectives over NCCL for multi-process ranks (never run here: no GPU).
//!
//! Dtypes: f32, bf16, i32, u32, i64, bool. f64 programs (the audit precision) are refused at
//! load: they are the cpu executor's. Fused ops run as their decompositions (fused PTX
//! kernels are issue 14).

pub mod driver;
#[cfg(test)]
mod emulate;
mod error;
pub mod executor;
pub mod lower;
pub mod movement;
pub mod nccl;
pub mod ops;
pub mod peak;
pub mod plan;
#[cfg(test)]
mod tests;

pub use error::CudaError;
pub use executor::{CudaBuffer, CudaExecutor, CudaProgram};
