//! gidd-benches: the harness behind `gidd bench`. Every benchmark prints what it achieved
//! (FLOP/s or bytes/s) beside the measured peak of the device it ran on:
//! - [`kernels`]: GEMM and attention kernels on the cpu (`gidd bench kernels`);
//! - [`kernels_device`]: the model's kernels as one-op programs on a device executor
//!   (`gidd bench kernels --backend xla|wgpu|cuda`);
//! - [`step`]: one training, forward or sampling step of a synthetic model, one JSON line
//!   for ../shared/baselines/run_bench.py to set beside PyTorch (`gidd bench step`);
//! - [`generate`]: sampling throughput and what the KV cache and logits reuse save
//!   (`gidd bench generate`);
//! - [`load`]: a released-size synthetic checkpoint loaded by mmap: load time, resident
//!   memory, time to the first block (`gidd bench load`);
//! - [`corpus`]: the embedded corpus's statistics (`gidd bench corpus`).

pub mod corpus;
pub mod generate;
pub mod kernels;
pub mod kernels_device;
pub mod load;
pub mod step;
