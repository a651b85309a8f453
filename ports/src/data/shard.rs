//! Pre-tokenized token shards, memory-mapped.
//!
//! A shard is `NAME.bin`, raw little-endian `u16` or `u32` token ids, and a
//! sidecar `NAME.json`:
//!
//! ```json
//! {"dtype": "u16", "n_tokens": 12345, "separator": 1}
//! ```
//!
//! Documents are the runs between `separator` tokens (the separator itself is
//! dropped; the packer adds eos back); `"separator": null` makes the whole
//! shard one document. `n_tokens` is checked against the file size.
//! [`write_shard`] writes one: each document followed by the separator (eos, 1).

use super::source::{out_of_range, DocSource};
use super::tokenizer::write_atomic;
use super::{DataError, EOS_ID};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardDtype {
    U16,
    U32,
}

impl ShardDtype {
    pub fn bytes(self) -> usize {
        match self {
            ShardDtype::U16 => 2,
            ShardDtype::U32 => 4,
        }
    }
}

/// The `NAME.json` sidecar of a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardMeta {
    pub dtype: ShardDtype,
    pub n_tokens: u64,
    /// Token that separates documents (dropped), or None for a single document.
    #[serde(default = "default_separator")]
    pub separator: Option<u32>,
}

fn default_separator() -> Option<u32> {
    Some(EOS_ID)
}

/// A memory-mapped shard with its document boundaries.
pub struct ShardSource {
    path: PathBuf,
    /// None for an empty file (a zero-length map is not portable)
    map: Option<Mmap>,
    dtype: ShardDtype,
    /// Document i is tokens [spans[i].0, spans[i].1).
    spans: Vec<(u64, u64)>,
}

fn bad(path: &Path, msg: impl Into<String>) -> DataError {
    DataError::BadShard {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

impl ShardSource {
    /// Opens `NAME.bin` and its sidecar `NAME.json`.
    pub fn open(bin: &Path) -> Result<ShardSource, DataError> {
        let side = bin.with_extension("json");
        let meta_text = std::fs::read_to_string(&side).map_err(|e| {
            bad(
                bin,
                format!("cannot read its sidecar {} ({e}); expected {{\"dtype\": \"u16\"|\"u32\", \"n_tokens\": N, \"separator\": 1}}", side.display()),
            )
        })?;
        let meta: ShardMeta = serde_json::from_str(&meta_text)
            .map_err(|e| bad(bin, format!("bad sidecar {}: {e}", side.display())))?;
        let file = std::fs::File::open(bin).map_err(|e| DataError::io(bin, e))?;
        let len = file.metadata().map_err(|e| DataError::io(bin, e))?.len();
        let width = meta.dtype.bytes() as u64;
        if len % width != 0 || len / width != meta.n_tokens {
            return Err(bad(
                bin,
                format!(
                    "{len} bytes, but the sidecar says {} tokens of {} bytes",
                    meta.n_tokens, width
                ),
            ));
        }
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the map is read-only; a shard truncated by another process while
            // mapped would fault, as for any memory-mapped input.
            Some(unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(bin, e))?)
        };
        let mut src = ShardSource {
            path: bin.to_path_buf(),
            map,
            dtype: meta.dtype,
            spans: Vec::new(),
        };
        src.spans = src.find_spans(meta.separator);
        Ok(src)
    }

    fn n_tokens(&self) -> u64 {
        self.map
            .as_ref()
            .map_or(0, |m| (m.len() / self.dtype.bytes()) as u64)
    }

    fn token(&self, bytes: &[u8], i: usize) -> u32 {
        match self.dtype {
            ShardDtype::U16 => u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u32,
            ShardDtype::U32 => u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ]),
        }
    }

    fn find_spans(&self, separator: Option<u32>) -> Vec<(u64, u64)> {
        let n = self.n_tokens();
        let Some(map) = &self.map else {
            return Vec::new();
        };
        let Some(sep) = separator else {
            return vec![(0, n)];
        };
        let mut spans = Vec::new();
        let mut start = 0u64;
        for i in 0..n as usize {
            if self.token(map, i) == sep {
                spans.push((start, i as u64));
                start = i as u64 + 1;
            }
        }
        if start < n {
            spans.push((start, n));
        }
        spans
    }
}

impl DocSource for ShardSource {
    fn len(&self) -> usize {
        self.spans.len()
    }
    fn doc(&self, i: usize) -> Result<Vec<u32>, DataError> {
        let (a, b) = *self
            .spans
            .get(i)
            .ok_or_else(|| out_of_range(i, self.spans.len(), &self.describe()))?;
        let map = self.map.as_ref().map_or(&[][..], |m| &m[..]);
        Ok((a as usize..b as usize)
            .map(|k| self.token(map, k))
            .collect())
    }
    fn describe(&self) -> String {
        format!(
            "{} ({} documents, {} tokens)",
            self.path.display(),
            self.spans.len(),
            self.n_tokens()
        )
    }
}

/// Writes `docs` as the shard `bin` (+ sidecar `bin` with extension .json), each
/// document followed by eos (1), the separator. Errors if an id does not fit `dtype`.
pub fn write_shard(
    bin: &Path,
    docs: &[Vec<u32>],
    dtype: ShardDtype,
) -> Result<ShardMeta, DataError> {
    let mut bytes = Vec::new();
    let mut n = 0u64;
    for (d, doc) in docs.iter().enumerate() {
        for &t in doc.iter().chain(std::iter::once(&EOS_ID)) {
            match dtype {
                ShardDtype::U16 => {
                    let v = u16::try_from(t).map_err(|_| {
                        bad(bin, format!("document {d}: token {t} does not fit u16"))
                    })?;
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                ShardDtype::U32 => bytes.extend_from_slice(&t.to_le_bytes()),
            }
            n += 1;
        }
    }
    let meta = ShardMeta {
        dtype,
        n_tokens: n,
        separator: Some(EOS_ID),
    };
    let json = serde_json::to_string(&meta).map_err(|e| bad(bin, e.to_string()))?;
    write_atomic(bin, &bytes)?;
    write_atomic(&bin.with_extension("json"), json.as_bytes())?;
    Ok(meta)
}
