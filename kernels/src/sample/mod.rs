//! One generation step's sampling per position, in f64 (SPEC.md section 6): tempering,
//! top-k/top-p, categorical draws and the ancestral posterior, and the fused step that
//! turns a position's logits into its drawn token (and the adaptive sampler's score).
//!
//! This is the generator's own host arithmetic (`gidd_model::sample::host` re-exports it),
//! so the cpu executor's fused step is token for token what generation drew before the
//! op existed. `sample.wgsl` implements the same contract on the GPU with parallel
//! reductions (see its header for where its sums may round differently).
//!
//! Per row, with logits lg [V] (f32), current token z, an optional banned id and a uniform
//! u in [0, 1): l = lg in f64 with lg[mask] (and lg[ban]) = -inf;
//! - adaptive: x_hat = softmax(l); token = draw(probs(l, T, top_k, top_p), u);
//!   score = max x_hat - x_hat[z];
//! - ancestral: token = z when the posterior keeps z (beta_pi[z] = 0), else a draw from
//!   p(z_s | z_t = z, probs(l, T, top_k, top_p)); score = 0.

mod exp;
#[cfg(test)]
mod tests;

pub use exp::exp_shifted_at;

use rayon::prelude::*;

/// Tempered, top-k/top-p filtered probabilities in f64 (one-hot argmax at temperature 0).
pub fn probs_with_topk_topp(
    logits: &[f64],
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
) -> Vec<f64> {
    let v = logits.len();
    if temperature == 0.0 {
        let mut best = 0;
        for i in 1..v {
            if logits[i] > logits[best] {
                best = i;
            }
        }
        let mut p = vec![0.0; v];
        p[best] = 1.0;
        return p;
    }
    let mut x: Vec<f64> = logits.iter().map(|l| l / temperature).collect();
    if let Some(k) = top_k.filter(|&k| k > 0 && k < v) {
        let mut s = x.clone();
        s.sort_by(|a, b| b.total_cmp(a));
        let kth = s[k - 1];
        x.iter_mut().for_each(|y| {
            if *y < kth {
                *y = f64::NEG_INFINITY
            }
        });
    }
    let softmax = |x: &[f64]| -> Vec<f64> {
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut e = vec![0.0; x.len()];
        exp_shifted_at(crate::simd::level(), x, m, &mut e);
        let z: f64 = e.iter().sum();
        e.into_iter().map(|y| y / z).collect()
    };
    if let Some(p) = top_p.filter(|&p| p > 0.0 && p < 1.0) {
        let mut idx: Vec<usize> = (0..v).collect();
        idx.sort_by(|&a, &b| x[b].total_cmp(&x[a]));
        let sorted: Vec<f64> = idx.iter().map(|&i| x[i]).collect();
        let sp = softmax(&sorted);
        let mut cum = 0.0;
        let mut keep = vec![true; v];
        for r in 0..v {
            // A token is removed when the mass before it already exceeds p (the first always stays).
            if r > 0 && cum > p {
                keep[r] = false;
            }
            cum += sp[r];
        }
        for r in 0..v {
            if !keep[r] {
                x[idx[r]] = f64::NEG_INFINITY;
            }
        }
    }
    softmax(&x)
}

/// A categorical draw in f64 with the uniform `u` in [0, 1).
pub fn draw_u(p: &[f64], u: f64) -> usize {
    let total: f64 = p.iter().sum();
    let mut u = u * total;
    for (i, &q) in p.iter().enumerate() {
        if u < q {
            return i;
        }
        u -= q;
    }
    p.iter().rposition(|&q| q > 0.0).unwrap_or(0)
}

/// The ancestral posterior p(z_s | z_t, x_hat) = q_s (a_t/a_s 1[z_t] + beta_pi[z_t]) / q_t[z_t]
/// (SPEC.md section 6) between alphas a_t = sigmoid(l_t) and a_s = sigmoid(l_s), in f64.
/// pi puts `pi_*[1]` on the mask id and `pi_*[0]` on every other id (f32, as the HF
/// sampler builds it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Posterior {
    pub a_t: f64,
    pub a_s: f64,
    pub pi_t: [f32; 2],
    pub pi_s: [f32; 2],
    pub mask_id: usize,
}

impl Posterior {
    fn pi(p: &[f32; 2], mask_id: usize, k: usize) -> f64 {
        p[usize::from(k == mask_id)] as f64
    }

    /// p(z_s = k) for every k, unnormalised only by rounding.
    pub fn probs(&self, xh: &[f64], zt: usize) -> Vec<f64> {
        let c = self.at(xh, zt);
        (0..xh.len()).map(|k| self.prob(xh, c, k)).collect()
    }

    /// The terms that depend on z_t only: (beta_pi[z_t], q_t[z_t]).
    fn at(&self, xh: &[f64], zt: usize) -> (usize, f64, f64) {
        let a_t = self.a_t;
        let bpz = self.beta_pi(zt);
        let qtz = a_t * xh[zt] + (1.0 - a_t) * Self::pi(&self.pi_t, self.mask_id, zt);
        (zt, bpz, qtz)
    }

    /// Whether `draw(xh, zt, u)` is `zt` for every `xh` and `u`: true when
    /// beta_pi[z_t] = 0 (a token already denoised under masked noise, whose pi puts no mass
    /// on it). Then every k != z_t has p = (q_s * 0 / q_t[z_t]).max(0) = 0 (NaN from 0/0
    /// also maxes to 0), so the draw lands on z_t or, with p[z_t] not positive, falls back
    /// to it.
    pub fn keeps(&self, zt: usize) -> bool {
        self.beta_pi(zt) == 0.0
    }

    /// beta_pi[z_t] = (1 - a_t) pi_t[z_t] - (a_t / a_s)(1 - a_s) pi_s[z_t].
    fn beta_pi(&self, zt: usize) -> f64 {
        let (a_t, a_s) = (self.a_t, self.a_s);
        (1.0 - a_t) * Self::pi(&self.pi_t, self.mask_id, zt)
            - (a_t / a_s) * (1.0 - a_s) * Self::pi(&self.pi_s, self.mask_id, zt)
    }

    fn prob(&self, xh: &[f64], (zt, bpz, qtz): (usize, f64, f64), k: usize) -> f64 {
        let a_s = self.a_s;
        let qs = a_s * xh[k] + (1.0 - a_s) * Self::pi(&self.pi_s, self.mask_id, k);
        let qts = if k == zt { self.a_t / a_s } else { 0.0 } + bpz;
        (qs * qts / qtz).max(0.0)
    }

    /// A draw from p(z_s) with uniform `u`, without storing p (two passes over V).
    pub fn draw(&self, xh: &[f64], zt: usize, u: f64) -> usize {
        let c = self.at(xh, zt);
        let v = xh.len();
        let total: f64 = (0..v).map(|k| self.prob(xh, c, k)).sum();
        let mut u = u * total;
        let mut last = zt;
        for k in 0..v {
            let q = self.prob(xh, c, k);
            if q > 0.0 {
                if u < q {
                    return k;
                }
                u -= q;
                last = k;
            }
        }
        last
    }
}

/// Which sampler a step runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// a draw from the tempered, filtered predictions and the score max x_hat - x_hat[z]
    Adaptive,
    /// a draw from the ancestral posterior (score 0)
    Ancestral(Posterior),
}

/// One step's constants: the mask id (never predicted), temperature (0 = argmax), top-k
/// (None or 0 = none) and top-p (None or outside (0, 1) = none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub mask_id: usize,
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub mode: Mode,
}

/// A uniform in [0, 1) on the 2^-53 grid (as `gidd_engine::rng` draws them) as two words
/// a GPU without f64 loads exactly: the 53-bit numerator's top 27 bits and low 26 bits.
pub fn pack_uniform(u: f64) -> [i32; 2] {
    let m = (u * (1u64 << 53) as f64) as u64;
    [(m >> 26) as i32, (m & ((1 << 26) - 1)) as i32]
}

pub fn unpack_uniform(hi: i32, lo: i32) -> f64 {
    (((hi as u32 as u64) << 26) | lo as u32 as u64) as f64 / (1u64 << 53) as f64
}

/// A row's f64 logits with the mask and the banned id (when in range) at -inf.
pub fn predictable(row: &[f32], mask_id: usize, ban: Option<usize>) -> Vec<f64> {
    let mut l: Vec<f64> = row.iter().map(|&y| y as f64).collect();
    l[mask_id] = f64::NEG_INFINITY;
    if let Some(b) = ban.filter(|&b| b < l.len()) {
        l[b] = f64::NEG_INFINITY;
    }
    l
}

/// One position's step: (drawn token, score), the generator's arithmetic exactly.
pub fn step_row(s: &Step, row: &[f32], z: usize, ban: Option<usize>, u: f64) -> (usize, f64) {
    match s.mode {
        Mode::Ancestral(post) => {
            if post.keeps(z) {
                // the draw is z whatever x_hat: no softmax to compute
                return (z, 0.0);
            }
            let l = predictable(row, s.mask_id, ban);
            let xh = probs_with_topk_topp(&l, s.temperature, s.top_k, s.top_p);
            (post.draw(&xh, z, u), 0.0)
        }
        Mode::Adaptive => {
            let l = predictable(row, s.mask_id, ban);
            let xh = probs_with_topk_topp(&l, 1.0, None, None);
            let pmax = xh.iter().cloned().fold(0.0, f64::max);
            let plain = s.temperature == 1.0 && s.top_k.is_none() && s.top_p.is_none();
            let token = if plain {
                draw_u(&xh, u) // the tempered probs are x_hat itself
            } else {
                draw_u(
                    &probs_with_topk_topp(&l, s.temperature, s.top_k, s.top_p),
                    u,
                )
            };
            (token, pmax - xh[z])
        }
    }
}

/// The fused step over rows: logits [R, V]; `rows` [R, 4] = (z, banned id or -1, packed
/// uniform hi, lo); writes `out` [R, 3] = (token, score's f64 bits high word, low word).
/// Callers check that every z is in [0, V).
pub fn step(s: &Step, v: usize, logits: &[f32], rows: &[i32], out: &mut [i32]) {
    out.par_chunks_mut(3)
        .zip(rows.par_chunks(4))
        .enumerate()
        .for_each(|(r, (o, ri))| {
            let ban = usize::try_from(ri[1]).ok();
            let u = unpack_uniform(ri[2], ri[3]);
            let (t, score) = step_row(s, &logits[r * v..(r + 1) * v], ri[0] as usize, ban, u);
            let bits = score.to_bits();
            o[0] = t as i32;
            o[1] = (bits >> 32) as u32 as i32;
            o[2] = bits as u32 as i32;
        });
}

/// The score of an output row of [`step`].
pub fn score_of(out_row: &[i32]) -> f64 {
    f64::from_bits(((out_row[1] as u32 as u64) << 32) | out_row[2] as u32 as u64)
}
