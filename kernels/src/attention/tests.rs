//! Randomized tests of the tiled attention against the f64 reference (every SIMD level),
//! the all-masked-row rule, and a finite-difference check of the reference backward.

use super::cpu;
use super::reference::{attention_bwd_f64, attention_fwd_f64, probs_f64};
use super::{AttnParams, AttnShape};
use crate::simd::Level;
use crate::testutil::{assert_close_by, levels, rng, seed, to_f64, uniform};
use rand::rngs::StdRng;
use rand::Rng;

/// f32 unit roundoff.
const EPS: f64 = f32::EPSILON as f64 / 2.0;
/// Ulp error of the vector tanh (see the softmax tests), as a multiple of EPS on the cap.
const TANH_ULPS: f64 = 8.0;
/// f64 gradcheck: central differences with step h have truncation error O(h^2) ~ 1e-12 and
/// cancellation O(1e-16 / h) ~ 1e-10 for O(1) losses.
const FD_STEP: f64 = 1e-6;
const FD_TOL: f64 = 1e-6;

struct Case {
    sh: AttnShape,
    p: AttnParams,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    mask: Option<Vec<u8>>,
    what: String,
}

/// Mask flavours: random density, key padding (possibly every key), causal-like, whole
/// 64x64 tiles off, plus forced all-masked rows.
fn random_mask(r: &mut StdRng, b: usize, lq: usize, lk: usize) -> (Vec<u8>, String) {
    let kind = r.random_range(0..5);
    let mut m = vec![1u8; b * lq * lk];
    let mut name = String::new();
    for bi in 0..b {
        let pad = r.random_range(0..=lk);
        let off = r.random_range(0..=lk) as isize - (lk / 2) as isize;
        let density = [0.1, 0.5, 0.9][r.random_range(0..3)];
        let seed_tile = r.random_range(0..4usize);
        for i in 0..lq {
            for j in 0..lk {
                let on = match kind {
                    0 => r.random_bool(density),
                    1 => j < pad,
                    2 => (j as isize) <= i as isize + off,
                    3 => {
                        (i / 64 + j / 64 + seed_tile) % 3 != 0
                            || (i / 32 + j / 32) % 2 == 0 && seed_tile == 0
                    }
                    _ => (i / 64 + j / 64 + seed_tile) % 2 == 0,
                };
                m[(bi * lq + i) * lk + j] = on as u8;
            }
        }
        name = [
            "bernoulli",
            "key-padding",
            "causal",
            "tiles-mixed",
            "tiles-off",
        ][kind]
            .into();
    }
    // A few rows with every key masked.
    if r.random_bool(0.5) {
        for _ in 0..r.random_range(1..=3) {
            let (bi, i) = (r.random_range(0..b), r.random_range(0..lq));
            m[(bi * lq + i) * lk..(bi * lq + i + 1) * lk].fill(0);
        }
        name += "+dead-rows";
    }
    (m, name)
}

fn random_case(r: &mut StdRng, sh: AttnShape) -> Case {
    let d = sh.head_dim;
    let softcap = [None, Some(5.0f32), Some(30.0)][r.random_range(0..3)];
    let scale = (d as f32).powf(-0.5) * [0.5f32, 1.0, 4.0][r.random_range(0..3)];
    let qa = [0.5f32, 2.0, 4.0][r.random_range(0..3)];
    let nq = sh.batch * sh.heads * sh.lq * d;
    let nk = sh.batch * sh.heads * sh.lk * d;
    let q = uniform(r, nq, qa);
    let k = uniform(r, nk, 2.0);
    let v = uniform(r, nk, 1.0);
    let (mask, mname) = if r.random_bool(0.6) {
        let (m, n) = random_mask(r, sh.batch, sh.lq, sh.lk);
        (Some(m), n)
    } else {
        (None, "no mask".into())
    };
    let what = format!("{sh:?} scale {scale} softcap {softcap:?} {mname}");
    Case {
        sh,
        p: AttnParams { scale, softcap },
        q,
        k,
        v,
        mask,
        what,
    }
}

/// Shapes: sizes 1, odd, non-multiples of 16, lq != lk, head dims 1..130 (odd included).
fn random_shapes(r: &mut StdRng, n: usize, max_l: usize) -> Vec<AttnShape> {
    let dims = [
        1, 2, 3, 7, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 130,
    ];
    let lens = [1, 2, 15, 16, 17, 63, 64, 65, 129];
    let mut out = vec![
        AttnShape {
            batch: 1,
            heads: 1,
            lq: 1,
            lk: 1,
            head_dim: 1,
        },
        AttnShape {
            batch: 2,
            heads: 3,
            lq: 65,
            lk: 130,
            head_dim: 64,
        },
        AttnShape {
            batch: 1,
            heads: 2,
            lq: 130,
            lk: 65,
            head_dim: 128,
        },
    ];
    for _ in 0..n {
        let pick = |r: &mut StdRng| {
            if r.random_bool(0.5) {
                lens[r.random_range(0..lens.len())].min(max_l)
            } else {
                r.random_range(1..=max_l)
            }
        };
        let (lq, lk) = (pick(r), pick(r));
        out.push(AttnShape {
            batch: r.random_range(1..=2),
            heads: r.random_range(1..=3),
            lq,
            lk,
            head_dim: if r.random_bool(0.6) {
                dims[r.random_range(0..dims.len())]
            } else {
                r.random_range(1..=130)
            },
        });
    }
    out
}

/// Per-case error scales derived from the inputs (see each use).
struct Bounds {
    /// Absolute error of a final score: the f32 dot over D (worst case D eps sigma
    /// max_ij sum_t |q_it k_jt|), the soft cap's tanh and the f32 lse it is compared with.
    ds: f64,
    vmax: f64,
}

/// `max_{b,h,i,j} sum_t |x_it y_jt|` over heads of `x [BH, lx, d]`, `y [BH, ly, d]`.
fn max_abs_dot(bh: usize, lx: usize, ly: usize, d: usize, x: &[f32], y: &[f32]) -> f64 {
    let mut m = 0f64;
    for h in 0..bh {
        for i in 0..lx {
            let xr = &x[(h * lx + i) * d..(h * lx + i + 1) * d];
            for j in 0..ly {
                let yr = &y[(h * ly + j) * d..(h * ly + j + 1) * d];
                m = m.max(xr.iter().zip(yr).map(|(a, b)| (a * b).abs() as f64).sum());
            }
        }
    }
    m
}

fn bounds(c: &Case, lse: &[f64]) -> Bounds {
    let sh = c.sh;
    let d = sh.head_dim;
    let sabs = c.p.scale as f64 * max_abs_dot(sh.batch * sh.heads, sh.lq, sh.lk, d, &c.q, &c.k);
    let cap = c.p.softcap.map_or(0.0, |x| x as f64 * TANH_ULPS);
    let lmax = lse
        .iter()
        .filter(|x| **x > f32::MIN as f64 / 2.0)
        .fold(0f64, |m, x| m.max(x.abs()));
    Bounds {
        ds: EPS * ((d as f64 + 8.0) * sabs + cap + 4.0 * lmax + 8.0),
        vmax: c.v.iter().fold(0f32, |m, x| m.max(x.abs())) as f64,
    }
}

fn run_fwd(level: Level, c: &Case) -> (Vec<f32>, Vec<f32>) {
    let sh = c.sh;
    let mut out = vec![f32::NAN; sh.batch * sh.heads * sh.lq * sh.head_dim];
    let mut lse = vec![f32::NAN; sh.batch * sh.heads * sh.lq];
    cpu::attention_fwd(
        level,
        &sh,
        &c.p,
        &c.q,
        &c.k,
        &c.v,
        c.mask.as_deref(),
        &mut out,
        &mut lse,
    );
    (out, lse)
}

fn check_fwd(seed: u64, c: &Case) {
    let (want, want_lse) = attention_fwd_f64(
        &c.sh,
        &c.p,
        &to_f64(&c.q),
        &to_f64(&c.k),
        &to_f64(&c.v),
        c.mask.as_deref(),
    );
    let bd = bounds(c, &want_lse);
    let lk = c.sh.lk as f64;
    // o = sum_j p_j v_j: p's relative error is ~2 ds (score and lse), plus the f32 sums over
    // the keys (l and o, ~sqrt(Lk) eps) and the final scaling.
    let tol_o = |_: usize, _: f64| bd.vmax * (4.0 * bd.ds + EPS * (12.0 + 2.0 * lk.sqrt()));
    let tol_l = |_: usize, w: f64| bd.ds + EPS * (4.0 * w.abs() + 2.0 * lk.sqrt() + 4.0);
    let mut base: Option<(Vec<f64>, Vec<f64>)> = None;
    for level in levels() {
        let (out, lse) = run_fwd(level, c);
        let ctx = format!("{level:?} {}", c.what);
        assert_close_by(&format!("attn out {ctx}"), seed, &out, &want, tol_o);
        assert_close_by(&format!("attn lse {ctx}"), seed, &lse, &want_lse, tol_l);
        // Every SIMD level agrees with the portable path to rounding.
        match &base {
            None => base = Some((to_f64(&out), to_f64(&lse))),
            Some((bo, bl)) => {
                assert_close_by(
                    &format!("attn out {ctx} vs portable"),
                    seed,
                    &out,
                    bo,
                    tol_o,
                );
                assert_close_by(
                    &format!("attn lse {ctx} vs portable"),
                    seed,
                    &lse,
                    bl,
                    tol_l,
                );
            }
        }
    }
}

#[test]
fn attention_fwd_matches_reference_at_every_level() {
    let seed = seed();
    let mut r = rng(seed);
    for sh in random_shapes(&mut r, 40, 200) {
        let c = random_case(&mut r, sh);
        check_fwd(seed, &c);
    }
}

fn check_bwd(seed: u64, c: &Case) {
    let sh = c.sh;
    let (q64, k64, v64) = (to_f64(&c.q), to_f64(&c.k), to_f64(&c.v));
    let nq = sh.batch * sh.heads * sh.lq * sh.head_dim;
    let dout = uniform(&mut rng(seed ^ 0xd0), nq, 1.0);
    let (want_q, want_k, want_v) = attention_bwd_f64(
        &sh,
        &c.p,
        &q64,
        &k64,
        &v64,
        c.mask.as_deref(),
        &to_f64(&dout),
    );
    let (_, lse64) = attention_fwd_f64(&sh, &c.p, &q64, &k64, &v64, c.mask.as_deref());
    let pm = probs_f64(&sh, &c.p, &q64, &k64, c.mask.as_deref());
    let bd = bounds(c, &lse64);
    let (lq, lk, d) = (sh.lq, sh.lk, sh.head_dim);
    let amax = |x: &[f32]| x.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
    let (qmax, kmax, domax) = (amax(&c.q), amax(&c.k), amax(&dout));
    // |dp_ij - D_i| <= 2 max_ij sum_t |do_it v_jt| (D_i is a p-average of dp_ij); each dot
    // rounds with worst-case error (D + 4) eps times that sum.
    let dp_abs = max_abs_dot(sh.batch * sh.heads, lq, lk, d, &dout, &c.v);
    let dpmax = 2.0 * dp_abs;
    let e_dp = EPS * (d as f64 + 4.0) * dp_abs;
    // p's relative error: score, lse (2 ds), exp, and the soft cap's g = 1 - t^2.
    let e_p = 2.0 * bd.ds + EPS * (8.0 + 2.0 * TANH_ULPS);
    // Column sums of p bound the dk and dv sums over queries.
    let col: Vec<f64> = (0..sh.batch * sh.heads * lk)
        .map(|bj| {
            let (bh, j) = (bj / lk, bj % lk);
            (0..lq).map(|i| pm[(bh * lq + i) * lk + j]).sum()
        })
        .collect();
    let sc = c.p.scale as f64;
    let sum_q = EPS * (8.0 + 2.0 * (lq as f64).sqrt());
    let sum_k = EPS * (8.0 + 2.0 * (lk as f64).sqrt());
    let tol_dq = |_: usize, _: f64| sc * kmax * (dpmax * (e_p + sum_k) + 2.0 * e_dp) + 1e-30;
    let tol_dk =
        |i: usize, _: f64| sc * qmax * col[i / d] * (dpmax * (e_p + sum_q) + 2.0 * e_dp) + 1e-30;
    let tol_dv = |i: usize, _: f64| domax * col[i / d] * (e_p + sum_q) + 1e-30;
    let mut base: Option<[Vec<f64>; 3]> = None;
    for level in levels() {
        let ctx = format!("{level:?} {}", c.what);
        let (out, lse) = run_fwd(level, c);
        let nk = sh.batch * sh.heads * lk * d;
        let (mut dq, mut dk, mut dv) = (vec![f32::NAN; nq], vec![f32::NAN; nk], vec![f32::NAN; nk]);
        cpu::attention_bwd(
            level,
            &sh,
            &c.p,
            &c.q,
            &c.k,
            &c.v,
            c.mask.as_deref(),
            &out,
            &lse,
            &dout,
            &mut dq,
            &mut dk,
            &mut dv,
        );
        assert_close_by(&format!("attn dq {ctx}"), seed, &dq, &want_q, tol_dq);
        assert_close_by(&format!("attn dk {ctx}"), seed, &dk, &want_k, tol_dk);
        assert_close_by(&format!("attn dv {ctx}"), seed, &dv, &want_v, tol_dv);
        match &base {
            None => base = Some([to_f64(&dq), to_f64(&dk), to_f64(&dv)]),
            Some([bq, bk, bv]) => {
                assert_close_by(&format!("attn dq {ctx} vs portable"), seed, &dq, bq, tol_dq);
                assert_close_by(&format!("attn dk {ctx} vs portable"), seed, &dk, bk, tol_dk);
                assert_close_by(&format!("attn dv {ctx} vs portable"), seed, &dv, bv, tol_dv);
            }
        }
    }
}

#[test]
fn attention_bwd_matches_reference_at_every_level() {
    let seed = seed();
    let mut r = rng(seed);
    for sh in random_shapes(&mut r, 25, 150) {
        let c = random_case(&mut r, sh);
        check_bwd(seed, &c);
    }
}

/// Many heads of few keys and one head of many keys: the backward's key-chunk split (and
/// the dq partial sums) and the forward's rayon path.
#[test]
fn attention_splits_heads_into_key_chunks() {
    let seed = seed();
    let mut r = rng(seed);
    for sh in [
        AttnShape {
            batch: 1,
            heads: 1,
            lq: 70,
            lk: 300,
            head_dim: 64,
        },
        AttnShape {
            batch: 1,
            heads: 1,
            lq: 33,
            lk: 257,
            head_dim: 24,
        },
        AttnShape {
            batch: 2,
            heads: 1,
            lq: 100,
            lk: 200,
            head_dim: 128,
        },
    ] {
        let c = random_case(&mut r, sh);
        check_fwd(seed, &c);
        check_bwd(seed, &c);
    }
}

/// A row with every key masked attends uniformly to all keys (masked score f32::MIN, not
/// -inf); its lse is f32::MIN and its gradient flows only to v.
#[test]
fn fully_masked_rows_are_uniform() {
    let seed = seed();
    let mut r = rng(seed);
    for level in levels() {
        let sh = AttnShape {
            batch: 2,
            heads: 2,
            lq: 70,
            lk: 150,
            head_dim: 20,
        };
        let mut c = random_case(&mut r, sh);
        let mut m = vec![1u8; 2 * 70 * 150];
        // Batch 0: row 3 dead, and keys 64..128 masked for every other row of the first
        // query block (a whole tile off, which must not be skipped for row 3).
        for i in 0..64 {
            for j in 64..128 {
                m[i * 150 + j] = 0;
            }
        }
        m[3 * 150..4 * 150].fill(0);
        // Batch 1: everything masked.
        m[70 * 150..].fill(0);
        c.mask = Some(m);
        c.what = format!("{:?} {:?} dead rows and an all-off tile", c.sh, c.p);
        let (out, lse) = run_fwd(level, &c);
        for (b, i) in [(0usize, 3usize), (1, 0), (1, 69)] {
            for h in 0..2 {
                let bh = b * 2 + h;
                assert_eq!(lse[bh * 70 + i], f32::MIN, "{level:?} seed {seed}");
                for t in 0..20 {
                    let mean: f64 = (0..150)
                        .map(|j| c.v[(bh * 150 + j) * 20 + t] as f64)
                        .sum::<f64>()
                        / 150.0;
                    let got = out[(bh * 70 + i) * 20 + t] as f64;
                    assert!(
                        (got - mean).abs() < 1e-5,
                        "{level:?} b {b} i {i}: {got} vs mean {mean}; seed {seed}"
                    );
                }
            }
        }
        check_fwd(seed, &c);
        check_bwd(seed, &c);
    }
}

/// The public entry points run the detected level.
#[test]
fn public_entry_points_match_detected_level() {
    let seed = seed();
    let c = random_case(
        &mut rng(seed),
        AttnShape {
            batch: 1,
            heads: 2,
            lq: 40,
            lk: 50,
            head_dim: 16,
        },
    );
    let sh = c.sh;
    let (o1, l1) = run_fwd(crate::simd::level(), &c);
    let (mut o2, mut l2) = (vec![0.0; o1.len()], vec![0.0; l1.len()]);
    super::attention_fwd(
        &sh,
        &c.p,
        &c.q,
        &c.k,
        &c.v,
        c.mask.as_deref(),
        &mut o2,
        &mut l2,
    );
    assert_eq!((o1, l1), (o2, l2), "seed {seed}");
}

#[test]
fn attention_reference_backward_matches_finite_differences() {
    let seed = seed();
    let mut r = rng(seed);
    for softcap in [None, Some(2.0f32)] {
        let sh = AttnShape {
            batch: 1,
            heads: 2,
            lq: 3,
            lk: 4,
            head_dim: 3,
        };
        let (nq, nk) = (2 * 3 * 3, 2 * 4 * 3);
        let p = AttnParams {
            scale: 0.7,
            softcap,
        };
        let f = |n: usize, r: &mut StdRng| -> Vec<f64> {
            (0..n).map(|_| r.random_range(-1.5..1.5)).collect()
        };
        let (q, k, v, w) = (f(nq, &mut r), f(nk, &mut r), f(nk, &mut r), f(nq, &mut r));
        // Row 1 fully masked (uniform, constant in q and k), one more masked entry.
        let mut mask = vec![1u8; 3 * 4];
        mask[4..8].fill(0);
        mask[2] = 0;
        let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
            let (o, _) = attention_fwd_f64(&sh, &p, q, k, v, Some(&mask));
            o.iter().zip(&w).map(|(a, b)| a * b).sum()
        };
        let (dq, dk, dv) = attention_bwd_f64(&sh, &p, &q, &k, &v, Some(&mask), &w);
        for (which, x, g) in [(0, &q, &dq), (1, &k, &dk), (2, &v, &dv)] {
            for i in 0..x.len() {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[i] += FD_STEP;
                xm[i] -= FD_STEP;
                let (lp, lm) = match which {
                    0 => (loss(&xp, &k, &v), loss(&xm, &k, &v)),
                    1 => (loss(&q, &xp, &v), loss(&q, &xm, &v)),
                    _ => (loss(&q, &k, &xp), loss(&q, &k, &xm)),
                };
                let fd = (lp - lm) / (2.0 * FD_STEP);
                assert!(
                    (fd - g[i]).abs() <= FD_TOL * (1.0 + fd.abs()),
                    "grad {} [{i}] softcap {softcap:?}: {} vs fd {fd}; seed {seed}",
                    ["q", "k", "v"][which],
                    g[i]
                );
            }
        }
    }
}
