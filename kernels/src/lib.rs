//! gidd-kernels: compute kernels with no knowledge of graphs.
//!
//! Each family folder holds `mod.rs` (the contract: shapes, layout, the math),
//! `reference.rs` (scalar loops accumulating in f64: the spec), `cpu.rs` (the fast CPU
//! version: SIMD with run-time dispatch where hand-vectorised, rayon across cores) and
//! `tests.rs` (seeded randomized comparisons). [`simd`] is the one shared SIMD layer.
//! Callers (the engine's executors) validate shapes before calling; kernels
//! check only with `debug_assert!`.

pub mod attention;
pub mod convert;
pub mod element;
pub mod elementwise;
pub mod gidd_loss;
pub mod index;
pub mod layout;
pub mod matmul;
pub mod movement;
pub mod norm;
pub mod ptx;
pub mod reduce;
pub mod rope;
pub mod sample;
pub mod simd;
pub mod softmax;
pub mod wgsl;

#[cfg(test)]
pub(crate) mod testutil;
