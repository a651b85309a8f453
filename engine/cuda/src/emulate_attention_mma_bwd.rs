//! Host model of the tensor-core attention backward (attention_mma_dq_d*.ptx and
//! attention_mma_dkdv_d*.ptx, see gidd_kernels::attention::mma_ptx_bwd) on the lane-level
//! pieces of crate::emulate_attention_mma: the same blocks, tile pipeline, ldmatrix and mma
//! fragments, and grad_el's (p, ds) per product element.

#![allow(clippy::unwrap_used)]

use crate::emulate::Mem;
use crate::emulate_attention_mma::{fexp, tanh_f, Block, Lanes};
use crate::emulate_fused::f32_at;
use crate::plan::Launch;
use gidd_kernels::attention::mma_ptx::WARPS;
use std::collections::HashMap;

/// grad_el: (p, ds) of query qi, key kj from raw products x = q.k, dp = do.v.
fn grad_el(m: &mut Mem, blk: &Block, x: f32, dp: f32, qi: u64, kj: u64) -> (f32, f32) {
    if qi >= blk.lq || kj >= blk.lk {
        return (0.0, 0.0);
    }
    let a = blk.a;
    let st = a["st"] + 12 * (blk.bh * blk.lq + qi);
    let (dd, ls, fill) = (f32_at(m, st, 0), f32_at(m, st, 1), f32_at(m, st, 2));
    if !blk.mask_at(m, qi, kj) {
        return (fexp(fill - ls), 0.0);
    }
    let f = |k: &str| f32::from_bits(a[k] as u32);
    let scale = f("scale");
    let (mut s, mut gs) = (x * scale, scale);
    if a["capped"] != 0 {
        let c = f("cap");
        let t = tanh_f(s / c);
        s = c * t;
        gs = (-t).mul_add(t, 1.0) * scale;
    }
    let p = fexp(s - ls);
    (p, p * (dp - dd) * gs)
}

/// The (p, ds) of every product element of warp w: element (j, e) is owned row g + 8 (e / 2),
/// column 32 cur + 8 j + 2 t + e % 2; s becomes p, dp becomes ds.
fn grads(
    m: &mut Mem,
    blk: &Block,
    w: usize,
    cur: u64,
    owns_queries: bool,
    s: &mut [Lanes<[f32; 4]>; 4],
    dp: &mut [Lanes<[f32; 4]>; 4],
) {
    for l in 0..32 {
        let rows = blk.clamped(w, l);
        for j in 0..4 {
            for e in 0..4 {
                let col = 32 * cur + (8 * j + 2 * (l % 4) + e % 2) as u64;
                let (qi, kj) = if owns_queries {
                    (rows[e / 2], col)
                } else {
                    (col, rows[e / 2])
                };
                (s[j][l][e], dp[j][l][e]) = grad_el(m, blk, s[j][l][e], dp[j][l][e], qi, kj);
            }
        }
    }
}

pub fn backward(m: &mut Mem, l: &Launch, a: &HashMap<&str, u64>) {
    let dq = l.entry.starts_with("attention_mma_dq_");
    for bh in 0..l.grid[1] as u64 {
        for bx in 0..l.grid[0] as u64 {
            let mut blk = Block::new(a, bx, bh, dq);
            let nt = blk.d / 8;
            // dq: Q and dO fragments; dkdv: K and V (reloaded per step by the kernel: same values)
            let (fa, fb) = if dq { ("q", "dout") } else { ("k", "v") };
            let frags: Vec<_> = (0..WARPS)
                .map(|w| (blk.frags(m, a[fa], w), blk.frags(m, a[fb], w)))
                .collect();
            let mut acc = vec![(vec![[[0f32; 4]; 32]; nt], vec![[[0f32; 4]; 32]; nt]); WARPS];
            if !dq {
                blk.fills = Some(a["st"] + 12 * bh * blk.lq);
            }
            blk.stream(m, false, &mut |m, blk, cur, stage| {
                let (xn, yn) = (blk.lanes(0, stage, false), blk.lanes(1, stage, false));
                let (xt, yt) = (blk.lanes(0, stage, true), blk.lanes(1, stage, true));
                for (w, ((f1, f2), (acc1, acc2))) in frags.iter().zip(acc.iter_mut()).enumerate() {
                    let mut s = blk.products(f1, &xn);
                    let mut dp = blk.products(f2, &yn);
                    grads(m, blk, w, cur, dq, &mut s, &mut dp);
                    if dq {
                        blk.accumulate(&dp, &xt, acc1);
                    } else {
                        blk.accumulate(&s, &yt, acc2);
                        blk.accumulate(&dp, &xt, acc1);
                    }
                }
            });
            for (w, (acc1, acc2)) in acc.iter().enumerate() {
                if dq {
                    blk.store(m, w, acc1, a["dq"], &|_, _| 1.0);
                } else {
                    blk.store(m, w, acc1, a["dk"], &|_, _| 1.0);
                    blk.store(m, w, acc2, a["dv"], &|_, _| 1.0);
                }
            }
        }
    }
}
