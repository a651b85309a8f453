//! Tests of the embedded language and corpus.

use super::language::Class;
use super::*;

/// Relative tolerance of the scaled forward algorithm against the brute-force sum
/// (both f64; a few dozen roundings apart).
const FORWARD_RTOL: f64 = 1e-10;

fn lang() -> Language {
    Language::new(DEFAULT_SEED)
}

#[test]
fn corpus_is_deterministic_and_seeded() {
    let (a, b) = (lang(), lang());
    let ta = generate_corpus(&a, 7, 50);
    assert_eq!(ta, generate_corpus(&b, 7, 50));
    // A prefix of a larger corpus, independent of n_docs.
    assert_eq!(ta[..20], generate_corpus(&a, 7, 20)[..]);
    assert_ne!(ta, generate_corpus(&a, 8, 50));
    let other = Language::new(DEFAULT_SEED + 1);
    assert_ne!(generate_corpus(&other, 7, 50), ta);
    assert_eq!(a.vocab_size(), b.vocab_size());
    for id in 0..a.vocab_size() as u32 {
        assert_eq!(a.word(id), b.word(id));
    }
}

#[test]
fn distributions_are_normalised() {
    let l = lang();
    assert!(
        l.max_normalisation_error() < 1e-12,
        "{}",
        l.max_normalisation_error()
    );
    // Words are distinct, lowercase ASCII (the punctuation aside).
    let mut seen = std::collections::HashSet::new();
    for id in 0..l.vocab_size() as u32 {
        let w = l.word(id).unwrap_or_default();
        assert!(seen.insert(w.to_string()), "duplicate word {w}");
        if id as usize >= PUNCT.len() {
            assert!(w.chars().all(|c| c.is_ascii_lowercase()), "{w}");
        }
    }
    assert!(
        (2000..=3000).contains(&l.vocab_size()),
        "{}",
        l.vocab_size()
    );
}

fn assert_close(a: f64, b: f64, what: &str) {
    if a.is_infinite() || b.is_infinite() {
        assert_eq!(a, b, "{what}");
    } else {
        assert!(
            (a - b).abs() <= FORWARD_RTOL * a.abs().max(1.0),
            "{what}: {a} vs {b}"
        );
    }
}

#[test]
fn log_prob_matches_brute_force_sum_over_paths() {
    let l = lang();
    let w = |t: usize, c: Class, k: usize| l.emitted(t, c)[k];
    let stop = 1u32; // "."
    let comma = 0u32;
    // Shared function words have 4 emitting states (one per topic), content words 1.
    let seqs: Vec<Vec<u32>> = vec![
        vec![w(0, Class::Pron, 0), w(0, Class::Verb, 3), stop],
        vec![
            w(1, Class::Det, 1),
            w(1, Class::Adj, 0),
            w(1, Class::Noun, 5),
            stop,
        ],
        vec![
            w(2, Class::Pron, 2),
            w(2, Class::Aux, 0),
            w(2, Class::Adv, 4),
            stop,
            w(0, Class::Det, 0),
            w(3, Class::Noun, 1),
            stop,
        ],
        vec![
            w(0, Class::Det, 0),
            w(0, Class::Noun, 0),
            comma,
            w(0, Class::Conj, 1),
            w(0, Class::Pron, 0),
        ],
        vec![
            w(3, Class::Prep, 2),
            w(3, Class::Det, 3),
            w(3, Class::Noun, 9),
        ],
        vec![comma, comma],                               // impossible
        vec![w(0, Class::Noun, 0), w(1, Class::Verb, 0)], // topic switch inside a sentence: impossible
    ];
    for s in &seqs {
        assert_close(
            l.log_prob(s),
            l.log_prob_brute(s, true),
            &format!("complete {s:?}"),
        );
        assert_close(
            l.log_prob_prefix(s),
            l.log_prob_brute(s, false),
            &format!("prefix {s:?}"),
        );
    }
    // Sampled short documents and prefixes of long ones.
    let mut rng = SplitMix::new(3);
    for _ in 0..40 {
        let d = l.sample_document(&mut rng, 6);
        let full = l.log_prob_sampled(&d, 6);
        let brute = l.log_prob_brute(&d, d.len() < 6);
        assert!(full.is_finite());
        assert_close(full, brute, &format!("sampled {d:?}"));
    }
    assert_eq!(l.log_prob(&[]), f64::NEG_INFINITY);
    assert_eq!(l.log_prob_prefix(&[]), 0.0);
    assert_eq!(l.log_prob(&[l.vocab_size() as u32]), f64::NEG_INFINITY);
}

#[test]
fn sampler_follows_the_forward_probabilities() {
    // First-word frequencies over many one-word draws against exp(log_prob_prefix([w])).
    let l = lang();
    let n = 40_000;
    let mut counts = vec![0usize; l.vocab_size()];
    let mut rng = SplitMix::new(11);
    for _ in 0..n {
        counts[l.sample_document(&mut rng, 1)[0] as usize] += 1;
    }
    let mut checked = 0;
    for (id, &c) in counts.iter().enumerate() {
        let p = l.log_prob_prefix(&[id as u32]).exp();
        let sd = (p * (1.0 - p) / n as f64).sqrt();
        // 5 standard deviations plus one count of slack: fails if sampler and forward disagree.
        assert!(
            (c as f64 / n as f64 - p).abs() <= 5.0 * sd + 1.0 / n as f64,
            "word {id}: frequency {} vs probability {p}",
            c as f64 / n as f64
        );
        checked += (c > 0) as usize;
    }
    assert!(checked > 20);
}

#[test]
fn render_parse_round_trip() {
    let l = lang();
    for text in generate_corpus(&l, 5, 100) {
        let words = l.parse(&text).expect("corpus text parses");
        assert_eq!(l.render(&words), text);
        assert!(
            text.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
            "{text}"
        );
        assert!(text.ends_with(['.', '?', '!']), "{text}");
        let tn = l.true_nats(&text).expect("in the language");
        assert_close(tn, -l.log_prob_sampled(&words, DOC_MAX_WORDS), "true_nats");
        assert!(tn > 0.0);
    }
    // Arbitrary id sequences (punctuation first, doubled, ...) round trip too.
    let mut rng = SplitMix::new(9);
    for _ in 0..200 {
        let n = rng.below(12);
        let ids: Vec<u32> = (0..n)
            .map(|_| {
                if rng.below(3) == 0 {
                    rng.below(PUNCT.len()) as u32
                } else {
                    rng.below(l.vocab_size()) as u32
                }
            })
            .collect();
        assert_eq!(l.parse(&l.render(&ids)), Some(ids));
    }
    // Non-canonical or foreign text is refused.
    let text = generate_corpus(&l, 5, 1).remove(0);
    assert!(l.parse(&text.to_ascii_lowercase()).is_none());
    assert!(l.parse(&text.replacen(' ', "  ", 1)).is_none());
    assert!(l.parse(&format!("{text} qqqqzz.")).is_none());
    assert!(l.parse(&format!("{text};")).is_none());
    assert!(l.true_nats("Not a word of it;").is_none());
}

#[test]
fn entropy_per_word_is_well_below_unigram_entropy() {
    let l = lang();
    let h = l.entropy_per_word(400, 1, DOC_MAX_WORDS);
    let hu = l.unigram_entropy();
    eprintln!(
        "entropy/word {h:.3} nats, unigram {hu:.3} nats, vocab {}",
        l.vocab_size()
    );
    assert!(h.is_finite() && h > 1.0);
    // "Well below": at least a nat per word of structure to learn.
    assert!(h + 1.0 < hu, "entropy {h} vs unigram {hu}");
    // The unigram baseline of sampled text is close to the unigram entropy.
    let texts = generate_corpus(&l, 2, 400);
    let (mut nats, mut words) = (0.0, 0usize);
    for t in &texts {
        nats += l.unigram_text_nats(t).unwrap_or(f64::INFINITY);
        words += l.parse(t).map_or(0, |w| w.len());
    }
    let per_word = nats / words as f64;
    assert!((per_word - hu).abs() < 0.15, "{per_word} vs {hu}");
}

#[test]
fn document_lengths_are_bounded_and_reasonable() {
    let l = lang();
    let mut rng = SplitMix::new(4);
    let lens: Vec<usize> = (0..300)
        .map(|_| l.sample_document(&mut rng, 50).len())
        .collect();
    assert!(lens.iter().all(|&n| (1..=50).contains(&n)));
    let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
    assert!(mean > 20.0, "{mean}");
    assert!(l.sample_document(&mut rng, 0).is_empty());
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("gidd-corpus-{name}-{}-{k}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn embedded_default_trains_then_reuses_its_tokenizer() {
    let dir = temp_dir("embedded");
    let (l, tok, texts) = embedded_default(&dir, 400, 300).expect("embedded default");
    assert_eq!(texts.len(), 300);
    let ids = tok.special_ids();
    assert_eq!(
        [ids.bos, ids.eos, ids.pad, ids.mask],
        [Some(0), Some(1), Some(2), Some(3)]
    );
    assert!(
        tok.vocab_size() <= 400 && tok.vocab_size() > 300,
        "{}",
        tok.vocab_size()
    );
    for t in &texts[..50] {
        let enc = tok.encode(t).expect("encode");
        assert!(
            enc.iter().all(|&i| i >= 4),
            "no special tokens in corpus text"
        );
        assert_eq!(&tok.decode(&enc).expect("decode"), t);
        assert!(l.true_nats(t).is_some());
    }
    let path = embedded_tokenizer_path(&dir, 400, 300);
    let json = std::fs::read_to_string(&path).expect("cached");
    // Reused: a valid cache in another layout (pretty-printed) is left as it is.
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    let pretty = serde_json::to_string_pretty(&value).expect("pretty");
    assert_ne!(pretty, json);
    std::fs::write(&path, &pretty).expect("rewrite");
    let (_, tok2, texts2) = embedded_default(&dir, 400, 300).expect("cached default");
    assert_eq!(texts2, texts);
    assert_eq!(std::fs::read_to_string(&path).ok(), Some(pretty));
    assert_eq!(tok2.encode(&texts[0]).ok(), tok.encode(&texts[0]).ok());
    // An invalid cache is retrained, to the same tokenizer (training is deterministic).
    std::fs::write(&path, "{ not json").expect("corrupt");
    let (_, tok3, _) = embedded_default(&dir, 400, 300).expect("retrained");
    assert_eq!(std::fs::read_to_string(&path).ok(), Some(json));
    assert_eq!(tok3.encode(&texts[1]).ok(), tok.encode(&texts[1]).ok());
    // Token ids: tokenized, cached as a shard, then read back from the shard.
    let first = embedded_tokens(&tok3, &texts).expect("tokens");
    assert!(path.with_file_name("corpus.bin").is_file());
    let again = embedded_tokens(&tok3, &texts).expect("cached tokens");
    assert!(
        again.describe().contains("corpus.bin"),
        "{}",
        again.describe()
    );
    assert_eq!(first.len(), texts.len());
    for i in [0, 17, 299] {
        assert_eq!(first.doc(i).ok(), tok.encode(&texts[i]).ok());
        assert_eq!(again.doc(i).ok(), first.doc(i).ok());
    }
    // Retraining the tokenizer drops the stale shard.
    std::fs::write(&path, "{ not json").expect("corrupt");
    embedded_default(&dir, 400, 300).expect("retrained");
    assert!(!path.with_file_name("corpus.bin").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lexicon_hits_count_words_not_punctuation() {
    let l = lang();
    let text = &generate_corpus(&l, 3, 1)[0];
    let (hits, total) = l.lexicon_hits(text);
    assert!(total > 0);
    assert_eq!(hits, total, "{text}");
    // Made-up words and split words miss; punctuation is not a word.
    let w = l.word(PUNCT.len() as u32 + 5).unwrap().to_string();
    let broken = format!("{w}, qzxv {}.", &w[..w.len() - 1]);
    let (h, t) = l.lexicon_hits(&broken);
    assert_eq!(t, 3);
    assert!((1..=2).contains(&h), "{broken}: {h}");
    assert_eq!(l.lexicon_hits(", . !"), (0, 0));
}
