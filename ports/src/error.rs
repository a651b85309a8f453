//! One error type for the ports: every variant names the file (or tensor), what was wrong,
//! and what to do about it.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Everything that can go wrong reading or writing checkpoints and their JSON files.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// An operating-system error on `path` (permissions, disk full, ...).
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file or directory that should exist does not; `hint` says what was expected there.
    #[error("{} not found: {hint}", path.display())]
    NotFound { path: PathBuf, hint: String },

    /// The safetensors header is malformed (not JSON, bad entry, offsets that overlap or leave gaps...).
    #[error(
        "{}: not a valid safetensors file: {msg}; re-save or re-download it",
        path.display()
    )]
    BadHeader { path: PathBuf, msg: String },

    /// The file ends before the header or a tensor's data does. `need` and `have` are file sizes in bytes.
    #[error(
        "{}: truncated: {tensor} needs the file to hold {need} bytes but it has {have}; \
         the download or copy was interrupted: fetch or save it again",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        tensor: String,
        need: u64,
        have: u64,
    },

    /// A tensor is stored in a dtype this crate does not read.
    #[error(
        "{}: tensor {tensor:?} has dtype {dtype:?}, which gidd does not read \
         (supported: F32, F16, BF16, F64, I64, I32, U32, U8, BOOL); convert the checkpoint (e.g. to bf16 or f32)",
        path.display()
    )]
    UnknownDType {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },

    /// The tensors of a checkpoint differ from the expected parameter set.
    #[error("{}", mismatch_message(missing, unexpected, misshaped))]
    Mismatch {
        missing: Vec<String>,
        unexpected: Vec<String>,
        /// (name, expected shape, found shape)
        misshaped: Vec<(String, Vec<usize>, Vec<usize>)>,
    },

    /// A JSON file that does not parse, or is not what it should be (e.g. not an object).
    #[error("{}:{line}:{column}: {msg}", path.display())]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        msg: String,
    },

    /// A tensor asked for by name is not in the store.
    #[error("no tensor named {name:?} in this checkpoint (list them with TensorStore::names)")]
    MissingTensor { name: String },

    /// A sharded checkpoint's `model.safetensors.index.json` is malformed or disagrees with its shards.
    #[error(
        "{}: bad sharded-checkpoint index: {msg}; re-download the checkpoint or re-save it",
        path.display()
    )]
    BadIndex { path: PathBuf, msg: String },

    /// A tensor handed to `save_tensors` cannot be written (duplicate or reserved name, data that does not fill its shape).
    #[error("cannot save tensor {name:?}: {msg}")]
    BadTensor { name: String, msg: String },
}

impl PortError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PortError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn bad_header(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        PortError::BadHeader {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub(crate) fn bad_index(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        PortError::BadIndex {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

fn mismatch_message(
    missing: &[String],
    unexpected: &[String],
    misshaped: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    let mut s = format!(
        "checkpoint does not match the expected parameters: {} missing, {} unexpected, {} mis-shaped",
        missing.len(),
        unexpected.len(),
        misshaped.len()
    );
    if !missing.is_empty() {
        let _ = write!(s, "\n  missing: {}", missing.join(", "));
    }
    if !unexpected.is_empty() {
        let _ = write!(s, "\n  unexpected: {}", unexpected.join(", "));
    }
    for (name, expected, found) in misshaped {
        let _ = write!(
            s,
            "\n  mis-shaped: {name}: expected {expected:?}, found {found:?}"
        );
    }
    s.push_str(
        "\n  check config.json (num_hidden_layers, hidden_size, vocab_size, attention_bias, mlp_bias, \
         tie_word_embeddings) against the checkpoint, or use the config it was saved with",
    );
    s
}
