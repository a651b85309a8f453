//! The grids of `gidd sweep --preset`: smoke (CI), toy (a 2-core CPU in about an hour)
//! and paper (SCALING.md section 2, for a cluster).

use super::grid::{d_beta2, d_beta2_large, d_large_batch, Grid, Noise, Size, StepRule};
use std::collections::BTreeMap;

/// `--preset smoke`: 2 tiny sizes × masked and uniform × 1 batch × 1 lr × 30 steps on rows
/// of 32 and a 512-token vocabulary: the CI check that the whole pipeline runs.
pub fn smoke() -> Grid {
    Grid {
        sizes: vec![Size::new(1, 32, 2), Size::new(2, 32, 2)],
        noise: vec![Noise::Name("masked".into()), Noise::Name("uniform".into())],
        batch_sizes: vec![8],
        lrs: BTreeMap::from([("*".to_string(), vec![0.5])]),
        noise_lrs: BTreeMap::new(),
        steps: 30,
        step_rules: vec![],
        max_flops: None,
        warmup: 3,
        cooldown: 0.0,
        seq: 32,
        beta2: d_beta2(),
        beta2_large: d_beta2_large(),
        large_batch: d_large_batch(),
        save_steps: None,
        seed: 0,
        extra_args: vec!["--vocab_size".into(), "512".into()],
    }
}

/// `--preset toy`: masked, balanced and uniform over 6 two-layer sizes (d 12 … 64) on rows
/// of 32 of the embedded corpus (vocabulary 1024), batch 32, constant lr 0.5 after 30 warmup
/// steps, each size trained to its own largest budget (`TOY_SIZES`: the small ones stop
/// at 1e12, where their many cheap steps would otherwise dominate the time). Chosen by pilot runs (masked, B 32, rows of 32, lr 2, 2 shared cores):
/// every size first sits on the token-unigram plateau (~5.96 nats/token); 2-layer models
/// leave it after ~600-1000 steps, the smaller ones first (L2 d16 5.26 at 3800 steps, L2
/// d24 5.28 at 2250, L2 d32 5.04 at 4000, L2 d48 5.26 at 2591, L2 d64 5.46 at 1500);
/// 1-layer models did not leave it in 3400 (d32) and 6000 (d16) steps, so none is in the
/// ladder (L1 d32's M lies between L2 d16's and L2 d24's: a stuck size there breaks the
/// iso-FLOP); L3 d96 at lr 2, 4 and 8 was still on it after 460. The old ladder (L1 d32 …
/// L4 d128 at batch 16, lr 1, all to 2e12) starved its larger sizes, so its smallest size
/// won every budget. The rate: at lr 2 (the pilots') the balanced and uniform runs spiked and
/// stalled (uniform L2 d12 diverged to a final ELBO of 10.6; L2 d16's were no better after
/// 9402 steps than after 2000). Probed on L2 d16, 3009 steps, ELBO averaged over the last 250
/// steps: masked 5.43 at lr 2 vs 5.09 at 0.5; balanced 5.96 at lr 1 vs 5.42 at 0.5; uniform
/// 5.90 at lr 1 vs 5.63 at 0.5. So one rate for all, 0.5: also the top of the paper's rates
/// for batch 32 (SCALING.md section 2).
pub fn toy() -> Grid {
    Grid {
        sizes: TOY_SIZES
            .iter()
            .map(|&(l, d, h, c)| Size {
                max_flops: Some(c),
                ..Size::new(l, d, h)
            })
            .collect(),
        noise: ["masked", "balanced", "uniform"]
            .map(|n| Noise::Name(n.into()))
            .to_vec(),
        batch_sizes: vec![32],
        lrs: BTreeMap::from([("*".to_string(), vec![0.5])]),
        noise_lrs: BTreeMap::new(),
        steps: 0,
        step_rules: vec![],
        max_flops: None,
        warmup: 30,
        cooldown: 0.0,
        seq: 32,
        beta2: d_beta2(),
        beta2_large: d_beta2_large(),
        large_batch: d_large_batch(),
        save_steps: Some(1000),
        seed: 0,
        // the vocabulary the toy grid was sized and measured with (train's default is 4096,
        // the main job's): a larger head would move every budget
        extra_args: vec!["--vocab_size".into(), "1024".into()],
    }
}

/// The toy ladder: (layers, hidden, heads, the size's largest budget in Method-1 FLOPs).
/// The largest sizes need 2e12 (d 64 passes step 1500, where `--scale toy` starts its
/// curves, only at 1e12). At lr 0.5 the two smallest win the budgets up to 5e11, so they
/// run to 1e12 to bound the iso-FLOPs there from below.
pub const TOY_SIZES: [(usize, usize, usize, f64); 6] = [
    (2, 12, 1, 1e12),
    (2, 16, 1, 1e12),
    (2, 24, 1, 1e12),
    (2, 32, 1, 2e12),
    (2, 48, 1, 2e12),
    (2, 64, 2, 2e12),
];

/// `--preset paper`: the reference's sweep (SCALING.md section 2): the 5-size ladder ×
/// the 5 noise types × B 8…512 (and 1024 for L20) × the LRs of each batch size, 80k steps
/// (40k for B = 512 below L20 and for B = 1024), warmup 2000, rows of 2048, β2 0.99 up to
/// B 128 and 0.98 from 256, constant LR. 510 runs: a cluster's job; give the data and
/// tokenizer after `--` (e.g. `-- --data_files DIR --tokenizer tok.json`).
pub fn paper() -> Grid {
    let sizes = super::accounting::LADDER
        .iter()
        .map(|&(l, d)| Size {
            batch_sizes: (l == 20).then(|| vec![8, 16, 32, 64, 128, 256, 512, 1024]),
            ..Size::new(l, d, super::accounting::heads_for(d))
        })
        .collect();
    let lrs = [
        ("8", vec![0.1, 0.2, 0.3]),
        ("16", vec![0.2, 0.3, 0.5]),
        ("32", vec![0.2, 0.3, 0.5]),
        ("64", vec![0.3, 0.5, 1.0]),
        ("128", vec![0.3, 0.5, 1.0]),
        ("256", vec![0.5, 1.0]),
        ("512", vec![0.5, 1.0, 2.0]),
        ("1024", vec![1.0, 2.0]),
    ];
    Grid {
        sizes,
        noise: super::grid::NOISE_NAMES
            .map(|(n, _)| Noise::Name(n.into()))
            .to_vec(),
        batch_sizes: vec![8, 16, 32, 64, 128, 256, 512],
        lrs: lrs.into_iter().map(|(b, v)| (b.to_string(), v)).collect(),
        noise_lrs: BTreeMap::new(),
        steps: 80_000,
        step_rules: vec![
            StepRule {
                min_batch: 512,
                max_layers: Some(19),
                steps: 40_000,
            },
            StepRule {
                min_batch: 1024,
                max_layers: None,
                steps: 40_000,
            },
        ],
        max_flops: None,
        warmup: 2000,
        cooldown: 0.0,
        seq: 2048,
        beta2: 0.99,
        beta2_large: 0.98,
        large_batch: 256,
        save_steps: Some(5000),
        seed: 0,
        extra_args: vec![],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn paper_preset_is_the_reference_grid() {
        let p = paper().plan().unwrap();
        // per size 3+3+3+3+3+2+3 = 20 (batch, lr) pairs, L20 also 2 at B 1024; 5 noise types
        assert_eq!(p.len(), 5 * (4 * 20 + 22));
        for r in &p {
            let want = if (r.batch == 512 && r.layers < 20) || r.batch == 1024 {
                40_000
            } else {
                80_000
            };
            assert_eq!(r.steps, want, "{}", r.name);
            assert_eq!(r.beta2, if r.batch >= 256 { 0.98 } else { 0.99 });
            assert!(r.batch < 1024 || r.layers == 20);
        }
        let b8: Vec<f64> = p
            .iter()
            .filter(|r| r.batch == 8 && r.layers == 8 && r.noise == "masked")
            .map(|r| r.lr)
            .collect();
        assert_eq!(b8, [0.1, 0.2, 0.3]);
    }

    #[test]
    fn toy_sizes_run_to_their_own_budgets() {
        let p = toy().plan().unwrap();
        assert_eq!(p.len(), 6 * 3);
        for r in &p {
            let (l, d) = (r.layers, r.hidden);
            let &(_, _, _, c) = TOY_SIZES.iter().find(|s| (s.0, s.1) == (l, d)).unwrap();
            let one_step = r.flops_per_token() * (r.batch * r.seq) as f64;
            assert!(r.flops() >= c && r.flops() < c + one_step, "{}", r.name);
            assert_eq!((r.batch, r.seq, r.lr, r.warmup), (32, 32, 0.5, 30));
        }
    }

    #[test]
    fn smoke_is_ci_sized() {
        let s = smoke().plan().unwrap();
        assert_eq!(s.len(), 4);
        assert!(s.iter().all(|r| r.steps == 30));
    }
}
