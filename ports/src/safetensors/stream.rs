//! Writing a sharded checkpoint whose tensors are produced one at a time, so that a model
//! larger than memory (a 10B model is 20 GB in bf16) can be written: only what `fill`
//! holds for the tensor at hand is in memory. Headers are known up front from the specs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::save::{remove_file_if_present, remove_stale};
use super::{shard_file_name, StoredDType, INDEX_FILE, SINGLE_FILE};
use crate::error::PortError;
use crate::fsio::{write_atomic_via, write_json_pretty};

/// A tensor [`write_streamed`] writes: its name, stored dtype and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: StoredDType,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn nbytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

/// Counts what `fill` writes, so a short or long tensor is caught before the header lies.
struct Counted<'a, W: Write> {
    inner: &'a mut W,
    n: usize,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the tensors of `specs` into `dir` as HF-named shards of at most `max_shard_bytes`
/// (greedy in the given order, a larger tensor alone in its shard) plus
/// `model.safetensors.index.json`, or a single `model.safetensors` when one shard holds them
/// all. `fill(spec, out)` writes one tensor's little-endian bytes, exactly
/// `spec.nbytes()` of them; it is called once per tensor, shard by shard.
///
/// Each file is written atomically (temp file, fsync, rename); the set is committed by the
/// index, written last, and stale files of another layout are removed then, as
/// [`save_tensors`](super::save_tensors) does. Within a file the tensors are laid out
/// widest dtype first behind a header padded to 8 bytes, so every tensor is aligned to its
/// element size and can be read in place from a mapping. Returns the files written.
pub fn write_streamed(
    dir: &Path,
    specs: &[TensorSpec],
    max_shard_bytes: usize,
    mut fill: impl FnMut(&TensorSpec, &mut dyn Write) -> std::io::Result<()>,
) -> Result<Vec<PathBuf>, PortError> {
    let mut seen = BTreeSet::new();
    for s in specs {
        if s.name.is_empty() || s.name == "__metadata__" || !seen.insert(s.name.as_str()) {
            return Err(PortError::BadTensor {
                name: s.name.clone(),
                msg: "the name is empty, reserved by the format, or given twice".into(),
            });
        }
    }
    let mut groups: Vec<Vec<&TensorSpec>> = vec![vec![]];
    let mut cur = 0usize;
    for s in specs {
        let last = groups.last_mut().expect("one group at least");
        if !last.is_empty() && cur + s.nbytes() > max_shard_bytes {
            groups.push(vec![s]);
            cur = s.nbytes();
        } else {
            last.push(s);
            cur += s.nbytes();
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| PortError::io(dir, e))?;
    let n = groups.len();
    let mut written = vec![];
    let mut weight_map = BTreeMap::new();
    for (i, mut group) in groups.into_iter().enumerate() {
        let file = if n == 1 {
            SINGLE_FILE.to_string()
        } else {
            shard_file_name(i + 1, n)
        };
        // widest first keeps every tensor aligned to its element size (the header is padded to 8)
        group.sort_by_key(|s| std::cmp::Reverse(s.dtype.size()));
        let path = dir.join(&file);
        write_atomic_via(&path, |tmp| write_one(tmp, &path, &group, &mut fill))?;
        for s in &group {
            weight_map.insert(s.name.clone(), Value::String(file.clone()));
        }
        written.push(path);
    }
    if n == 1 {
        remove_stale(dir, Some(INDEX_FILE), &BTreeSet::new())?;
        return Ok(written);
    }
    remove_file_if_present(&dir.join(SINGLE_FILE))?;
    let total: usize = specs.iter().map(TensorSpec::nbytes).sum();
    let index = json!({
        "metadata": { "total_size": total },
        "weight_map": Value::Object(weight_map.into_iter().collect::<Map<String, Value>>()),
    });
    write_json_pretty(&dir.join(INDEX_FILE), &index)?;
    let keep: BTreeSet<String> = written
        .iter()
        .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .collect();
    remove_stale(dir, None, &keep)?;
    Ok(written)
}

/// One file: the header, then each tensor as `fill` writes it.
fn write_one(
    tmp: &Path,
    path: &Path,
    group: &[&TensorSpec],
    fill: &mut impl FnMut(&TensorSpec, &mut dyn Write) -> std::io::Result<()>,
) -> Result<(), PortError> {
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({ "format": "pt" }));
    let mut offset = 0usize;
    for s in group {
        header.insert(
            s.name.clone(),
            json!({
                "dtype": s.dtype.name(),
                "shape": s.shape,
                "data_offsets": [offset, offset + s.nbytes()],
            }),
        );
        offset += s.nbytes();
    }
    let mut text = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| PortError::bad_header(path, format!("cannot write the header: {e}")))?;
    // padded with spaces (valid JSON whitespace) so that the data region starts 8-aligned
    text.resize(text.len().next_multiple_of(8), b' ');
    let io = |e| PortError::io(tmp, e);
    let f = std::fs::File::create(tmp).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    w.write_all(&(text.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&text).map_err(io)?;
    for s in group {
        let mut c = Counted {
            inner: &mut w,
            n: 0,
        };
        fill(s, &mut c).map_err(io)?;
        if c.n != s.nbytes() {
            return Err(PortError::BadTensor {
                name: s.name.clone(),
                msg: format!(
                    "{} bytes were written for shape {:?} of {}, which takes {}",
                    c.n,
                    s.shape,
                    s.dtype,
                    s.nbytes()
                ),
            });
        }
    }
    // write_atomic_via fsyncs the file before renaming it
    w.into_inner().map_err(|e| io(e.into_error()))?;
    Ok(())
}
