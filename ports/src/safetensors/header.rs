//! Parsing and validating one safetensors header against the file's length.
//!
//! After [`parse`] succeeds, every tensor's `[begin, end)` lies inside the data region, the
//! tensors tile it exactly, and `end - begin == numel(shape) * dtype.size()`, so reads by
//! offset cannot fail later.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::StoredDType;
use crate::error::PortError;

/// The format's own cap on the header (the reference `safetensors` readers refuse larger ones).
pub(crate) const MAX_HEADER_BYTES: u64 = 100_000_000;

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

/// Validates the header of the safetensors file whose complete bytes are `file`.
pub(crate) fn parse(path: &Path, file: &[u8]) -> Result<Header, PortError> {
    let have = file.len() as u64;
    if file.starts_with(b"version https://git-lfs") {
        return Err(PortError::bad_header(
            path,
            "this is a Git LFS pointer, not the weights: fetch the real file (git lfs pull)",
        ));
    }
    let Some(len_bytes) = file.get(..8) else {
        return Err(PortError::Truncated {
            path: path.into(),
            tensor: "the 8-byte header length".into(),
            need: 8,
            have,
        });
    };
    let mut n8 = [0u8; 8];
    n8.copy_from_slice(len_bytes);
    let n = u64::from_le_bytes(n8);
    if n > MAX_HEADER_BYTES {
        return Err(PortError::bad_header(
            path,
            format!(
                "header length {n} exceeds the format's limit of {MAX_HEADER_BYTES} bytes \
                 (is this a PyTorch .bin/.pt file or some other format?)"
            ),
        ));
    }
    let data_start = 8 + n as usize; // n <= 1e8, fits any usize >= 32 bits
    let Some(header_bytes) = file.get(8..data_start) else {
        return Err(PortError::Truncated {
            path: path.into(),
            tensor: "the header".into(),
            need: 8 + n,
            have,
        });
    };
    let data_len = file.len() - data_start;

    let text = std::str::from_utf8(header_bytes)
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
                "header is not valid JSON: {e} (in the {n}-byte header after the 8-byte length)"
            ),
        )
    })?;

    let mut seen = HashSet::with_capacity(entries.len());
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if !seen.insert(name.clone()) {
            return Err(PortError::bad_header(
                path,
                format!("key {name:?} appears twice in the header"),
            ));
        }
        if name == "__metadata__" {
            metadata = parse_metadata(path, value)?;
        } else {
            tensors.push(parse_entry(path, name, value)?);
        }
    }

    // Tile check: sorted by offsets, each tensor starts where the previous ended, and the last
    // ends at the end of the file. Zero-sized tensors sort before a tensor starting at the same offset.
    tensors.sort_by(|a, b| (a.begin, a.end, &a.name).cmp(&(b.begin, b.end, &b.name)));
    let mut cursor = 0usize;
    let mut prev: Option<&TensorEntry> = None;
    for t in &tensors {
        if t.end > data_len {
            return Err(PortError::Truncated {
                path: path.into(),
                tensor: format!(
                    "tensor {:?} (data_offsets [{}, {}])",
                    t.name, t.begin, t.end
                ),
                need: data_start as u64 + t.end as u64,
                have,
            });
        }
        if t.begin < cursor {
            let other = prev.map(|p| {
                format!(
                    " tensor {:?} (data_offsets [{}, {}])",
                    p.name, p.begin, p.end
                )
            });
            return Err(PortError::bad_header(
                path,
                format!(
                    "tensor {:?} (data_offsets [{}, {}]) overlaps{}",
                    t.name,
                    t.begin,
                    t.end,
                    other.unwrap_or_else(|| " the previous tensor".into())
                ),
            ));
        }
        if t.begin > cursor {
            return Err(PortError::bad_header(
                path,
                format!(
                    "{} unused bytes before tensor {:?} (data_offsets [{}, {}]): \
                     tensors must tile the data region without gaps",
                    t.begin - cursor,
                    t.name,
                    t.begin,
                    t.end
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

    Ok(Header {
        data_start,
        metadata,
        tensors,
    })
}

fn parse_metadata(path: &Path, value: Value) -> Result<BTreeMap<String, String>, PortError> {
    let Value::Object(map) = value else {
        return Err(PortError::bad_header(
            path,
            format!(
                "__metadata__ must be an object of strings, found {}",
                kind(&value)
            ),
        ));
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            other => {
                return Err(PortError::bad_header(
                    path,
                    format!(
                        "__metadata__ value {k:?} must be a string, found {}",
                        kind(&other)
                    ),
                ))
            }
        }
    }
    Ok(out)
}

fn parse_entry(path: &Path, name: String, value: Value) -> Result<TensorEntry, PortError> {
    let bad = |msg: String| PortError::bad_header(path, format!("tensor {name:?}: {msg}"));
    let Value::Object(map) = value else {
        return Err(bad(format!(
            "entry must be an object with dtype, shape and data_offsets, found {}",
            kind(&value)
        )));
    };
    if let Some(k) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "dtype" | "shape" | "data_offsets"))
    {
        return Err(bad(format!(
            "unexpected field {k:?} (allowed: dtype, shape, data_offsets)"
        )));
    }
    let dtype_name = match map.get("dtype") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(bad(format!(
                "dtype must be a string, found {}",
                kind(other)
            )))
        }
        None => return Err(bad("no dtype".into())),
    };
    let shape = match map.get("shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                bad(format!(
                    "shape {} must be a list of non-negative integers",
                    Value::Array(dims.clone())
                ))
            })?,
        Some(other) => return Err(bad(format!("shape must be a list, found {}", kind(other)))),
        None => return Err(bad("no shape".into())),
    };
    let (begin, end) = match map.get("data_offsets") {
        Some(Value::Array(o)) if o.len() == 2 => {
            let to_usize = |v: &Value| v.as_u64().and_then(|x| usize::try_from(x).ok());
            match (to_usize(&o[0]), to_usize(&o[1])) {
                (Some(b), Some(e)) => (b, e),
                _ => {
                    return Err(bad(format!(
                        "data_offsets {} must be two non-negative integers",
                        Value::Array(o.clone())
                    )))
                }
            }
        }
        Some(other) => {
            return Err(bad(format!(
                "data_offsets must be [begin, end], found {other}"
            )))
        }
        None => return Err(bad("no data_offsets".into())),
    };
    let Some(dtype) = StoredDType::from_name(&dtype_name) else {
        return Err(PortError::UnknownDType {
            path: path.into(),
            tensor: name,
            dtype: dtype_name,
        });
    };
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
