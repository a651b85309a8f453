//! The bf16-output GEMM ([`gemm_bf16_to_bf16`]) against the f32-output one rounded by
//! [`f32_to_bf16`]: equal bit for bit at every SIMD level, native `vdpbf16ps` or widened,
//! on random shapes with every transpose and broadcast, depths inside one cache block (the
//! microkernels round in registers) and past it (staged in f32, then rounded), inputs with
//! NaN, infinities, subnormals and products near the f32 limit; C beyond its length untouched;
//! the same bits on one thread as on the pool.

use super::cpu::{gemm_bf16_at, gemm_bf16_to_bf16_at, max_kc, usable_bf16};
use super::reference::gemm_f64;
use super::{gemm_bf16, gemm_bf16_to_bf16, GemmShape};
use crate::convert::f32_to_bf16;
use crate::simd::Level;
use crate::testutil::{assert_same_bits, levels, rng, seed, to_f64, uniform};
use half::bf16;
use rand::rngs::StdRng;
use rand::Rng;

/// Odd, tile-straddling (MR 4/6/14, NR 16/32) and row-block-crossing sizes.
fn dim(r: &mut StdRng) -> usize {
    const ODD: [usize; 12] = [1, 2, 3, 5, 7, 13, 14, 15, 17, 31, 33, 257];
    match r.random_range(0..3) {
        0 => ODD[r.random_range(0..ODD.len())],
        _ => r.random_range(1..=300),
    }
}

/// bf16 operands in [-1, 1); with `special`, a few NaN, infinities, zeros, subnormals and
/// huge values (whose products reach the top of the f32 range and round to infinity).
fn operand(r: &mut StdRng, len: usize, special: bool) -> Vec<bf16> {
    let mut v: Vec<bf16> = uniform(r, len, 1.0)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    if special && len > 0 {
        const SPECIAL: [f32; 9] = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1e-40,
            1.8e19,
            -1.8e19,
            3.0e38,
        ];
        for _ in 0..r.random_range(1..6) {
            let i = r.random_range(0..len);
            v[i] = bf16::from_f32(SPECIAL[r.random_range(0..SPECIAL.len())]);
        }
    }
    v
}

/// Every path this CPU runs: each level widened, and native `vdpbf16ps` where present.
fn paths() -> Vec<(Level, bool)> {
    let mut p: Vec<(Level, bool)> = levels().into_iter().map(|l| (l, false)).collect();
    if usable_bf16() {
        p.push((Level::Avx512, true));
    } else {
        println!("skipped: native bf16 (avx512bf16) not supported by this CPU");
    }
    p
}

#[test]
fn matmul_bf16_out_is_the_rounded_f32_out_bit_for_bit() {
    let seed = seed();
    let mut r = rng(seed);
    for case in 0..40 {
        let mut s = GemmShape {
            batch: r.random_range(1..=3),
            m: dim(&mut r),
            n: dim(&mut r),
            k: dim(&mut r),
            trans_a: r.random(),
            trans_b: r.random(),
            b_broadcast: r.random(),
        };
        if case < 3 {
            // past the deepest cache block: the staged path
            s.k = max_kc() + r.random_range(1..40);
            (s.m, s.n, s.batch) = (r.random_range(5..40), r.random_range(5..70), 1);
        }
        let (la, lb, lc) = s.lens();
        let special = case % 3 == 2;
        let (a, b) = (operand(&mut r, la, special), operand(&mut r, lb, special));
        for (level, native) in paths() {
            let what = format!("case {case} {level:?} native={native} {s:?}");
            let mut c32 = vec![f32::NAN; lc];
            gemm_bf16_at(level, native, &s, &a, &b, &mut c32);
            let want: Vec<bf16> = c32.iter().map(|&x| f32_to_bf16(x)).collect();
            let sentinel = bf16::from_f32(7.0);
            let mut c16 = vec![sentinel; lc + 5];
            gemm_bf16_to_bf16_at(level, native, &s, &a, &b, &mut c16);
            assert_same_bits(&what, seed, &c16[..lc], &want);
            assert!(
                c16[lc..].iter().all(|&x| x == sentinel),
                "{what}: wrote past C; seed {seed}"
            );
            if !special {
                // and near the f64 reference: f32 accumulation plus one bf16 rounding
                let wide = |x: &[bf16]| to_f64(&x.iter().map(|v| v.to_f32()).collect::<Vec<_>>());
                let exact = gemm_f64(&s, &wide(&a), &wide(&b));
                for (i, (&g, &w)) in c16.iter().zip(&exact).enumerate() {
                    let bound = 1e-5 * (s.k as f64).sqrt() + w.abs() / 256.0;
                    assert!(
                        (g.to_f64() - w).abs() <= bound,
                        "{what}: element {i} got {g} want {w}; seed {seed}"
                    );
                }
            }
        }
        // the public entry (AMX, vdpbf16ps or widened, whichever runs here)
        let mut c32 = vec![f32::NAN; lc];
        gemm_bf16(&s, &a, &b, &mut c32);
        let want: Vec<bf16> = c32.iter().map(|&x| f32_to_bf16(x)).collect();
        let mut c16 = vec![bf16::NAN; lc];
        gemm_bf16_to_bf16(&s, &a, &b, &mut c16);
        assert_same_bits(&format!("gemm_bf16_to_bf16 case {case}"), seed, &c16, &want);
    }
}

/// Large enough for every parallel split: one thread's bits are the pool's.
#[test]
fn matmul_bf16_out_threads_agree_bit_for_bit() {
    let seed = seed();
    let mut r = rng(seed);
    let shapes = [
        (1, 300, 200, 96, false, true, false),
        (1, 40, 900, 70, true, false, false),
        (4, 50, 60, 33, false, false, true),
        (3, 70, 20, 130, true, true, false),
    ];
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    for (batch, m, n, k, trans_a, trans_b, b_broadcast) in shapes {
        let s = GemmShape {
            batch,
            m,
            n,
            k,
            trans_a,
            trans_b,
            b_broadcast,
        };
        let (la, lb, lc) = s.lens();
        let (a, b) = (operand(&mut r, la, false), operand(&mut r, lb, false));
        for (level, native) in paths() {
            let mut par = vec![bf16::NAN; lc];
            gemm_bf16_to_bf16_at(level, native, &s, &a, &b, &mut par);
            let mut ser = vec![bf16::NAN; lc];
            one.install(|| gemm_bf16_to_bf16_at(level, native, &s, &a, &b, &mut ser));
            assert_same_bits(
                &format!("{level:?} native={native} {s:?}"),
                seed,
                &par,
                &ser,
            );
        }
    }
}

#[test]
fn matmul_bf16_out_zero_depth_and_empty() {
    for (level, native) in paths() {
        let s = GemmShape {
            batch: 2,
            m: 3,
            n: 5,
            k: 0,
            trans_a: false,
            trans_b: true,
            b_broadcast: false,
        };
        let mut c = vec![bf16::NAN; 30];
        gemm_bf16_to_bf16_at(level, native, &s, &[], &[], &mut c);
        assert!(
            c.iter().all(|x| x.to_bits() == 0),
            "k = 0 writes +0 at {level:?}"
        );
        let s = GemmShape { n: 0, k: 4, ..s };
        gemm_bf16_to_bf16_at(level, native, &s, &[bf16::ONE; 24], &[], &mut []);
    }
}
