//! Document sources: random access to documents as token-id sequences.

use super::pq::read_parquet_tokens;
use super::shard::ShardSource;
use super::{DataError, Tok};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// What `--data_files` accepts, for error messages.
pub const ACCEPTED_FORMATS: &str = "a .txt file (documents separated by blank lines, or one per \
line if the file has no blank line), a .jsonl file (one JSON object per line with a \"text\" \
string or a \"tokens\" list of ids), a .parquet file or a directory DATA_FILES/bucket=*/*.parquet \
with a `tokens` list column, a token shard NAME.bin (raw little-endian u16 or u32) with its \
NAME.json sidecar, or a directory of any of those";

/// Documents as token ids, by index.
pub trait DocSource: Send + Sync {
    /// Number of documents.
    fn len(&self) -> usize;
    /// Document `i` (< len) as token ids, without eos.
    fn doc(&self, i: usize) -> Result<Vec<u32>, DataError>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Where the documents come from, for messages.
    fn describe(&self) -> String;
}

/// Documents held in memory, flattened: tokens[offsets[i]..offsets[i+1]].
#[derive(Clone, Debug, Default)]
pub struct MemSource {
    tokens: Vec<u32>,
    offsets: Vec<usize>,
    name: String,
}

impl MemSource {
    pub fn from_docs(docs: Vec<Vec<u32>>, name: impl Into<String>) -> MemSource {
        let mut m = MemSource {
            tokens: Vec::with_capacity(docs.iter().map(Vec::len).sum()),
            offsets: vec![0],
            name: name.into(),
        };
        for d in docs {
            m.push(&d);
        }
        m
    }

    /// Tokenizes `texts` (in parallel), one document each.
    pub fn from_texts(
        texts: &[String],
        tok: &Tok,
        name: impl Into<String>,
    ) -> Result<MemSource, DataError> {
        let docs = texts
            .par_iter()
            .map(|t| tok.encode(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MemSource::from_docs(docs, name))
    }

    fn push(&mut self, doc: &[u32]) {
        self.tokens.extend_from_slice(doc);
        self.offsets.push(self.tokens.len());
    }

    /// Total number of tokens.
    pub fn n_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Document `i` as a slice.
    pub fn doc_slice(&self, i: usize) -> Option<&[u32]> {
        let (a, b) = (*self.offsets.get(i)?, *self.offsets.get(i + 1)?);
        Some(&self.tokens[a..b])
    }
}

impl DocSource for MemSource {
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    fn doc(&self, i: usize) -> Result<Vec<u32>, DataError> {
        self.doc_slice(i)
            .map(<[u32]>::to_vec)
            .ok_or_else(|| out_of_range(i, self.len(), &self.name))
    }
    fn describe(&self) -> String {
        format!(
            "{} ({} documents, {} tokens)",
            self.name,
            self.len(),
            self.tokens.len()
        )
    }
}

pub(crate) fn out_of_range(i: usize, n: usize, name: &str) -> DataError {
    DataError::BadState {
        msg: format!("document {i} requested from {name}, which has {n}"),
    }
}

/// Several sources one after another.
pub struct ConcatSource {
    parts: Vec<Box<dyn DocSource>>,
    /// starts[k] = index of the first document of part k; last = total
    starts: Vec<usize>,
}

impl ConcatSource {
    pub fn new(parts: Vec<Box<dyn DocSource>>) -> ConcatSource {
        let mut starts = vec![0];
        for p in &parts {
            starts.push(starts[starts.len() - 1] + p.len());
        }
        ConcatSource { parts, starts }
    }
}

impl DocSource for ConcatSource {
    fn len(&self) -> usize {
        self.starts[self.starts.len() - 1]
    }
    fn doc(&self, i: usize) -> Result<Vec<u32>, DataError> {
        if i >= self.len() {
            return Err(out_of_range(i, self.len(), &self.describe()));
        }
        // The last part whose start is <= i (parts may be empty).
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        self.parts[k].doc(i - self.starts[k])
    }
    fn describe(&self) -> String {
        match self.parts.as_slice() {
            [one] => one.describe(),
            parts => format!("{} sources ({} documents)", parts.len(), self.len()),
        }
    }
}

/// Splits a text file into documents: paragraphs separated by blank lines, or,
/// if the file has no blank line, one document per non-empty line.
pub fn split_text_documents(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let has_blank = {
        // A blank line between two non-blank ones (leading/trailing blank lines don't count).
        let first = lines.iter().position(|l| !l.trim().is_empty());
        let last = lines.iter().rposition(|l| !l.trim().is_empty());
        match (first, last) {
            (Some(a), Some(b)) => lines[a..=b].iter().any(|l| l.trim().is_empty()),
            _ => false,
        }
    };
    if !has_blank {
        return lines
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.to_string())
            .collect();
    }
    let mut docs = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for l in lines {
        if l.trim().is_empty() {
            if !cur.is_empty() {
                docs.push(cur.join("\n"));
                cur.clear();
            }
        } else {
            cur.push(l);
        }
    }
    if !cur.is_empty() {
        docs.push(cur.join("\n"));
    }
    docs
}

fn need_tok<'a>(tok: Option<&'a Tok>, path: &Path) -> Result<&'a Tok, DataError> {
    tok.ok_or_else(|| DataError::NeedTokenizer {
        path: path.to_path_buf(),
    })
}

fn read_string(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))
}

fn open_text(path: &Path, tok: Option<&Tok>) -> Result<MemSource, DataError> {
    let tok = need_tok(tok, path)?;
    let docs = split_text_documents(&read_string(path)?);
    MemSource::from_texts(&docs, tok, path.display().to_string())
}

/// One line of a .jsonl file: a "text" string (tokenized) or a "tokens" list (ids).
enum JsonDoc {
    Text(String),
    Tokens(Vec<u32>),
}

fn parse_json_line(line: &str) -> Result<JsonDoc, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("expected a JSON object")?;
    if let Some(t) = obj.get("text") {
        return t
            .as_str()
            .map(|s| JsonDoc::Text(s.to_string()))
            .ok_or_else(|| "field \"text\" is not a string".to_string());
    }
    if let Some(t) = obj.get("tokens") {
        let arr = t.as_array().ok_or("field \"tokens\" is not a list")?;
        let ids = arr
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|u| u32::try_from(u).ok())
                    .ok_or_else(|| format!("token {x} is not a u32"))
            })
            .collect::<Result<Vec<u32>, String>>()?;
        return Ok(JsonDoc::Tokens(ids));
    }
    Err("expected a \"text\" or \"tokens\" field".into())
}

fn open_jsonl(path: &Path, tok: Option<&Tok>) -> Result<MemSource, DataError> {
    let text = read_string(path)?;
    let mut docs = Vec::new();
    for (k, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        docs.push(parse_json_line(line).map_err(|msg| DataError::BadJsonLine {
            path: path.to_path_buf(),
            line: k + 1,
            msg,
        })?);
    }
    if docs.iter().any(|d| matches!(d, JsonDoc::Text(_))) {
        need_tok(tok, path)?;
    }
    let ids = docs
        .into_par_iter()
        .map(|d| match d {
            JsonDoc::Text(t) => need_tok(tok, path)?.encode(&t),
            JsonDoc::Tokens(ids) => Ok(ids),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MemSource::from_docs(ids, path.display().to_string()))
}

fn open_parquet_files(files: &[PathBuf], name: String) -> Result<MemSource, DataError> {
    let per_file = files
        .par_iter()
        .map(|f| read_parquet_tokens(f))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MemSource::from_docs(
        per_file.into_iter().flatten().collect(),
        name,
    ))
}

fn ext_of(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Opens one file by its extension.
fn open_file(path: &Path, tok: Option<&Tok>) -> Result<Box<dyn DocSource>, DataError> {
    match ext_of(path).as_str() {
        "txt" | "text" => Ok(Box::new(open_text(path, tok)?)),
        "jsonl" | "ndjson" => Ok(Box::new(open_jsonl(path, tok)?)),
        "parquet" => Ok(Box::new(open_parquet_files(
            &[path.to_path_buf()],
            path.display().to_string(),
        )?)),
        "bin" => Ok(Box::new(ShardSource::open(path)?)),
        e => Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
            what: format!("unknown extension {e:?}"),
        }),
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let p = e.map_err(|e| DataError::io(dir, e))?.path();
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// All files under `dir` (recursively, sorted) with a data extension.
fn data_files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    for p in read_dir_sorted(dir)? {
        if p.is_dir() {
            data_files_under(&p, out)?;
        } else if matches!(
            ext_of(&p).as_str(),
            "txt" | "text" | "jsonl" | "ndjson" | "parquet" | "bin"
        ) {
            out.push(p);
        }
    }
    Ok(())
}

/// Opens documents at `path`, telling the format from the layout and extension:
///
/// - `*.txt`: text, documents separated by blank lines, or one document per line
///   when the file has no blank line; needs `tok`.
/// - `*.jsonl`: one JSON object per line, `{"text": ...}` (needs `tok`) or
///   `{"tokens": [ids]}`.
/// - `*.parquet`, or a directory with `bucket=*/` subdirectories (the reference's
///   `DATA_FILES/bucket=*/*.parquet`): a `tokens` list-of-integers column; read into
///   memory at open, bucket by bucket, files sorted by name.
/// - `*.bin` with a `*.json` sidecar: a memory-mapped token shard (see [`ShardSource`]).
/// - any other directory: every file above under it, recursively, sorted by path
///   (other files, `.json` sidecars and hidden files are skipped).
pub fn open_source(path: &Path, tok: Option<&Tok>) -> Result<Box<dyn DocSource>, DataError> {
    if !path.exists() {
        return Err(DataError::NotFound {
            path: path.to_path_buf(),
            what: "no such file or directory".into(),
        });
    }
    let src: Box<dyn DocSource> = if path.is_dir() {
        let entries = read_dir_sorted(path)?;
        let buckets: Vec<&PathBuf> = entries
            .iter()
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("bucket="))
            })
            .collect();
        if !buckets.is_empty() {
            let mut files = Vec::new();
            for b in &buckets {
                files.extend(
                    read_dir_sorted(b)?
                        .into_iter()
                        .filter(|p| p.is_file() && ext_of(p) == "parquet"),
                );
            }
            if files.is_empty() {
                return Err(DataError::NotFound {
                    path: path.to_path_buf(),
                    what: format!(
                        "{} bucket=* directories but no .parquet file in them",
                        buckets.len()
                    ),
                });
            }
            Box::new(open_parquet_files(&files, path.display().to_string())?)
        } else {
            let mut files = Vec::new();
            data_files_under(path, &mut files)?;
            if files.is_empty() {
                return Err(DataError::NotFound {
                    path: path.to_path_buf(),
                    what: "the directory holds no data file".into(),
                });
            }
            let parts = files
                .iter()
                .map(|f| open_file(f, tok))
                .collect::<Result<Vec<_>, _>>()?;
            Box::new(ConcatSource::new(parts))
        }
    } else {
        open_file(path, tok)?
    };
    if src.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
            what: "no documents".into(),
        });
    }
    Ok(src)
}
