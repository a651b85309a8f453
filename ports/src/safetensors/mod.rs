//! Safetensors checkpoints, the format of the released GIDD models (HF `save_pretrained`).
//!
//! The `safetensors` crate parses, validates and writes single files; this module adds what
//! the crate does not do: sharded checkpoints with HF's `model.safetensors.index.json`,
//! stricter header checks, errors that name the file and the tensor, atomic writes, and the
//! conversion to the engine's [`HostTensor`](gidd_engine::HostTensor).
//!
//! [`TensorStore`] maps one file or a sharded set and validates every header at open;
//! [`save_tensors`] writes one file or HF-named shards, atomically; [`write_streamed`] writes
//! shards whose tensors are produced one at a time (models larger than memory).

mod header;
mod save;
mod store;
mod stream;

pub use save::save_tensors;
pub use store::{check_names, TensorStore};
pub use stream::{write_streamed, TensorSpec};

use ::safetensors::Dtype;

/// The element type of a tensor as a safetensors file stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoredDType {
    F32,
    F16,
    BF16,
    I64,
    I32,
    /// Not in every reader's list but part of the format; the engine has a matching `U32`.
    U32,
    U8,
    Bool,
    F64,
}

impl StoredDType {
    /// Bytes per element (every dtype gidd reads is a whole number of bytes).
    pub fn size(self) -> usize {
        self.to_crate().bitsize() / 8
    }

    /// The name in a safetensors header ("F32", "BF16", "BOOL", ...).
    pub fn name(self) -> &'static str {
        match self {
            StoredDType::F32 => "F32",
            StoredDType::F16 => "F16",
            StoredDType::BF16 => "BF16",
            StoredDType::I64 => "I64",
            StoredDType::I32 => "I32",
            StoredDType::U32 => "U32",
            StoredDType::U8 => "U8",
            StoredDType::Bool => "BOOL",
            StoredDType::F64 => "F64",
        }
    }

    /// Parses a header dtype name; `None` for names gidd does not read (I8, F8_E4M3, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    const ALL: [Self; 9] = [
        StoredDType::F32,
        StoredDType::F16,
        StoredDType::BF16,
        StoredDType::I64,
        StoredDType::I32,
        StoredDType::U32,
        StoredDType::U8,
        StoredDType::Bool,
        StoredDType::F64,
    ];

    pub(crate) fn to_crate(self) -> Dtype {
        match self {
            StoredDType::F32 => Dtype::F32,
            StoredDType::F16 => Dtype::F16,
            StoredDType::BF16 => Dtype::BF16,
            StoredDType::I64 => Dtype::I64,
            StoredDType::I32 => Dtype::I32,
            StoredDType::U32 => Dtype::U32,
            StoredDType::U8 => Dtype::U8,
            StoredDType::Bool => Dtype::BOOL,
            StoredDType::F64 => Dtype::F64,
        }
    }

    /// `None` for the crate's dtypes gidd does not read (sub-byte floats, F8, I8, U16, ...).
    pub(crate) fn from_crate(d: Dtype) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.to_crate() == d)
    }
}

impl std::fmt::Display for StoredDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// File names as HF writes them.
pub(crate) const SINGLE_FILE: &str = "model.safetensors";
pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";

/// `model-00001-of-00003.safetensors`, 1-based, as `transformers` / `huggingface_hub` name shards.
pub(crate) fn shard_file_name(i: usize, n: usize) -> String {
    format!("model-{i:05}-of-{n:05}.safetensors")
}

/// Whether `name` looks like an HF shard name (`model-ddddd-of-ddddd.safetensors`).
pub(crate) fn is_shard_file_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("model-") else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(".safetensors") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 14
        && b[..5].iter().all(u8::is_ascii_digit)
        && &b[5..9] == b"-of-"
        && b[9..].iter().all(u8::is_ascii_digit)
}
