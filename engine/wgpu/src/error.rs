//! The executor's errors: each names what was being done, and becomes an engine error (the
//! `Executor` trait's) with that text.

use gidd_engine::Error as EngineError;

#[derive(Debug, thiserror::Error)]
pub enum WgpuError {
    /// No usable adapter: what is missing, and how to get it.
    #[error("wgpu: no Vulkan/Metal/DX12 adapter ({0}): install mesa-vulkan-drivers (lavapipe, the software Vulkan driver) and libvulkan1, or a GPU driver")]
    NoAdapter(String),
    #[error("wgpu: requesting a device from {adapter}: {msg}")]
    Device { adapter: String, msg: String },
    /// A validation or out-of-memory error wgpu reported while doing `doing`.
    #[error("wgpu: {doing}: {msg}")]
    Api { doing: String, msg: String },
    /// A program this executor does not run (a dtype, a size beyond the adapter's limits).
    #[error("wgpu: {0}")]
    Unsupported(String),
}

impl From<WgpuError> for EngineError {
    fn from(e: WgpuError) -> Self {
        EngineError::Msg(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, WgpuError>;
