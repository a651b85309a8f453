//! Host model of the attention kernels' contract (attention/attention.ptx and
//! attention_rows.ptx), following their algorithm: the blocks of the launch's grid, a warp
//! per query (or key), 32-row tiles, the online softmax with its rescaling, f32 dot products
//! in dim order, the backward's (D, lse', fill) rows. The host's exp stands for ex2.approx.
//! It checks the lowering and the algorithm against the cpu executor, not the PTX.

#![allow(clippy::unwrap_used)]

use crate::attention::{ROWS_PER_BLOCK, TILE};
use crate::emulate::Mem;
use crate::emulate_fused::{f32_at, put_f32};
use crate::plan::Launch;
use std::collections::HashMap;

struct Head {
    lq: u64,
    lk: u64,
    d: u64,
    scale: f32,
    cap: Option<f32>,
    /// (batch, head) and the batch of the mask
    bh: u64,
    b: u64,
}

/// tanh as tanh_f computes it.
fn tanh_f(x: f32) -> f32 {
    let e = (-2.0 * x.abs()).exp();
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

impl Head {
    fn new(a: &HashMap<&str, u64>, bh: u64) -> Head {
        let f = |k: &str| f32::from_bits(a[k] as u32);
        Head {
            lq: a["lq"],
            lk: a["lk"],
            d: a["dim"],
            scale: f("scale"),
            cap: (a["capped"] != 0).then(|| f("cap")),
            bh,
            b: bh / a["heads"],
        }
    }
    /// Row r of the head's [rows, D] block of the matrix at p.
    fn row(&self, m: &mut Mem, p: u64, rows: u64, r: u64) -> Vec<f32> {
        let base = p + 4 * (self.bh * rows + r) * self.d;
        (0..self.d).map(|t| f32_at(m, base, t)).collect()
    }
    fn score(&self, s: f32) -> f32 {
        let s = s * self.scale;
        match self.cap {
            Some(c) => c * tanh_f(s / c),
            None => s,
        }
    }
    /// d score / d raw dot (dscore).
    fn dscore(&self, s: f32) -> f32 {
        match self.cap {
            Some(c) => {
                let t = tanh_f(s * self.scale / c);
                (-t).mul_add(t, 1.0) * self.scale
            }
            None => self.scale,
        }
    }
    fn unmasked(&self, m: &mut Mem, mask: u64, qi: u64, kj: u64) -> bool {
        m.rd(mask + (self.b * self.lq + qi) * self.lk + kj, 1) != 0
    }
}

fn dot(x: &[f32], y: &[f32]) -> f32 {
    x.iter().zip(y).fold(0.0, |s, (a, b)| a.mul_add(*b, s))
}

/// The rows each warp of the launch owns: (bh, row) for every block and warp inside `n`.
fn owned(l: &Launch, n: u64) -> Vec<(u64, u64)> {
    let mut v = vec![];
    for bh in 0..l.grid[1] as u64 {
        for bx in 0..l.grid[0] as u64 {
            for w in 0..ROWS_PER_BLOCK as u64 {
                let r = bx * ROWS_PER_BLOCK as u64 + w;
                if r < n {
                    v.push((bh, r));
                }
            }
        }
    }
    v
}

pub fn attention(m: &mut Mem, l: &Launch, a: &HashMap<&str, u64>) {
    match l.entry {
        "attention_bwd_rows" => rows(m, a),
        "attention_fwd" => {
            for (bh, qi) in owned(l, a["lq"]) {
                forward(m, a, &Head::new(a, bh), qi);
            }
        }
        "attention_bwd_dkdv" => {
            for (bh, kj) in owned(l, a["lk"]) {
                dkdv(m, a, &Head::new(a, bh), kj);
            }
        }
        _ => {
            for (bh, qi) in owned(l, a["lq"]) {
                dq(m, a, &Head::new(a, bh), qi);
            }
        }
    }
}

fn forward(m: &mut Mem, a: &HashMap<&str, u64>, h: &Head, qi: u64) {
    let q = h.row(m, a["q"], h.lq, qi);
    let (mut mx, mut l) = (f32::NEG_INFINITY, 0f32);
    let mut o = vec![0f32; h.d as usize];
    let open = (0..h.lk).any(|kj| h.unmasked(m, a["mask"], qi, kj));
    for j0 in (0..h.lk).step_by(TILE) {
        let keys: Vec<u64> = (j0..(j0 + TILE as u64).min(h.lk)).collect();
        // a fully masked tile of a row with unmasked keys elsewhere is skipped
        if open && !keys.iter().any(|&kj| h.unmasked(m, a["mask"], qi, kj)) {
            continue;
        }
        let s: Vec<f32> = keys
            .iter()
            .map(|&kj| {
                let k = h.row(m, a["k"], h.lk, kj);
                if h.unmasked(m, a["mask"], qi, kj) {
                    h.score(dot(&q, &k))
                } else {
                    f32::MIN
                }
            })
            .collect();
        let mn = s.iter().fold(mx, |x, &y| x.max(y));
        let corr = (mx - mn).exp();
        let p: Vec<f32> = s.iter().map(|&x| (x - mn).exp()).collect();
        l = l.mul_add(corr, p.iter().sum::<f32>());
        mx = mn;
        o.iter_mut().for_each(|x| *x *= corr);
        for (&kj, &pj) in keys.iter().zip(&p) {
            let v = h.row(m, a["v"], h.lk, kj);
            o.iter_mut()
                .zip(&v)
                .for_each(|(x, &y)| *x = pj.mul_add(y, *x));
        }
    }
    let inv = 1.0 / l;
    let base = a["out"] + 4 * (h.bh * h.lq + qi) * h.d;
    for (t, x) in o.iter().enumerate() {
        put_f32(m, base, t as u64, x * inv);
    }
    put_f32(m, a["lse"], h.bh * h.lq + qi, l.ln() + mx);
}

/// attention_bwd_rows: ST[r] = (D, lse', fill).
fn rows(m: &mut Mem, a: &HashMap<&str, u64>) {
    let (lq, lk, d) = (a["lq"], a["lk"], a["dim"]);
    for r in 0..a["rows"] {
        let at = |p: u64, t: u64| p + 4 * (r * d + t);
        let mut dd = 0f32;
        for t in 0..d {
            let (o, g) = (
                f32_at(m, at(a["out"], t), 0),
                f32_at(m, at(a["dout"], t), 0),
            );
            dd = o.mul_add(g, dd);
        }
        let (b, qi) = (r / lq / a["heads"], r % lq);
        let any = (0..lk).any(|kj| m.rd(a["mask"] + (b * lq + qi) * lk + kj, 1) != 0);
        let (ls, fill) = if any {
            (f32_at(m, a["lse"], r), f32::NEG_INFINITY)
        } else {
            ((lk as f32).ln(), 0.0)
        };
        for (i, x) in [dd, ls, fill].into_iter().enumerate() {
            put_f32(m, a["st"] + 12 * r, i as u64, x);
        }
    }
}

/// (p, ds) of query qi and key kj, as the backward kernels recompute them.
fn p_ds(m: &mut Mem, a: &HashMap<&str, u64>, h: &Head, qi: u64, kj: u64) -> (f32, f32) {
    let (q, k) = (h.row(m, a["q"], h.lq, qi), h.row(m, a["k"], h.lk, kj));
    let (g, v) = (h.row(m, a["dout"], h.lq, qi), h.row(m, a["v"], h.lk, kj));
    let (raw, dp) = (dot(&q, &k), dot(&g, &v));
    let st = a["st"] + 12 * (h.bh * h.lq + qi);
    let (dd, ls, fill) = (f32_at(m, st, 0), f32_at(m, st, 1), f32_at(m, st, 2));
    let (s, gs) = if h.unmasked(m, a["mask"], qi, kj) {
        (h.score(raw), h.dscore(raw))
    } else {
        (fill, 0.0)
    };
    let p = (s - ls).exp();
    (p, p * (dp - dd) * gs)
}

fn store_row(m: &mut Mem, p: u64, h: &Head, rows: u64, r: u64, x: &[f32]) {
    let base = p + 4 * (h.bh * rows + r) * h.d;
    for (t, &y) in x.iter().enumerate() {
        put_f32(m, base, t as u64, y);
    }
}

fn dkdv(m: &mut Mem, a: &HashMap<&str, u64>, h: &Head, kj: u64) {
    let (mut dk, mut dv) = (vec![0f32; h.d as usize], vec![0f32; h.d as usize]);
    for qi in 0..h.lq {
        // the kernel skips query tiles where no pair is unmasked and no row fully masked
        let i0 = qi - qi % TILE as u64;
        let needed = (i0..(i0 + TILE as u64).min(h.lq)).any(|i| {
            h.unmasked(m, a["mask"], i, kj) || f32_at(m, a["st"] + 12 * (h.bh * h.lq + i), 2) == 0.0
        });
        if !needed {
            continue;
        }
        let (p, ds) = p_ds(m, a, h, qi, kj);
        let (q, g) = (h.row(m, a["q"], h.lq, qi), h.row(m, a["dout"], h.lq, qi));
        dk.iter_mut()
            .zip(&q)
            .for_each(|(x, &y)| *x = ds.mul_add(y, *x));
        dv.iter_mut()
            .zip(&g)
            .for_each(|(x, &y)| *x = p.mul_add(y, *x));
    }
    store_row(m, a["dk"], h, h.lk, kj, &dk);
    store_row(m, a["dv"], h, h.lk, kj, &dv);
}

fn dq(m: &mut Mem, a: &HashMap<&str, u64>, h: &Head, qi: u64) {
    let mut dq = vec![0f32; h.d as usize];
    let open = f32_at(m, a["st"] + 12 * (h.bh * h.lq + qi), 2) == f32::NEG_INFINITY;
    for kj in 0..h.lk {
        // the kernel skips key tiles with no unmasked key in rows that are not fully masked
        let j0 = kj - kj % TILE as u64;
        if open && !(j0..(j0 + TILE as u64).min(h.lk)).any(|j| h.unmasked(m, a["mask"], qi, j)) {
            continue;
        }
        let (_, ds) = p_ds(m, a, h, qi, kj);
        let k = h.row(m, a["k"], h.lk, kj);
        dq.iter_mut()
            .zip(&k)
            .for_each(|(x, &y)| *x = ds.mul_add(y, *x));
    }
    store_row(m, a["dq"], h, h.lq, qi, &dq);
}
