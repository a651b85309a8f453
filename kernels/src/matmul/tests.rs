//! Randomized comparisons: every SIMD level against the f64 reference and against each
//! other, f32, f16 (widened) and bf16 (native `vdpbf16ps` and the widening fallback), all transpose and
//! broadcast combinations, ragged and block-crossing sizes, and the empty cases.
//! Seeds come from the clock and are printed in every failure message.

use super::cpu::{gemm_bf16_at, gemm_f32_at, max_kc, usable, usable_bf16};
use super::reference::gemm_f64;
use super::{gemm_bf16, gemm_f16_at, gemm_f32, GemmShape};
use crate::simd::Level;
use crate::testutil::seed;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// f32 GEMM error bound, per output element: `F32_TOL · sqrt(k) · max|a| · max|b|`.
/// Each output sums k products in f32 (unit roundoff 6e-8); blocked accumulation errors grow
/// like a random walk, ~sqrt(k)·eps·|a||b|. 1e-5 is ~80 eps of headroom for the worst of
/// tens of thousands of outputs per case, while one wrong or missing product (typically
/// ~0.25 with inputs in [-1, 1]) is far above the bound (<= 7e-4 at the deepest k tested).
const F32_TOL: f64 = 1e-5;
/// Two f32 levels against each other: both carry the error above, in different orders.
const LEVEL_TOL: f64 = 2.0 * F32_TOL;
/// bf16 inputs against the f64 reference computed on the same bf16 values: products of two
/// bf16 are exact in f32, so only f32 accumulation error remains (same bound as f32).
const BF16_TOL: f64 = F32_TOL;

const LEVELS: [Level; 3] = [Level::Scalar, Level::Avx2Fma, Level::Avx512];

fn rand_vec(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A dimension: often tiny/odd/prime, sometimes past the row blocks (MC = 64/96/140 rows for
/// scalar/AVX2/AVX-512) and the scalar KC (256). Deeper k: `matmul_deep_k_*`.
fn dim(rng: &mut StdRng) -> usize {
    const ODD: [usize; 12] = [1, 2, 3, 5, 7, 13, 14, 15, 17, 31, 33, 257];
    match rng.random_range(0..4) {
        0 => ODD[rng.random_range(0..ODD.len())],
        1 => rng.random_range(1..=48),
        _ => rng.random_range(1..=300),
    }
}

fn random_shape(rng: &mut StdRng) -> GemmShape {
    GemmShape {
        batch: rng.random_range(1..=4),
        m: dim(rng),
        n: dim(rng),
        k: dim(rng),
        trans_a: rng.random(),
        trans_b: rng.random(),
        b_broadcast: rng.random(),
    }
}

fn amax(x: &[f32]) -> f64 {
    x.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64))
}

/// Asserts `|got - want| <= tol · sqrt(k) · max|a| · max|b|` everywhere.
#[allow(clippy::too_many_arguments)]
fn check(
    what: &str,
    seed: u64,
    s: &GemmShape,
    got: &[f32],
    want: &[f64],
    tol: f64,
    amax_a: f64,
    amax_b: f64,
) {
    assert_eq!(got.len(), want.len(), "{what}: length, seed {seed}, {s:?}");
    let bound = tol * (s.k as f64).sqrt() * amax_a * amax_b;
    let (mut worst, mut at) = (0.0f64, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g as f64 - w).abs();
        if e.is_nan() || e > worst {
            (worst, at) = (e, i);
        }
    }
    assert!(
        worst <= bound, // false for NaN
        "{what}: |err| {worst:.3e} > bound {bound:.3e} at element {at} (got {}, want {}); seed {seed}, {s:?}",
        got[at],
        want[at]
    );
}

fn inputs(rng: &mut StdRng, s: &GemmShape) -> (Vec<f32>, Vec<f32>) {
    let (la, lb, _) = s.lens();
    (rand_vec(rng, la), rand_vec(rng, lb))
}

/// Random operands rounded to bf16, with their exact f32 values.
#[allow(clippy::type_complexity)]
fn bf16_inputs(rng: &mut StdRng, s: &GemmShape) -> ((Vec<bf16>, Vec<f32>), (Vec<bf16>, Vec<f32>)) {
    let (a, b) = inputs(rng, s);
    let round = |x: &[f32]| -> (Vec<bf16>, Vec<f32>) {
        let h: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        let f = h.iter().map(|v| v.to_f32()).collect();
        (h, f)
    };
    (round(&a), round(&b))
}

/// Random operands rounded to f16, one in 32 scaled into f16's subnormals (products with
/// them are still exact in f32).
#[allow(clippy::type_complexity)]
fn f16_inputs(rng: &mut StdRng, s: &GemmShape) -> ((Vec<f16>, Vec<f32>), (Vec<f16>, Vec<f32>)) {
    let (a, b) = inputs(rng, s);
    let mut round = |x: &[f32]| -> (Vec<f16>, Vec<f32>) {
        let h: Vec<f16> = x
            .iter()
            .map(|&v| match rng.random_range(0..32) {
                0 => f16::from_f32(v * 1e-6),
                _ => f16::from_f32(v),
            })
            .collect();
        let f = h.iter().map(|v| v.to_f32()).collect();
        (h, f)
    };
    (round(&a), round(&b))
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn run_f32(level: Level, s: &GemmShape, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![f32::NAN; s.lens().2];
    gemm_f32_at(level, s, a, b, &mut c);
    c
}

fn report_levels() {
    for l in LEVELS {
        if usable(l) != l {
            println!(
                "skipped: {l:?} not supported by this CPU (its cases run at {:?})",
                usable(l)
            );
        }
    }
    if !usable_bf16() {
        println!("skipped: native bf16 (avx512bf16) not supported by this CPU");
    }
}

#[test]
fn matmul_f32_every_level_matches_reference() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    report_levels();
    for case in 0..48 {
        let mut s = random_shape(&mut rng);
        if case < 2 {
            // Block-crossing sizes in every dimension.
            (s.m, s.n, s.k) = (
                rng.random_range(560..640),
                rng.random_range(560..640),
                rng.random_range(560..640),
            );
            s.batch = 1;
        }
        let (a, b) = inputs(&mut rng, &s);
        let want = gemm_f64(&s, &to_f64(&a), &to_f64(&b));
        let (aa, ab) = (amax(&a), amax(&b));
        let scalar = run_f32(Level::Scalar, &s, &a, &b);
        check(
            "f32 scalar vs reference",
            seed,
            &s,
            &scalar,
            &want,
            F32_TOL,
            aa,
            ab,
        );
        let scalar64 = to_f64(&scalar);
        for level in [Level::Avx2Fma, Level::Avx512] {
            let got = run_f32(level, &s, &a, &b);
            check(
                &format!("f32 {level:?} vs reference"),
                seed,
                &s,
                &got,
                &want,
                F32_TOL,
                aa,
                ab,
            );
            check(
                &format!("f32 {level:?} vs scalar"),
                seed,
                &s,
                &got,
                &scalar64,
                LEVEL_TOL,
                aa,
                ab,
            );
        }
        // The public entry point (whatever level this machine dispatches to).
        let mut c = vec![f32::NAN; s.lens().2];
        gemm_f32(&s, &a, &b, &mut c);
        check(
            "gemm_f32 vs reference",
            seed,
            &s,
            &c,
            &want,
            F32_TOL,
            aa,
            ab,
        );
    }
}

#[test]
fn matmul_bf16_matches_reference_on_rounded_inputs() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    report_levels();
    for case in 0..32 {
        let mut s = random_shape(&mut rng);
        if case == 0 {
            (s.m, s.n, s.k, s.batch) = (
                rng.random_range(560..640),
                rng.random_range(560..640),
                rng.random_range(1030..1100),
                1,
            );
        }
        let ((a, a32), (b, b32)) = bf16_inputs(&mut rng, &s);
        let want = gemm_f64(&s, &to_f64(&a32), &to_f64(&b32));
        let (aa, ab) = (amax(&a32), amax(&b32));
        let mut paths: Vec<(Level, bool)> = LEVELS.iter().map(|&l| (l, false)).collect();
        paths.push((Level::Avx512, true));
        for (level, native) in paths {
            let mut c = vec![f32::NAN; s.lens().2];
            gemm_bf16_at(level, native, &s, &a, &b, &mut c);
            check(
                &format!("bf16 {level:?} native={native} vs reference"),
                seed,
                &s,
                &c,
                &want,
                BF16_TOL,
                aa,
                ab,
            );
        }
        // f16 on the same shape: products of two f16 are exact in f32 too (11 + 11 bits)
        let ((a16, a16f), (b16, b16f)) = f16_inputs(&mut rng, &s);
        let want16 = gemm_f64(&s, &to_f64(&a16f), &to_f64(&b16f));
        for level in LEVELS {
            let mut c = vec![f32::NAN; s.lens().2];
            gemm_f16_at(level, &s, &a16, &b16, &mut c);
            let (fa, fb) = (amax(&a16f), amax(&b16f));
            check(
                &format!("f16 {level:?}"),
                seed,
                &s,
                &c,
                &want16,
                BF16_TOL,
                fa,
                fb,
            );
        }
        let mut c = vec![f32::NAN; s.lens().2];
        gemm_bf16(&s, &a, &b, &mut c);
        check(
            "gemm_bf16 vs reference",
            seed,
            &s,
            &c,
            &want,
            BF16_TOL,
            aa,
            ab,
        );
    }
}

/// Shapes that steer the driver into each of its parallel splits (rows, column panels,
/// batch entries, folded broadcast batch) and the single-thread path.
#[test]
fn matmul_parallel_splits_match_reference() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let shapes = [
        (1, 700, 300, 64, false), // row blocks
        (1, 9, 1500, 200, false), // few rows: column-panel split
        (1, 1, 2000, 300, false), // one row (GEMV-like)
        (1, 400, 1, 300, false),  // one column
        (8, 64, 80, 48, false),   // batch split
        (3, 150, 130, 70, false), // batch not a multiple of the threads: per-matrix split
        (5, 37, 200, 90, true),   // broadcast weights (folded into rows when !trans_a)
        (2, 1100, 40, 20, true),  // broadcast, many rows
    ];
    for (batch, m, n, k, b_broadcast) in shapes {
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            let s = GemmShape {
                batch,
                m,
                n,
                k,
                trans_a,
                trans_b,
                b_broadcast,
            };
            let (a, b) = inputs(&mut rng, &s);
            let want = gemm_f64(&s, &to_f64(&a), &to_f64(&b));
            for level in LEVELS {
                let got = run_f32(level, &s, &a, &b);
                check(
                    &format!("f32 {level:?}"),
                    seed,
                    &s,
                    &got,
                    &want,
                    F32_TOL,
                    amax(&a),
                    amax(&b),
                );
            }
            let (ah, bh): (Vec<bf16>, Vec<bf16>) = (
                a.iter().map(|&x| bf16::from_f32(x)).collect(),
                b.iter().map(|&x| bf16::from_f32(x)).collect(),
            );
            let wh = gemm_f64(
                &s,
                &ah.iter().map(|x| x.to_f64()).collect::<Vec<_>>(),
                &bh.iter().map(|x| x.to_f64()).collect::<Vec<_>>(),
            );
            let mut c = vec![f32::NAN; s.lens().2];
            gemm_bf16(&s, &ah, &bh, &mut c);
            check("gemm_bf16", seed, &s, &c, &wh, BF16_TOL, amax(&a), amax(&b));
        }
    }
}

#[test]
fn matmul_k_zero_writes_zeros() {
    for level in LEVELS {
        for (m, n, batch, bb) in [(3, 5, 2, false), (17, 33, 1, true), (1, 1, 4, false)] {
            let s = GemmShape {
                batch,
                m,
                n,
                k: 0,
                trans_a: false,
                trans_b: true,
                b_broadcast: bb,
            };
            let mut c = vec![f32::NAN; batch * m * n];
            gemm_f32_at(level, &s, &[], &[], &mut c);
            assert!(
                c.iter().all(|&x| x == 0.0),
                "k=0 f32 {level:?} {s:?}: {c:?}"
            );
            let mut c = vec![f32::NAN; batch * m * n];
            gemm_bf16_at(level, true, &s, &[], &[], &mut c);
            assert!(
                c.iter().all(|&x| x == 0.0),
                "k=0 bf16 {level:?} {s:?}: {c:?}"
            );
        }
    }
}

#[test]
fn matmul_empty_is_noop() {
    let a = [1.0f32; 64];
    let b = [1.0f32; 64];
    let ah = [bf16::ONE; 64];
    for level in LEVELS {
        for (batch, m, n, k) in [
            (0, 4, 4, 4),
            (2, 0, 4, 4),
            (2, 4, 0, 4),
            (0, 0, 0, 0),
            (3, 0, 5, 0),
        ] {
            let s = GemmShape {
                batch,
                m,
                n,
                k,
                trans_a: false,
                trans_b: false,
                b_broadcast: false,
            };
            // C has room but the shape says there is nothing to write.
            let mut c = [7.0f32; 8];
            gemm_f32_at(level, &s, &a, &b, &mut c);
            assert_eq!(c, [7.0; 8], "f32 {level:?} {s:?} touched C");
            gemm_bf16_at(level, true, &s, &ah, &ah, &mut c);
            assert_eq!(c, [7.0; 8], "bf16 {level:?} {s:?} touched C");
        }
    }
}

/// Depth that crosses every kernel's KC block at least twice, plus an odd tail.
fn deep_k() -> usize {
    2 * max_kc() + 37
}

/// k spanning several KC blocks: later blocks accumulate into C, and the result must not
/// depend on stale contents of C (overwrite, never accumulate across calls).
#[test]
fn matmul_deep_k_accumulates_over_garbage_c() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let s = GemmShape {
            batch: rng.random_range(1..=2),
            m: rng.random_range(1..=40),
            n: rng.random_range(1..=70),
            k: deep_k() + rng.random_range(0..16),
            trans_a,
            trans_b,
            b_broadcast: rng.random(),
        };
        let (a, b) = inputs(&mut rng, &s);
        let want = gemm_f64(&s, &to_f64(&a), &to_f64(&b));
        for level in LEVELS {
            let mut c = vec![1.0e6f32; s.lens().2];
            gemm_f32_at(level, &s, &a, &b, &mut c);
            check(
                &format!("f32 {level:?} over garbage C"),
                seed,
                &s,
                &c,
                &want,
                F32_TOL,
                amax(&a),
                amax(&b),
            );
        }
        let (ah, bh): (Vec<bf16>, Vec<bf16>) = (
            a.iter().map(|&x| bf16::from_f32(x)).collect(),
            b.iter().map(|&x| bf16::from_f32(x)).collect(),
        );
        let wh = gemm_f64(
            &s,
            &ah.iter().map(|x| x.to_f64()).collect::<Vec<_>>(),
            &bh.iter().map(|x| x.to_f64()).collect::<Vec<_>>(),
        );
        for (level, native) in [
            (Level::Scalar, false),
            (Level::Avx2Fma, false),
            (Level::Avx512, false),
            (Level::Avx512, true),
        ] {
            let mut c = vec![1.0e6f32; s.lens().2];
            gemm_bf16_at(level, native, &s, &ah, &bh, &mut c);
            check(
                &format!("bf16 {level:?} native={native} over garbage C"),
                seed,
                &s,
                &c,
                &wh,
                BF16_TOL,
                amax(&a),
                amax(&b),
            );
        }
    }
}

/// The AMX tile path on its own, every shape (tiny ones included, which `gemm_bf16` would
/// route elsewhere), over a C full of NaN: every output written, none accumulated into.
#[cfg(target_arch = "x86_64")]
#[test]
fn matmul_bf16_amx_matches_reference() {
    use super::cpu_amx::{available, gemm_bf16_amx};
    if !available() {
        println!("SKIPPED: AMX-BF16 not available on this CPU/OS (or GIDD_NO_AMX set)");
        return;
    }
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    for case in 0..40 {
        let mut s = random_shape(&mut rng);
        if case == 0 {
            (s.m, s.n, s.k) = (rng.random_range(200..260), rng.random_range(200..260), 4099);
        }
        if case == 1 {
            (s.m, s.n, s.k) = (32, 32, 32); // exactly one block, full tiles
        }
        if case == 2 {
            // transposed A: full 32×32 chunks through registers plus ragged rows and k
            (s.m, s.n, s.k, s.trans_a) = (101, 45, 71, true);
        }
        let ((a, a32), (b, b32)) = bf16_inputs(&mut rng, &s);
        let want = gemm_f64(&s, &to_f64(&a32), &to_f64(&b32));
        let mut c = vec![f32::NAN; s.lens().2];
        gemm_bf16_amx(&s, &a, &b, &mut c);
        check(
            "bf16 AMX vs reference",
            seed,
            &s,
            &c,
            &want,
            BF16_TOL,
            amax(&a32),
            amax(&b32),
        );
    }
}

/// The driver on blocks other than this CPU's: those other caches would pick (small L2,
/// Sapphire Rapids-like, absurd) and the smallest legal ones (one register tile by 4 k
/// values), so every block loop runs many times with ragged ends, against the reference.
#[test]
fn matmul_runtime_blocks_match_reference() {
    use super::blocking::{Blocks, CacheSizes};
    use super::cpu::{gemm_blocked, COut, Kernel, Same, Widen, SCALAR_F32};
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let caches = [
        CacheSizes {
            l1d: 32 << 10,
            l2: 256 << 10,
            l3: 1 << 20,
        },
        CacheSizes {
            l1d: 48 << 10,
            l2: 2 << 20,
            l3: 2 << 20,
        },
        CacheSizes {
            l1d: 1,
            l2: 1,
            l3: 1 << 40,
        },
    ];
    let with_tiny = |bl: Vec<Blocks>, mr: usize, nr: usize| {
        let mut v = bl;
        v.push(Blocks {
            mc: mr,
            kc: 4,
            nc: nr,
        });
        v
    };
    let mut f32_kernels: Vec<&'static Kernel<f32>> = vec![&SCALAR_F32];
    #[cfg(target_arch = "x86_64")]
    {
        if usable(Level::Avx2Fma) == Level::Avx2Fma {
            f32_kernels.push(&super::cpu_avx2::F32);
        }
        if usable(Level::Avx512) == Level::Avx512 {
            f32_kernels.push(&super::cpu_avx512::F32);
        }
    }
    for case in 0..6 {
        let mut s = random_shape(&mut rng);
        if case < 2 {
            (s.m, s.n, s.k) = (
                rng.random_range(150..320),
                rng.random_range(40..300),
                rng.random_range(300..700),
            );
        }
        let ((ah, a), (bh, b)) = bf16_inputs(&mut rng, &s);
        let want = gemm_f64(&s, &to_f64(&a), &to_f64(&b));
        for kern in &f32_kernels {
            let bls = caches.iter().map(|c| kern.blocks(c)).collect();
            for bl in with_tiny(bls, kern.mr, kern.nr) {
                let mut c = vec![f32::NAN; s.lens().2];
                gemm_blocked::<f32, f32, Same>(kern, bl, &s, &a, &b, COut::F32(&mut c));
                let what = format!("f32 {}x{} {bl:?}", kern.mr, kern.nr);
                check(&what, seed, &s, &c, &want, F32_TOL, amax(&a), amax(&b));
                let mut c = vec![f32::NAN; s.lens().2];
                gemm_blocked::<bf16, f32, Widen>(kern, bl, &s, &ah, &bh, COut::F32(&mut c));
                let what = format!("bf16 widened {}x{} {bl:?}", kern.mr, kern.nr);
                check(&what, seed, &s, &c, &want, BF16_TOL, amax(&a), amax(&b));
            }
        }
        #[cfg(target_arch = "x86_64")]
        if usable_bf16() {
            let kern = &super::cpu_avx512::BF16;
            let bls = caches.iter().map(|c| kern.blocks(c)).collect();
            for bl in with_tiny(bls, kern.mr, kern.nr) {
                let mut c = vec![f32::NAN; s.lens().2];
                gemm_blocked::<bf16, bf16, Same>(kern, bl, &s, &ah, &bh, COut::F32(&mut c));
                let what = format!("bf16 native {bl:?}");
                check(&what, seed, &s, &c, &want, BF16_TOL, amax(&a), amax(&b));
            }
        }
    }
}
