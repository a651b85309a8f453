//! Tiled attention on the CPU (see the module docs for the math).
//!
//! Layout: a query block of `NV` SIMD vectors (`NV * LANES` queries, at most 64) sits in the
//! lanes. The forward keeps `q^T` (scaled) and the output accumulator `o^T` as `[D, W]`
//! panels and the scores of one key tile as `s^T [KB, W]`, so the online-softmax row max
//! and row sum are element-wise vector ops and the per-query rescale is one multiply.
//! The backward (per key chunk) recomputes `p^T` for each (key tile, query block) from
//! `lse`, accumulates `dv`, `dk` for the key tile and `dq` for the whole head.

use super::mask::{classify, lane_mask, MaskBits, TileMask};
use super::tile::{load_row, mk, store_row, with_nv, with_r, Buf};
use super::{AttnParams, AttnShape};
use crate::simd::vector::{simd_entry, supported, SendPtr, Simd};
use crate::simd::Level;
use rayon::prelude::*;

/// Keys per tile.
const KB: usize = 64;
/// SIMD vectors per query block (64 queries with AVX-512, 32 with 8 lanes).
const QV: usize = 4;
/// Below this many multiply-adds (`B H Lq Lk D`) everything runs on the calling thread.
const SERIAL_WORK: usize = 1 << 18;

fn lanes(level: Level) -> usize {
    match supported(level) {
        Level::Avx512 => 16,
        _ => 8,
    }
}

// ---- forward ----------------------------------------------------------------------------

struct Fwd<'a> {
    sh: AttnShape,
    scale: f32,
    softcap: Option<f32>,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    mask: Option<MaskBits>,
    /// Query blocks per head.
    nqb: usize,
    out: SendPtr,
    lse: SendPtr,
}

/// [`super::attention_fwd`] at a given SIMD level.
#[allow(clippy::too_many_arguments)]
pub fn attention_fwd(
    level: Level,
    sh: &AttnShape,
    p: &AttnParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[u8]>,
    out: &mut [f32],
    lse: &mut [f32],
) {
    let AttnShape {
        batch,
        heads,
        lq,
        lk,
        head_dim: d,
    } = *sh;
    let bh = batch * heads;
    assert!(q.len() >= bh * lq * d && out.len() >= bh * lq * d && lse.len() >= bh * lq);
    assert!(k.len() >= bh * lk * d && v.len() >= bh * lk * d);
    assert!(mask.is_none_or(|m| m.len() >= batch * lq * lk));
    if bh * lq == 0 {
        return;
    }
    if lk == 0 {
        // An empty softmax: 0/0.
        out[..bh * lq * d].fill(f32::NAN);
        lse[..bh * lq].fill(f32::NEG_INFINITY);
        return;
    }
    let nqb = lq.div_ceil(QV * lanes(level));
    let ctx = Fwd {
        sh: *sh,
        scale: p.scale,
        softcap: p.softcap,
        q,
        k,
        v,
        mask: mask.map(|m| MaskBits::new(batch, lq, lk, m)),
        nqb,
        out: SendPtr(out.as_mut_ptr()),
        lse: SendPtr(lse.as_mut_ptr()),
    };
    let tasks = bh * nqb;
    if bh * lq * lk * d.max(1) < SERIAL_WORK {
        (0..tasks).for_each(|t| fwd_task(level, &ctx, t));
    } else {
        (0..tasks)
            .into_par_iter()
            .for_each(|t| fwd_task(level, &ctx, t));
    }
}

simd_entry!(fn fwd_task(c: &Fwd<'_>, task: usize) => fwd_task_g);

#[inline(always)]
unsafe fn fwd_task_g<S: Simd>(c: &Fwd<'_>, task: usize) {
    let l = S::LANES;
    let (bh, qb) = (task / c.nqb, task % c.nqb);
    let i0 = qb * QV * l;
    let nq = (QV * l).min(c.sh.lq - i0);
    with_nv!(nq.div_ceil(l), NV => fwd_block::<S, NV>(c, bh, i0, nq))
}

/// Lane bits of the queries in vector `v` that have no unmasked key at all.
#[inline(always)]
fn dead_rows(m: &MaskBits, b: usize, i0: usize, nq: usize, l: usize, v: usize) -> u32 {
    let valid = lane_mask(nq.saturating_sub(v * l).min(l));
    valid & !m.any(b, i0 + v * l)
}

/// One query block (`nq` queries from `i0` of head `bh`) against all keys.
#[inline(always)]
unsafe fn fwd_block<S: Simd, const NV: usize>(c: &Fwd<'_>, bh: usize, i0: usize, nq: usize) {
    let l = S::LANES;
    let w = NV * l;
    let AttnShape {
        heads,
        lq,
        lk,
        head_dim: d,
        ..
    } = c.sh;
    let b = bh / heads;
    let (mut qt_b, mut ot_b, mut st_b) = (Buf::new(d * w), Buf::new(d * w), Buf::new(KB * w));
    let (qt, ot, st) = (qt_b.ptr(), ot_b.ptr(), st_b.ptr());
    // q^T panel, pre-scaled: [D, W], padding lanes 0.
    let qh = c.q.as_ptr().add((bh * lq + i0) * d);
    for i in 0..nq {
        for t in 0..d {
            *qt.add(t * w + i) = *qh.add(i * d + t) * c.scale;
        }
    }
    let (kh, vh) = (c.k.as_ptr().add(bh * lk * d), c.v.as_ptr().add(bh * lk * d));
    // Tiles may be skipped only if no row of the block needs the all-masked uniform rule.
    let dead = c
        .mask
        .as_ref()
        .is_some_and(|m| (0..NV).any(|v| dead_rows(m, b, i0, nq, l, v) != 0));
    let mut m_run = [S::splat(f32::NEG_INFINITY); NV];
    let mut l_run = [S::splat(0.0); NV];
    for j0 in (0..lk).step_by(KB) {
        let kn = KB.min(lk - j0);
        let tm = match &c.mask {
            None => TileMask::AllOn,
            Some(m) => classify(m, b, i0, nq, l, NV, j0, kn),
        };
        if tm == TileMask::AllOff && !dead {
            continue; // every p of the tile underflows to exactly 0
        }
        let mask = if tm == TileMask::AllOn {
            None
        } else {
            c.mask.as_ref()
        };
        // s^T = K q^T for the tile, soft-capped and masked, with the tile's row max.
        let mut bmax = [S::splat(f32::NEG_INFINITY); NV];
        let mut jr = 0;
        while jr < kn {
            let rn = S::RMAX.min(kn - jr);
            let kr = kh.add((j0 + jr) * d);
            with_r!(rn, R => qk_rows::<S, NV, R>(qt, w, kr, d, c.softcap, mask, b, i0, j0 + jr, st.add(jr * w), &mut bmax));
            jr += rn;
        }
        // Online softmax: new max, rescale factor, p = exp(s - m) in place, row sums.
        let mut alpha = [S::splat(0.0); NV];
        for v in 0..NV {
            let mn = S::max(m_run[v], bmax[v]);
            alpha[v] = S::exp(S::sub(m_run[v], mn));
            m_run[v] = mn;
        }
        let mut psum = [S::splat(0.0); NV];
        for j in 0..kn {
            let row = st.add(j * w);
            for v in 0..NV {
                let p = S::exp(S::sub(S::load(row.add(v * l)), m_run[v]));
                S::store(row.add(v * l), p);
                psum[v] = S::add(psum[v], p);
            }
        }
        for v in 0..NV {
            l_run[v] = S::fma(l_run[v], alpha[v], psum[v]);
        }
        // o^T = alpha o^T + V^T p^T.
        let mut dr = 0;
        while dr < d {
            let rn = S::RMAX.min(d - dr);
            let vr = vh.add(j0 * d + dr);
            with_r!(rn, R => pv_rows::<S, NV, R>(st, w, vr, d, kn, &alpha, ot.add(dr * w)));
            dr += rn;
        }
    }
    let (mut ls, mut ms) = ([0f32; QV * 16], [0f32; QV * 16]);
    for v in 0..NV {
        S::store(ls.as_mut_ptr().add(v * l), l_run[v]);
        S::store(ms.as_mut_ptr().add(v * l), m_run[v]);
    }
    let out = c.out.0.add((bh * lq + i0) * d);
    for i in 0..nq {
        let inv = 1.0 / ls[i];
        for t in 0..d {
            *out.add(i * d + t) = *ot.add(t * w + i) * inv;
        }
        *c.lse.0.add(bh * lq + i0 + i) = ms[i] + ls[i].ln();
    }
}

/// `R` key rows of `s^T`: scores, soft cap, mask; stores them and folds them into `bmax`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn qk_rows<S: Simd, const NV: usize, const R: usize>(
    qt: *const f32,
    w: usize,
    kr: *const f32,
    d: usize,
    cap: Option<f32>,
    mask: Option<&MaskBits>,
    b: usize,
    i0: usize,
    j: usize,
    st: *mut f32,
    bmax: &mut [S::V; NV],
) {
    let l = S::LANES;
    let mut acc = [[S::splat(0.0); NV]; R];
    mk::<S, NV, R>(qt, w, kr, d, 1, d, &mut acc);
    for (r, accr) in acc.iter().enumerate() {
        for v in 0..NV {
            let mut s = accr[v];
            if let Some(c) = cap {
                s = S::mul(S::splat(c), S::tanh(S::mul(s, S::splat(1.0 / c))));
            }
            if let Some(m) = mask {
                s = S::select(m.bits(b, i0 + v * l, j + r), s, S::splat(f32::MIN));
            }
            bmax[v] = S::max(bmax[v], s);
            S::store(st.add(r * w + v * l), s);
        }
    }
}

/// `R` head-dim rows of `o^T = alpha o^T + V^T p^T`.
#[inline(always)]
unsafe fn pv_rows<S: Simd, const NV: usize, const R: usize>(
    pt: *const f32,
    w: usize,
    vr: *const f32,
    d: usize,
    kn: usize,
    alpha: &[S::V; NV],
    ot: *mut f32,
) {
    let mut acc = [[S::splat(0.0); NV]; R];
    for (r, accr) in acc.iter_mut().enumerate() {
        let o = load_row::<S, NV>(ot.add(r * w));
        for v in 0..NV {
            accr[v] = S::mul(o[v], alpha[v]);
        }
    }
    mk::<S, NV, R>(pt, w, vr, 1, d, kn, &mut acc);
    for (r, accr) in acc.iter().enumerate() {
        store_row::<S, NV>(ot.add(r * w), accr);
    }
}

// ---- backward ---------------------------------------------------------------------------

struct Bwd<'a> {
    sh: AttnShape,
    scale: f32,
    softcap: Option<f32>,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a [f32],
    lse: &'a [f32],
    dout: &'a [f32],
    mask: Option<MaskBits>,
    /// Key chunks per head and keys per chunk (a multiple of KB).
    nc: usize,
    chunk: usize,
    dq: SendPtr,
    /// `[nc - 1, B, H, Lq, D]`: the dq partials of chunks 1.. (chunk 0 writes `dq`).
    dq_parts: SendPtr,
    dk: SendPtr,
    dv: SendPtr,
}

/// [`super::attention_bwd`] at a given SIMD level.
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd(
    level: Level,
    sh: &AttnShape,
    p: &AttnParams,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[u8]>,
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let AttnShape {
        batch,
        heads,
        lq,
        lk,
        head_dim: d,
    } = *sh;
    let bh = batch * heads;
    let (nq, nk) = (bh * lq * d, bh * lk * d);
    assert!(
        q.len() >= nq
            && out.len() >= nq
            && dout.len() >= nq
            && dq.len() >= nq
            && lse.len() >= bh * lq
    );
    assert!(k.len() >= nk && v.len() >= nk && dk.len() >= nk && dv.len() >= nk);
    assert!(mask.is_none_or(|m| m.len() >= batch * lq * lk));
    if lq == 0 || lk == 0 || bh == 0 {
        dq[..nq].fill(0.0);
        dk[..nk].fill(0.0);
        dv[..nk].fill(0.0);
        return;
    }
    // Split heads into key chunks only when there are too few heads to feed every thread.
    let nkb = lk.div_ceil(KB);
    let threads = rayon::current_num_threads();
    let want = (4 * threads).div_ceil(bh).clamp(1, nkb);
    let chunk = nkb.div_ceil(want) * KB;
    let nc = lk.div_ceil(chunk);
    let mut dq_parts = vec![0.0f32; (nc - 1) * nq];
    let ctx = Bwd {
        sh: *sh,
        scale: p.scale,
        softcap: p.softcap,
        q,
        k,
        v,
        out,
        lse,
        dout,
        mask: mask.map(|m| MaskBits::new(batch, lq, lk, m)),
        nc,
        chunk,
        dq: SendPtr(dq.as_mut_ptr()),
        dq_parts: SendPtr(dq_parts.as_mut_ptr()),
        dk: SendPtr(dk.as_mut_ptr()),
        dv: SendPtr(dv.as_mut_ptr()),
    };
    let tasks = bh * nc;
    if bh * lq * lk * d.max(1) < SERIAL_WORK {
        (0..tasks).for_each(|t| bwd_task(level, &ctx, t));
    } else {
        (0..tasks)
            .into_par_iter()
            .for_each(|t| bwd_task(level, &ctx, t));
    }
    if nc > 1 {
        // Fixed order: deterministic sums.
        dq[..nq]
            .par_chunks_mut(lq * d)
            .enumerate()
            .for_each(|(h, dqh)| {
                for part in dq_parts.chunks(nq) {
                    for (a, b) in dqh.iter_mut().zip(&part[h * lq * d..(h + 1) * lq * d]) {
                        *a += b;
                    }
                }
            });
    }
}

simd_entry!(fn bwd_task(c: &Bwd<'_>, task: usize) => bwd_task_g);

#[inline(always)]
unsafe fn bwd_task_g<S: Simd>(c: &Bwd<'_>, task: usize) {
    let (bh, ci) = (task / c.nc, task % c.nc);
    let ka = ci * c.chunk;
    let kz = (ka + c.chunk).min(c.sh.lk);
    let dq = if ci == 0 {
        c.dq.0
    } else {
        let nq = c.sh.batch * c.sh.heads * c.sh.lq * c.sh.head_dim;
        c.dq_parts.0.add((ci - 1) * nq)
    };
    let nv = QV.min(c.sh.lq.div_ceil(S::LANES));
    with_nv!(nv, NV => bwd_chunk::<S, NV>(c, bh, ka, kz, dq))
}

/// Keys `ka..kz` of head `bh` against all queries: writes their `dk`, `dv` rows and this
/// chunk's `dq` contribution for the head (to `dq_dst`, laid out like `dq`).
#[inline(always)]
unsafe fn bwd_chunk<S: Simd, const NV: usize>(
    c: &Bwd<'_>,
    bh: usize,
    ka: usize,
    kz: usize,
    dq_dst: *mut f32,
) {
    let l = S::LANES;
    let w = NV * l;
    let AttnShape {
        heads,
        lq,
        lk,
        head_dim: d,
        ..
    } = c.sh;
    let b = bh / heads;
    let dp = d.div_ceil(l) * l; // padded head dim: whole vectors
    let nqb = lq.div_ceil(w);
    let lqp = nqb * w;
    let nkc = kz - ka;
    // Per-head panels: q^T (scaled) and do^T per query block [nqb, D, W]; padded rows of
    // q and do [lqp, dp] and of this chunk's k [nkc, dp]; lse and D_i per query.
    let mut bufs = [
        lqp * d,
        lqp * d,
        lqp * dp,
        lqp * dp,
        nkc * dp,
        lqp * dp,
        lqp,
        lqp,
    ]
    .map(Buf::new);
    let [qt, dot, qp, dop, kp, dqa, lse_p, di] = bufs.each_mut().map(|b| b.ptr());
    let (qh, doh, oh) = (
        c.q.as_ptr().add(bh * lq * d),
        c.dout.as_ptr().add(bh * lq * d),
        c.out.as_ptr().add(bh * lq * d),
    );
    for i in 0..lq {
        let (qb, ii) = (i / w, i % w);
        let mut dsum = 0.0f64;
        for t in 0..d {
            let (x, g) = (*qh.add(i * d + t), *doh.add(i * d + t));
            *qt.add((qb * d + t) * w + ii) = x * c.scale;
            *dot.add((qb * d + t) * w + ii) = g;
            *qp.add(i * dp + t) = x;
            *dop.add(i * dp + t) = g;
            dsum += g as f64 * *oh.add(i * d + t) as f64;
        }
        *lse_p.add(i) = c.lse[bh * lq + i];
        *di.add(i) = dsum as f32;
    }
    let (kh, vh) = (c.k.as_ptr().add(bh * lk * d), c.v.as_ptr().add(bh * lk * d));
    for j in 0..nkc {
        std::ptr::copy_nonoverlapping(kh.add((ka + j) * d), kp.add(j * dp), d);
    }
    // Rows with every key masked: p = 1/Lk there (their lse is f32::MIN, it cannot carry log Lk).
    let mut dead = vec![[0u32; NV]; nqb];
    if let Some(m) = &c.mask {
        for (qb, dd) in dead.iter_mut().enumerate() {
            let (i0, nq) = (qb * w, w.min(lq - qb * w));
            for (v, x) in dd.iter_mut().enumerate() {
                *x = dead_rows(m, b, i0, nq, l, v);
            }
        }
    }
    let inv_lk = 1.0 / lk as f32;
    let mut tile_bufs = [KB * w, KB * w, KB * dp, KB * dp].map(Buf::new);
    let [pt, gt, dka, dva] = tile_bufs.each_mut().map(|b| b.ptr());
    for j0 in (ka..kz).step_by(KB) {
        let kn = KB.min(kz - j0);
        std::ptr::write_bytes(dka, 0, kn * dp);
        std::ptr::write_bytes(dva, 0, kn * dp);
        for (qb, dd) in dead.iter().enumerate() {
            let (i0, nq) = (qb * w, w.min(lq - qb * w));
            let is_dead = dd.iter().any(|&x| x != 0);
            let tm = match &c.mask {
                None => TileMask::AllOn,
                Some(m) => classify(m, b, i0, nq, l, NV, j0, kn),
            };
            if tm == TileMask::AllOff && !is_dead {
                continue; // p = 0 and ds = 0 on the whole tile
            }
            let mask = if tm == TileMask::AllOn {
                None
            } else {
                c.mask.as_ref()
            };
            let need_g = c.softcap.is_some() || mask.is_some();
            let dead_bits = if is_dead { Some(dd) } else { None };
            let (qtb, dotb) = (qt.add(qb * d * w), dot.add(qb * d * w));
            // 1. p^T (and the soft cap / mask factor g^T) for the tile.
            let mut jr = 0;
            while jr < kn {
                let rn = S::RMAX.min(kn - jr);
                let (kr, pr, gr) = (kh.add((j0 + jr) * d), pt.add(jr * w), gt.add(jr * w));
                let e = Epi {
                    cap: c.softcap,
                    mask,
                    b,
                    i0,
                    j: j0 + jr,
                    dead: dead_bits,
                    inv_lk,
                    need_g,
                };
                with_r!(rn, R => p_rows::<S, NV, R>(qtb, w, kr, d, lse_p.add(i0), &e, pr, gr));
                jr += rn;
            }
            // 2. dv += p^T do.
            let lv = S::LEVEL;
            kind_n(lv, pt, w, 1, dop.add(i0 * dp), dp, nq, kn, dva);
            // 3. ds^T = p^T (dp^T - D) g^T, in place of p^T.
            let mut jr = 0;
            while jr < kn {
                let rn = S::RMAX.min(kn - jr);
                let (vr, pr, gr) = (vh.add((j0 + jr) * d), pt.add(jr * w), gt.add(jr * w));
                with_r!(rn, R => ds_rows::<S, NV, R>(dotb, w, vr, d, di.add(i0), pr, gr, need_g));
                jr += rn;
            }
            // 4. dk += ds^T q ;  5. dq += ds k.
            kind_n(lv, pt, w, 1, qp.add(i0 * dp), dp, nq, kn, dka);
            kind_n(
                lv,
                pt,
                1,
                w,
                kp.add((j0 - ka) * dp),
                dp,
                kn,
                nq,
                dqa.add(i0 * dp),
            );
        }
        for j in 0..kn {
            for t in 0..d {
                *c.dk.0.add((bh * lk + j0 + j) * d + t) = *dka.add(j * dp + t) * c.scale;
                *c.dv.0.add((bh * lk + j0 + j) * d + t) = *dva.add(j * dp + t);
            }
        }
    }
    for i in 0..lq {
        for t in 0..d {
            *dq_dst.add((bh * lq + i) * d + t) = *dqa.add(i * dp + t) * c.scale;
        }
    }
}

/// What the backward's score epilogue needs besides the scores.
struct Epi<'a, const NV: usize> {
    cap: Option<f32>,
    mask: Option<&'a MaskBits>,
    b: usize,
    i0: usize,
    j: usize,
    dead: Option<&'a [u32; NV]>,
    inv_lk: f32,
    need_g: bool,
}

/// `R` key rows of `p^T = exp(s_hat^T - lse)` and `g^T = d s_hat / d s` (soft cap, mask).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn p_rows<S: Simd, const NV: usize, const R: usize>(
    qt: *const f32,
    w: usize,
    kr: *const f32,
    d: usize,
    lse: *const f32,
    e: &Epi<'_, NV>,
    pt: *mut f32,
    gt: *mut f32,
) {
    let l = S::LANES;
    let mut acc = [[S::splat(0.0); NV]; R];
    mk::<S, NV, R>(qt, w, kr, d, 1, d, &mut acc);
    let lse = load_row::<S, NV>(lse);
    for (r, accr) in acc.iter().enumerate() {
        for v in 0..NV {
            let (mut s, mut g) = (accr[v], S::splat(1.0));
            if let Some(c) = e.cap {
                let t = S::tanh(S::mul(s, S::splat(1.0 / c)));
                s = S::mul(S::splat(c), t);
                g = S::sub(g, S::mul(t, t));
            }
            if let Some(m) = e.mask {
                let bits = m.bits(e.b, e.i0 + v * l, e.j + r);
                s = S::select(bits, s, S::splat(f32::MIN));
                g = S::select(bits, g, S::splat(0.0));
            }
            let mut p = S::exp(S::sub(s, lse[v]));
            if let Some(dead) = e.dead {
                p = S::select(dead[v], S::splat(e.inv_lk), p);
            }
            S::store(pt.add(r * w + v * l), p);
            if e.need_g {
                S::store(gt.add(r * w + v * l), g);
            }
        }
    }
}

/// `R` key rows of `ds^T = p^T (dp^T - D) [g^T]` with `dp^T = V do^T`, over `p^T` in place.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn ds_rows<S: Simd, const NV: usize, const R: usize>(
    dot: *const f32,
    w: usize,
    vr: *const f32,
    d: usize,
    di: *const f32,
    pt: *mut f32,
    gt: *const f32,
    need_g: bool,
) {
    let l = S::LANES;
    let mut acc = [[S::splat(0.0); NV]; R];
    mk::<S, NV, R>(dot, w, vr, d, 1, d, &mut acc);
    let di = load_row::<S, NV>(di);
    for (r, accr) in acc.iter().enumerate() {
        for v in 0..NV {
            let o = r * w + v * l;
            let mut ds = S::mul(S::load(pt.add(o)), S::sub(accr[v], di[v]));
            if need_g {
                ds = S::mul(ds, S::load(gt.add(o)));
            }
            S::store(pt.add(o), ds);
        }
    }
}

simd_entry!(
    /// `C[r, :] += sum_{t < tn} A(r, t) B[t, :]` for `r < rows`, with `A(r, t) = a[r ars + t ats]`
    /// broadcast and `B`, `C` rows of `dp` floats (a multiple of LANES), head dim in lanes.
    /// One out-of-line copy per ISA, shared by the dv, dk and dq products.
    fn kind_n(a: *const f32, ars: usize, ats: usize, bm: *const f32, dp: usize, tn: usize, rows: usize, cm: *mut f32) => kind_n_g
);

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn kind_n_g<S: Simd>(
    a: *const f32,
    ars: usize,
    ats: usize,
    bm: *const f32,
    dp: usize,
    tn: usize,
    rows: usize,
    cm: *mut f32,
) {
    let l = S::LANES;
    let nvt = dp / l;
    let mut dc = 0;
    while dc < nvt {
        let nv = QV.min(nvt - dc);
        with_nv!(nv, NV => {
            let mut r0 = 0;
            while r0 < rows {
                let rn = S::RMAX.min(rows - r0);
                let (ar, br, cr) = (a.add(r0 * ars), bm.add(dc * l), cm.add(r0 * dp + dc * l));
                with_r!(rn, R => n_rows::<S, NV, R>(ar, ars, ats, br, dp, tn, cr));
                r0 += rn;
            }
        });
        dc += nv;
    }
}

#[inline(always)]
unsafe fn n_rows<S: Simd, const NV: usize, const R: usize>(
    a: *const f32,
    ars: usize,
    ats: usize,
    bm: *const f32,
    dp: usize,
    tn: usize,
    cm: *mut f32,
) {
    let mut acc = [[S::splat(0.0); NV]; R];
    for (r, accr) in acc.iter_mut().enumerate() {
        *accr = load_row::<S, NV>(cm.add(r * dp));
    }
    mk::<S, NV, R>(bm, dp, a, ars, ats, tn, &mut acc);
    for (r, accr) in acc.iter().enumerate() {
        store_row::<S, NV>(cm.add(r * dp), accr);
    }
}
