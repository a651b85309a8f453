//! gidd-train: the trainer, optimizers, data pipeline, checkpoints and the CLI.

pub mod corpus;
pub mod data;
