//! Packing documents into rows of exactly `seq_len` tokens.
//!
//! The token stream is doc_1, eos, doc_2, eos, ... in a shuffled document order,
//! cut into consecutive rows of `seq_len`. As in the reference
//! (`PackedRowSampler` in `gidd_easydel/data2.py`), the eos after a document is
//! left out when the document ends exactly at the end of a row (the row boundary
//! already separates it from the next), so an eos always fits in the row where
//! its document ends. The reference also shuffles rows through a buffer and
//! samples buckets at random; here the document order is a seeded permutation
//! per epoch instead, so the position is three integers.
//!
//! The position (epoch, cursor in the epoch's order, tokens of the current
//! document already emitted) serialises to JSON with the configuration;
//! [`Packer::from_state`] continues with identical rows.

use gidd_ports::corpus::{hash2, SplitMix};
use gidd_ports::data::{check_ids, DataError, DocSource, EOS_ID, PAD_ID};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Salt of the held-out hash: the split does not depend on the shuffle seed,
/// so runs with different seeds evaluate on the same documents.
const SPLIT_SALT: u64 = 0x6869_6464_656e_5f31;

/// Which documents are held out for evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum HeldOut {
    /// Nothing held out.
    None,
    /// Documents k-1, 2k-1, 3k-1, ... (every k-th; k = 0 holds out nothing).
    EveryK(usize),
    /// Each document independently with this probability, chosen by a hash of its index.
    Fraction(f64),
}

impl HeldOut {
    pub fn contains(self, i: usize) -> bool {
        match self {
            HeldOut::None => false,
            HeldOut::EveryK(k) => k > 0 && i % k == k - 1,
            HeldOut::Fraction(f) => {
                ((hash2(SPLIT_SALT, i as u64) >> 11) as f64 / (1u64 << 53) as f64) < f
            }
        }
    }
}

/// The training documents or the held-out ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Split {
    Train,
    HeldOut,
}

/// Indices in 0..n of the documents of `split`, ascending. Train and held-out are
/// disjoint and together cover 0..n.
pub fn split_indices(n: usize, heldout: HeldOut, split: Split) -> Vec<usize> {
    (0..n)
        .filter(|&i| heldout.contains(i) == (split == Split::HeldOut))
        .collect()
}

/// What a packer packs and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackerConfig {
    pub seq_len: usize,
    /// Seed of the document order (epoch e uses a permutation keyed by (seed, e)).
    pub seed: u64,
    pub heldout: HeldOut,
    pub split: Split,
    /// false: documents in index order every epoch.
    pub shuffle: bool,
    pub eos_id: u32,
    /// If set, every token must be below it (the model's vocab_size).
    pub model_vocab: Option<usize>,
}

impl PackerConfig {
    /// Training rows: shuffled, eos 1, no vocabulary check.
    pub fn train(seq_len: usize, seed: u64, heldout: HeldOut) -> Self {
        PackerConfig {
            seq_len,
            seed,
            heldout,
            split: Split::Train,
            shuffle: true,
            eos_id: EOS_ID,
            model_vocab: None,
        }
    }
}

/// A packer's resumable position, with the configuration it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackerState {
    pub config: PackerConfig,
    /// Number of documents of the source (a changed source is refused).
    pub n_docs: usize,
    pub epoch: u64,
    /// Index into the epoch's document order of the current document.
    pub cursor: usize,
    /// Tokens of the current document already emitted.
    pub offset: usize,
    /// Rows emitted so far.
    pub rows: u64,
}

/// Packs a source's documents into rows; see the module docs.
pub struct Packer {
    source: Arc<dyn DocSource>,
    config: PackerConfig,
    /// the split's document indices, ascending
    docs: Vec<usize>,
    /// this epoch's order of `docs`
    order: Vec<usize>,
    epoch: u64,
    cursor: usize,
    offset: usize,
    rows: u64,
    /// the current document's tokens (order[cursor])
    current: Option<Vec<u32>>,
}

impl Packer {
    pub fn new(source: Arc<dyn DocSource>, config: PackerConfig) -> Result<Packer, DataError> {
        if config.seq_len == 0 {
            return Err(DataError::Config {
                msg: "seq_len must be positive".into(),
            });
        }
        let docs = split_indices(source.len(), config.heldout, config.split);
        if docs.is_empty() {
            return Err(DataError::Empty {
                path: source.describe().into(),
                what: format!(
                    "no {:?} documents among {} with held-out {:?}",
                    config.split,
                    source.len(),
                    config.heldout
                ),
            });
        }
        let mut p = Packer {
            source,
            config,
            docs,
            order: Vec::new(),
            epoch: 0,
            cursor: 0,
            offset: 0,
            rows: 0,
            current: None,
        };
        p.order = p.epoch_order(0);
        Ok(p)
    }

    /// Continues from a saved position: the next rows are those the saved packer
    /// would have produced.
    pub fn from_state(
        source: Arc<dyn DocSource>,
        state: &PackerState,
    ) -> Result<Packer, DataError> {
        if state.n_docs != source.len() {
            return Err(DataError::BadState {
                msg: format!(
                    "the saved position is for {} documents, the data has {} ({})",
                    state.n_docs,
                    source.len(),
                    source.describe()
                ),
            });
        }
        let mut p = Packer::new(source, state.config.clone())?;
        if state.cursor >= p.docs.len() {
            return Err(DataError::BadState {
                msg: format!(
                    "cursor {} past the {} documents of the split",
                    state.cursor,
                    p.docs.len()
                ),
            });
        }
        p.epoch = state.epoch;
        p.order = p.epoch_order(state.epoch);
        p.cursor = state.cursor;
        p.rows = state.rows;
        let doc = p.load(p.order[p.cursor])?;
        if state.offset > 0 && state.offset >= doc.len() {
            return Err(DataError::BadState {
                msg: format!(
                    "offset {} past the {} tokens of document {}",
                    state.offset,
                    doc.len(),
                    p.order[p.cursor]
                ),
            });
        }
        p.current = Some(doc);
        p.offset = state.offset;
        Ok(p)
    }

    pub fn state(&self) -> PackerState {
        PackerState {
            config: self.config.clone(),
            n_docs: self.source.len(),
            epoch: self.epoch,
            cursor: self.cursor,
            offset: self.offset,
            rows: self.rows,
        }
    }

    pub fn config(&self) -> &PackerConfig {
        &self.config
    }

    /// Completed passes over the split's documents.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Number of documents in the split.
    pub fn n_docs(&self) -> usize {
        self.docs.len()
    }

    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order = self.docs.clone();
        if self.config.shuffle {
            SplitMix::new(hash2(self.config.seed, epoch)).shuffle(&mut order);
        }
        order
    }

    fn load(&self, i: usize) -> Result<Vec<u32>, DataError> {
        let doc = self.source.doc(i)?;
        if let Some(v) = self.config.model_vocab {
            check_ids(
                &doc,
                v,
                &format!("document {i} of {}", self.source.describe()),
            )?;
        }
        Ok(doc)
    }

    fn advance(&mut self) {
        self.current = None;
        self.offset = 0;
        self.cursor += 1;
        if self.cursor == self.order.len() {
            self.cursor = 0;
            self.epoch += 1;
            self.order = self.epoch_order(self.epoch);
        }
    }

    /// The next row of exactly `seq_len` tokens.
    pub fn next_row(&mut self) -> Result<Vec<u32>, DataError> {
        let l = self.config.seq_len;
        let mut row = Vec::with_capacity(l);
        let mut idle = 0usize; // documents passed without a token, to stop on all-empty data
        while row.len() < l {
            let doc = match self.current.take() {
                Some(d) => d,
                None => self.load(self.order[self.cursor])?,
            };
            let take = (l - row.len()).min(doc.len() - self.offset);
            row.extend_from_slice(&doc[self.offset..self.offset + take]);
            self.offset += take;
            if self.offset < doc.len() {
                self.current = Some(doc);
                continue;
            }
            // Document done: eos unless it ended exactly on a row boundary.
            if !row.is_empty() && row.len() < l {
                row.push(self.config.eos_id);
            }
            if take == 0 && row.is_empty() {
                idle += 1;
                if idle > self.order.len() {
                    return Err(DataError::Empty {
                        path: self.source.describe().into(),
                        what: "every document of the split is empty".into(),
                    });
                }
            }
            self.advance();
        }
        self.rows += 1;
        Ok(row)
    }

    /// The next `batch` rows.
    pub fn next_batch(&mut self, batch: usize) -> Result<Vec<Vec<u32>>, DataError> {
        (0..batch).map(|_| self.next_row()).collect()
    }
}

/// A fixed evaluation set: whole held-out documents, each followed by eos, in
/// index order, packed into rows of `seq_len`, the last row padded.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalSet {
    /// Rows of exactly seq_len tokens.
    pub rows: Vec<Vec<u32>>,
    /// Real (non-pad) tokens at the start of each row; only the last row may be short.
    pub lens: Vec<usize>,
    /// Source indices of the documents included whole.
    pub docs: Vec<usize>,
    /// Real tokens in all rows: sum over `docs` of (tokens + 1 eos).
    pub n_tokens: usize,
}

impl EvalSet {
    /// Packs held-out documents (in index order) into at most `max_rows` rows,
    /// stopping before the first document that does not fit. If not even the
    /// first fits, the rows hold its prefix and `docs` is empty.
    pub fn build(
        source: &dyn DocSource,
        heldout: HeldOut,
        seq_len: usize,
        max_rows: usize,
    ) -> Result<EvalSet, DataError> {
        if seq_len == 0 || max_rows == 0 {
            return Err(DataError::Config {
                msg: format!("evaluation set of {max_rows} rows of {seq_len} tokens"),
            });
        }
        let budget = seq_len * max_rows;
        let mut stream = Vec::new();
        let mut docs = Vec::new();
        let ids = split_indices(source.len(), heldout, Split::HeldOut);
        for &i in &ids {
            let d = source.doc(i)?;
            if stream.len() + d.len() + 1 > budget {
                if docs.is_empty() {
                    stream.extend_from_slice(&d[..budget.min(d.len())]);
                }
                break;
            }
            stream.extend_from_slice(&d);
            stream.push(EOS_ID);
            docs.push(i);
        }
        if stream.is_empty() {
            return Err(DataError::Empty {
                path: source.describe().into(),
                what: format!(
                    "no held-out tokens (held-out {heldout:?}, {} documents)",
                    ids.len()
                ),
            });
        }
        let n_tokens = stream.len();
        let mut rows = Vec::new();
        let mut lens = Vec::new();
        for chunk in stream.chunks(seq_len) {
            let mut row = chunk.to_vec();
            lens.push(row.len());
            row.resize(seq_len, PAD_ID);
            rows.push(row);
        }
        Ok(EvalSet {
            rows,
            lens,
            docs,
            n_tokens,
        })
    }
}

#[cfg(test)]
mod tests;
