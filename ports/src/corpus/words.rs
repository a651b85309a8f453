//! The made-up but pronounceable word list of the embedded language.
//!
//! Words are strings of 1 to 3 syllables, each syllable onset + vowel + coda,
//! in lowercase ASCII, all distinct. Function words get one syllable, content
//! words two or three. Within a class, words are sorted by length so that the
//! most frequent (Zipf rank 1) words are the shortest, as in natural language.

use super::rng::SplitMix;
use std::collections::HashSet;

const ONSETS: [&str; 37] = [
    "", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
    "gr", "kr", "pr", "tr", "bl", "fl", "gl", "kl", "pl", "sl", "st", "sk", "sp", "sh", "ch", "th",
    "w", "j", "y",
];
const VOWELS: [&str; 11] = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "oo", "ea", "ia"];
const CODAS: [&str; 13] = [
    "", "", "", "n", "r", "l", "s", "m", "k", "t", "nd", "st", "rn",
];

/// Draws one syllable. `first` syllables may start with a vowel; later ones
/// always have an onset so that syllable boundaries stay pronounceable.
fn syllable(rng: &mut SplitMix, first: bool) -> String {
    let onset = loop {
        let o = ONSETS[rng.below(ONSETS.len())];
        if first || !o.is_empty() {
            break o;
        }
    };
    let vowel = VOWELS[rng.below(VOWELS.len())];
    let coda = CODAS[rng.below(CODAS.len())];
    format!("{onset}{vowel}{coda}")
}

/// Draws `n` new distinct words of `min_syl..=max_syl` syllables, never one
/// already in `taken`, sorted by length (stable in draw order).
pub fn draw_words(
    rng: &mut SplitMix,
    taken: &mut HashSet<String>,
    n: usize,
    min_syl: usize,
    max_syl: usize,
) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let syl = min_syl + rng.below(max_syl - min_syl + 1);
        let mut w = String::new();
        for k in 0..syl {
            w.push_str(&syllable(rng, k == 0));
        }
        // Two-letter and shorter words collide with everything; keep words >= 2 chars.
        if w.len() >= 2 && taken.insert(w.clone()) {
            out.push(w);
        }
    }
    out.sort_by_key(|w| w.len());
    out
}
