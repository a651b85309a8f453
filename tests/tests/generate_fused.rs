//! Generation with the executor's fused sampling step (`Op::SampleStep`: logits stay on the
//! device, only tokens and scores come back) is token for token generation sampling on the
//! host from downloaded logits, on every sampler setting, and downloads less.

#![allow(clippy::unwrap_used)]

mod likelihood_support;
use gidd_engine::{DType, Executor};
use gidd_model::generate::{
    generate, generate_keyed, Canvas, GenOpts, Method, NoiseSchedule, RowSeed,
};
use gidd_model::GiddConfig;
use likelihood_support::{random_params, tiny_cfg};
use std::ops::ControlFlow;

const T: usize = 24;
const V: usize = 37;

fn settings(seed: u64) -> Vec<GenOpts> {
    let mut out = vec![];
    for (i, method) in [Method::Ancestral, Method::Adaptive]
        .into_iter()
        .enumerate()
    {
        for (j, (temperature, top_k, top_p)) in [
            (1.0, None, None),
            (0.7, Some(5), None),
            (1.3, None, Some(0.8)),
            (0.0, None, None),
            (1.0, Some(1), Some(0.5)),
        ]
        .into_iter()
        .enumerate()
        {
            out.push(GenOpts {
                max_length: 16,
                min_length: 9,
                block_length: 5,
                steps: 4,
                method,
                schedule: NoiseSchedule::Cosine,
                temperature,
                top_k,
                top_p,
                tokens_per_step: 1 + j % 2,
                seed: seed ^ (10 * i + j) as u64,
            });
        }
    }
    out
}

/// Generates every setting with and without the fused step on `exec` (the same forward
/// either way) and compares; returns the download bytes of both.
fn compare<E: Executor + Clone>(exec: E, cfg: &GiddConfig, seed: u64, keyed: bool) {
    let params = random_params(cfg, seed);
    let prompts: Vec<Vec<u32>> = (0..3).map(|r| vec![0, 5 + r, 9 + 2 * r, 4 + r]).collect();
    let keys: Vec<RowSeed> = (0..3)
        .map(|r| RowSeed {
            seed: seed ^ 0x5eed,
            row: 7 * r,
        })
        .collect();
    for o in settings(seed) {
        for kv in [true, false] {
            let run = |device: bool| {
                let mut c =
                    Canvas::with_executor(exec.clone(), cfg, &params, 3, T, DType::F32).unwrap();
                c.kv_cache = kv;
                c.sample_on_device = device;
                assert_eq!(c.samples_on_device(), device, "{}", exec.name());
                let out = if keyed {
                    generate_keyed(&mut c, cfg, &prompts, &keys, &o, |_| {
                        ControlFlow::Continue(())
                    })
                } else {
                    generate(&mut c, cfg, &prompts, &o, None, |_, _| {})
                };
                (out.unwrap(), c.stats)
            };
            let (host, sh) = run(false);
            let (dev, sd) = run(true);
            let case = format!(
                "{} noise {} keyed {keyed} kv {kv} {:?} T {} k {:?} p {:?}",
                exec.name(),
                cfg.noise_type,
                o.method,
                o.temperature,
                o.top_k,
                o.top_p
            );
            assert_eq!(dev, host, "{case}: fused sampling changed the tokens");
            assert_eq!(sd.step_calls, sh.step_calls, "{case}: logits reuse differs");
            assert!(
                sd.step_download_bytes * 4 < sh.step_download_bytes,
                "{case}: {} bytes down with the fused step, {} without",
                sd.step_download_bytes,
                sh.step_download_bytes
            );
        }
    }
}

#[test]
fn fused_sampling_on_the_cpu_is_token_for_token_the_hosts() {
    let seed = gidd_tests::seed(0x5a3b1e);
    // masked, hybrid and uniform noise: kept tokens, posteriors with pi everywhere
    for (i, noise) in [-1000.0, 0.0, 1000.0].into_iter().enumerate() {
        let cfg = tiny_cfg(V, noise, T, i == 1);
        compare(gidd_engine::CpuExecutor, &cfg, seed ^ i as u64, i == 2);
    }
}

#[test]
fn fused_sampling_on_wgpu_is_token_for_token_the_hosts() {
    if !gidd_tests::wgpu_available("generate_fused::wgpu") {
        return;
    }
    let exec = gidd_wgpu::WgpuExecutor::new().unwrap();
    if !exec.has_f64_shaders() {
        gidd_tests::note_skip(
            "generate_fused::wgpu",
            "the adapter has no f64 shaders: wgpu generation samples on the host",
        );
        return;
    }
    let seed = gidd_tests::seed(0x3a1b);
    for (i, noise) in [-1000.0, 0.0].into_iter().enumerate() {
        let cfg = tiny_cfg(V, noise, T, false);
        compare(exec.clone(), &cfg, seed ^ i as u64, i == 1);
    }
}
