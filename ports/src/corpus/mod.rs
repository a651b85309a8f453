//! The embedded default corpus: text the program generates itself from a
//! stochastic language whose exact log-probability of any text is computable.
//!
//! [`Language`] is a hidden Markov model (96 hidden states = 8 topics x 12 word
//! classes, 2364 made-up words, Zipfian emissions, punctuated sentences,
//! documents that end after a sentence). Everything is deterministic from a
//! seed through the crate's own [`SplitMix`] generator, so the corpus is the
//! same on every machine.
//!
//! Statistics of the default (`gidd bench corpus`, 20 000 documents):
//! 93 words per document (punctuation counts as words); true entropy 4.24
//! nats/word against a stationary unigram entropy of 6.08; with a 1024-token
//! BPE 2.19 tokens/word, true entropy 1.92 nats/token against a word-unigram
//! baseline of 2.76 nats/token (2048 tokens: 1.69 tokens/word, 2.49 vs 3.57).
//!
//! The point: after training on tokenized text, the trainer prints the held-out
//! ELBO in nats per token beside the true entropy of the same held-out text,
//! `sum(true_nats(doc)) / sum(tokens(doc) + 1)` (the `+ 1` is the eos token,
//! which carries the end-of-document event that `true_nats` includes). Since a
//! tokenizer is a bijection on text, `true_nats` is also the exact -log p of the
//! document's canonical tokenization, a lower bound for any model's NLL.
//!
//! ```text
//! let (lang, tok, texts) = embedded_default(cache_dir, 1024, 20_000)?;
//! let nats = lang.true_nats(&texts[i]).unwrap();   // -log p(document), nats
//! ```

mod language;
mod rng;
mod words;

#[cfg(test)]
mod tests;

pub use language::{Class, Language, N_CLASSES, N_STATES, N_TOPICS, PUNCT};
pub use rng::{hash2, mix64, SplitMix};

use crate::data::{
    write_shard, DataError, DocSource, MemSource, ShardDtype, ShardSource, Tok, SPECIAL_TOKENS,
};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Seed of the embedded default language.
pub const DEFAULT_SEED: u64 = 0x6769_6464_2d6c_616e; // "gidd-lan"
/// Seed of the embedded default documents (distinct from the language's).
pub const DEFAULT_CORPUS_SEED: u64 = 0x6769_6464_2d64_6f63; // "gidd-doc"
/// Documents are cut at this many words (rarely reached: the mean is ~90).
pub const DOC_MAX_WORDS: usize = 1024;
/// Bump when the language or the tokenizer recipe changes, to invalidate caches.
pub const CORPUS_VERSION: u32 = 1;

/// Document `index` of the corpus `seed` as word ids; independent of how many
/// documents are generated, so corpora of different sizes share their prefix.
pub fn sample_indexed(lang: &Language, seed: u64, index: usize) -> Vec<u32> {
    let mut rng = SplitMix::new(hash2(seed, index as u64));
    lang.sample_document(&mut rng, DOC_MAX_WORDS)
}

/// `n_docs` documents as text, document i drawn from its own stream (seed, i).
pub fn generate_corpus(lang: &Language, seed: u64, n_docs: usize) -> Vec<String> {
    (0..n_docs)
        .into_par_iter()
        .map(|i| lang.render(&sample_indexed(lang, seed, i)))
        .collect()
}

impl Language {
    /// -log p(document) in nats of a document text produced by [`generate_corpus`]
    /// (end of document included; a text of `DOC_MAX_WORDS` words counts as cut).
    /// None if `text` is not in the language.
    pub fn true_nats(&self, text: &str) -> Option<f64> {
        let words = self.parse(text)?;
        let lp = self.log_prob_sampled(&words, DOC_MAX_WORDS);
        lp.is_finite().then_some(-lp)
    }

    /// The unigram baseline of a text: -sum log p_unigram(word), nats. None if not in the language.
    pub fn unigram_text_nats(&self, text: &str) -> Option<f64> {
        let words = self.parse(text)?;
        Some(self.unigram_nats(&words))
    }
}

/// Where [`embedded_default`] caches the tokenizer for these parameters.
pub fn embedded_tokenizer_path(cache_dir: &Path, vocab_size: usize, n_docs: usize) -> PathBuf {
    cache_dir
        .join(format!(
            "embedded-v{CORPUS_VERSION}-{DEFAULT_SEED:016x}-{DEFAULT_CORPUS_SEED:016x}-docs{n_docs}-vocab{vocab_size}"
        ))
        .join("tokenizer.json")
}

/// The embedded default: the language, its BPE tokenizer and its `n_docs`
/// documents. The text is regenerated (deterministic, fast); the tokenizer is
/// trained on the first use and saved under `cache_dir` (created if needed),
/// then reused while it loads, has the four special tokens at ids 0..4 and a
/// vocabulary of at most `vocab_size`.
pub fn embedded_default(
    cache_dir: &Path,
    vocab_size: usize,
    n_docs: usize,
) -> Result<(Language, Tok, Vec<String>), DataError> {
    if n_docs == 0 {
        return Err(DataError::Empty {
            path: cache_dir.to_path_buf(),
            what: "the embedded corpus needs at least one document (n_docs = 0)".into(),
        });
    }
    let lang = Language::new(DEFAULT_SEED);
    let texts = generate_corpus(&lang, DEFAULT_CORPUS_SEED, n_docs);
    let path = embedded_tokenizer_path(cache_dir, vocab_size, n_docs);
    let cached = Tok::from_file(&path).ok().filter(|t| {
        let ids = t.special_ids();
        t.vocab_size() <= vocab_size
            && [ids.bos, ids.eos, ids.pad, ids.mask] == [Some(0), Some(1), Some(2), Some(3)]
            && t.token_to_id(SPECIAL_TOKENS[3]) == Some(3)
    });
    let tok = match cached {
        Some(t) => t,
        None => {
            // Token shards of an older tokenizer are stale.
            let _ = std::fs::remove_file(corpus_shard_path(&path));
            Tok::train_bpe(&texts, vocab_size, &path)?
        }
    };
    Ok((lang, tok, texts))
}

fn corpus_shard_path(tokenizer_path: &Path) -> PathBuf {
    tokenizer_path.with_file_name("corpus.bin")
}

/// The embedded documents as token ids, one document per text: tokenized on the
/// first use and cached as a token shard (`corpus.bin` + `corpus.json`) beside the
/// tokenizer of [`embedded_default`], memory-mapped after (tokenizing 20 000
/// documents takes seconds on 2 cores).
pub fn embedded_tokens(tok: &Tok, texts: &[String]) -> Result<Box<dyn DocSource>, DataError> {
    let bin = corpus_shard_path(tok.path());
    if let Ok(shard) = ShardSource::open(&bin) {
        if shard.len() == texts.len() {
            return Ok(Box::new(shard));
        }
    }
    let mem = MemSource::from_texts(texts, tok, "embedded corpus")?;
    let docs: Vec<Vec<u32>> = (0..mem.len())
        .map(|i| mem.doc(i))
        .collect::<Result<_, _>>()?;
    let dtype = if tok.vocab_size() <= 1 << 16 {
        ShardDtype::U16
    } else {
        ShardDtype::U32
    };
    // A cache that cannot be written is not an error: the documents are in memory.
    if write_shard(&bin, &docs, dtype).is_err() {
        let _ = std::fs::remove_file(&bin);
    }
    Ok(Box::new(mem))
}
