//! The executor's errors: each says what was being done, and becomes an engine error (the
//! `Executor` trait's) with that text.

use gidd_engine::Error as EngineError;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// The CUDA driver library is not installed: nothing CUDA can run on this machine.
    #[error("no CUDA driver (libcuda.so) found: --backend cuda needs an NVIDIA GPU and driver")]
    NoDriver,
    /// The driver is there but has no usable device (none, or one too old for our PTX).
    #[error("cuda: {0}")]
    NoDevice(String),
    /// A driver call failed; `doing` names the call site's purpose.
    #[error("cuda: {doing}: {err}")]
    Driver {
        doing: String,
        err: cudarc::driver::DriverError,
    },
    /// A program this executor does not run (a dtype, a size beyond the kernels' limits).
    #[error("cuda: {0}")]
    Unsupported(String),
}

impl From<CudaError> for EngineError {
    fn from(e: CudaError) -> Self {
        EngineError::Msg(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, CudaError>;

/// Wraps a driver status with what it was for: `check(doing, call)`.
pub(crate) fn check<T>(
    doing: &str,
    r: std::result::Result<T, cudarc::driver::DriverError>,
) -> Result<T> {
    r.map_err(|err| CudaError::Driver {
        doing: doing.to_string(),
        err,
    })
}
