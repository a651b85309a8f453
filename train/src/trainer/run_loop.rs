//! The training steps on any executor: state stays where the executor keeps it.

use super::checkpoint;
use super::heldout::heldout_record;
use super::optim::OptimOpts;
use super::step::METRICS;
use super::{elbo_on, rows_tensor, scalar_in, step, Resolved, TrainArgs, HELDOUT_REPS};
use crate::packer::{EvalSet, Packer};
use crate::progress::{hms, Progress};
use anyhow::{bail, Context, Result};
use gidd_engine::{DType, Executor, HostTensor};
use gidd_model::noise::NoiseOpts;
use gidd_model::{GiddConfig, Schedule};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// What the step loop reads and advances.
pub(super) struct LoopCtx<'a> {
    pub(super) a: &'a TrainArgs,
    pub(super) r: &'a Resolved,
    pub(super) cfg: &'a GiddConfig,
    pub(super) sched: &'a Schedule,
    pub(super) no: &'a NoiseOpts,
    pub(super) oo: &'a OptimOpts,
    pub(super) dtype: DType,
    pub(super) eval: &'a EvalSet,
    pub(super) packer: &'a mut Packer,
    pub(super) start: usize,
    pub(super) accum: Option<Accum>,
    /// tokenizer.json copied into every checkpoint, so generate/eval find it there
    pub(super) tokenizer: Option<PathBuf>,
    /// True entropy (nats/token) of the held-out text, when the corpus's language is known
    /// (embedded corpus): printed beside every periodic held-out ELBO.
    pub(super) heldout_true_entropy: Option<f64>,
    /// What the run trains on (see [`super::data_record`]), written into every checkpoint.
    pub(super) data: serde_json::Value,
}

/// Gradient accumulation: programs for a micro-batch's gradients and for the update.
pub(super) struct Accum {
    pub(super) micro_prog: gidd_engine::Program,
    pub(super) update_prog: gidd_engine::Program,
    pub(super) micro: usize,
    pub(super) sum: bool,
}

/// Runs the training steps on any executor: parameters and optimizer state stay
/// where the executor keeps them and come back to the host only for evaluation
/// and checkpoints. Returns the last checkpoint written.
pub(super) fn train_loop<E: Executor>(
    exec: &E,
    prog: &gidd_engine::Program,
    c: &mut LoopCtx,
    params: &mut [(String, HostTensor)],
    mu: &mut [HostTensor],
    nu: &mut [HostTensor],
) -> Result<Option<PathBuf>> {
    let (a, r, cfg, oo) = (c.a, c.r, c.cfg, c.oo);
    let t0 = Instant::now();
    // With gradient accumulation the fused step is never run: it is not compiled.
    let mut lp = match c.accum {
        None => Some(exec.load(prog)?),
        Some(_) => None,
    };
    let mut accum = match &c.accum {
        Some(acc) => Some((
            exec.load(&acc.micro_prog)?,
            exec.load(&acc.update_prog)?,
            acc,
        )),
        None => None,
    };
    let shown = c.accum.as_ref().map_or(prog, |acc| &acc.micro_prog);
    eprintln!(
        "compiled the {} for {} in {:.1}s: {} ops, {:.1} MiB planned for intermediates on the cpu executor (vs {:.1} MiB unplanned)",
        if c.accum.is_some() { "micro-batch step and update" } else { "step" },
        exec.name(),
        t0.elapsed().as_secs_f64(),
        shown.nodes.len(),
        shown.planned_bytes() as f64 / (1 << 20) as f64,
        shown.unplanned_bytes() as f64 / (1 << 20) as f64
    );
    let plans = match (&lp, &accum) {
        (Some(l), _) => vec![("step", exec.memory_plan(l))],
        (None, Some((m, u, _))) => vec![
            ("micro-batch", exec.memory_plan(m)),
            ("update", exec.memory_plan(u)),
        ],
        (None, None) => vec![],
    };
    for (what, plan) in plans {
        if let Some(p) = plan {
            eprintln!("{what}: {p}");
        }
    }
    let up = |t: &HostTensor| exec.upload(t);
    let mut dp: Vec<E::Buffer> = params
        .iter()
        .map(|(_, t)| up(t))
        .collect::<gidd_engine::Result<_>>()?;
    let mut dmu: Vec<E::Buffer> = mu.iter().map(up).collect::<gidd_engine::Result<_>>()?;
    let mut dnu: Vec<E::Buffer> = nu.iter().map(up).collect::<gidd_engine::Result<_>>()?;
    let download_all = |dp: &[E::Buffer],
                        dmu: &[E::Buffer],
                        dnu: &[E::Buffer],
                        params: &mut [(String, HostTensor)],
                        mu: &mut [HostTensor],
                        nu: &mut [HostTensor]|
     -> Result<()> {
        for (i, (_, p)) in params.iter_mut().enumerate() {
            *p = exec.download(&dp[i])?;
            mu[i] = exec.download(&dmu[i])?;
            nu[i] = exec.download(&dnu[i])?;
        }
        Ok(())
    };
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(a.save_directory.join("metrics.jsonl"))?;
    let seed_t = up(&HostTensor::u32(
        vec![2],
        vec![a.seed as u32, (a.seed >> 32) as u32 ^ 0x9e37],
    )?)?;
    let master = c.dtype.accum();
    let flops_tok = 3.0 * cfg.flops_per_token(r.seq);
    // MFU against the executor's peak for the dtype's path (None where the device's peak
    // is unknown: no MFU is printed rather than a wrong one).
    let peak = exec.peak_flops(c.dtype);
    let mfu_pct = |flops: f64| match peak {
        Some(p) => format!("{:.0}%", 100.0 * flops / p),
        None => "n/a".into(),
    };
    let mut last_good: Option<PathBuf> = None;
    // The held-out evaluation program, compiled for `exec` at the first evaluation.
    let mut leval: Option<E::Loaded> = None;
    let run_start = Instant::now();
    let first = c.start;
    let progress = Progress::new(first, r.steps, "[{bar:16.cyan/blue}] {pos}/{len} {msg}");
    while c.start < r.steps {
        let k = c.start;
        let rows = c.packer.next_batch(r.batch)?;
        let labels = up(&rows_tensor(&rows, r.seq)?)?;
        // lr_bulk, lr_aux, b1t, b2t of update k + 1 (what `gidd audit` checks against optim_golden)
        let scalars = oo.step_scalars(k);
        let lr_b = scalars[0];
        let step_t = up(&HostTensor::u32(vec![], vec![k as u32])?)?;
        let sc = scalars
            .iter()
            .map(|&x| up(&scalar_in(x, master)))
            .collect::<gidd_engine::Result<Vec<_>>>()?;
        let t = Instant::now();
        let (m, state): (Vec<f64>, Vec<E::Buffer>) = match &mut accum {
            None => {
                let lp = lp.as_mut().context("the fused step was not compiled")?;
                let outs = {
                    let mut rest: Vec<&E::Buffer> = vec![&labels, &seed_t, &step_t];
                    rest.extend(sc.iter());
                    // The state is donated: a device executor updates it in place.
                    exec.run_donating(lp, take_state(&mut dp, &mut dmu, &mut dnu), &rest)?
                };
                let m = outs[..METRICS.len()]
                    .iter()
                    .map(|t| Ok(exec.download(t)?.to_f64_vec()[0]))
                    .collect::<Result<_>>()?;
                (m, outs.into_iter().skip(METRICS.len()).collect())
            }
            Some((lmicro, lupdate, acc)) => {
                // Gradient accumulation: micro-batch i is rows [i m, (i+1) m) of the batch and draws
                // that part of the full batch's noise (keyed by row), so only summation order differs.
                let n = r.batch / acc.micro;
                let mut sums = [0f64; 5];
                // The running gradient sums start at zero and stay with the executor.
                let mut gsum: Vec<E::Buffer> = params
                    .iter()
                    .map(|(_, p)| up(&HostTensor::zeros(p.dtype(), p.shape.clone())))
                    .collect::<gidd_engine::Result<_>>()?;
                for i in 0..n {
                    let li = up(&rows_tensor(
                        &rows[i * acc.micro..(i + 1) * acc.micro],
                        r.seq,
                    )?)?;
                    let r0 = up(&HostTensor::u32(vec![], vec![(i * acc.micro) as u32])?)?;
                    let mut rest: Vec<&E::Buffer> = dp.iter().collect();
                    rest.extend([&li, &seed_t, &step_t, &r0]);
                    let o = exec.run_donating(lmicro, std::mem::take(&mut gsum), &rest)?;
                    for (j, s) in sums.iter_mut().enumerate() {
                        *s += exec.download(&o[j])?.to_f64_vec()[0];
                    }
                    gsum = o.into_iter().skip(sums.len()).collect();
                }
                let count = sums[4].max(1.0);
                let scale = up(&scalar_in(if acc.sum { 1.0 } else { 1.0 / count }, master))?;
                let mut rest: Vec<&E::Buffer> = gsum.iter().collect();
                rest.extend(sc.iter());
                rest.push(&scale);
                let o =
                    exec.run_donating(lupdate, take_state(&mut dp, &mut dmu, &mut dnu), &rest)?;
                let gn = exec.download(&o[0])?.to_f64_vec()[0];
                let m = vec![
                    sums[0] / count,
                    sums[1] / count,
                    sums[2] / count,
                    sums[3] / count,
                    gn,
                    count,
                ];
                (m, o.into_iter().skip(1).collect())
            }
        };
        let dt = t.elapsed().as_secs_f64();
        if !m[0].is_finite() {
            bail!(
                "loss is {} at step {}: stopping; the last good checkpoint is {}",
                m[0],
                k + 1,
                last_good
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "none (no checkpoint saved yet)".into())
            );
        }
        let n = params.len();
        if state.len() != 3 * n {
            bail!(
                "the step returned {} state tensors, expected {}",
                state.len(),
                3 * n
            );
        }
        let mut it = state.into_iter();
        dp = it.by_ref().take(n).collect();
        dmu = it.by_ref().take(n).collect();
        dnu = it.collect();
        c.start += 1;
        let start = c.start;
        let tps = (r.batch * r.seq) as f64 / dt;
        let mfu_flops = flops_tok * tps;
        let line = serde_json::json!({
            "step": start, "loss": m[0], "elbo": m[1], "kl": m[2], "is": m[3], "lr": lr_b, "grad_norm": m[4],
            "tokens_per_s": tps, "gflop_s": mfu_flops / 1e9, "mfu": peak.map(|p| mfu_flops / p), "ms_per_step": dt * 1e3,
        });
        writeln!(metrics, "{line}")?;
        let done = (start - first) as f64 / (r.steps - first) as f64;
        let elapsed = run_start.elapsed().as_secs_f64();
        if let Progress::Bar(bar) = &progress {
            // Fits 80 columns; the message first, so one redraw shows it with the new position.
            bar.set_message(format!(
                "loss {:.3} elbo {:.3} {:.0} tok/s MFU {} eta {}",
                m[0],
                m[1],
                tps,
                mfu_pct(mfu_flops),
                hms(elapsed / done * (1.0 - done))
            ));
            bar.set_position(start as u64);
        } else if start.is_multiple_of((r.steps / 40).max(10))
            || start == first + 1
            || start == r.steps
        {
            eprintln!(
                "step {start:>6}/{} [{:>5.1}%] loss {:.4} elbo {:.4} kl {:.4} is {:.4} |g| {:.3} {:.0} tok/s {:.1} GFLOP/s MFU {} eta {:.0}s",
                r.steps, 100.0 * start as f64 / r.steps as f64, m[0], m[1], m[2], m[3], m[4], tps, mfu_flops / 1e9, mfu_pct(mfu_flops), elapsed / done * (1.0 - done)
            );
        }
        let every = a.eval_steps.unwrap_or(r.steps / 4);
        let want_eval = every > 0 && start.is_multiple_of(every) && start < r.steps;
        let want_save = start.is_multiple_of(r.save_steps) || start == r.steps;
        if want_save {
            download_all(&dp, &dmu, &dnu, params, mu, nu)?;
        }
        if want_eval {
            // On the executor, from the parameters where it keeps them.
            let le = match &mut leval {
                Some(l) => l,
                None => leval.insert(
                    exec.load(&step::build_eval(cfg, c.sched, c.no, r.batch, r.seq, c.dtype)?.0)?,
                ),
            };
            let refs: Vec<&E::Buffer> = dp.iter().collect();
            let e = elbo_on(exec, le, &refs, c.eval, r.batch, r.seq, HELDOUT_REPS)?.0;
            let (msg, line) = heldout_record(
                start,
                e,
                run_start.elapsed().as_secs_f64(),
                c.heldout_true_entropy,
            );
            writeln!(metrics, "{line}")?;
            progress.say(&msg);
        }
        if want_save {
            let dir = checkpoint::save(
                &a.save_directory,
                start,
                cfg,
                params,
                mu,
                nu,
                &c.packer.state(),
                &c.data,
                a.save_total_limit,
            )?;
            if let Some(t) = &c.tokenizer {
                let bytes = std::fs::read(t).with_context(|| format!("reading {}", t.display()))?;
                gidd_ports::write_atomic(&dir.join("tokenizer.json"), &bytes)?;
            }
            progress.say(&format!("  saved {}", dir.display()));
            last_good = Some(dir);
        }
    }
    if let Progress::Bar(bar) = &progress {
        bar.finish();
    }
    download_all(&dp, &dmu, &dnu, params, mu, nu)?;
    Ok(last_good)
}

/// Moves parameters, mu and nu out, in the step's input order, to donate them.
fn take_state<B>(dp: &mut Vec<B>, dmu: &mut Vec<B>, dnu: &mut Vec<B>) -> Vec<B> {
    let mut v = std::mem::take(dp);
    v.append(dmu);
    v.append(dnu);
    v
}
