//! Sampler steps as graph functions (SPEC.md section 6), matching the HF port:
//! alpha = sigmoid(l) unshifted and unclipped; pi uses sigmoid(l + noise_type).

pub mod host;

use crate::config::GiddConfig;
use gidd_engine::{DType, HostTensor, Result, Tensor};

fn sigmoid32(x: f64) -> f32 {
    1.0 / (1.0 + (-(x as f32)).exp())
}

/// pi(l) over the vocabulary as the HF sampler builds it, in f32.
pub fn pi_vec(cfg: &GiddConfig, l: f64, mask_id: usize) -> Vec<f32> {
    let v = cfg.vocab_size;
    let a = sigmoid32(l + cfg.noise_type);
    let u = 1.0f32 / (v as f32 - 1.0);
    let mut pi: Vec<f32> = (0..v).map(|_| a * u).collect();
    pi[mask_id] = 1.0 - a;
    pi
}

/// logits with the mask column at -inf (never predicted).
fn mask_logits(logits: &Tensor, mask_id: usize) -> Result<Tensor> {
    let g = logits.graph();
    let is_mask = g
        .iota(logits.shape(), logits.rank() - 1, DType::I32)?
        .eq_scalar(mask_id as f64)?;
    is_mask.select(&logits.full_like(f64::NEG_INFINITY), logits)
}

/// The ancestral step's (x_hat, p(z_s | z_t)) for logits [B, L, V] at temperature 1.
pub fn ancestral_probs(
    cfg: &GiddConfig,
    logits: &Tensor,
    z_t: &Tensor,
    lt: f64,
    ls: f64,
) -> Result<(Tensor, Tensor)> {
    let g = logits.graph();
    let v = cfg.vocab_size;
    let x_hat = mask_logits(logits, 3)?.softmax()?;
    let (a_s, a_t) = (sigmoid32(ls), sigmoid32(lt));
    let (b_s, b_t) = (1.0 - a_s, 1.0 - a_t);
    let a_ts = a_t / a_s;
    let (pi_s, pi_t) = (pi_vec(cfg, ls, 3), pi_vec(cfg, lt, 3));
    let beta_pi: Vec<f32> = (0..v)
        .map(|i| b_t * pi_t[i] - a_ts * b_s * pi_s[i])
        .collect();
    // the reference's f32 host constants, in the logits' precision (f64 in an f64 audit)
    let vecc = |x: Vec<f32>| {
        g.constant(HostTensor {
            shape: vec![v],
            data: gidd_engine::Data::F32(x),
        })
        .to(logits.dtype())
    };
    let q_t = x_hat
        .mul_scalar(a_t as f64)?
        .add(&vecc(pi_t.iter().map(|p| b_t * p).collect())?)?;
    let q_s = x_hat
        .mul_scalar(a_s as f64)?
        .add(&vecc(pi_s.iter().map(|p| b_s * p).collect())?)?;
    let q_t_z = q_t.take_last(z_t)?; // (B, L)
    let bp_z = vecc(beta_pi)?.gather(0, z_t)?; // (B, L)
    let shape = [z_t.shape(), &[1]].concat();
    let onehot = z_t.one_hot(v, logits.dtype())?;
    let q_ts = onehot
        .mul_scalar(a_ts as f64)?
        .add(&bp_z.reshape(&shape)?)?;
    let p = q_s.mul(&q_ts)?.div(&q_t_z.reshape(&shape)?)?;
    Ok((x_hat, p))
}

/// The adaptive sampler's score p_delta = (max x_hat - x_hat[z]) p_noise, p_noise = pi(l)[z]
/// normalised over the positions of the block.
pub fn adaptive_scores(cfg: &GiddConfig, logits: &Tensor, z: &Tensor, l: f64) -> Result<Tensor> {
    let g = logits.graph();
    let v = cfg.vocab_size;
    let pi = g
        .constant(HostTensor {
            shape: vec![v],
            data: gidd_engine::Data::F32(pi_vec(cfg, l, 3)),
        })
        .to(logits.dtype())?;
    let pn = pi.gather(0, z)?; // (B, L)
    let pn = pn.div(&pn.sum_last(true)?)?;
    let x_hat = mask_logits(logits, 3)?.softmax()?;
    let p_max = x_hat.max(&[2], false)?;
    let p_cur = x_hat.take_last(z)?;
    p_max.sub(&p_cur)?.mul(&pn)
}
