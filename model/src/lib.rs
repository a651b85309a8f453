//! gidd-model: the GIDD transformer, mixing schedule and loss, written on
//! gidd-engine's public API. Model code never sees a backend or a file.

pub mod config;
pub mod loss;
pub mod sample;
pub mod schedule;
pub mod transformer;

pub use config::GiddConfig;
pub use schedule::Schedule;
pub use transformer::{forward, ForwardOpts, ForwardOut, Params};
