//! gidd-ports: the outside world. HF checkpoints (safetensors, single or sharded with an
//! index), config.json as an ordered JSON object, atomic file writes, tokenizer.json and
//! the data formats (text, jsonl, parquet buckets, token shards), and the embedded corpus.
//!
//! Depends on the engine only for [`HostTensor`](gidd_engine::HostTensor); the mapping of HF
//! parameter names to the model's lives in `gidd-model` (`names.rs`), applied by `gidd-train`.

pub mod corpus;
pub mod data;
pub mod error;
pub mod fsio;
pub mod procfs;
pub mod safetensors;

pub use error::PortError;
pub use fsio::{read_json_object, write_atomic, write_json_pretty};
pub use safetensors::{
    check_names, save_tensors, write_streamed, StoredDType, TensorSpec, TensorStore,
};
