//! One error type for the engine: every variant names the op and the shapes involved.

use crate::dtype::DType;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: shape error: {msg} (input shapes {shapes:?})")]
    Shape {
        op: &'static str,
        msg: String,
        shapes: Vec<Vec<usize>>,
    },
    #[error("{op}: dtype error: {msg} (input dtypes {dtypes:?})")]
    DType {
        op: &'static str,
        msg: String,
        dtypes: Vec<DType>,
    },
    #[error("tensors from different graphs were combined in {op}")]
    GraphMismatch { op: &'static str },
    #[error("no gradient rule for {op}: {why}")]
    BackwardNotSupported { op: String, why: String },
    #[error("program input {index} ({name}): expected {expected}, got {got}")]
    InputMismatch {
        index: usize,
        name: String,
        expected: String,
        got: String,
    },
    #[error("program expects {expected} inputs, got {got}")]
    InputCount { expected: usize, got: usize },
    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(op: &'static str, msg: impl Into<String>, shapes: &[&[usize]]) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        }
    }
    pub fn dtype(op: &'static str, msg: impl Into<String>, dtypes: &[DType]) -> Self {
        Error::DType {
            op,
            msg: msg.into(),
            dtypes: dtypes.to_vec(),
        }
    }
}
