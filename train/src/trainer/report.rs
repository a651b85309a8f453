//! The end of the main job: baselines the held-out ELBO is read against, and samples
//! with the share of their words that are words of the language.

use super::TrainArgs;
use anyhow::Result;
use gidd_engine::{DType, HostTensor};
use gidd_model::generate::{generate, Canvas, GenOpts};
use gidd_model::schedule::PAD;
use gidd_model::GiddConfig;
use gidd_ports::corpus::Language;
use gidd_ports::data::Tok;

const LEXICON_SAMPLES: usize = 16;

/// Prints `a.num_samples` unconditional samples (one row of the run's length each) and,
/// when the corpus is the embedded language, the fraction of sampled words in its lexicon:
/// the plain-language test of whether the model learned words rather than letter soup.
pub(super) fn samples(
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    tok: &Tok,
    lang: Option<&Language>,
    seq: usize,
    a: &TrainArgs,
    dtype: DType,
) -> Result<()> {
    // samples are generated in f32 (generation has no f64 path: it is not an audit)
    let gen_dtype = if dtype == DType::F64 {
        DType::F32
    } else {
        dtype
    };
    let gen_params = crate::model_dir::params_as(params, gen_dtype.accum());
    let mut canvas = Canvas::new(cfg, &gen_params, 1, seq, gen_dtype)?;
    let (mut hits, mut words) = (0, 0);
    // The share of lexicon words is taken over at least LEXICON_SAMPLES samples (a few
    // hundred words) even when fewer are printed: over 3 it would move by several percent.
    let n = if lang.is_some() {
        a.num_samples.max(LEXICON_SAMPLES)
    } else {
        a.num_samples
    };
    for sidx in 0..n {
        let o = GenOpts::ancestral(seq.min(64), 32.min(seq - 1), 32, a.seed + sidx as u64);
        let out = generate(&mut canvas, cfg, &[vec![0]], &o, None, |_, _| {})?;
        let ids: Vec<u32> = out[0].iter().copied().filter(|&x| x > 3).collect();
        let text = tok.decode(&ids)?;
        if sidx < a.num_samples {
            println!("sample {}: {text}", sidx + 1);
        }
        if let Some(l) = lang {
            // A sample the canvas's end cut (no eos, so padded nowhere) may end inside a word:
            // that word is a truncation, not the model's spelling, and is not counted.
            let ended = out[0].iter().skip(1).any(|&x| x == PAD);
            let counted = match text.rfind(|ch: char| !ch.is_ascii_alphabetic()) {
                Some(i) if !ended => &text[..=i],
                None if !ended => "",
                _ => text.as_str(),
            };
            let (h, w) = l.lexicon_hits(counted);
            hits += h;
            words += w;
        }
    }
    if lang.is_some() && words > 0 {
        println!(
            "words of the language in {n} samples: {hits}/{words} ({:.1}%; a word cut by the sample's end is not counted)",
            100.0 * hits as f64 / words as f64
        );
    }
    Ok(())
}
