//! Host models of the row kernels' contracts (softmax.ptx, rms_norm.ptx, rope.ptx): the same
//! passes and accumulation precision (row sums in f64), the host's exp and ln standing for
//! ex2.approx and lg2.approx. They check the lowering and the contracts against the cpu
//! executor, not the PTX.

#![allow(clippy::unwrap_used)]

use crate::emulate::Mem;
use crate::emulate_fused::{f32_at, put_f32};
use std::collections::HashMap;

pub fn rows(m: &mut Mem, entry: &str, a: &HashMap<&str, u64>) {
    if entry == "rope" {
        return rope(m, a);
    }
    let (rows, n) = (a["rows"], a["n"]);
    if entry == "rms_norm_dw" {
        for j in 0..n {
            let mut acc = 0f64;
            for i in 0..rows {
                let (x, dy) = (f32_at(m, a["x"], i * n + j), f32_at(m, a["dy"], i * n + j));
                acc += (dy * x * f32_at(m, a["rstd"], i)) as f64;
            }
            put_f32(m, a["dw"], j, acc as f32);
        }
        return;
    }
    for r in 0..rows {
        let at = |p: &str, j: u64| (a[p], r * n + j);
        let row = |m: &mut Mem, p: &str| -> Vec<f32> {
            (0..n)
                .map(|j| {
                    let (q, i) = at(p, j);
                    f32_at(m, q, i)
                })
                .collect()
        };
        let out: Vec<f32> = match entry {
            "softmax_fwd" => {
                let x = row(m, "x");
                let mx = x.iter().fold(f32::NEG_INFINITY, |s, &v| s.max(v));
                let z = x.iter().map(|&v| (v - mx).exp() as f64).sum::<f64>() as f32;
                if a["log"] != 0 {
                    x.iter().map(|&v| v - mx - z.ln()).collect()
                } else {
                    let inv = 1.0 / z;
                    x.iter().map(|&v| (v - mx).exp() * inv).collect()
                }
            }
            "softmax_bwd" => {
                let (y, dy) = (row(m, "y"), row(m, "dy"));
                let dot = y.iter().zip(&dy).map(|(a, b)| (a * b) as f64).sum::<f64>() as f32;
                y.iter().zip(&dy).map(|(y, g)| y * (g - dot)).collect()
            }
            "rms_norm_fwd" => {
                let x = row(m, "x");
                let ss: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
                let eps = f32::from_bits(a["eps"] as u32) as f64;
                let rs = (1.0 / (ss / n as f64 + eps).sqrt()) as f32;
                put_f32(m, a["rstd"], r, rs);
                (0..n)
                    .map(|j| x[j as usize] * rs * (f32_at(m, a["w"], j) + 1.0))
                    .collect()
            }
            _ => {
                // rms_norm_bwd_dx
                let (x, dy) = (row(m, "x"), row(m, "dy"));
                let g: Vec<f32> = (0..n).map(|j| f32_at(m, a["w"], j) + 1.0).collect();
                let rs = f32_at(m, a["rstd"], r);
                let s: f64 = (0..n as usize).map(|j| (dy[j] * g[j] * x[j]) as f64).sum();
                let rd = rs as f64;
                let c = (s * rd * rd * rd / n as f64) as f32;
                (0..n as usize)
                    .map(|j| rs * g[j] * dy[j] - x[j] * c)
                    .collect()
            }
        };
        let dst = match entry {
            "rms_norm_fwd" => "y",
            "rms_norm_bwd_dx" => "dx",
            _ => "out",
        };
        for (j, v) in out.into_iter().enumerate() {
            put_f32(m, a[dst], r * n + j as u64, v);
        }
    }
}

fn rope(m: &mut Mem, a: &HashMap<&str, u64>) {
    let (heads, half) = (a["heads"], a["half"]);
    for e in 0..a["n"] {
        let (j, rh) = (e % half, e / half);
        let r = rh / heads;
        let (i1, i2, it) = (2 * half * rh + j, 2 * half * rh + half + j, r * half + j);
        let (x1, x2) = (f32_at(m, a["x"], i1), f32_at(m, a["x"], i2));
        let c = f32_at(m, a["cos"], it);
        let mut s = f32_at(m, a["sin"], it);
        if a["neg"] != 0 {
            s = -s;
        }
        put_f32(m, a["out"], i1, x2.mul_add(-s, x1 * c));
        put_f32(m, a["out"], i2, x1.mul_add(s, x2 * c));
    }
}
