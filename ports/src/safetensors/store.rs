//! [`TensorStore`]: memory-mapped, validated safetensors files (single or sharded).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use gidd_engine::{DType, Data, HostTensor, Mapped};
use half::{bf16, f16};
use memmap2::{Mmap, MmapOptions};
use serde_json::Value;

use super::header::{self, Header};
use super::{is_shard_file_name, StoredDType, INDEX_FILE, SINGLE_FILE};
use crate::error::PortError;
use crate::fsio::read_json_value;

/// One mapped file, shared with the tensors read in place from it ([`TensorStore::get_mapped`]).
struct Shard {
    path: PathBuf,
    map: Arc<Mmap>,
    metadata: BTreeMap<String, String>,
}

/// Where a tensor lives; `start..end` are absolute offsets into its shard's map.
struct Entry {
    shard: usize,
    dtype: StoredDType,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A memory-mapped set of safetensors files: a single `model.safetensors`, a sharded checkpoint
/// described by `model.safetensors.index.json` (`{"weight_map": {name: file}}`), or any one
/// `.safetensors` file.
///
/// Opening maps the files (nothing is read into memory twice: the OS pages the data in as
/// tensors are read) and validates every header, so reads by name cannot fail on bad bytes.
/// The files must not be modified while the store is open.
pub struct TensorStore {
    shards: Vec<Shard>,
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for TensorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorStore")
            .field(
                "files",
                &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("tensors", &self.entries.len())
            .finish()
    }
}

const EXPECTED_LAYOUT: &str = "expected a directory holding model.safetensors, or \
     model.safetensors.index.json with its model-0000i-of-0000N.safetensors shards, \
     or the path of one .safetensors file or of an index .json";

impl TensorStore {
    /// Opens a checkpoint directory (preferring `model.safetensors` over the index, as
    /// `transformers` does), an index `.json`, or a single `.safetensors` file.
    pub fn open(path: &Path) -> Result<Self, PortError> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PortError::NotFound {
                path: path.into(),
                hint: EXPECTED_LAYOUT.into(),
            },
            _ => PortError::io(path, e),
        })?;
        if meta.is_dir() {
            let single = path.join(SINGLE_FILE);
            if single.is_file() {
                return Self::open_files(vec![single]);
            }
            let index = path.join(INDEX_FILE);
            if index.is_file() {
                return Self::open_index(&index);
            }
            return Err(PortError::NotFound {
                path: path.join(SINGLE_FILE),
                hint: format!("{EXPECTED_LAYOUT}; {}", describe_dir(path)),
            });
        }
        let is_index = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".json"));
        if is_index {
            Self::open_index(path)
        } else {
            Self::open_files(vec![path.to_path_buf()])
        }
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// Stored dtype and shape of a tensor.
    pub fn info(&self, name: &str) -> Option<(StoredDType, &[usize])> {
        self.entries
            .get(name)
            .map(|e| (e.dtype, e.shape.as_slice()))
    }

    /// The tensor's bytes as stored (little-endian, row-major), zero-copy from the map.
    pub fn raw_bytes(&self, name: &str) -> Option<&[u8]> {
        let e = self.entries.get(name)?;
        self.shards.get(e.shard)?.map.get(e.start..e.end)
    }

    /// Reads a tensor, keeping the stored dtype where the engine has it exactly
    /// (F32, F64, BF16, F16, I32, U32, I64, BOOL); U8 becomes F32.
    pub fn get(&self, name: &str) -> Result<HostTensor, PortError> {
        let (dtype, shape, bytes) = self.lookup(name)?;
        let data = match dtype {
            StoredDType::F32 => Data::F32(decode(bytes, f32::from_le_bytes)),
            StoredDType::F64 => Data::F64(decode(bytes, f64::from_le_bytes)),
            StoredDType::BF16 => {
                Data::BF16(decode(bytes, |b| bf16::from_bits(u16::from_le_bytes(b))))
            }
            StoredDType::F16 => Data::F16(decode(bytes, |b| f16::from_bits(u16::from_le_bytes(b)))),
            StoredDType::I32 => Data::I32(decode(bytes, i32::from_le_bytes)),
            StoredDType::U32 => Data::U32(decode(bytes, u32::from_le_bytes)),
            StoredDType::I64 => Data::I64(decode(bytes, i64::from_le_bytes)),
            StoredDType::Bool => Data::Bool(bytes.iter().map(|&b| u8::from(b != 0)).collect()),
            StoredDType::U8 => Data::F32(to_f32(dtype, bytes)),
        };
        host_tensor(name, shape, data)
    }

    /// Reads a tensor without copying it: its elements stay in the file's pages, which the
    /// returned tensor's `Data::Mapped` shares (the mapping outlives this store while any
    /// such tensor lives). F32, BF16, F16, F64, I32, U32 and I64 are read in place when aligned
    /// to their element size (files written by `safetensors`/`transformers` are: the header
    /// is padded to 8 bytes and tensors are laid out widest dtype first); anything else is
    /// read as [`get`](Self::get) reads it. The second value says whether it is in place.
    pub fn get_mapped(&self, name: &str) -> Result<(HostTensor, bool), PortError> {
        let missing = || PortError::MissingTensor { name: name.into() };
        let e = self.entries.get(name).ok_or_else(missing)?;
        let shard = self.shards.get(e.shard).ok_or_else(missing)?;
        let dtype = match e.dtype {
            StoredDType::F32 => Some(DType::F32),
            StoredDType::BF16 => Some(DType::BF16),
            StoredDType::F16 => Some(DType::F16),
            StoredDType::F64 => Some(DType::F64),
            StoredDType::I32 => Some(DType::I32),
            StoredDType::U32 => Some(DType::U32),
            StoredDType::I64 => Some(DType::I64),
            StoredDType::U8 | StoredDType::Bool => None,
        };
        let numel = e.shape.iter().product::<usize>();
        let backing: gidd_engine::host::Backing = shard.map.clone();
        match dtype.map(|d| Mapped::new(backing, e.start, d, numel)) {
            Some(Ok(m)) => Ok((host_tensor(name, &e.shape, Data::Mapped(m))?, true)),
            // unaligned, or a big-endian host: a copy is still correct
            Some(Err(_)) | None => Ok((self.get(name)?, false)),
        }
    }

    /// The file holding a tensor.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        let e = self.entries.get(name)?;
        self.shards.get(e.shard).map(|s| s.path.as_path())
    }

    /// Reads a tensor as F32 whatever it is stored as (f16 and bf16 widen exactly; f64 rounds
    /// to nearest; integers convert as `as f32`; bools become 0/1).
    pub fn get_f32(&self, name: &str) -> Result<HostTensor, PortError> {
        let (dtype, shape, bytes) = self.lookup(name)?;
        host_tensor(name, shape, Data::F32(to_f32(dtype, bytes)))
    }

    /// `__metadata__` of the first file (the single file, or the first shard by name).
    pub fn metadata(&self) -> BTreeMap<String, String> {
        self.shards
            .first()
            .map(|s| s.metadata.clone())
            .unwrap_or_default()
    }

    fn lookup(&self, name: &str) -> Result<(StoredDType, &[usize], &[u8]), PortError> {
        let missing = || PortError::MissingTensor { name: name.into() };
        let e = self.entries.get(name).ok_or_else(missing)?;
        let bytes = self
            .shards
            .get(e.shard)
            .and_then(|s| s.map.get(e.start..e.end))
            .ok_or_else(missing)?;
        Ok((e.dtype, &e.shape, bytes))
    }

    /// Maps and validates the given files; tensor names must be unique across them.
    fn open_files(paths: Vec<PathBuf>) -> Result<Self, PortError> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut entries = BTreeMap::new();
        for path in paths {
            let (map, header) = map_file(&path)?;
            let shard = shards.len();
            for t in header.tensors {
                let entry = Entry {
                    shard,
                    dtype: t.dtype,
                    shape: t.shape,
                    start: header.data_start + t.begin,
                    end: header.data_start + t.end,
                };
                if let Some(old) = entries.insert(t.name.clone(), entry) {
                    let first = shards
                        .get(old.shard)
                        .map(|s: &Shard| s.path.display().to_string())
                        .unwrap_or_default();
                    return Err(PortError::bad_index(
                        &path,
                        format!("tensor {:?} is stored both here and in {first}", t.name),
                    ));
                }
            }
            shards.push(Shard {
                path,
                map: Arc::new(map),
                metadata: header.metadata,
            });
        }
        Ok(TensorStore { shards, entries })
    }

    /// Opens a sharded checkpoint from its index: every listed shard must exist, hold exactly
    /// the tensors the index assigns to it, and nothing else.
    fn open_index(index: &Path) -> Result<Self, PortError> {
        let root = read_json_value(index)?;
        let weight_map =
            match &root {
                Value::Object(o) => match o.get("weight_map") {
                    Some(Value::Object(w)) => w,
                    Some(_) => {
                        return Err(PortError::bad_index(
                            index,
                            "\"weight_map\" must be an object {tensor name: shard file}",
                        ))
                    }
                    None => return Err(PortError::bad_index(
                        index,
                        "no \"weight_map\" (expected {\"weight_map\": {tensor name: shard file}})",
                    )),
                },
                _ => {
                    return Err(PortError::bad_index(
                        index,
                        "the index must be a JSON object",
                    ))
                }
            };
        let dir = index.parent().unwrap_or_else(|| Path::new("."));
        let mut wanted: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, file) in weight_map {
            let Value::String(file) = file else {
                return Err(PortError::bad_index(
                    index,
                    format!("weight_map[{name:?}] must be a file name, found {file}"),
                ));
            };
            let plain = Path::new(file)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
            if file.is_empty() || !plain {
                return Err(PortError::bad_index(
                    index,
                    format!(
                        "weight_map[{name:?}] = {file:?} is not a file name relative to the index's directory"
                    ),
                ));
            }
            wanted.insert(name, file);
        }
        if wanted.is_empty() {
            return Err(PortError::bad_index(index, "weight_map is empty"));
        }
        let files: BTreeSet<&str> = wanted.values().copied().collect();
        let mut paths = Vec::with_capacity(files.len());
        for &file in &files {
            let p = dir.join(file);
            if !p.is_file() {
                let listed: Vec<&str> = wanted
                    .iter()
                    .filter(|(_, f)| **f == file)
                    .map(|(n, _)| *n)
                    .collect();
                return Err(PortError::NotFound {
                    path: p,
                    hint: format!(
                        "{} lists this shard for {} tensors (e.g. {:?}); the checkpoint is incomplete: \
                         download the missing shard",
                        index.display(),
                        listed.len(),
                        listed.first().copied().unwrap_or_default()
                    ),
                });
            }
            paths.push(p);
        }
        let store = Self::open_files(paths)?;
        for (name, entry) in &store.entries {
            let Some(shard) = store.shards.get(entry.shard) else {
                continue;
            };
            let shard_name = shard.path.strip_prefix(dir).unwrap_or(&shard.path);
            match wanted.get(name.as_str()) {
                Some(f) if Path::new(f) == shard_name => {}
                Some(f) => {
                    return Err(PortError::bad_index(
                        index,
                        format!(
                            "maps tensor {name:?} to {f} but it is stored in {}",
                            shard_name.display()
                        ),
                    ))
                }
                None => {
                    return Err(PortError::bad_index(
                        index,
                        format!(
                            "tensor {name:?} in {} is not listed in weight_map",
                            shard_name.display()
                        ),
                    ))
                }
            }
        }
        if let Some((name, file)) = wanted
            .iter()
            .find(|(n, _)| !store.entries.contains_key(**n))
        {
            return Err(PortError::bad_index(
                index,
                format!("maps tensor {name:?} to {file}, which holds no such tensor"),
            ));
        }
        Ok(store)
    }
}

/// Maps a file read-only and validates its header.
fn map_file(path: &Path) -> Result<(Mmap, Header), PortError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PortError::NotFound {
            path: path.into(),
            hint: EXPECTED_LAYOUT.into(),
        },
        _ => PortError::io(path, e),
    })?;
    let len = file.metadata().map_err(|e| PortError::io(path, e))?.len();
    if len < 8 {
        // Mapping an empty file fails on some systems; report what is wrong instead.
        return Err(PortError::Truncated {
            path: path.into(),
            tensor: "the 8-byte header length".into(),
            need: 8,
            have: len,
        });
    }
    // SAFETY: the map is read-only and private to this store. Like every mmap-based reader
    // (safetensors, candle), this relies on the file not being truncated or rewritten while the
    // store is open; our own writers replace files by rename, which leaves old maps intact.
    let map = unsafe { MmapOptions::new().map(&file) }.map_err(|e| PortError::io(path, e))?;
    let header = header::parse(path, &map)?;
    Ok((map, header))
}

/// What a directory holds, for the not-found hint.
fn describe_dir(dir: &Path) -> String {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return "the directory cannot be listed".into();
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return "the directory is empty".into();
    }
    let mut s = String::from("found instead: ");
    s.push_str(
        &names
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
    );
    if names.len() > 12 {
        s.push_str(&format!(", ... ({} entries)", names.len()));
    }
    if names.iter().any(|n| is_shard_file_name(n)) {
        s.push_str("; there are shards but no index: restore model.safetensors.index.json");
    } else if names
        .iter()
        .any(|n| n.ends_with(".bin") || n.ends_with(".pt"))
    {
        s.push_str("; PyTorch pickles are not read: convert them to safetensors");
    }
    s
}

fn host_tensor(name: &str, shape: &[usize], data: Data) -> Result<HostTensor, PortError> {
    // Cannot fail: the header check made bytes == numel * size.
    HostTensor::new(shape.to_vec(), data).map_err(|e| PortError::BadTensor {
        name: name.into(),
        msg: e.to_string(),
    })
}

/// Decodes little-endian elements of `N` bytes (works whatever the host's byte order and
/// whatever the alignment of the map).
fn decode<T, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

fn to_f32(dtype: StoredDType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        StoredDType::F32 => decode(bytes, f32::from_le_bytes),
        StoredDType::F16 => decode(bytes, |b| f16::from_bits(u16::from_le_bytes(b)).to_f32()),
        StoredDType::BF16 => decode(bytes, |b| bf16::from_bits(u16::from_le_bytes(b)).to_f32()),
        StoredDType::F64 => decode(bytes, |b| f64::from_le_bytes(b) as f32),
        StoredDType::I64 => decode(bytes, |b| i64::from_le_bytes(b) as f32),
        StoredDType::I32 => decode(bytes, |b| i32::from_le_bytes(b) as f32),
        StoredDType::U32 => decode(bytes, |b| u32::from_le_bytes(b) as f32),
        StoredDType::U8 => bytes.iter().map(|&b| f32::from(b)).collect(),
        StoredDType::Bool => bytes.iter().map(|&b| f32::from(u8::from(b != 0))).collect(),
    }
}

/// Strict check of a store against expected `(name, shape)` pairs: one error listing every
/// missing, unexpected and mis-shaped tensor.
pub fn check_names(
    store: &TensorStore,
    expected: &[(String, Vec<usize>)],
) -> Result<(), PortError> {
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    let mut want: BTreeSet<&str> = BTreeSet::new();
    for (name, shape) in expected {
        want.insert(name);
        match store.info(name) {
            None => missing.push(name.clone()),
            Some((_, found)) if found != shape.as_slice() => {
                misshaped.push((name.clone(), shape.clone(), found.to_vec()))
            }
            Some(_) => {}
        }
    }
    let unexpected: Vec<String> = store
        .names()
        .into_iter()
        .filter(|n| !want.contains(n))
        .map(String::from)
        .collect();
    missing.sort();
    missing.dedup();
    misshaped.sort();
    misshaped.dedup();
    if missing.is_empty() && unexpected.is_empty() && misshaped.is_empty() {
        Ok(())
    } else {
        Err(PortError::Mismatch {
            missing,
            unexpected,
            misshaped,
        })
    }
}
