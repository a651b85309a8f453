//! One safetensors header: the `safetensors` crate parses and validates it; this file adds the
//! checks the crate skips and, when the crate refuses a file, finds the culprit, because the
//! crate's errors name neither the file nor, mostly, the tensor or the numbers involved.
//!
//! After [`parse`] succeeds, every tensor's `[begin, end)` lies inside the data region, the
//! tensors tile it exactly, and `end - begin == numel(shape) * dtype.size()`, so reads by
//! offset cannot fail later.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use ::safetensors::tensor::Metadata;
use ::safetensors::{SafeTensorError, SafeTensors};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::StoredDType;
use crate::error::PortError;

/// The crate's cap on the header length (private there); quoted when a file exceeds it.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor of a validated header; offsets are relative to the data region.
#[derive(Clone, Debug)]
pub(crate) struct TensorEntry {
    pub name: String,
    pub dtype: StoredDType,
    pub shape: Vec<usize>,
    pub begin: usize,
    pub end: usize,
}

/// A validated header.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    /// Absolute file offset of the data region (8 + header length).
    pub data_start: usize,
    pub metadata: BTreeMap<String, String>,
    /// In file order (ascending offsets).
    pub tensors: Vec<TensorEntry>,
}

/// Validates the header of the safetensors file whose complete bytes are `file`.
pub(crate) fn parse(path: &Path, file: &[u8]) -> Result<Header, PortError> {
    if file.starts_with(b"version https://git-lfs") {
        return Err(PortError::bad_header(
            path,
            "this is a Git LFS pointer, not the weights: fetch the real file (git lfs pull)",
        ));
    }
    let (n, meta) = SafeTensors::read_metadata(file).map_err(|e| explain(path, file, e))?;
    let data_start = 8 + n;
    // The crate keeps the last of two equal keys and ignores unknown fields; either means a
    // writer we do not understand, so we refuse. This parses the JSON a second time, which
    // costs little: headers are kilobytes.
    for (name, value) in raw_entries(path, file.get(8..data_start).unwrap_or_default())? {
        if name != "__metadata__" {
            unexpected_field(path, &name, &value)?;
        }
    }
    Ok(Header {
        data_start,
        metadata: meta
            .metadata()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        tensors: tensors(path, &meta)?,
    })
}

/// The crate's tensors in offset order, with the dtypes gidd reads.
fn tensors(path: &Path, meta: &Metadata) -> Result<Vec<TensorEntry>, PortError> {
    let mut out = Vec::new();
    for name in meta.offset_keys() {
        let Some(info) = meta.info(&name) else {
            continue;
        };
        let Some(dtype) = StoredDType::from_crate(info.dtype) else {
            return Err(PortError::UnknownDType {
                path: path.into(),
                tensor: name,
                dtype: info.dtype.to_string(),
            });
        };
        let (begin, end) = info.data_offsets;
        out.push(TensorEntry {
            name,
            dtype,
            shape: info.shape.clone(),
            begin,
            end,
        });
    }
    Ok(out)
}

/// Our error for one the crate raised: the file always, and the tensor and sizes where the
/// crate's message has none.
fn explain(path: &Path, file: &[u8], err: SafeTensorError) -> PortError {
    let have = file.len() as u64;
    let n = file
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    let truncated = |tensor: &str, need: u64| PortError::Truncated {
        path: path.into(),
        tensor: tensor.into(),
        need,
        have,
    };
    match err {
        SafeTensorError::HeaderTooSmall => truncated("the 8-byte header length", 8),
        SafeTensorError::InvalidHeaderLength => truncated("the header", n.saturating_add(8)),
        SafeTensorError::HeaderTooLarge => PortError::bad_header(
            path,
            format!(
                "header length {n} exceeds the format's limit of {MAX_HEADER_BYTES} bytes \
                 (is this a PyTorch .bin/.pt file or some other format?)"
            ),
        ),
        SafeTensorError::InvalidHeader(e) => {
            PortError::bad_header(path, format!("header is not UTF-8 ({e})"))
        }
        // The rest is about the JSON, an entry or the offsets; the crate got past the length
        // checks above, so the header lies inside the file.
        other => match locate(path, file, n as usize) {
            Err(ours) => ours,
            Ok(()) => PortError::bad_header(path, other.to_string()),
        },
    }
}

/// Finds the first problem in a header the crate refused and says it in our terms.
fn locate(path: &Path, file: &[u8], n: usize) -> Result<(), PortError> {
    let data_start = 8 + n;
    let mut tensors = Vec::new();
    for (name, value) in raw_entries(path, file.get(8..data_start).unwrap_or_default())? {
        if name == "__metadata__" {
            check_metadata(path, &value)?;
        } else {
            tensors.push(typed_entry(path, name, &value)?);
        }
    }
    check_tiling(path, tensors, data_start, file.len())
}

/// The header's top-level entries in file order, so duplicate keys can be caught
/// (a plain map would silently keep the last one).
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

/// The header's entries, unvalidated but unique.
fn raw_entries(path: &Path, header: &[u8]) -> Result<Vec<(String, Value)>, PortError> {
    let text = std::str::from_utf8(header)
        .map_err(|e| PortError::bad_header(path, format!("header is not UTF-8 ({e})")))?;
    if !text.trim_start().starts_with('{') {
        return Err(PortError::bad_header(
            path,
            "header is not a JSON object (it must start with '{')",
        ));
    }
    let Entries(entries) = serde_json::from_str::<Entries>(text).map_err(|e| {
        PortError::bad_header(
            path,
            format!(
                "header is not valid JSON: {e} (in the {}-byte header after the 8-byte length)",
                header.len()
            ),
        )
    })?;
    let mut seen = HashSet::with_capacity(entries.len());
    if let Some((name, _)) = entries.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(PortError::bad_header(
            path,
            format!("key {name:?} appears twice in the header"),
        ));
    }
    Ok(entries)
}

fn unexpected_field(path: &Path, name: &str, entry: &Value) -> Result<(), PortError> {
    let Value::Object(map) = entry else {
        return Ok(());
    };
    match map
        .keys()
        .find(|k| !matches!(k.as_str(), "dtype" | "shape" | "data_offsets"))
    {
        Some(k) => Err(PortError::bad_header(
            path,
            format!(
                "tensor {name:?}: unexpected field {k:?} (allowed: dtype, shape, data_offsets)"
            ),
        )),
        None => Ok(()),
    }
}

fn check_metadata(path: &Path, value: &Value) -> Result<(), PortError> {
    let map = match value {
        Value::Object(map) => map,
        // The crate reads a null `__metadata__` as absent; so do we.
        Value::Null => return Ok(()),
        other => {
            return Err(PortError::bad_header(
                path,
                format!(
                    "__metadata__ must be an object of strings, found {}",
                    kind(other)
                ),
            ))
        }
    };
    match map.iter().find(|(_, v)| !v.is_string()) {
        Some((k, v)) => Err(PortError::bad_header(
            path,
            format!(
                "__metadata__ value {k:?} must be a string, found {}",
                kind(v)
            ),
        )),
        None => Ok(()),
    }
}

/// One tensor entry, checked field by field so the message says which field is wrong.
fn typed_entry(path: &Path, name: String, value: &Value) -> Result<TensorEntry, PortError> {
    let bad = |msg: String| PortError::bad_header(path, format!("tensor {name:?}: {msg}"));
    let Value::Object(map) = value else {
        return Err(bad(format!(
            "entry must be an object with dtype, shape and data_offsets, found {}",
            kind(value)
        )));
    };
    unexpected_field(path, &name, value)?;
    let field = |key: &str| map.get(key).ok_or_else(|| bad(format!("no {key}")));
    let dtype = match field("dtype")? {
        Value::String(s) => StoredDType::from_name(s).ok_or_else(|| PortError::UnknownDType {
            path: path.into(),
            tensor: name.clone(),
            dtype: s.clone(),
        })?,
        other => {
            return Err(bad(format!(
                "dtype must be a string, found {}",
                kind(other)
            )))
        }
    };
    let shape_v = field("shape")?;
    let shape: Vec<usize> = serde_json::from_value(shape_v.clone()).map_err(|_| {
        bad(format!(
            "shape {shape_v} must be a list of non-negative integers"
        ))
    })?;
    let offsets_v = field("data_offsets")?;
    let (begin, end): (usize, usize) = serde_json::from_value(offsets_v.clone()).map_err(|_| {
        bad(format!(
            "data_offsets must be [begin, end], two non-negative integers, found {offsets_v}"
        ))
    })?;
    if begin > end {
        return Err(bad(format!(
            "data_offsets [{begin}, {end}] end before they begin"
        )));
    }
    let nbytes = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
    match nbytes {
        Some(nb) if nb == end - begin => {}
        Some(nb) => {
            return Err(bad(format!(
            "shape {shape:?} of {dtype} needs {nb} bytes but data_offsets [{begin}, {end}] span {}",
            end - begin
        )))
        }
        None => {
            return Err(bad(format!(
                "shape {shape:?} of {dtype} overflows the address space"
            )))
        }
    }
    Ok(TensorEntry {
        name,
        dtype,
        shape,
        begin,
        end,
    })
}

/// The format requires the tensors to tile the data region exactly: sorted by offsets, each
/// starts where the previous ended, and the last ends at the end of the file. Zero-sized
/// tensors sort before a tensor starting at the same offset.
fn check_tiling(
    path: &Path,
    mut tensors: Vec<TensorEntry>,
    data_start: usize,
    file_len: usize,
) -> Result<(), PortError> {
    let data_len = file_len.saturating_sub(data_start);
    tensors.sort_by(|a, b| (a.begin, a.end, &a.name).cmp(&(b.begin, b.end, &b.name)));
    let describe = |t: &TensorEntry| {
        format!(
            "tensor {:?} (data_offsets [{}, {}])",
            t.name, t.begin, t.end
        )
    };
    let mut cursor = 0usize;
    let mut prev: Option<&TensorEntry> = None;
    for t in &tensors {
        if t.end > data_len {
            return Err(PortError::Truncated {
                path: path.into(),
                tensor: describe(t),
                need: data_start as u64 + t.end as u64,
                have: file_len as u64,
            });
        }
        if t.begin < cursor {
            let other = prev.map_or_else(|| "the previous tensor".into(), describe);
            return Err(PortError::bad_header(
                path,
                format!("{} overlaps {other}", describe(t)),
            ));
        }
        if t.begin > cursor {
            return Err(PortError::bad_header(
                path,
                format!(
                    "{} unused bytes before {}: tensors must tile the data region without gaps",
                    t.begin - cursor,
                    describe(t)
                ),
            ));
        }
        cursor = t.end;
        prev = Some(t);
    }
    if cursor != data_len {
        return Err(PortError::bad_header(
            path,
            format!(
                "{} trailing bytes after the last tensor (tensors end at data offset {cursor}, \
                 the data region holds {data_len} bytes)",
                data_len - cursor
            ),
        ));
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
