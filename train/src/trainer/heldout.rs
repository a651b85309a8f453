//! The held-out ELBO of a run (periodic and final) and the token-unigram baseline it is
//! compared with.

use super::{rows_tensor, step};
use crate::packer::{EvalSet, HeldOut};
use anyhow::Result;
use gidd_engine::{DType, Executor, HostTensor};
use gidd_model::noise::NoiseOpts;
use gidd_model::{GiddConfig, Schedule};
use gidd_ports::data::DocSource;

/// Cross-entropy (nats/token) of the held-out evaluation tokens under the training
/// documents' token frequencies (add-one smoothed): the unigram baseline a model must beat.
pub(super) fn unigram_cross_entropy(
    src: &dyn DocSource,
    heldout: HeldOut,
    eval: &EvalSet,
    vocab: usize,
) -> Result<f64> {
    let mut counts = vec![1.0f64; vocab];
    let train = crate::packer::split_indices(src.len(), heldout, crate::packer::Split::Train);
    for &i in &train {
        for t in src.doc(i)?.into_iter().chain([1]) {
            counts[(t as usize).min(vocab - 1)] += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    let (mut nats, mut n) = (0.0, 0usize);
    for (row, &len) in eval.rows.iter().zip(&eval.lens) {
        for &t in &row[..len] {
            nats -= (counts[(t as usize).min(vocab - 1)] / total).ln();
            n += 1;
        }
    }
    Ok(nats / n.max(1) as f64)
}

/// Mean ELBO per token (nats) of an evaluation set, averaged over `reps` noise draws,
/// with the standard error of that mean across draws.
#[allow(clippy::too_many_arguments)]
pub fn elbo_over<E: Executor>(
    exec: &E,
    cfg: &GiddConfig,
    s: &Schedule,
    no: &NoiseOpts,
    params: &[(String, HostTensor)],
    eval: &EvalSet,
    batch: usize,
    seq: usize,
    dtype: DType,
    reps: u32,
) -> Result<(f64, f64)> {
    let (prog, _) = step::build_eval(cfg, s, no, batch, seq, dtype)?;
    let mut lp = exec.load(&prog)?;
    let dev = params
        .iter()
        .map(|(_, t)| exec.upload(t))
        .collect::<gidd_engine::Result<Vec<_>>>()?;
    let refs: Vec<&E::Buffer> = dev.iter().collect();
    elbo_on(exec, &mut lp, &refs, eval, batch, seq, reps)
}

/// [`elbo_over`] with the evaluation program (`step::build_eval`) loaded on `exec` and the
/// parameters where `exec` keeps them: a device run evaluates without a host round trip.
pub(crate) fn elbo_on<E: Executor>(
    exec: &E,
    lp: &mut E::Loaded,
    params: &[&E::Buffer],
    eval: &EvalSet,
    batch: usize,
    seq: usize,
    reps: u32,
) -> Result<(f64, f64)> {
    let seed = exec.upload(&HostTensor::u32(vec![2], vec![0xe7a1, 0x5eed])?)?;
    let mut per_rep = vec![];
    for rep in 0..reps {
        let (mut sum, mut count) = (0.0, 0.0);
        for (ci, chunk) in eval.rows.chunks(batch).enumerate() {
            let mut rows = chunk.to_vec();
            let mut valid = vec![0f32; batch * seq];
            for (i, len) in eval.lens[ci * batch..ci * batch + chunk.len()]
                .iter()
                .enumerate()
            {
                valid[i * seq..i * seq + len].fill(1.0);
            }
            while rows.len() < batch {
                rows.push(vec![2; seq]);
            }
            let labels = exec.upload(&rows_tensor(&rows, seq)?)?;
            let valid_t = exec.upload(&HostTensor::f32(vec![batch, seq], valid)?)?;
            let step = exec.upload(&HostTensor::u32(vec![], vec![rep * 100_003 + ci as u32])?)?;
            let mut ins: Vec<&E::Buffer> = params.to_vec();
            ins.extend([&labels, &valid_t, &seed, &step]);
            let out = exec.run(lp, &ins)?;
            sum += exec.download(&out[0])?.to_f64_vec()[0];
            count += exec.download(&out[1])?.to_f64_vec()[0];
        }
        per_rep.push(sum / count.max(1.0));
    }
    let n = per_rep.len() as f64;
    let mean = per_rep.iter().sum::<f64>() / n;
    let var = per_rep.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Ok((mean, (var / n).sqrt()))
}

/// Noise draws the periodic and final held-out ELBO average over.
pub(crate) const HELDOUT_REPS: u32 = 4;

/// The periodic held-out line of a run, for the terminal and for metrics.jsonl: the ELBO
/// after `secs` seconds of training (so the curve reads against time) and, when the
/// corpus's language is known, its true entropy and the gap.
pub(crate) fn heldout_record(
    step: usize,
    e: f64,
    secs: f64,
    true_entropy: Option<f64>,
) -> (String, serde_json::Value) {
    use std::f64::consts::LN_2;
    let mut msg = format!(
        "  held-out ELBO {e:.4} nats/token ({:.4} bits) after {secs:.0} s",
        e / LN_2
    );
    let mut line = serde_json::json!({
        "step": step, "heldout_elbo": e, "heldout_elbo_bits": e / LN_2, "elapsed_s": secs,
    });
    if let Some(t) = true_entropy {
        let gap = e - t;
        msg += &format!(
            "; true entropy {t:.4} nats/token ({:.4} bits); gap {gap:.4} nats/token ({:.4} bits)",
            t / LN_2,
            gap / LN_2
        );
        line["heldout_true_entropy"] = t.into();
        line["heldout_true_entropy_bits"] = (t / LN_2).into();
        line["heldout_gap"] = gap.into();
    }
    (msg, line)
}
