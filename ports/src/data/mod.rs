//! Training data as documents of token ids: tokenizers and document sources.
//!
//! - [`Tok`]: any HF `tokenizer.json`, or a byte-level BPE trained here.
//! - [`open_source`]: documents as token ids from a file or directory; the format
//!   is told from the layout and extension (see [`open_source`] for the list).

pub mod pq;
pub mod shard;
pub mod source;
pub mod tokenizer;

#[cfg(test)]
mod tests;

pub use pq::{read_parquet_tokens, write_parquet_tokens};
pub use shard::{write_shard, ShardDtype, ShardMeta, ShardSource};
pub use source::{open_source, ConcatSource, DocSource, MemSource, ACCEPTED_FORMATS};
pub use tokenizer::{SpecialIds, Tok, SPECIAL_TOKENS};

use std::path::PathBuf;

/// Token id of the end-of-sequence token in the reference tokenizer (bos 0, eos 1, pad 2, mask 3).
pub const EOS_ID: u32 = 1;
pub const BOS_ID: u32 = 0;
pub const PAD_ID: u32 = 2;
pub const MASK_ID: u32 = 3;

/// Everything that can go wrong while reading, tokenizing or packing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("no data at {path}: {what}; accepted: {}", ACCEPTED_FORMATS)]
    NotFound { path: PathBuf, what: String },
    #[error("empty data at {path}: {what}")]
    Empty { path: PathBuf, what: String },
    #[error(
        "cannot tell the data format of {path}: {what}; accepted: {}",
        ACCEPTED_FORMATS
    )]
    UnknownFormat { path: PathBuf, what: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: bad JSON line: {msg}")]
    BadJsonLine {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error("bad parquet file {path}: {msg}")]
    Parquet { path: PathBuf, msg: String },
    #[error("bad token shard {path}: {msg}")]
    BadShard { path: PathBuf, msg: String },
    #[error("{path} is text and needs a tokenizer (--tokenizer PATH to a tokenizer.json)")]
    NeedTokenizer { path: PathBuf },
    #[error("tokenizer {path}: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error("tokenizer/model vocabulary mismatch: {what} (token id {id}) but the model's vocab_size is {model_vocab}")]
    VocabMismatch {
        what: String,
        id: u32,
        model_vocab: usize,
    },
    #[error("cannot write {path}: {msg}")]
    Write { path: PathBuf, msg: String },
    #[error("bad data position: {msg}")]
    BadState { msg: String },
    #[error("bad data settings: {msg}")]
    Config { msg: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Checks that every id the tokenizer can produce fits the model: an error
/// naming both sizes if the tokenizer's vocabulary exceeds `model_vocab`.
pub fn check_vocab(tok: &Tok, model_vocab: usize) -> Result<(), DataError> {
    let v = tok.vocab_size();
    if v > model_vocab {
        return Err(DataError::VocabMismatch {
            what: format!("the tokenizer has {v} tokens"),
            id: (v - 1) as u32,
            model_vocab,
        });
    }
    Ok(())
}

/// Entropy in nats per token of the token frequencies of documents `docs` of
/// `source`, each followed by `eos_id`: the unigram baseline of a text.
pub fn token_unigram_entropy(
    source: &dyn DocSource,
    docs: &[usize],
    eos_id: u32,
) -> Result<f64, DataError> {
    let mut counts: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut n = 0usize;
    for &i in docs {
        for t in source.doc(i)?.into_iter().chain([eos_id]) {
            *counts.entry(t).or_default() += 1;
            n += 1;
        }
    }
    let n = n.max(1) as f64;
    Ok(counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.ln()
        })
        .sum())
}

/// Checks pre-tokenized ids against the model's vocabulary (`doc` names the document).
pub fn check_ids(ids: &[u32], model_vocab: usize, doc: &str) -> Result<(), DataError> {
    match ids.iter().find(|&&t| t as usize >= model_vocab) {
        Some(&id) => Err(DataError::VocabMismatch {
            what: format!("{doc} holds token id {id} >= {model_vocab}"),
            id,
            model_vocab,
        }),
        None => Ok(()),
    }
}
