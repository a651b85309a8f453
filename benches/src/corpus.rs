//! `gidd bench corpus`: the embedded corpus's statistics (entropy per word and per token,
//! tokens per word at two BPE sizes) and how long building and tokenizing it takes.

use gidd_ports::corpus::{
    embedded_default, embedded_tokens, generate_corpus, Language, DEFAULT_CORPUS_SEED,
    DEFAULT_SEED, DOC_MAX_WORDS,
};
use gidd_ports::data::Tok;
use std::path::PathBuf;

/// A fresh scratch directory under the system's temp dir (removed by the caller).
fn temp_dir(name: &str) -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("gidd-bench-corpus-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Prints the statistics the corpus module's documentation quotes, measured afresh.
pub fn run() -> anyhow::Result<()> {
    let l = Language::new(DEFAULT_SEED);
    let h = l.entropy_per_word(2000, 1, DOC_MAX_WORDS);
    println!(
        "vocab {} words, entropy {h:.4} nats/word, unigram {:.4} nats/word",
        l.vocab_size(),
        l.unigram_entropy()
    );
    let texts = generate_corpus(&l, DEFAULT_CORPUS_SEED, 20_000);
    let words: usize = texts
        .iter()
        .map(|t| l.parse(t).map_or(0, |w| w.len()))
        .sum();
    println!(
        "20000 docs: {words} words, {:.1} words/doc",
        words as f64 / 20_000.0
    );
    let dir = temp_dir("stats-default")?;
    for pass in ["first", "cached"] {
        let t0 = std::time::Instant::now();
        let (_, tok, texts) = embedded_default(&dir, 1024, 20_000)?;
        let t1 = t0.elapsed().as_secs_f64();
        let src = embedded_tokens(&tok, &texts)?;
        println!(
            "embedded_default {pass}: {t1:.2}s, tokens of {} docs ({}): {:.2}s",
            texts.len(),
            src.describe(),
            t0.elapsed().as_secs_f64() - t1
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    for v in [1024, 2048] {
        let dir = temp_dir("stats")?;
        let t0 = std::time::Instant::now();
        let tok = Tok::train_bpe(&texts, v, &dir.join("tokenizer.json"))?;
        let train_s = t0.elapsed().as_secs_f64();
        let held = generate_corpus(&l, 99, 2000);
        let (mut toks, mut nats, mut hw) = (0usize, 0.0, 0usize);
        for t in &held {
            toks += tok.encode(t).map_or(0, |e| e.len()) + 1;
            nats += l.true_nats(t).unwrap_or(f64::NAN);
            hw += l.parse(t).map_or(0, |w| w.len());
        }
        let uni: f64 = held
            .iter()
            .map(|t| l.unigram_text_nats(t).unwrap_or(f64::NAN))
            .sum();
        println!(
            "BPE {v} (trained in {train_s:.1}s, vocab {}): {:.3} tokens/word, true {:.4} nats/token, unigram-word baseline {:.4} nats/token",
            tok.vocab_size(),
            (toks - held.len()) as f64 / hw as f64,
            nats / toks as f64,
            uni / toks as f64
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
