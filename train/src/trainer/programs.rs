//! The trainer's programs on their own, for tools that inspect rather than train
//! (`gidd export-hlo`, `gidd check --dump-ptx`).

use super::{resolve, setup, step, TrainArgs};
use anyhow::Result;
use gidd_engine::DType;

/// The training step program the flags describe (for `gidd export-hlo`).
pub fn step_program(a: &TrainArgs) -> Result<gidd_engine::Program> {
    let r = resolve(a)?;
    let st = setup(a, &r, a.vocab_size)?;
    let dtype = a.dtype.dtype();
    Ok(step::build_step(
        &st.cfg, &st.sched, &st.no, &st.oo, &st.lo, r.batch, r.seq, dtype,
    )?
    .0)
}

/// The noise draws of the training step the flags describe, alone (a program from labels,
/// seed and step to z, log-SNR, noise mask and attention mask): what the step spends on
/// sampling noise, for `gidd check --dump-ptx` and the cuda executor's launch counts.
pub fn noise_program(a: &TrainArgs) -> Result<gidd_engine::Program> {
    let r = resolve(a)?;
    let st = setup(a, &r, a.vocab_size)?;
    let g = gidd_engine::Graph::new();
    let labels = g.input("labels", &[r.batch, r.seq], DType::I32);
    let seed = g.input("seed", &[2], DType::U32);
    let step = g.input("step", &[], DType::U32);
    let row0 = g.scalar(0.0, DType::U32);
    let master = a.dtype.dtype().accum();
    let nb =
        gidd_model::noise::noisy_batch(&st.sched, &st.no, &labels, &seed, &step, &row0, master)?;
    let outs = [nb.z, nb.log_snr, nb.noise_mask, nb.attn];
    Ok(gidd_engine::Program::compile(
        &outs,
        &["labels", "seed", "step"],
    )?)
}
