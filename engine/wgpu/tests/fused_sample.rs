//! The fused sampling step runs as its WGSL kernel (sample/sample.wgsl, one dispatch) and
//! draws token for token what the cpu executor's kernel (the host sampler's own f64 code)
//! draws, with scores within rounding: adaptive and ancestral (masked, hybrid, uniform
//! noise), temperature 0 and others, top-k 1 to V, top-p at its edges, ties, -inf logits,
//! banned ids, odd and large vocabularies, uniforms at 0 and near 1.

mod common;

use common::{rng, seed, wgpu};
use gidd_engine::op::{SampleMode, SamplePosterior, SampleSpec};
use gidd_engine::sample::{pack_uniform, score_of};
use gidd_engine::{DType, Graph, HostTensor, Op, Program};
use rand::rngs::StdRng;
use rand::Rng;

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A posterior as generation builds it, for pi(l) = sigmoid(l + shift) spread uniformly.
fn posterior(r: &mut StdRng, mask_id: usize, v: usize, shift: f64) -> SamplePosterior {
    let lt: f64 = r.random_range(-5.0..5.0);
    let ls = lt + r.random_range(0.01..3.0);
    let pi = |l: f64| {
        let a = (1.0 / (1.0 + (-(l + shift) as f32).exp())) as f32;
        [a * (1.0 / (v as f32 - 1.0)), 1.0 - a]
    };
    SamplePosterior {
        a_t: sig(lt),
        a_s: sig(ls),
        pi_t: pi(lt),
        pi_s: pi(ls),
        mask_id,
    }
}

/// Logits with ties, -inf, huge and tiny values, in one of a few styles.
fn logits(r: &mut StdRng, n: usize, style: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match style {
            0 => r.random_range(-8.0..8.0),
            // a handful of distinct values: ties everywhere
            1 => r.random_range(0..4) as f32 * 0.75,
            // peaked with -inf holes
            2 => match r.random_range(0..20) {
                0 => f32::NEG_INFINITY,
                1 => 30.0,
                _ => r.random_range(-3.0..3.0),
            },
            _ => 0.0,
        })
        .collect()
}

fn run_case(r: &mut StdRng, case: &str, v: usize, rows: usize, spec: SampleSpec, style: usize) {
    let Some(x) = wgpu() else { return };
    let lg = logits(r, rows * v, style);
    let mut rin = vec![];
    for i in 0..rows {
        let z = match i % 3 {
            0 => spec.mask_id,
            _ => r.random_range(0..v),
        };
        let ban = if r.random_bool(0.3) {
            r.random_range(0..v) as i32
        } else {
            -1
        };
        let u = match i % 7 {
            0 => 0.0,
            // the last token's edge, beyond rounding (within an ulp of 1 the two exps'
            // last-bit differences decide between the last token and the next)
            1 => 1.0 - 1e-9,
            _ => (r.random::<u64>() >> 11) as f64 / (1u64 << 53) as f64,
        };
        let [hi, lo] = pack_uniform(u);
        rin.extend([z as i32, ban, hi, lo]);
    }
    let g = Graph::new();
    let l = g.input("logits", &[rows, v], DType::F32);
    let ri = g.input("rows", &[rows, 4], DType::I32);
    let out = g
        .apply1(Op::SampleStep(spec), &[&l, &ri])
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let p = Program::compile(&[out], &["logits", "rows"]).unwrap_or_else(|e| panic!("{e}"));
    let ins = vec![
        ("logits", HostTensor::f32(vec![rows, v], lg).unwrap()),
        ("rows", HostTensor::i32(vec![rows, 4], rin).unwrap()),
    ];
    let want = common::cpu_run(case, &p, &ins);
    let got = common::wgpu_run(x, case, &p, &ins);
    let (w, g) = (want[0].as_i32().unwrap(), got[0].as_i32().unwrap());
    let lp = x.load(&p).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(lp.dispatch_count(), 1, "{case}: not one fused dispatch");
    for i in 0..rows {
        let (wr, gr) = (&w[i * 3..i * 3 + 3], &g[i * 3..i * 3 + 3]);
        assert_eq!(
            gr[0], wr[0],
            "{case} row {i}: wgpu drew {}, cpu {}",
            gr[0], wr[0]
        );
        let (ws, gs) = (score_of(wr), score_of(gr));
        assert!(
            (ws - gs).abs() <= 1e-13 * ws.abs().max(1e-300),
            "{case} row {i}: score {gs} vs cpu {ws}"
        );
    }
    eprintln!("ok {case}");
}

use gidd_engine::Executor;

#[test]
fn sample_step_draws_the_cpu_kernels_tokens() {
    let Some(x) = wgpu() else { return };
    if !x.has_f64_shaders() {
        // the op is refused there (generation samples on the host): say so loudly
        eprintln!(
            "SKIPPED fused_sample: the adapter has no f64 shaders ({})",
            x.name()
        );
        assert!(!x.supports_fused(
            &Op::SampleStep(SampleSpec {
                mask_id: 0,
                temperature: 1.0,
                top_k: None,
                top_p: None,
                mode: SampleMode::Adaptive,
            }),
            DType::F32
        ));
        return;
    }
    let mut r = rng(seed(0x5a4d));
    let mut n = 0;
    for &v in &[5usize, 37, 300, 4099] {
        for (temperature, top_k, top_p) in [
            (1.0, None, None),
            (0.0, None, None),
            (0.7, Some(1), None),
            (1.3, Some(v / 3 + 1), None),
            (1.0, Some(v), Some(1.0)),
            (0.9, None, Some(0.5)),
            (1.0, None, Some(1e-12)),
            (1.0, None, Some(0.999_999)),
            (2.0, Some(4), Some(0.3)),
        ] {
            for (m, shift) in [(0, 0.0), (1, -1000.0), (1, 0.0), (1, 1000.0)] {
                let mask_id = n % v;
                let mode = if m == 0 {
                    SampleMode::Adaptive
                } else {
                    SampleMode::Ancestral(posterior(&mut r, mask_id, v, shift))
                };
                let spec = SampleSpec {
                    mask_id,
                    temperature,
                    top_k,
                    top_p,
                    mode,
                };
                let style = n % 4;
                let rows = if v > 1000 { 9 } else { 23 };
                let case = format!(
                    "V {v} T {temperature} k {top_k:?} p {top_p:?} mode {m} shift {shift} style {style}"
                );
                run_case(&mut r, &case, v, rows, spec, style);
                n += 1;
            }
        }
    }
}

/// A large odd vocabulary (the bench's order of size) in one plain adaptive and one
/// filtered ancestral case.
#[test]
fn sample_step_on_a_large_vocabulary() {
    let Some(x) = wgpu() else { return };
    if !x.has_f64_shaders() {
        eprintln!(
            "SKIPPED fused_sample (large): no f64 shaders ({})",
            x.name()
        );
        return;
    }
    let mut r = rng(seed(0x1a26e));
    let v = 50_257;
    for (i, (top_k, top_p)) in [(None, None), (Some(40), Some(0.9))]
        .into_iter()
        .enumerate()
    {
        let mode = if i == 0 {
            SampleMode::Adaptive
        } else {
            SampleMode::Ancestral(posterior(&mut r, 3, v, 0.0))
        };
        let spec = SampleSpec {
            mask_id: 3,
            temperature: 1.0,
            top_k,
            top_p,
            mode,
        };
        run_case(&mut r, &format!("V {v} case {i}"), v, 5, spec, 2 * i);
    }
}
