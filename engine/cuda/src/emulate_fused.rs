//! Host models of the fused PTX kernels' contracts (their header comments), called by
//! crate::emulate for their entries. Each follows its kernel's algorithm (the same passes,
//! thread strides, online statistics and accumulation precision) with the host's exp and
//! ln where the PTX uses ex2.approx / lg2.approx, so that plan tests against the cpu executor
//! check the lowering and the algorithm, not the PTX instructions (no GPU has run those).

#![allow(clippy::unwrap_used)]

use crate::emulate::Mem;
use std::collections::HashMap;

/// Threads of a loss block (diffusion_kl.ptx strides the vocabulary by this).
const T: u32 = crate::fused::LOSS_THREADS;
const MASKED: f32 = -1e6;
const TINY: f32 = f32::MIN_POSITIVE;

pub(crate) fn f32_at(m: &mut Mem, p: u64, i: u64) -> f32 {
    f32::from_bits(m.rd(p + 4 * i, 4) as u32)
}

pub(crate) fn put_f32(m: &mut Mem, p: u64, i: u64, v: f32) {
    m.wr(p + 4 * i, 4, v.to_bits() as u64);
}

/// load_id: an id of dtype code kind (2 i32, 3 u32, 4 i64), clamped to [0, V).
fn load_id(m: &mut Mem, p: u64, row: u64, kind: u64, vocab: u64) -> u64 {
    let id = match kind {
        4 => m.rd(p + 8 * row, 8) as i64,
        2 => m.rd(p + 4 * row, 4) as u32 as i32 as i64,
        _ => m.rd(p + 4 * row, 4) as u32 as i64,
    };
    id.min(vocab as i64 - 1).max(0) as u64
}

fn safe_ln(y: f32) -> f32 {
    if y > 0.0 {
        y.max(TINY).ln()
    } else {
        TINY.ln()
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// (max, sum) pairs merged as block_stats does.
fn merge((m1, s1): (f32, f64), (m2, s2): (f32, f64)) -> (f32, f64) {
    let mx = m1.max(m2);
    (
        mx,
        s1 * (m1 - mx).exp() as f64 + s2 * (m2 - mx).exp() as f64,
    )
}

/// The constants of one token (the entry's prologue after pass 1).
struct Row {
    mask: u64,
    xi: u64,
    zi: u64,
    alpha: f32,
    mx: f32,
    inv: f32,
    ca: f32,
    rest_o: f32,
    dm: f32,
    lq: [f32; 3],
    eq: [f32; 3],
}

impl Row {
    fn numer(&self, v: u64, lg: f32) -> f32 {
        let x = if v == self.mask { MASKED } else { lg };
        (x - self.mx).exp()
    }
    fn p_of(&self, v: u64, e: f32) -> f32 {
        let p = self.ca.mul_add(e, self.rest_o);
        if v == self.mask {
            p + self.dm
        } else {
            p
        }
    }
    /// Which of q's values id v has: at x first, then the mask, else elsewhere.
    fn slot(&self, v: u64) -> usize {
        if v == self.xi {
            1
        } else if v == self.mask {
            2
        } else {
            0
        }
    }
}

/// Pass 1 and the token's constants.
fn row_consts(m: &mut Mem, a: &HashMap<&str, u64>, row: u64) -> Row {
    let (vocab, mask) = (a["vocab"], a["mask"]);
    let base = a["lg"] + 4 * row * vocab;
    let mut st = vec![(MASKED, 0f64); T as usize];
    for (t, s) in st.iter_mut().enumerate() {
        let mut v = t as u64;
        while v < vocab {
            let x = if v == mask {
                MASKED
            } else {
                f32_at(m, base, v)
            };
            if x > s.0 {
                s.1 *= (s.0 - x).exp() as f64;
                s.0 = x;
            }
            s.1 += (x - s.0).exp() as f64;
            v += T as u64;
        }
    }
    let (mx, sum) = st.into_iter().reduce(merge).unwrap();
    let f = |k: &str| f32::from_bits(a[k] as u32);
    let lv = f32_at(m, a["l"], row);
    let alpha = sigmoid(lv.max(f("min_lsnr")).min(f("max_lsnr")));
    let beta = sigmoid(f("scale").mul_add(lv, f("shift")));
    let u = 1.0 / (vocab as f32 - 1.0);
    let rest_o = (1.0 - alpha) * (beta * u);
    let rest_m = (1.0 - alpha) * (1.0 - beta);
    let xi = load_id(m, a["x"], row, a["xk"], vocab);
    let zi = load_id(m, a["z"], row, a["zk"], vocab);
    let ism = xi == mask;
    let rest_x = if ism { rest_m } else { rest_o };
    let at_m = if ism { alpha } else { 0.0 };
    let lq = [
        safe_ln(rest_o),
        safe_ln(alpha + rest_x),
        safe_ln(at_m + rest_m),
    ];
    let inv = 1.0 / sum as f32;
    Row {
        mask,
        xi,
        zi,
        alpha,
        mx,
        inv,
        ca: alpha * inv,
        rest_o,
        dm: rest_m - rest_o,
        lq,
        eq: lq.map(f32::exp),
    }
}

/// diffusion_kl and diffusion_kl_bwd, block by block (grid-stride over the rows).
pub fn diffusion_kl(m: &mut Mem, entry: &str, a: &HashMap<&str, u64>) {
    let vocab = a["vocab"];
    for row in 0..a["rows"] {
        let r = row_consts(m, a, row);
        let base = a["lg"] + 4 * row * vocab;
        let lp_of = |m: &mut Mem, v: u64| {
            let lg = if v == r.mask { 0.0 } else { f32_at(m, base, v) };
            safe_ln(r.p_of(v, r.numer(v, lg)))
        };
        if entry == "diffusion_kl" {
            let mut d = 0f64;
            for v in 0..vocab {
                d += (r.lq[0] - lp_of(m, v)) as f64;
            }
            let (lpx, lpm) = (lp_of(m, r.xi), lp_of(m, r.mask));
            let mut fix = r.eq[1] * (r.lq[1] - lpx) - r.eq[0] * (r.lq[0] - lpx);
            if r.mask != r.xi {
                fix += r.eq[2] * (r.lq[2] - lpm);
                fix -= r.eq[0] * (r.lq[0] - lpm);
            }
            let kl = r.eq[0].mul_add(d as f32, fix);
            let lpz = lp_of(m, r.zi);
            put_f32(m, a["kl"], row, kl);
            put_f32(m, a["lpz"], row, lpz);
            put_f32(m, a["lqz"], row, r.lq[r.slot(r.zi)]);
            continue;
        }
        let (gk, gz) = (f32_at(m, a["gkl"], row), f32_at(m, a["glpz"], row));
        let pz = r.p_of(r.zi, r.numer(r.zi, f32_at(m, base, r.zi)));
        let grad = |v: u64, e: f32| {
            let p = r.p_of(v, e);
            let mut g = 0.0;
            if p > TINY {
                g = r.alpha * (-gk * r.eq[r.slot(v)]) / p;
            }
            if v == r.zi && pz > TINY {
                g += r.alpha * gz / pz;
            }
            g
        };
        let mut dot = 0f64;
        for v in 0..vocab {
            let e = r.numer(v, f32_at(m, base, v));
            dot += (grad(v, e) * (e * r.inv)) as f64;
        }
        let dot = dot as f32;
        for v in 0..vocab {
            let e = r.numer(v, f32_at(m, base, v));
            let d = if v == r.mask {
                0.0
            } else {
                (e * r.inv) * (grad(v, e) - dot)
            };
            put_f32(m, a["dlg"], row * vocab + v, d);
        }
    }
}
