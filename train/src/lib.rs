//! gidd-train: the trainer (one-graph step, LaProp/AdamW, the WSD schedule, gradient
//! accumulation, checkpoints and exact resume), packing, metrics and plots, the backend
//! registry every subcommand opens its executor through, model directories, the scaling sweep
//! of `gidd sweep` and the scaling-law analysis of `gidd fit`, the audit
//! against the reference, and the op conformance suite of `gidd check`. The `gidd` binary
//! (train/cli) puts the command line on them.

pub mod audit;
pub mod backend;
pub mod check;
pub mod fsdp;
pub mod model_dir;
pub mod packer;
pub mod plot;
pub mod progress;
pub mod scaling;
pub mod sweep;
pub mod synthetic;
pub mod trainer;
