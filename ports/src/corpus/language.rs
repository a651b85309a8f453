//! The embedded stochastic language: a hidden Markov model over made-up words.
//!
//! Hidden states are pairs (topic t, class c): `N_TOPICS` topics times
//! `N_CLASSES` word classes (determiner, pronoun, preposition, ..., noun, verb,
//! comma, sentence stop), `N_STATES` = 96 states. A document is
//!
//! ```text
//!   s_0 ~ init,   w_i ~ emit(s_i),   then either END with prob end(s_i) or s_{i+1} ~ trans(s_i, .)
//!   p(w_0..w_{n-1}, END) = sum over s_0..s_{n-1} of
//!       init(s_0) prod_i emit(s_i, w_i) prod_{i<n-1} trans(s_i, s_{i+1}) end(s_{n-1})
//! ```
//!
//! with `sum_s' trans(s, s') + end(s) = 1`. Only the stop state can end a
//! document, so documents are whole sentences. Within a sentence the topic is
//! fixed; at a sentence stop it persists with probability `TOPIC_STAY`. Class
//! transitions follow a small hand-written grammar (determiner -> adjective or
//! noun, pronoun -> verb or auxiliary, ...), perturbed per topic from the seed.
//! Adjectives, nouns and verbs have their own words in each topic; function
//! words are shared (adverbs with a topic-specific frequency order). Emissions
//! are Zipf-Mandelbrot over each class's words, shortest words most frequent.
//!
//! The "words" of the language include the punctuation marks `, . ? !`
//! (ids 0..4); entropies "per word" count them as words.

use super::rng::{hash2, SplitMix};
use super::words::draw_words;
use std::collections::{HashMap, HashSet};

pub const N_TOPICS: usize = 8;
pub const N_CLASSES: usize = 12;
pub const N_STATES: usize = N_TOPICS * N_CLASSES;
/// Probability that a document ends after a sentence stop (mean ~8 sentences).
pub const P_END: f64 = 0.12;
/// Probability that the topic persists across a sentence stop.
pub const TOPIC_STAY: f64 = 0.9;
/// Log-normal perturbation (sigma) of the grammar's transition weights per topic.
const TRANS_JITTER: f64 = 0.3;
/// Zipf-Mandelbrot offset q in p_r ~ (r + q)^-s.
const ZIPF_Q: f64 = 2.7;

/// Punctuation words, ids 0..4. Ids 1..4 end a sentence.
pub const PUNCT: [&str; 4] = [",", ".", "?", "!"];
const COMMA_ID: u32 = 0;
const STOP_PROBS: [(u32, f64); 3] = [(1, 0.80), (2, 0.12), (3, 0.08)];

/// The word classes (parts of speech) of the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Det = 0,
    Pron,
    Prep,
    Conj,
    Aux,
    Rel,
    Adv,
    Adj,
    Noun,
    Verb,
    Comma,
    Stop,
}

use Class::*;

const CLASSES: [Class; N_CLASSES] = [
    Det, Pron, Prep, Conj, Aux, Rel, Adv, Adj, Noun, Verb, Comma, Stop,
];

/// Words per class: (count, min syllables, max syllables, Zipf exponent s, per topic?).
fn class_words(c: Class) -> (usize, usize, usize, f64, bool) {
    match c {
        Det => (8, 1, 1, 1.2, false),
        Pron => (10, 1, 1, 1.2, false),
        Prep => (14, 1, 1, 1.2, false),
        Conj => (6, 1, 1, 1.2, false),
        Aux => (8, 1, 1, 1.2, false),
        Rel => (4, 1, 1, 1.2, false),
        Adv => (70, 2, 3, 1.05, false),
        Adj => (60, 2, 3, 1.05, true),
        Noun => (130, 2, 3, 1.05, true),
        Verb => (90, 2, 3, 1.05, true),
        Comma | Stop => (0, 0, 0, 0.0, false),
    }
}

/// Sentence-start class distribution (also the class after a stop).
const START: [(Class, f64); 7] = [
    (Det, 0.40),
    (Pron, 0.25),
    (Adj, 0.06),
    (Noun, 0.08),
    (Adv, 0.06),
    (Conj, 0.05),
    (Prep, 0.10),
];

/// The grammar: class -> next-class weights within a sentence (Stop is handled apart).
fn grammar(c: Class) -> &'static [(Class, f64)] {
    match c {
        Det => &[(Adj, 0.35), (Noun, 0.65)],
        Pron => &[(Verb, 0.55), (Aux, 0.35), (Adv, 0.10)],
        Prep => &[(Det, 0.65), (Noun, 0.20), (Pron, 0.10), (Adj, 0.05)],
        Conj => &[
            (Det, 0.40),
            (Pron, 0.30),
            (Verb, 0.15),
            (Adj, 0.10),
            (Adv, 0.05),
        ],
        Aux => &[(Adj, 0.30), (Verb, 0.40), (Adv, 0.15), (Det, 0.15)],
        Rel => &[(Verb, 0.45), (Pron, 0.25), (Det, 0.30)],
        Adv => &[(Verb, 0.40), (Adj, 0.25), (Stop, 0.20), (Comma, 0.15)],
        Adj => &[(Adj, 0.12), (Noun, 0.78), (Comma, 0.05), (Stop, 0.05)],
        Noun => &[
            (Verb, 0.32),
            (Aux, 0.10),
            (Prep, 0.18),
            (Stop, 0.22),
            (Comma, 0.08),
            (Conj, 0.05),
            (Rel, 0.05),
        ],
        Verb => &[
            (Det, 0.35),
            (Prep, 0.18),
            (Adv, 0.12),
            (Stop, 0.22),
            (Pron, 0.08),
            (Noun, 0.05),
        ],
        Comma => &[
            (Conj, 0.45),
            (Det, 0.20),
            (Pron, 0.15),
            (Adv, 0.10),
            (Rel, 0.10),
        ],
        Stop => &[],
    }
}

fn state(topic: usize, class: Class) -> usize {
    topic * N_CLASSES + class as usize
}

/// Zipf-Mandelbrot probabilities for ranks 1..=n.
fn zipf(n: usize, s: f64) -> Vec<f64> {
    let w: Vec<f64> = (1..=n).map(|r| (r as f64 + ZIPF_Q).powf(-s)).collect();
    let z: f64 = w.iter().sum();
    w.into_iter().map(|x| x / z).collect()
}

/// Weights times exp(sigma * N(0,1)), renormalised to `mass`.
fn jitter(rng: &mut SplitMix, weights: &[(Class, f64)], mass: f64) -> Vec<(Class, f64)> {
    let w: Vec<(Class, f64)> = weights
        .iter()
        .map(|&(c, p)| (c, p * (TRANS_JITTER * rng.normal()).exp()))
        .collect();
    let z: f64 = w.iter().map(|x| x.1).sum();
    w.into_iter().map(|(c, p)| (c, p * mass / z)).collect()
}

/// The HMM: states, transitions, emissions and word list. See the module docs.
#[derive(Clone, Debug)]
pub struct Language {
    seed: u64,
    words: Vec<String>,
    index: HashMap<String, u32>,
    /// init[s]
    init: Vec<f64>,
    /// trans[s * N_STATES + s'], rows sum to 1 - end[s]
    trans: Vec<f64>,
    /// end[s]: probability that the document ends after state s
    end: Vec<f64>,
    /// emitted words of each state and their probabilities, most probable first
    emit_words: Vec<Vec<u32>>,
    emit_probs: Vec<Vec<f64>>,
    /// for each word, the states that emit it and with which probability
    emitters: Vec<Vec<(usize, f64)>>,
    /// stationary unigram distribution of words
    unigram: Vec<f64>,
}

impl Language {
    /// Builds the language deterministically from `seed`.
    pub fn new(seed: u64) -> Self {
        // Words: punctuation, then the shared classes, then per topic the content classes.
        let mut wrng = SplitMix::new(hash2(seed, 1));
        let mut taken: HashSet<String> = HashSet::new();
        let mut words: Vec<String> = PUNCT.iter().map(|s| s.to_string()).collect();
        // class_ids[topic][class] = word ids of that class as seen from that topic, rank order
        let mut class_ids: Vec<Vec<Vec<u32>>> = vec![vec![Vec::new(); N_CLASSES]; N_TOPICS];
        let push_words = |words: &mut Vec<String>, ws: Vec<String>| -> Vec<u32> {
            let start = words.len() as u32;
            let n = ws.len() as u32;
            words.extend(ws);
            (start..start + n).collect()
        };
        for &c in &CLASSES {
            let (n, lo, hi, _, topical) = class_words(c);
            if n == 0 || topical {
                continue;
            }
            let ids = push_words(&mut words, draw_words(&mut wrng, &mut taken, n, lo, hi));
            for (t, per_topic) in class_ids.iter_mut().enumerate() {
                let mut ids_t = ids.clone();
                if c == Adv {
                    // Adverbs: shared words, topic-specific frequency order.
                    SplitMix::new(hash2(seed, 100 + t as u64)).shuffle(&mut ids_t);
                }
                per_topic[c as usize] = ids_t;
            }
        }
        for per_topic in class_ids.iter_mut() {
            for &c in &CLASSES {
                let (n, lo, hi, _, topical) = class_words(c);
                if topical {
                    let ws = draw_words(&mut wrng, &mut taken, n, lo, hi);
                    per_topic[c as usize] = push_words(&mut words, ws);
                }
            }
        }
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();

        // Emissions.
        let mut emit_words = vec![Vec::new(); N_STATES];
        let mut emit_probs = vec![Vec::new(); N_STATES];
        for (t, ids_t) in class_ids.iter().enumerate() {
            for &c in &CLASSES {
                let s = state(t, c);
                let (ws, ps): (Vec<u32>, Vec<f64>) = match c {
                    Comma => (vec![COMMA_ID], vec![1.0]),
                    Stop => STOP_PROBS.iter().copied().unzip(),
                    _ => {
                        let (_, _, _, zs, _) = class_words(c);
                        let ids = ids_t[c as usize].clone();
                        let ps = zipf(ids.len(), zs);
                        (ids, ps)
                    }
                };
                emit_words[s] = ws;
                emit_probs[s] = ps;
            }
        }
        let mut emitters = vec![Vec::new(); words.len()];
        for s in 0..N_STATES {
            for (&w, &p) in emit_words[s].iter().zip(&emit_probs[s]) {
                emitters[w as usize].push((s, p));
            }
        }

        // Transitions, per topic a jittered copy of the grammar.
        let mut trng = SplitMix::new(hash2(seed, 2));
        let mut init = vec![0.0; N_STATES];
        let mut trans = vec![0.0; N_STATES * N_STATES];
        let mut end = vec![0.0; N_STATES];
        let starts: Vec<Vec<(Class, f64)>> = (0..N_TOPICS)
            .map(|_| jitter(&mut trng, &START, 1.0))
            .collect();
        for (t, start_t) in starts.iter().enumerate() {
            for &(c, p) in start_t {
                init[state(t, c)] += p / N_TOPICS as f64;
            }
        }
        for t in 0..N_TOPICS {
            for &c in &CLASSES {
                let s = state(t, c);
                let row = &mut trans[s * N_STATES..(s + 1) * N_STATES];
                if c == Stop {
                    end[s] = P_END;
                    for (t2, start_t2) in starts.iter().enumerate() {
                        let pt = if t2 == t {
                            TOPIC_STAY
                        } else {
                            (1.0 - TOPIC_STAY) / (N_TOPICS - 1) as f64
                        };
                        for &(c2, p) in start_t2 {
                            row[state(t2, c2)] += (1.0 - P_END) * pt * p;
                        }
                    }
                } else {
                    for (c2, p) in jitter(&mut trng, grammar(c), 1.0) {
                        row[state(t, c2)] += p;
                    }
                }
            }
        }

        let mut lang = Language {
            seed,
            words,
            index,
            init,
            trans,
            end,
            emit_words,
            emit_probs,
            emitters,
            unigram: Vec::new(),
        };
        lang.unigram = lang.stationary_unigram();
        lang
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of distinct words, punctuation included.
    pub fn vocab_size(&self) -> usize {
        self.words.len()
    }

    /// The text of word `id`.
    pub fn word(&self, id: u32) -> Option<&str> {
        self.words.get(id as usize).map(String::as_str)
    }

    /// Samples one document: stops at the end state or after `max_words` words,
    /// whichever comes first (`log_prob_sampled` is the exact law of the result).
    pub fn sample_document(&self, rng: &mut SplitMix, max_words: usize) -> Vec<u32> {
        let mut out = Vec::new();
        if max_words == 0 {
            return out;
        }
        let mut s = rng.categorical(&self.init);
        loop {
            let k = rng.categorical(&self.emit_probs[s]);
            out.push(self.emit_words[s][k]);
            if out.len() >= max_words || rng.next_f64() < self.end[s] {
                return out;
            }
            s = rng.categorical(&self.trans[s * N_STATES..(s + 1) * N_STATES]);
        }
    }

    fn is_punct(w: u32) -> bool {
        (w as usize) < PUNCT.len()
    }

    fn ends_sentence(w: u32) -> bool {
        Self::is_punct(w) && w != COMMA_ID
    }

    /// Text of a word sequence: words separated by single spaces, punctuation
    /// attached to what precedes it, the first word of the document and of
    /// every sentence (after `. ? !`) capitalised. Ids out of range are skipped.
    pub fn render(&self, words: &[u32]) -> String {
        let mut out = String::new();
        let mut capital = true;
        for &w in words {
            let Some(text) = self.words.get(w as usize) else {
                continue;
            };
            if Self::is_punct(w) {
                out.push_str(text);
                if Self::ends_sentence(w) {
                    capital = true;
                }
            } else {
                if !out.is_empty() {
                    out.push(' ');
                }
                let mut chars = text.chars();
                if let (true, Some(first)) = (capital, chars.next()) {
                    out.push(first.to_ascii_uppercase());
                    out.push_str(chars.as_str());
                } else {
                    out.push_str(text);
                }
                capital = false;
            }
        }
        out
    }

    /// The inverse of `render`: None unless `text` is exactly the rendering of some word sequence.
    pub fn parse(&self, text: &str) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        for chunk in text.split(' ') {
            let cut = chunk
                .find(|ch: char| !ch.is_ascii_alphabetic())
                .unwrap_or(chunk.len());
            let (word, puncts) = chunk.split_at(cut);
            if !word.is_empty() {
                let lower = word.to_ascii_lowercase();
                out.push(*self.index.get(&lower)?);
            }
            for p in puncts.chars() {
                let id = PUNCT
                    .iter()
                    .position(|q| q.starts_with(p) && q.len() == 1)?;
                out.push(id as u32);
            }
        }
        // Canonical form only (capitalisation, spacing).
        (self.render(&out) == text).then_some(out)
    }

    /// Scaled forward algorithm: returns (log of the scale product, normalised alpha
    /// over the states after the last word), or None if the words have probability 0.
    fn forward(&self, words: &[u32]) -> Option<(f64, Vec<f64>)> {
        let mut alpha = self.init.clone();
        let mut next = vec![0.0; N_STATES];
        let mut log_scale = 0.0;
        for (i, &w) in words.iter().enumerate() {
            let em = self.emitters.get(w as usize)?;
            next.iter_mut().for_each(|x| *x = 0.0);
            for &(s, e) in em {
                let pred = if i == 0 {
                    alpha[s]
                } else {
                    (0..N_STATES)
                        .map(|r| alpha[r] * self.trans[r * N_STATES + s])
                        .sum()
                };
                next[s] = e * pred;
            }
            let c: f64 = next.iter().sum();
            if c <= 0.0 {
                return None;
            }
            log_scale += c.ln();
            for (a, &n) in alpha.iter_mut().zip(&next) {
                *a = n / c;
            }
        }
        Some((log_scale, alpha))
    }

    /// Exact log p(words, END) in nats: the probability that a document is exactly
    /// these words. -inf for impossible sequences (the empty one included).
    pub fn log_prob(&self, words: &[u32]) -> f64 {
        if words.is_empty() {
            return f64::NEG_INFINITY;
        }
        match self.forward(words) {
            Some((ls, alpha)) => {
                let pe: f64 = alpha.iter().zip(&self.end).map(|(a, e)| a * e).sum();
                ls + pe.ln()
            }
            None => f64::NEG_INFINITY,
        }
    }

    /// Exact log p(document starts with `words`) in nats.
    pub fn log_prob_prefix(&self, words: &[u32]) -> f64 {
        self.forward(words)
            .map_or(f64::NEG_INFINITY, |(ls, alpha)| {
                ls + alpha.iter().sum::<f64>().ln()
            })
    }

    /// Exact log-probability of `sample_document(_, max_words)` returning `words`:
    /// a document shorter than `max_words` ended by itself; one of `max_words` words
    /// may have been cut, so its law is the prefix probability.
    pub fn log_prob_sampled(&self, words: &[u32], max_words: usize) -> f64 {
        if words.len() >= max_words {
            self.log_prob_prefix(words)
        } else {
            self.log_prob(words)
        }
    }

    /// Stationary word distribution of the endless stream of documents (the state
    /// chain with END leading back to `init`), by power iteration of the lazy chain.
    fn stationary_unigram(&self) -> Vec<f64> {
        let mut pi = vec![1.0 / N_STATES as f64; N_STATES];
        for _ in 0..100_000 {
            // next[s] = sum_r pi[r] (trans[r, s] + end[r] init[s])
            let mut next = vec![0.0; N_STATES];
            for (r, &pr) in pi.iter().enumerate() {
                let row = &self.trans[r * N_STATES..(r + 1) * N_STATES];
                for ((n, &t), &i0) in next.iter_mut().zip(row).zip(&self.init) {
                    *n += pr * (t + self.end[r] * i0);
                }
            }
            let mut diff = 0.0;
            for (p, &n) in pi.iter_mut().zip(&next) {
                let v = 0.5 * (*p + n);
                diff += (v - *p).abs();
                *p = v;
            }
            if diff < 1e-15 {
                break;
            }
        }
        let mut uni = vec![0.0; self.words.len()];
        for (s, &ps) in pi.iter().enumerate() {
            for (&w, &p) in self.emit_words[s].iter().zip(&self.emit_probs[s]) {
                uni[w as usize] += ps * p;
            }
        }
        uni
    }

    /// Stationary unigram probability of each word (index = word id).
    pub fn unigram(&self) -> &[f64] {
        &self.unigram
    }

    /// Entropy in nats per word of the stationary unigram distribution.
    pub fn unigram_entropy(&self) -> f64 {
        self.unigram
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|&p| -p * p.ln())
            .sum()
    }

    /// Nats of `words` under the unigram distribution (the unigram baseline of a text).
    pub fn unigram_nats(&self, words: &[u32]) -> f64 {
        words
            .iter()
            .map(|&w| {
                self.unigram
                    .get(w as usize)
                    .map_or(f64::INFINITY, |&p| -p.ln())
            })
            .sum()
    }

    /// (words of the lexicon, words) in free text such as a model's sample: a word is a
    /// maximal run of ASCII letters, matched case-insensitively. Punctuation is not
    /// counted, so a sample of commas cannot score well.
    pub fn lexicon_hits(&self, text: &str) -> (usize, usize) {
        let (mut hits, mut total) = (0, 0);
        for w in text
            .split(|ch: char| !ch.is_ascii_alphabetic())
            .filter(|w| !w.is_empty())
        {
            total += 1;
            hits += usize::from(self.index.contains_key(&w.to_ascii_lowercase()));
        }
        (hits, total)
    }

    /// Monte-Carlo estimate of the true entropy rate in nats per word: total
    /// -log p over `n_docs` sampled documents divided by their total words.
    pub fn entropy_per_word(&self, n_docs: usize, seed: u64, max_words: usize) -> f64 {
        let mut nats = 0.0;
        let mut n = 0usize;
        for i in 0..n_docs {
            let mut rng = SplitMix::new(hash2(seed, i as u64));
            let d = self.sample_document(&mut rng, max_words);
            nats -= self.log_prob_sampled(&d, max_words);
            n += d.len();
        }
        nats / n.max(1) as f64
    }

    /// Brute-force sum over all state paths (tests only: N_STATES^len terms).
    #[cfg(test)]
    pub(crate) fn log_prob_brute(&self, words: &[u32], with_end: bool) -> f64 {
        fn rec(l: &Language, words: &[u32], i: usize, prev: usize, acc: f64, end: bool) -> f64 {
            if i == words.len() {
                return if end { acc * l.end[prev] } else { acc };
            }
            let mut total = 0.0;
            for s in 0..N_STATES {
                let e = l.emit_words[s]
                    .iter()
                    .position(|&w| w == words[i])
                    .map_or(0.0, |k| l.emit_probs[s][k]);
                if e == 0.0 {
                    continue;
                }
                let t = if i == 0 {
                    l.init[s]
                } else {
                    l.trans[prev * N_STATES + s]
                };
                total += rec(l, words, i + 1, s, acc * t * e, end);
            }
            total
        }
        rec(self, words, 0, 0, 1.0, with_end).ln()
    }

    /// The words state (topic, class) emits, most probable first (tests only).
    #[cfg(test)]
    pub(crate) fn emitted(&self, topic: usize, class: Class) -> &[u32] {
        &self.emit_words[state(topic, class)]
    }

    /// Checks that init, trans+end and the emissions are distributions (tests only).
    #[cfg(test)]
    pub(crate) fn max_normalisation_error(&self) -> f64 {
        let mut err = (self.init.iter().sum::<f64>() - 1.0).abs();
        for s in 0..N_STATES {
            let row: f64 = self.trans[s * N_STATES..(s + 1) * N_STATES].iter().sum();
            err = err.max((row + self.end[s] - 1.0).abs());
            err = err.max((self.emit_probs[s].iter().sum::<f64>() - 1.0).abs());
        }
        err.max((self.unigram.iter().sum::<f64>() - 1.0).abs())
    }
}
