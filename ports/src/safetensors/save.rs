//! Writing safetensors checkpoints as HF does: one `model.safetensors`, or shards
//! `model-0000i-of-0000N.safetensors` plus `model.safetensors.index.json`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use ::safetensors::{serialize_to_file, Dtype, SafeTensorError, View};
use gidd_engine::{DType, Data, DataRef, HostTensor};
use serde_json::{json, Map, Value};

use super::{is_shard_file_name, shard_file_name, StoredDType, INDEX_FILE, SINGLE_FILE};
use crate::error::PortError;
use crate::fsio::{sync_dir, write_atomic_via, write_json_pretty};

/// A tensor ready to write.
struct Item<'a> {
    name: &'a str,
    tensor: &'a HostTensor,
    dtype: StoredDType,
    nbytes: usize,
}

/// Writes `tensors`, each in its own dtype (F32, F64, BF16, F16, I32, U32, I64 or BOOL; convert with
/// `HostTensor::convert` first to change it), to `dir/model.safetensors`, or, when their total
/// size exceeds `max_shard_bytes`, to HF-named shards of at most that size (a single larger
/// tensor gets a shard of its own) with `model.safetensors.index.json`.
///
/// Every file is written atomically (temp file, fsync, rename, fsync dir) with metadata
/// `{"format": "pt"}` so `transformers` loads it. The set is committed by its last write
/// (the single file, or the index); then stale files of the other layout are removed, so
/// [`TensorStore::open`](super::TensorStore::open) on `dir` reads what was saved. `dir` is
/// created if needed.
pub fn save_tensors(
    dir: &Path,
    tensors: &[(String, HostTensor)],
    max_shard_bytes: Option<usize>,
) -> Result<(), PortError> {
    let items = validate(tensors)?;
    let total: usize = items.iter().map(|it| it.nbytes).sum();

    // Greedy in the given order, as transformers' shard splitting does.
    let mut groups: Vec<Vec<&Item>> = Vec::new();
    match max_shard_bytes {
        Some(max) if total > max => {
            let mut cur: Vec<&Item> = Vec::new();
            let mut cur_bytes = 0usize;
            for it in &items {
                if !cur.is_empty() && cur_bytes + it.nbytes > max {
                    groups.push(std::mem::take(&mut cur));
                    cur_bytes = 0;
                }
                cur_bytes += it.nbytes;
                cur.push(it);
            }
            groups.push(cur);
        }
        _ => groups.push(items.iter().collect()),
    }

    std::fs::create_dir_all(dir).map_err(|e| PortError::io(dir, e))?;
    if groups.len() == 1 {
        write_file(&dir.join(SINGLE_FILE), groups.concat())?;
        remove_stale(dir, Some(INDEX_FILE), &BTreeSet::new())?;
        return Ok(());
    }

    let n = groups.len();
    let mut weight_map = BTreeMap::new();
    let mut written = BTreeSet::new();
    for (i, group) in groups.into_iter().enumerate() {
        let file = shard_file_name(i + 1, n);
        for it in &group {
            weight_map.insert(it.name.to_string(), Value::String(file.clone()));
        }
        write_file(&dir.join(&file), group)?;
        written.insert(file);
    }
    // A stale model.safetensors would win over the index at open: remove it before committing.
    remove_file_if_present(&dir.join(SINGLE_FILE))?;
    let index = json!({
        "metadata": { "total_size": total },
        "weight_map": Value::Object(weight_map.into_iter().collect::<Map<String, Value>>()),
    });
    write_json_pretty(&dir.join(INDEX_FILE), &index)?;
    remove_stale(dir, None, &written)
}

pub(super) fn remove_file_if_present(p: &Path) -> Result<(), PortError> {
    match std::fs::remove_file(p) {
        Ok(()) => p.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PortError::io(p, e)),
    }
}

fn validate(tensors: &[(String, HostTensor)]) -> Result<Vec<Item<'_>>, PortError> {
    let mut seen = HashSet::with_capacity(tensors.len());
    let mut items = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let bad = |msg: String| PortError::BadTensor {
            name: name.clone(),
            msg,
        };
        if name.is_empty() || name == "__metadata__" {
            return Err(bad("the name is empty or reserved by the format".into()));
        }
        if !seen.insert(name.as_str()) {
            return Err(bad("the name is given twice".into()));
        }
        let dtype = match tensor.data.dtype() {
            DType::F32 => StoredDType::F32,
            DType::F64 => StoredDType::F64,
            DType::BF16 => StoredDType::BF16,
            DType::F16 => StoredDType::F16,
            DType::I32 => StoredDType::I32,
            DType::U32 => StoredDType::U32,
            DType::I64 => StoredDType::I64,
            DType::Bool => StoredDType::Bool,
        };
        let numel = tensor
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        let nbytes = match numel {
            Some(n) if n == tensor.data.len() => n * dtype.size(),
            _ => {
                return Err(bad(format!(
                    "{} elements do not fill shape {:?}",
                    tensor.data.len(),
                    tensor.shape
                )))
            }
        };
        items.push(Item {
            name,
            tensor,
            dtype,
            nbytes,
        });
    }
    Ok(items)
}

/// Lets the crate's serializer read our tensors without copying them.
impl View for &Item<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype.to_crate()
    }
    fn shape(&self) -> &[usize] {
        &self.tensor.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        le_bytes(&self.tensor.data)
    }
    fn data_len(&self) -> usize {
        self.nbytes
    }
}

/// Writes one safetensors file with the crate's serializer, which lays the tensors out by
/// dtype (widest first), then name, behind a header padded to 8 bytes, so every tensor is
/// aligned to its element size (the round-trip tests check this).
fn write_file(path: &Path, group: Vec<&Item>) -> Result<(), PortError> {
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_atomic_via(path, |tmp| {
        let tensors = group.iter().map(|it| (it.name, *it));
        serialize_to_file(tensors, Some(metadata), tmp).map_err(|e| match e {
            SafeTensorError::IoError(e) => PortError::io(tmp, e),
            other => PortError::bad_header(path, format!("cannot write the header: {other}")),
        })
    })
}

/// The bytes as the format stores them: little-endian, bools as 0/1. Borrowed on
/// little-endian hosts unless a bool needs normalising.
fn le_bytes(data: &Data) -> Cow<'_, [u8]> {
    fn owned<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Cow<'static, [u8]> {
        Cow::Owned(v.iter().flat_map(|&x| f(x)).collect())
    }
    match data.view() {
        DataRef::Bool(v) if v.iter().any(|&b| b > 1) => owned(v, |b| [u8::from(b != 0)]),
        DataRef::Bool(v) => Cow::Borrowed(v),
        // mapped storage is little-endian already (Mapped::new refuses big-endian hosts)
        _ if cfg!(target_endian = "little") => Cow::Borrowed(data.as_bytes()),
        DataRef::F32(v) => owned(v, f32::to_le_bytes),
        DataRef::F64(v) => owned(v, f64::to_le_bytes),
        DataRef::BF16(v) => owned(v, |x| x.to_bits().to_le_bytes()),
        DataRef::F16(v) => owned(v, |x| x.to_bits().to_le_bytes()),
        DataRef::I32(v) => owned(v, i32::to_le_bytes),
        DataRef::U32(v) => owned(v, u32::to_le_bytes),
        DataRef::I64(v) => owned(v, i64::to_le_bytes),
    }
}

/// Removes `extra` and every HF shard file not in `keep` from `dir`.
pub(super) fn remove_stale(
    dir: &Path,
    extra: Option<&str>,
    keep: &BTreeSet<String>,
) -> Result<(), PortError> {
    let mut doomed = Vec::new();
    if let Some(extra) = extra {
        let p = dir.join(extra);
        if p.is_file() {
            doomed.push(p);
        }
    }
    let rd = std::fs::read_dir(dir).map_err(|e| PortError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| PortError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_shard_file_name(&name) && !keep.contains(&name) {
            doomed.push(entry.path());
        }
    }
    if doomed.is_empty() {
        return Ok(());
    }
    for p in &doomed {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PortError::io(p, e)),
        }
    }
    sync_dir(dir)
}
