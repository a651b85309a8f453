//! The training batch's noise (SPEC.md section 4), drawn in the graph from the
//! counter-based generator keyed by (seed, step, position): a step is
//! reproducible and identical on every executor.

use crate::Schedule;
use gidd_engine::api::{randint, uniform_rows};
use gidd_engine::{DType, Graph, Result, Tensor};

/// Noise options, named as the reference's args.
#[derive(Clone, Debug)]
pub struct NoiseOpts {
    pub p_independent: f64,
    pub p_linear: f64,
    pub p_prompt: f64,
    pub p_infilling: f64,
    pub causal_prompt_attn: bool,
    /// log-SNR written on clean positions (the reference's prepare_batch uses 10.0)
    pub clean_log_snr: f64,
}

/// What the model and loss consume.
pub struct NoisyBatch {
    /// z [B, L] i32
    pub z: Tensor,
    /// l [B, L] f32 (f64 in an f64 run)
    pub log_snr: Tensor,
    /// noise mask [B, L] f32 or f64 (1 = noised, in the loss)
    pub noise_mask: Tensor,
    /// attention mask [B, L, L] bool
    pub attn: Tensor,
}

/// Draws the noise for labels x [B, L]. `seed` is u32 [2], `step` a u32 scalar, `row0`
/// (u32 scalar) the batch row of x's first row: draws are keyed by (seed, step, row, column),
/// so micro-batches of a batch draw exactly the full batch's noise. `master` is the
/// precision the draws are turned into log-SNRs and probabilities in: f32, as the
/// reference does, or f64 in an f64 run (the 24-bit uniforms are exact in both).
pub fn noisy_batch(
    s: &Schedule,
    o: &NoiseOpts,
    x: &Tensor,
    seed: &Tensor,
    step: &Tensor,
    row0: &Tensor,
    master: DType,
) -> Result<NoisyBatch> {
    let g: Graph = x.graph().clone();
    let (b, l) = (x.dim(0), x.dim(1));
    // Independent streams per purpose: stream = step * 16 + k.
    let stream = |k: u32| -> Result<Tensor> {
        step.mul(&g.scalar(16.0, DType::U32))?
            .add(&g.scalar(k as f64, DType::U32))
    };
    let u = |shape: &[usize], k: u32| -> Result<Tensor> {
        let cols = if shape.len() == 2 { shape[1] } else { 1 };
        uniform_rows(&g, shape[0], cols, seed, &stream(k)?, row0)?
            .reshape(shape)?
            .to(master)
    };
    let row = |t: &Tensor| t.reshape(&[b, 1]); // (B, 1)

    // log-SNR: per token, or the row's first value, or linear in position.
    let (t_min, t_max) = s.t_range();
    let t = u(&[b, l], 0)?
        .mul_scalar(t_max - t_min)?
        .add_scalar(t_min)?;
    let l_tok = s.log_snr_from_time(&t)?;
    let indep = row(&u(&[b], 1)?.lt_scalar(o.p_independent)?)?;
    let first = l_tok.narrow(1, 0, 1)?; // (B, 1)
    let mut log_snr = indep.select(&l_tok, &first)?;
    if o.p_linear > 0.0 {
        let lin_t: Vec<f32> = (1..=l).map(|i| i as f32 / (l + 1) as f32).collect();
        let lt = g
            .constant(gidd_engine::HostTensor::f32(vec![1, l], lin_t)?)
            .to(master)?;
        let l_lin = s.log_snr_from_time(&lt)?;
        let lin = row(&u(&[b], 2)?.lt_scalar(o.p_linear)?)?;
        log_snr = lin.select(&l_lin, &log_snr)?;
    }

    // Noise mask: prompt prefixes (p <= frac (L-1) clean) and infilling.
    let pos = g.iota(&[b, l], 1, master)?;
    let mut clean = g.splat(0.0, &[b, l], DType::Bool);
    if o.p_prompt > 0.0 {
        let prompt_rows = row(&u(&[b], 3)?.lt_scalar(o.p_prompt)?)?;
        // frac = arccos(1 - 2r) / pi (max_cond_frac 1): arccos via atan2-free identity acos(y) = 2 atan(sqrt((1-y)/(1+y)))
        let r = row(&u(&[b], 4)?)?;
        let frac = acos_over_pi(&r.mul_scalar(-2.0)?.add_scalar(1.0)?)?;
        let cut = frac.mul_scalar((l - 1) as f64)?;
        let pre = pos.compare(&cut, gidd_engine::op::CmpOp::Le)?;
        clean = prompt_rows.select(&pre, &clean)?;
    }
    if o.p_infilling > 0.0 {
        let rows = row(&u(&[b], 5)?.lt_scalar(o.p_infilling)?)?;
        let frac = row(&u(&[b], 6)?)?;
        let pick = u(&[b, l], 7)?.lt(&frac)?;
        clean = rows.select(&pick, &clean)?;
    }
    let noisy = clean.not()?;
    let nm = noisy.to(master)?;
    let log_snr = noisy.select(&log_snr, &log_snr.full_like(o.clean_log_snr))?;

    let z = draw_marginal(
        s,
        x,
        &log_snr,
        &noisy,
        [u(&[b, l], 8)?, u(&[b, l], 9)?, u(&[b, l], 10)?],
    )?;

    // Attention: noisy queries see every key; clean queries see clean keys (block) or clean keys causally.
    let nq = nm.reshape(&[b, l, 1])?;
    let mut attn = block_attention(&nm)?;
    if o.causal_prompt_attn {
        let qi = g.iota(&[b, l, l], 1, DType::I32)?;
        let ki = g.iota(&[b, l, l], 2, DType::I32)?;
        let causal = ki.compare(&qi, gidd_engine::op::CmpOp::Le)?;
        let q_noisy = nq.broadcast_to(&[b, l, l])?.eq_scalar(1.0)?;
        attn = q_noisy.select(
            &g.splat(1.0, &[b, l, l], DType::Bool),
            &causal.binary(&attn, gidd_engine::op::BinaryOp::And)?,
        )?;
    }
    Ok(NoisyBatch {
        z,
        log_snr,
        noise_mask: nm,
        attn,
    })
}

/// arccos(y) / pi for y in [-1, 1], from primitives: acos(y) = 2 atan(sqrt((1-y)/(1+y))),
/// atan by range reduction and its odd series (error < 1e-6, plenty for a prompt cut).
fn acos_over_pi(y: &Tensor) -> Result<Tensor> {
    let r = y
        .rsub_scalar(1.0)?
        .div(&y.add_scalar(1.0)?.max_scalar(1e-12)?)?
        .sqrt()?; // tan(acos(y)/2) >= 0
                  // atan(r) = pi/2 - atan(1/r) for r > 1; then atan(x) = 2 atan(x / (1 + sqrt(1 + x^2))).
    let big = r.compare(&r.full_like(1.0), gidd_engine::op::CmpOp::Gt)?;
    let inv = r.full_like(1.0).div(&r.max_scalar(1e-12)?)?;
    let x = big.select(&inv, &r)?;
    let h = x.div(&x.square()?.add_scalar(1.0)?.sqrt()?.add_scalar(1.0)?)?; // |h| <= tan(pi/8)
    let h2 = h.square()?;
    // atan(h) = h - h^3/3 + h^5/5 - ... (|h| <= 0.415: 9 terms give < 1e-7)
    let mut term = h.clone();
    let mut sum = h.clone();
    for k in 1..9 {
        term = term.mul(&h2)?.neg()?;
        sum = sum.add(&term.mul_scalar(1.0 / (2 * k + 1) as f64)?)?;
    }
    let at = sum.mul_scalar(2.0)?;
    let at = big.select(&at.rsub_scalar(std::f64::consts::FRAC_PI_2)?, &at)?;
    at.mul_scalar(2.0 / std::f64::consts::PI)
}

/// z ~ q_t(. | x) at the noisy positions (x elsewhere), from three uniforms of x's shape:
/// keep x w.p. alpha; else a uniform id over all V w.p. beta_u; else the mask.
pub fn draw_marginal(
    s: &Schedule,
    x: &Tensor,
    log_snr: &Tensor,
    noisy: &Tensor,
    [u_keep, u_unif, u_id]: [Tensor; 3],
) -> Result<Tensor> {
    let keep = u_keep.lt(&s.alpha(log_snr)?)?;
    let unif = u_unif.lt(&s.beta_u(log_snr)?)?;
    let rand_id = randint(&u_id, s.vocab_size)?;
    let mask = x.graph().splat(s.mask_id as f64, x.shape(), DType::I32);
    let noise_id = unif.select(&rand_id, &mask)?;
    noisy.select(&keep.select(x, &noise_id)?, x)
}

/// The block attention mask of a noise mask [B, L] (1 = noisy): att[q, k] = noise[q] >= noise[k],
/// so noisy queries see every key and clean queries see the clean keys.
pub fn block_attention(noise_mask: &Tensor) -> Result<Tensor> {
    let (b, l) = (noise_mask.dim(0), noise_mask.dim(1));
    noise_mask
        .reshape(&[b, l, 1])?
        .ge(&noise_mask.reshape(&[b, 1, l])?)
}
