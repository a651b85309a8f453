use super::*;
use crate::testutil::seed;
use rand::{Rng, SeedableRng};

/// f32 forward vs the f64 reference, and the backward vs central differences of the reference,
/// for masked, uniform and hybrid shifts, odd vocabularies and log-SNRs past the clip.
#[test]
fn forward_matches_reference_and_backward_matches_finite_differences() {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed());
    for shift in [-1000.0f32, 0.0, 1000.0, 2.5] {
        let v = r.random_range(5..70);
        let rows = r.random_range(1..9);
        let m = Marginal {
            vocab: v,
            mask_id: 3,
            min_log_snr: -9.0,
            max_log_snr: 9.0,
            scale: 1.0,
            shift,
        };
        let lg: Vec<f32> = (0..rows * v).map(|_| r.random_range(-4.0..4.0)).collect();
        let x: Vec<i64> = (0..rows)
            .map(|_| [0, 1, 2, 4 + r.random_range(0..v as i64 - 4)][r.random_range(0..4)])
            .collect();
        let z: Vec<i64> = (0..rows)
            .map(|i| {
                if r.random_bool(0.3) {
                    x[i]
                } else {
                    r.random_range(0..v as i64)
                }
            })
            .collect();
        let l: Vec<f32> = (0..rows).map(|_| r.random_range(-11.0..11.0)).collect();
        let (mut kl, mut lpz, mut lqz) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
        forward(&m, &lg, &z, &x, &l, &mut kl, &mut lpz, &mut lqz);
        let lg64: Vec<f64> = lg.iter().map(|&y| y as f64).collect();
        let l64: Vec<f64> = l.iter().map(|&y| y as f64).collect();
        let want = reference::forward_f64(&m, &lg64, &z, &x, &l64);
        for i in 0..rows {
            // f32 rounding of softmax and logs (a few ulps), plus the f32 subtraction 1 - alpha,
            // whose relative error eps/(1 - alpha) reaches 1e-3 near the clip (the reference's f32 does the same).
            let a64 = 1.0 / (1.0 + (-(l[i] as f64).clamp(-9.0, 9.0)).exp());
            let cancel = 2.0 * f32::EPSILON as f64 / (1.0 - a64);
            let tol = |w: f64| 1e-5 * (1.0 + w.abs()) + cancel * (1.0 + w.abs());
            assert!(
                (kl[i] as f64 - want[i].0).abs() <= tol(want[i].0) * 10.0,
                "kl row {i}: {} vs {}",
                kl[i],
                want[i].0
            );
            assert!(
                (lpz[i] as f64 - want[i].1).abs() <= tol(want[i].1),
                "log p_z row {i}: {} vs {}",
                lpz[i],
                want[i].1
            );
            assert!(
                (lqz[i] as f64 - want[i].2).abs() <= tol(want[i].2),
                "log q_z row {i}"
            );
        }
        let gk: Vec<f32> = (0..rows).map(|_| r.random_range(-1.0..1.0)).collect();
        let gp: Vec<f32> = (0..rows).map(|_| r.random_range(-1.0..1.0)).collect();
        let mut d = vec![0.0; rows * v];
        backward(&m, &lg, &z, &x, &l, &gk, &gp, &mut d);
        let obj = |lg: &[f64]| -> f64 {
            reference::forward_f64(&m, lg, &z, &x, &l64)
                .iter()
                .enumerate()
                .map(|(i, t)| gk[i] as f64 * t.0 + gp[i] as f64 * t.1)
                .sum()
        };
        let mut num = 0.0;
        let mut den = 0.0;
        for j in 0..rows * v {
            let mut a = lg64.clone();
            a[j] += 1e-6;
            let mut b = lg64.clone();
            b[j] -= 1e-6;
            let fd = (obj(&a) - obj(&b)) / 2e-6;
            num += (d[j] as f64 - fd).powi(2);
            den += fd * fd;
        }
        let rel = (num / den.max(1e-30)).sqrt();
        assert!(
            rel < 1e-3 || num.sqrt() < 1e-5,
            "shift {shift}: backward vs finite differences rel err {rel}"
        );
    }
}

/// The vectorisable exp and ln against f64 over the ranges the loss feeds them.
#[test]
fn fastmath_exp_and_ln_are_accurate() {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed());
    for _ in 0..200_000 {
        let x: f32 = r.random_range(-87.0..88.0);
        let (got, want) = (super::fastmath::exp(x) as f64, (x as f64).exp());
        assert!(
            ((got - want) / want).abs() < 4.0 * f32::EPSILON as f64,
            "exp({x}) = {got}, want {want}"
        );
        let y: f32 = f32::from_bits(r.random_range(0x0080_0000u32..0x7f7f_ffff)); // every normal f32
        let (got, want) = (super::fastmath::ln(y) as f64, (y as f64).ln());
        assert!(
            (got - want).abs() <= 4.0 * f32::EPSILON as f64 * want.abs().max(1.0),
            "ln({y}) = {got}, want {want}"
        );
    }
    assert_eq!(super::fastmath::exp(-1e6), 0.0);
    assert_eq!(super::fastmath::exp(-88.0), 0.0);
}

/// Every SIMD level gives the same bits (the loops are written once and only auto-vectorised),
/// at vocabularies that are not multiples of 16, the mask first, last or inside, and logits
/// with large and extreme values.
#[test]
fn every_simd_level_gives_the_same_bits() {
    use crate::simd::Level;
    let mut r = rand::rngs::StdRng::seed_from_u64(seed());
    for (v, mask_id) in [(4099usize, 3usize), (1037, 0), (530, 529), (17, 8)] {
        for shift in [-1000.0f32, 0.0, 2.5] {
            let rows = 5;
            let m = Marginal {
                vocab: v,
                mask_id,
                min_log_snr: -9.0,
                max_log_snr: 9.0,
                scale: 1.0,
                shift,
            };
            let mut lg: Vec<f32> = (0..rows * v).map(|_| r.random_range(-30.0..30.0)).collect();
            lg[7] = 1e30;
            lg[v + 2] = -1e30;
            lg[2 * v + 1] = f32::MIN;
            let x: Vec<i64> = (0..rows).map(|_| r.random_range(0..v as i64)).collect();
            let z: Vec<i64> = (0..rows)
                .map(|i| [x[i], mask_id as i64, r.random_range(0..v as i64)][i % 3])
                .collect();
            let l: Vec<f32> = (0..rows).map(|_| r.random_range(-11.0..11.0)).collect();
            let (gk, gz): (Vec<f32>, Vec<f32>) = (0..rows)
                .map(|_| (r.random_range(-1.0..1.0), r.random_range(-1.0..1.0)))
                .unzip();
            let run = |level: Level| {
                let (mut kl, mut lpz, mut lqz) =
                    (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
                forward_at(level, &m, &lg, &z, &x, &l, &mut kl, &mut lpz, &mut lqz);
                let mut d = vec![0.0f32; rows * v];
                backward_at(level, &m, &lg, &z, &x, &l, &gk, &gz, &mut d);
                let bits = |xs: &[f32]| xs.iter().map(|y| y.to_bits()).collect::<Vec<_>>();
                (bits(&kl), bits(&lpz), bits(&lqz), bits(&d))
            };
            let want = run(Level::Scalar);
            for level in [Level::Avx2Fma, Level::Avx512] {
                assert!(
                    run(level) == want,
                    "V {v} mask {mask_id} shift {shift}: {level:?} differs from the scalar build"
                );
            }
        }
    }
}
