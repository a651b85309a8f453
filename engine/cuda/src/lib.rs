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
//! machine); [`driver`] is the only code that calls CUDA; [`executor`] joins them. On Hopper
//! (sm_90a) bf16 GEMMs run on wgmma fed by TMA ([`hopper`]: geometry and tensor maps); a run
//! replays a CUDA graph of the steps while the addresses hold ([`graph`]); `--profile` times
//! each launch with events ([`profile`]).
//!
//! [`collective`]: collective nodes (FSDP) staged through the host's collective; [`nccl`]:
//! the engine's collectives over NCCL for multi-process ranks (neither run here: no GPU).
//!
//! Dtypes: f32, bf16, i32, u32, i64, bool. f64 programs (the audit precision) are refused at
//! load: they are the cpu executor's. Every fused op of the engine has a PTX kernel
//! ([`fused`]: the GIDD loss's pass over the vocabulary, flash attention, softmax, rms_norm,
//! RoPE) for f32, which the graph builds them over; other dtypes run the decompositions.
//! Attention whose f32 operands are converted bf16 runs on tensor cores ([`attention_mma`];
//! on Hopper its forward on wgmma fed by TMA, the backward on mma.sync). The
//! fused kernels and the Hopper GEMM are assembled by ptxas and their contracts (the Hopper
//! GEMM's pipeline too) emulated against the cpu executor, but have not yet run on a GPU.

pub mod attention;
pub mod attention_mma;
pub mod chain;
pub mod chain_ops;
pub mod chain_ptx;
pub mod chain_vec;
pub mod collective;
pub mod driver;
#[cfg(test)]
mod emulate;
#[cfg(test)]
mod emulate_attention;
#[cfg(test)]
mod emulate_attention_mma;
#[cfg(test)]
mod emulate_attention_mma_bwd;
#[cfg(test)]
mod emulate_attention_wgmma;
#[cfg(test)]
mod emulate_fused;
#[cfg(test)]
mod emulate_hopper;
#[cfg(test)]
mod emulate_rows;
#[cfg(test)]
mod emulate_sample;
mod error;
pub mod executor;
pub mod fused;
pub mod graph;
pub mod hopper;
pub mod lower;
pub mod movement;
pub mod nccl;
pub mod ops;
pub mod peak;
pub mod plan;
pub mod profile;
#[cfg(test)]
mod ptx_interp;
#[cfg(test)]
mod ptx_semantics;
pub mod rows;
pub mod sample;
pub mod staging;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_attention_mma;
#[cfg(test)]
mod tests_attention_wgmma;
#[cfg(test)]
mod tests_chain;
#[cfg(test)]
mod tests_chain_vec;
#[cfg(test)]
mod tests_fused;
#[cfg(test)]
mod tests_hopper;
#[cfg(test)]
mod tests_sample;

pub use error::CudaError;
pub use executor::{CudaBuffer, CudaExecutor, CudaProgram};
/// The hand-written PTX modules (gidd-kernels' `*.ptx`), for `gidd check --dump-ptx`.
pub use gidd_kernels::ptx::MODULES;
