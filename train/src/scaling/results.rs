//! RESULTS, the JSONL `gidd sweep` writes: one object per finished run. Each key is read
//! on its own so that a bad file is reported as "line 3: key `lr`: ...", not as a serde
//! position in an anonymous struct.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One finished sweep run (SCALING.md §1–2 for the quantities).
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub run: String,
    /// masked | low-uniform | balanced | high-uniform | uniform, or the shift as text.
    pub noise: String,
    /// hybrid_mixing_shift.
    pub shift: f64,
    pub layers: u64,
    pub hidden: u64,
    pub heads: u64,
    /// T, the sequence length.
    pub seq: u64,
    pub vocab: u64,
    /// N, non-embedding parameters.
    pub n_params: f64,
    /// M of Method 1: 6N + 12·L·d·T.
    pub flops_per_token: f64,
    /// M of Method 2: 6N.
    pub flops_per_token_6n: f64,
    /// B, in sequences.
    pub batch: u64,
    pub lr: f64,
    pub steps: u64,
    pub warmup: u64,
    /// Fraction of the steps cooled down; 0 = constant LR after warmup.
    pub cooldown: f64,
    pub tokens: f64,
    pub flops: f64,
    pub final_elbo: f64,
    pub ema_elbo: f64,
    /// UTF-8 bytes per token of the run's held-out text (optional: older results lack it).
    pub bytes_per_token: Option<f64>,
    /// (step, training ELBO); a null ELBO (a NaN when written) is kept as NaN.
    #[serde(skip)]
    pub history: Vec<(f64, f64)>,
}

/// Why RESULTS could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: not JSON: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path} line {line}: expected a JSON object, one run per line")]
    NotObject { path: PathBuf, line: usize },
    #[error("{path} line {line}: key `{key}` is missing")]
    Missing {
        path: PathBuf,
        line: usize,
        key: &'static str,
    },
    #[error("{path} line {line}: key `{key}`: {message}")]
    BadValue {
        path: PathBuf,
        line: usize,
        key: &'static str,
        message: String,
    },
    #[error("{path} holds no runs (an empty RESULTS file)")]
    Empty { path: PathBuf },
}

/// Every run of a RESULTS file, in file order.
#[derive(Clone, Debug)]
pub struct Results {
    pub runs: Vec<Run>,
}

struct Fields<'a> {
    m: &'a Map<String, Value>,
    path: &'a Path,
    line: usize,
}

impl Fields<'_> {
    fn get<T: DeserializeOwned>(&self, key: &'static str) -> Result<T, ResultsError> {
        let v = self.m.get(key).ok_or_else(|| ResultsError::Missing {
            path: self.path.to_path_buf(),
            line: self.line,
            key,
        })?;
        serde_json::from_value(v.clone()).map_err(|e| self.bad(key, e.to_string()))
    }
    /// An optional number: absent or null is None.
    fn optional(&self, key: &'static str) -> Result<Option<f64>, ResultsError> {
        match self.m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.positive(key).map(Some),
        }
    }
    fn positive(&self, key: &'static str) -> Result<f64, ResultsError> {
        let v: f64 = self.get(key)?;
        if v > 0.0 && v.is_finite() {
            Ok(v)
        } else {
            Err(self.bad(key, format!("{v} must be a finite number > 0")))
        }
    }
    fn count(&self, key: &'static str) -> Result<u64, ResultsError> {
        let v: u64 = self.get(key)?;
        if v > 0 {
            Ok(v)
        } else {
            Err(self.bad(key, "must be > 0".into()))
        }
    }
    fn bad(&self, key: &'static str, message: String) -> ResultsError {
        ResultsError::BadValue {
            path: self.path.to_path_buf(),
            line: self.line,
            key,
            message,
        }
    }
}

impl Run {
    /// The run of one JSON object, `line` (1-based) of `path` naming it in errors.
    fn from_json(path: &Path, line: usize, v: &Value) -> Result<Run, ResultsError> {
        let Value::Object(m) = v else {
            return Err(ResultsError::NotObject {
                path: path.to_path_buf(),
                line,
            });
        };
        let f = Fields { m, path, line };
        let history: Vec<(f64, Option<f64>)> = f.get("history")?;
        Ok(Run {
            run: f.get("run")?,
            noise: f.get("noise")?,
            shift: f.get("shift")?,
            layers: f.count("layers")?,
            hidden: f.count("hidden")?,
            heads: f.count("heads")?,
            seq: f.count("seq")?,
            vocab: f.count("vocab")?,
            n_params: f.positive("n_params")?,
            flops_per_token: f.positive("flops_per_token")?,
            flops_per_token_6n: f.positive("flops_per_token_6n")?,
            batch: f.count("batch")?,
            lr: f.positive("lr")?,
            steps: f.count("steps")?,
            warmup: f.get("warmup")?,
            cooldown: f.get("cooldown")?,
            tokens: f.get("tokens")?,
            flops: f.get("flops")?,
            final_elbo: f.get::<Option<f64>>("final_elbo")?.unwrap_or(f64::NAN),
            ema_elbo: f.get::<Option<f64>>("ema_elbo")?.unwrap_or(f64::NAN),
            bytes_per_token: f.optional("bytes_per_token")?,
            history: history
                .into_iter()
                .map(|(s, e)| (s, e.unwrap_or(f64::NAN)))
                .collect(),
        })
    }

    /// M of a method, FLOPs per token.
    pub fn m(&self, sixn: bool) -> f64 {
        if sixn {
            self.flops_per_token_6n
        } else {
            self.flops_per_token
        }
    }

    /// Tokens per step, B·T.
    pub fn batch_tokens(&self) -> f64 {
        (self.batch * self.seq) as f64
    }
}

impl Results {
    /// Parses RESULTS text; blank lines are skipped, anything else must be a run.
    pub fn parse(path: &Path, text: &str) -> Result<Results, ResultsError> {
        let mut runs = Vec::new();
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(l).map_err(|e| ResultsError::Json {
                path: path.to_path_buf(),
                line: i + 1,
                message: e.to_string(),
            })?;
            runs.push(Run::from_json(path, i + 1, &v)?);
        }
        if runs.is_empty() {
            return Err(ResultsError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Results { runs })
    }

    /// Reads and parses a RESULTS file.
    pub fn read(path: &Path) -> Result<Results, ResultsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Results::parse(path, &text)
    }
}
