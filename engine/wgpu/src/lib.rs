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
//! Dtypes: f32, bf16 (packed two per word, computed in f32, rounded once per op), i32, u32,
//! bool, i64 (emulated on pairs of words: the Philox noise needs 64-bit products). f64
//! programs are refused at load.
//!
//! Launches: softmax/log-softmax, rms_norm and RoPE (forward and backward) and the fused
//! diffusion KL loss run as one hand-written kernel each (`fused`); attention as flash-style
//! kernels (forward one dispatch, backward three; no `[Lq, Lk]` scores in memory, head dims
//! up to 128). Chains of consecutive elementwise ops, iotas and views of one size run as
//! one generated kernel made of the ops' own WGSL functions (`fuse`), bitwise the unfused
//! run; `GIDD_WGPU_FUSE=0` or `WgpuExecutor::with_fusion(false)` turns that off.
//!
//! Tensors larger than one storage binding (max_storage_buffer_binding_size; 128 MiB on
//! lavapipe, where a 131072 x 3072 f32 embedding is 1.5 GiB) are reached through windows of
//! their buffers at aligned offsets: elementwise ops and chains, views that read by
//! position (broadcast, transpose, slice), iota and concatenate in chunks of output
//! elements, each binding the windows its chunk reads (`positional`), gather by element,
//! reductions (integer sums as exact i64 partials), scatter-add and the row ops (softmax, rms_norm, RoPE, the diffusion KL) by
//! rows or with f32 partials, GEMM in blocks along batch, M, N and K (`gemm_windows`),
//! attention by batches, heads and query blocks (`fused::attention`). What no window holds
//! (one head's keys and values, a GEMM operand's single row) is refused at load, naming the
//! limit.

mod buffer;
mod collective;
mod device;
mod error;
mod executor;
mod fuse;
mod fused;
mod gemm_windows;
mod load;
mod lower;
mod movement;
mod ops;
mod peak;
mod pipelines;
mod plan;
mod positional;
mod profile;
mod reduce_windows;

pub use buffer::WgpuBuffer;
pub use error::WgpuError;
pub use executor::{AttentionStrategy, GemmStrategy, WgpuExecutor, WgpuProgram};
