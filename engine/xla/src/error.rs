//! One error type for the XLA path. Every PJRT status carries the C-API call it
//! came from; plugin problems say where to get a plugin.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum XlaError {
    #[error(
        "no PJRT plugin found{}: pass --pjrt_plugin PATH or set GIDD_PJRT_PLUGIN, \
         or run engine/xla/install-plugin.sh (it downloads the XLA CPU plugin, PyPI package \
         `lammps-jax-pjrt-cpu`, into .xla-plugin/); for TPUs point it at libtpu.so \
         (PyPI `libtpu`). Searched: {searched:?}",
        .path.as_ref().map(|p| format!(" at {}", p.display())).unwrap_or_default()
    )]
    PluginNotFound {
        path: Option<PathBuf>,
        searched: Vec<PathBuf>,
    },
    #[error("cannot load PJRT plugin {path}: {reason}")]
    PluginLoad { path: PathBuf, reason: String },
    #[error("{path} is not a PJRT plugin: it does not export `{symbol}` ({reason})")]
    SymbolMissing {
        path: PathBuf,
        symbol: &'static str,
        reason: String,
    },
    #[error(
        "PJRT plugin {path} implements C API {major}.{minor}; gidd-xla supports {supported} \
         (written against 0.113 headers, tested with the 0.115 XLA CPU plugin)"
    )]
    ApiVersion {
        path: PathBuf,
        major: i32,
        minor: i32,
        supported: String,
    },
    #[error(
        "PJRT plugin {path} (C API {major}.{minor}) has no function {name} \
         (slot {index}; its table has {available} functions)"
    )]
    FunctionMissing {
        path: PathBuf,
        major: i32,
        minor: i32,
        name: &'static str,
        index: usize,
        available: usize,
    },
    #[error("{call} failed ({code}): {message}")]
    Pjrt {
        call: &'static str,
        code: &'static str,
        message: String,
    },
    #[error("StableHLO emission: {0}")]
    Emit(String),
    #[error("xla: {0}")]
    Invalid(String),
    #[error(transparent)]
    Engine(#[from] gidd_engine::Error),
}

pub type Result<T> = std::result::Result<T, XlaError>;

impl From<XlaError> for gidd_engine::Error {
    fn from(e: XlaError) -> Self {
        match e {
            XlaError::Engine(e) => e,
            other => gidd_engine::Error::Msg(format!("xla: {other}")),
        }
    }
}

/// Names of PJRT_Error_Code values (absl status codes).
pub(crate) fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN_CODE",
    }
}
