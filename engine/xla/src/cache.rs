//! A persistent compilation cache: an executable the plugin compiled is serialized to
//! disk, keyed by everything that determines it (the module text, the compile options,
//! the plugin file and its platform and API version), and later runs load it instead of
//! compiling again. On a TPU a large training step takes minutes to compile; here a
//! restart or a second `gidd generate` skips that.
//!
//! An entry stores its whole key next to the executable and is used only when every
//! byte of the key matches (a hash collision cannot load the wrong program). Entries are
//! written to a temporary file and renamed, so concurrent runs never read half an entry.
//! A cache that cannot be read or written is skipped: the program is compiled as usual.

use crate::error::Result;
use crate::pjrt::{Client, CompileOptions, Executable};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"GIDDXLA\x01";

/// Where an executable came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// compiled now (no cache, or no matching entry)
    Compiled,
    /// compiled now and stored in the cache
    CompiledAndStored,
    /// loaded from the cache
    Cached,
}

#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    pub fn new(dir: impl Into<PathBuf>) -> CompileCache {
        CompileCache { dir: dir.into() }
    }

    /// `$GIDD_XLA_CACHE` (a directory; empty, `0` or `off` turns the cache off), else
    /// `$GIDD_CACHE/xla`, else `.gidd-cache/xla`.
    pub fn from_env() -> Option<CompileCache> {
        match std::env::var_os("GIDD_XLA_CACHE") {
            Some(v) if v.is_empty() || v == "0" || v == "off" => None,
            Some(v) => Some(CompileCache::new(v)),
            None => {
                let base = std::env::var_os("GIDD_CACHE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(".gidd-cache"));
                Some(CompileCache::new(base.join("xla")))
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached executable of `module` under `options`, else a fresh compilation
    /// (stored for next time).
    pub fn compile(
        &self,
        client: &Client,
        module: &str,
        options: &CompileOptions,
    ) -> Result<(Executable, Origin)> {
        let key = key_parts(client, module, options);
        let path = self.dir.join(format!("{:016x}.pjrt", fnv1a(&key)));
        if let Some(blob) = read_entry(&path, &key) {
            if let Ok(exe) = client.deserialize(&blob) {
                return Ok((exe, Origin::Cached));
            }
        }
        let exe = client.compile(module, options)?;
        let stored = exe
            .serialize()
            .ok()
            .filter(|b| !b.is_empty())
            .is_some_and(|blob| write_entry(&self.dir, &path, &key, &blob).is_ok());
        let origin = if stored {
            Origin::CompiledAndStored
        } else {
            Origin::Compiled
        };
        Ok((exe, origin))
    }
}

/// Everything the compiled executable depends on.
fn key_parts(client: &Client, module: &str, options: &CompileOptions) -> Vec<Vec<u8>> {
    let api = client.api();
    let (major, minor) = api.version();
    // The plugin file itself: a rebuilt plugin of the same version must not reuse entries.
    let stamp = std::fs::metadata(api.path())
        .map(|m| {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{} bytes, modified {t}", m.len())
        })
        .unwrap_or_default();
    vec![
        module.as_bytes().to_vec(),
        options.to_proto(),
        client.platform().as_bytes().to_vec(),
        client.platform_version().as_bytes().to_vec(),
        format!("{major}.{minor}").into_bytes(),
        api.path().to_string_lossy().as_bytes().to_vec(),
        stamp.into_bytes(),
        client.device_count().to_le_bytes().to_vec(),
    ]
}

fn fnv1a(parts: &[Vec<u8>]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in (p.len() as u64).to_le_bytes().iter().chain(p) {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The executable bytes of the entry at `path` if its stored key is exactly `key`.
fn read_entry(path: &Path, key: &[Vec<u8>]) -> Option<Vec<u8>> {
    let data = std::fs::read(path).ok()?;
    let mut r = data.strip_prefix(MAGIC)?;
    let mut field = || -> Option<&[u8]> {
        let (len, rest) = r.split_first_chunk::<8>()?;
        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
        if len > rest.len() {
            return None;
        }
        let (f, rest) = rest.split_at(len);
        r = rest;
        Some(f)
    };
    for k in key {
        if field()? != k.as_slice() {
            return None;
        }
    }
    let blob = field()?.to_vec();
    Some(blob)
}

fn write_entry(dir: &Path, path: &Path, key: &[Vec<u8>], blob: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    let mut data = MAGIC.to_vec();
    for f in key.iter().map(Vec::as_slice).chain([blob]) {
        data.extend((f.len() as u64).to_le_bytes());
        data.extend(f);
    }
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, &data)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
