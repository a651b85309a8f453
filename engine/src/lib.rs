//! gidd-engine: a static-shape graph of StableHLO-like primitives and a few
//! fused ops, reverse-mode autograd as a graph transform, programs compiled once
//! with a liveness memory plan, and executors that run them.
//!
//! ```ignore
//! let g = Graph::new();
//! let x = g.input("x", &[4, 8], DType::F32);
//! let w = g.input("w", &[8, 3], DType::F32);
//! let loss = x.matmul(&w)?.tanh()?.sum_all()?;
//! let dw = grad(&loss, &[w.clone()])?;
//! let p = Program::compile(&[loss, dw[0].clone()], &["x", "w"])?;
//! let mut lp = CpuExecutor.load(&p)?;
//! let outs = CpuExecutor.run(&mut lp, &[&x_host, &w_host])?;
//! ```

pub mod api;
pub mod autograd;
pub mod backend;
pub mod chain;
pub mod collective;
pub mod decompose;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod host;
pub mod infer;
pub mod mapped;
pub mod op;
pub mod program;
pub mod rewrite;
pub mod rng;
pub mod schedule;

pub use autograd::{grad, vjp};
pub use backend::cpu::CpuExecutor;
pub use backend::{BackendKind, CollectiveExecutor, Executor};
pub use dtype::DType;
pub use error::{Error, Result};
pub use gidd_kernels::sample;
pub use graph::{Graph, Tensor};
pub use host::{Data, DataRef, HostTensor};
pub use mapped::Mapped;
pub use op::{AttnSpec, Op};
pub use program::Program;
