//! gidd-model: GIDD written on gidd-engine's public API: the transformer (SPEC.md 1), the
//! mixing schedule, the forward process (noise, SPEC.md 2 and 4), the loss and ELBO (3),
//! the posterior and samplers with block generation on a KV-cached canvas and
//! self-correction (6), the likelihood of completions (7), and the training init.
//! Model code never opens a file; it runs programs on whatever executor it is given.

pub mod config;
pub mod generate;
pub mod init;
pub mod likelihood;
pub mod loss;
pub mod noise;
pub mod sample;
pub mod schedule;
pub mod transformer;

pub use config::GiddConfig;
pub use schedule::Schedule;
pub use transformer::{forward, ForwardOpts, ForwardOut, Params};
