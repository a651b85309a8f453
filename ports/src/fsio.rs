//! Atomic file writes and JSON object files (config.json and other small state files).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

use crate::error::PortError;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically: a reader sees the old file or the new one, never a
/// mix, even if the process or the machine dies mid-write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PortError> {
    write_atomic_via(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| PortError::io(tmp, e))
    })
}

/// Atomic write of whatever `fill` writes to the temp path it is given (a file in the same
/// directory, so the rename cannot cross file systems): then fsync, rename over `path`, fsync
/// the directory. Taking a path rather than a writer lets writers that open files themselves
/// (the safetensors serializer) stream straight to disk. On any error the temp file is removed
/// and `path` is untouched.
pub(crate) fn write_atomic_via(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), PortError>,
) -> Result<(), PortError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            PortError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "path has no file name to write",
                ),
            )
        })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{n}", std::process::id()));

    // Claim the name first, so `fill` never writes through a file or link someone else left there.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| PortError::io(&tmp, e))?;
    let written = fill(&tmp).and_then(|()| {
        OpenOptions::new()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| PortError::io(&tmp, e))
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(PortError::io(path, e));
    }
    sync_dir(&dir)
}

/// Makes a rename or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PortError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| PortError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads a JSON file whose top level must be an object (config.json and the like), keeping
/// the keys in file order so unknown keys survive a re-save.
pub fn read_json_object(path: &Path) -> Result<Map<String, Value>, PortError> {
    let (value, text) = read_json(path)?;
    match value {
        Value::Object(map) => Ok(map),
        other => {
            let (line, column) = first_token_position(&text);
            let found = match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "a list",
                Value::Object(_) => "an object",
            };
            Err(PortError::Json {
                path: path.into(),
                line,
                column,
                msg: format!("expected a JSON object {{...}} at the top level, found {found}"),
            })
        }
    }
}

/// Writes `v` as pretty JSON (2-space indent, trailing newline), atomically.
pub fn write_json_pretty(path: &Path, v: &Value) -> Result<(), PortError> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| PortError::Json {
        path: path.into(),
        line: e.line(),
        column: e.column(),
        msg: format!("cannot serialise: {e}"),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads any JSON value, mapping parse errors to `PortError::Json` with line and column.
pub(crate) fn read_json_value(path: &Path) -> Result<Value, PortError> {
    read_json(path).map(|(v, _)| v)
}

fn read_json(path: &Path) -> Result<(Value, Vec<u8>), PortError> {
    let mut bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PortError::NotFound {
            path: path.into(),
            hint: "expected a JSON file here (config.json and the index are written next to the weights)"
                .into(),
        },
        _ => PortError::io(path, e),
    })?;
    // An editor's UTF-8 byte-order mark is invisible; skip it rather than fail on it.
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) => Ok((v, bytes)),
        Err(e) => {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let msg = full.strip_suffix(&suffix).unwrap_or(&full);
            Err(PortError::Json {
                path: path.into(),
                line: e.line(),
                column: e.column(),
                msg: format!("not valid JSON: {msg}"),
            })
        }
    }
}

/// 1-based line and column of the first non-whitespace byte.
fn first_token_position(text: &[u8]) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    for &b in text {
        match b {
            b'\n' => {
                line += 1;
                column = 1;
            }
            b' ' | b'\t' | b'\r' => column += 1,
            _ => break,
        }
    }
    (line, column)
}
