//! Helpers shared by the ports tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value};

/// `/work/shared` resolved from this crate (`ports/../../shared`), or `None` after a loud
/// SKIPPED line when it is absent.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    if p.join("golden").is_dir() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: ../shared not found (looked for {}/golden); {test} did not run",
            p.display()
        );
        None
    }
}

pub const CASES: [&str; 2] = ["mask-small", "unif-small"];

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "gidd-ports-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn usize_key(cfg: &Map<String, Value>, k: &str) -> usize {
    cfg.get(k)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("config.json has no integer {k}")) as usize
}

fn bool_key(cfg: &Map<String, Value>, k: &str) -> bool {
    cfg.get(k)
        .and_then(Value::as_bool)
        .unwrap_or_else(|| panic!("config.json has no boolean {k}"))
}

/// The HF parameter names and shapes that SPEC.md section 1 implies for a config.json.
pub fn expected_params(cfg: &Map<String, Value>) -> Vec<(String, Vec<usize>)> {
    let v = usize_key(cfg, "vocab_size");
    let d = usize_key(cfg, "hidden_size");
    let i = usize_key(cfg, "intermediate_size");
    let n = usize_key(cfg, "num_hidden_layers");
    let h = usize_key(cfg, "num_attention_heads");
    let dh = cfg
        .get("head_dim")
        .and_then(Value::as_u64)
        .map_or(d / h, |x| x as usize);
    let attention_bias = bool_key(cfg, "attention_bias");
    let mlp_bias = bool_key(cfg, "mlp_bias");
    let tied = bool_key(cfg, "tie_word_embeddings");

    let mut out = vec![
        ("model.embed_tokens.weight".to_string(), vec![v, d]),
        ("model.norm.weight".to_string(), vec![d]),
    ];
    if !tied {
        out.push(("lm_head.weight".to_string(), vec![v, d]));
    }
    for l in 0..n {
        let p = format!("model.layers.{l}");
        let mut add = |s: &str, shape: Vec<usize>| out.push((format!("{p}.{s}"), shape));
        add("attn_layernorm.weight", vec![d]);
        add("mlp_layernorm.weight", vec![d]);
        add("self_attn.q_proj.weight", vec![h * dh, d]);
        add("self_attn.k_proj.weight", vec![h * dh, d]);
        add("self_attn.v_proj.weight", vec![h * dh, d]);
        add("self_attn.o_proj.weight", vec![d, h * dh]);
        add("self_attn.q_norm.weight", vec![d]);
        add("self_attn.k_norm.weight", vec![d]);
        if attention_bias {
            add("self_attn.k_bias", vec![h, dh]);
            add("self_attn.v_bias", vec![h, dh]);
        }
        add("mlp.up_proj.weight", vec![i, d]);
        add("mlp.down_proj.weight", vec![d, i]);
        if mlp_bias {
            add("mlp.up_proj.bias", vec![i]);
            add("mlp.down_proj.bias", vec![d]);
        }
    }
    out.sort();
    out
}

/// A safetensors file from a literal header and data region (no padding, no checks).
pub fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}
