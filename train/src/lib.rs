//! gidd-train: the trainer, optimizers, data pipeline, checkpoints and the CLI.

pub mod audit;
pub mod bench;
pub mod bench_generate;
pub mod bench_step;
pub mod canvas;
pub mod corpus;
pub mod correct;
pub mod data;
pub mod eval;
pub mod generate;
pub mod generate_cli;
pub mod likelihood;
pub mod plot;
pub mod progress;
pub mod sampler;
pub mod session;
pub mod trainer;
