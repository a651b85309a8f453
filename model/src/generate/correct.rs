//! Self-correction (the GIDD paper): re-predict a clean text and replace the tokens the
//! model is least confident in, a few at a time, until nothing changes or the step
//! budget ends. Score of a position: max_v x_hat[v] - x_hat[z] (as the adaptive sampler).

use super::{draw, predictable_logits, probs_with_topk_topp, Canvas};
use anyhow::{bail, Result};
use gidd_engine::rng::HostRng;
use gidd_engine::Executor;

/// One replacement made by the corrector.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub step: usize,
    pub position: usize,
    pub from: u32,
    pub to: u32,
}

/// Corrects `ids` (positions >= `keep` only) on a canvas of the model's length; returns the
/// corrected ids and the changes in order.
pub fn self_correct<E: Executor>(
    canvas: &mut Canvas<E>,
    ids: &[u32],
    keep: usize,
    steps: usize,
    per_step: usize,
    temperature: f64,
    seed: u64,
) -> Result<(Vec<u32>, Vec<Change>)> {
    let t = canvas.len;
    let v = canvas.vocab();
    if ids.len() > t {
        bail!(
            "text of {} tokens is longer than the model's context of {t}",
            ids.len()
        );
    }
    if let Some(bad) = ids.iter().find(|&&x| x as usize >= v) {
        bail!("token id {bad} is outside the model's vocabulary of {v}");
    }
    let n = ids.len();
    let mut x = ids.to_vec();
    x.resize(t, 2); // pad the rest of the canvas with the empty token
                    // Every query sees the text (not the padding beyond it).
    let mask: Vec<bool> = (0..t).flat_map(|_| (0..t).map(move |k| k < n)).collect();
    let mut rng = HostRng::new(seed);
    let mut changes = vec![];
    for step in 0..steps {
        let logits = canvas.logits(std::slice::from_ref(&x), &mask)?;
        let mut scored: Vec<(f64, usize, u32)> = vec![];
        for j in keep..n {
            let l = predictable_logits(&logits[j * v..(j + 1) * v]);
            let xh = probs_with_topk_topp(&l, 1.0, None, None);
            let pmax = xh.iter().cloned().fold(0.0, f64::max);
            let to = draw(&probs_with_topk_topp(&l, temperature, None, None), &mut rng) as u32;
            scored.push((pmax - xh[x[j] as usize], j, to));
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut changed = false;
        for &(score, j, to) in scored.iter().take(per_step) {
            if score > 0.0 && to != x[j] {
                changes.push(Change {
                    step,
                    position: j,
                    from: x[j],
                    to,
                });
                x[j] = to;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    x.truncate(n);
    Ok((x, changes))
}
