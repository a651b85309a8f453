//! gidd-train: the trainer (one-graph step, LaProp/AdamW, the WSD schedule, gradient
//! accumulation, checkpoints and exact resume), packing, metrics and plots, the backend
//! registry every subcommand opens its executor through, and the `gidd` subcommands
//! (generate, correct, eval, audit) over the model crate's GIDD math.

pub mod audit;
pub mod backend;
pub mod eval;
pub mod generate_cli;
pub mod model_dir;
pub mod packer;
pub mod plot;
pub mod progress;
pub mod requests;
pub mod trainer;
