//! gidd-kernels: compute kernels with no knowledge of graphs.
//!
//! Each family folder holds `mod.rs` (the contract: shapes, layout, the math),
//! `reference.rs` (scalar loops accumulating in f64: the spec), `cpu.rs` (SIMD
//! with run-time dispatch) and `tests.rs` (seeded randomized comparisons).
//! Callers (the engine's executors) validate shapes before calling; kernels
//! check only with `debug_assert!`.

pub mod attention;
pub mod convert;
pub mod gidd_loss;
pub mod matmul;
pub mod norm;
pub mod rope;
pub mod simd;
pub mod softmax;
