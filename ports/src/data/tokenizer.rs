//! Tokenizers: any HF `tokenizer.json`, or a byte-level BPE trained here.

use super::DataError;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder, TokenizerImpl};

/// The special tokens of a trained tokenizer, in id order: bos 0, eos 1, pad 2, mask 3
/// (the reference tokenizer's ids).
pub const SPECIAL_TOKENS: [&str; 4] = ["<|bos|>", "<|eos|>", "<|pad|>", "<|mask|>"];

/// Other spellings looked up in foreign tokenizers, per role (bos, eos, pad, mask).
const ALIASES: [&[&str]; 4] = [
    &[
        "<|bos|>",
        "<s>",
        "<bos>",
        "[CLS]",
        "<|begin_of_text|>",
        "<|startoftext|>",
    ],
    &[
        "<|eos|>",
        "</s>",
        "<eos>",
        "[SEP]",
        "<|end_of_text|>",
        "<|endoftext|>",
    ],
    &["<|pad|>", "<pad>", "[PAD]", "<|padding|>"],
    &["<|mask|>", "<mask>", "[MASK]"],
];

/// Ids of the special tokens a tokenizer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
}

/// A tokenizer: a `tokenizers::Tokenizer` and where it came from.
pub struct Tok {
    inner: Tokenizer,
    path: PathBuf,
    /// 1 + the largest id the tokenizer knows (model vocabulary and added tokens).
    vocab_size: usize,
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Tokenizer {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

impl Tok {
    fn wrap(inner: Tokenizer, path: &Path) -> Tok {
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&m| m as usize + 1);
        Tok {
            inner,
            path: path.to_path_buf(),
            vocab_size,
        }
    }

    /// Loads any HF `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Tok, DataError> {
        if !path.is_file() {
            return Err(tok_err(path, "no such file (expected a HF tokenizer.json)"));
        }
        let inner = Tokenizer::from_file(path).map_err(|e| tok_err(path, e))?;
        Ok(Tok::wrap(inner, path))
    }

    /// Trains a byte-level BPE of `vocab_size` tokens (special tokens and the 256
    /// byte symbols included) on `texts`, saves it to `save_to` (parent directories
    /// created; written to a temporary file and renamed) and returns it.
    /// Deterministic: the same texts give the same tokenizer.json.
    pub fn train_bpe(
        texts: &[String],
        vocab_size: usize,
        save_to: &Path,
    ) -> Result<Tok, DataError> {
        let min_vocab = SPECIAL_TOKENS.len() + 256;
        if vocab_size < min_vocab {
            return Err(DataError::Config {
                msg: format!("BPE vocab_size {vocab_size} is below {min_vocab} (4 special tokens + 256 bytes)"),
            });
        }
        if texts.iter().all(|t| t.is_empty()) {
            return Err(DataError::Empty {
                path: save_to.to_path_buf(),
                what: "no text to train the tokenizer on".into(),
            });
        }
        let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        let mut trainer = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size)
            .min_frequency(2)
            .special_tokens(
                SPECIAL_TOKENS
                    .iter()
                    .map(|s| AddedToken::from(s.to_string(), true))
                    .collect(),
            )
            .initial_alphabet(alphabet)
            .build();
        // No prefix space: decode(encode(text)) == text exactly.
        let byte_level = ByteLevel::default().add_prefix_space(false);
        let mut tk: TokenizerImpl<
            BPE,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        > = TokenizerBuilder::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(byte_level.into()))
            .with_post_processor(Some(byte_level.into()))
            .with_decoder(Some(byte_level.into()))
            .build()
            .map_err(|e| tok_err(save_to, e))?;
        tk.train(&mut trainer, texts.iter())
            .map_err(|e| tok_err(save_to, format!("BPE training failed: {e}")))?;
        let json = tk.to_string(false).map_err(|e| tok_err(save_to, e))?;
        write_atomic(save_to, json.as_bytes())?;
        let inner: Tokenizer = json.parse().map_err(|e| tok_err(save_to, e))?;
        Ok(Tok::wrap(inner, save_to))
    }

    /// Token ids of `text`, no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| tok_err(&self.path, e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, DataError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| tok_err(&self.path, e))
    }

    /// 1 + the largest token id (a model needs at least this vocab_size).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The bos/eos/pad/mask ids, looked up by this crate's names first, then by
    /// common spellings (`<s>`, `</s>`, `<pad>`, `[MASK]`, ...).
    pub fn special_ids(&self) -> SpecialIds {
        let find = |names: &[&str]| names.iter().find_map(|n| self.inner.token_to_id(n));
        SpecialIds {
            bos: find(ALIASES[0]),
            eos: find(ALIASES[1]),
            pad: find(ALIASES[2]),
            mask: find(ALIASES[3]),
        }
    }

    /// Where the tokenizer was loaded from or saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

/// [`crate::write_atomic`] with the error in this module's terms.
/// The parent directory is created first: a tokenizer or shard may be the first file of
/// a new cache directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    crate::write_atomic(path, bytes).map_err(|e| DataError::Write {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}
