//! The fused sampling step plans as one sample_step launch, and its emulation (the PTX's
//! algorithm, crate::emulate_sample) draws token for token what the cpu executor's kernel
//! (the host sampler's own f64 code) draws, scores within rounding: adaptive and ancestral
//! (masked, hybrid, uniform noise), temperature 0 and others, top-k 1 to V, top-p at its
//! edges, ties, -inf logits, banned ids, vocabularies below, at and past the 256-thread
//! block. The PTX itself is not run: no GPU.

#![allow(clippy::unwrap_used)]

use crate::emulate;
use crate::plan::Step;
use crate::tests::check_plan;
use gidd_engine::op::{SampleMode, SamplePosterior, SampleSpec};
use gidd_engine::sample::{pack_uniform, score_of};
use gidd_engine::{rewrite, CpuExecutor, DType, Executor, Graph, HostTensor, Op, Program};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn posterior(r: &mut StdRng, mask_id: usize, v: usize, shift: f64) -> SamplePosterior {
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
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

fn case(r: &mut StdRng, name: &str, v: usize, rows: usize, spec: SampleSpec, style: usize) {
    let lg: Vec<f32> = (0..rows * v)
        .map(|_| match style {
            0 => r.random_range(-8.0..8.0),
            1 => r.random_range(0..4) as f32 * 0.75,
            2 => match r.random_range(0..20) {
                0 => f32::NEG_INFINITY,
                1 => 30.0,
                _ => r.random_range(-3.0..3.0),
            },
            _ => 0.0,
        })
        .collect();
    let mut rin = vec![];
    for i in 0..rows {
        let z = if i % 3 == 0 {
            spec.mask_id
        } else {
            r.random_range(0..v)
        };
        let ban = if r.random_bool(0.3) {
            r.random_range(0..v) as i32
        } else {
            -1
        };
        let u = match i % 7 {
            0 => 0.0,
            1 => 1.0 - 1e-9,
            _ => (r.random::<u64>() >> 11) as f64 / (1u64 << 53) as f64,
        };
        let [hi, lo] = pack_uniform(u);
        rin.extend([z as i32, ban, hi, lo]);
    }
    let g = Graph::new();
    let l = g.input("logits", &[rows, v], DType::F32);
    let ri = g.input("rows", &[rows, 4], DType::I32);
    let out = g.apply1(Op::SampleStep(spec), &[&l, &ri]).unwrap();
    let p = Program::compile(&[out], &["logits", "rows"]).unwrap();
    let ins = [
        HostTensor::f32(vec![rows, v], lg).unwrap(),
        HostTensor::i32(vec![rows, 4], rin).unwrap(),
    ];
    let host: Vec<&HostTensor> = ins.iter().collect();
    let mut lp = CpuExecutor.load(&p).unwrap();
    let want = CpuExecutor.run(&mut lp, &host).unwrap();
    let lowered = rewrite::lower_for(&p, &crate::fused::supports).unwrap();
    let pl = crate::lower::plan_for(&lowered, false).unwrap_or_else(|e| panic!("{name}: {e}"));
    check_plan(name, &pl);
    let n = pl
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Launch(l) if l.entry == "sample_step"))
        .count();
    assert_eq!(n, 1, "{name}: {:?}", pl.steps);
    let got = emulate::run(&lowered, &pl, &host);
    let (w, g) = (want[0].as_i32().unwrap(), got[0].as_i32().unwrap());
    for i in 0..rows {
        let (wr, gr) = (&w[i * 3..i * 3 + 3], &g[i * 3..i * 3 + 3]);
        assert_eq!(
            gr[0], wr[0],
            "{name} row {i}: emulated {}, cpu {}",
            gr[0], wr[0]
        );
        let (ws, gs) = (score_of(wr), score_of(gr));
        assert!(
            (ws - gs).abs() <= 1e-13 * ws.abs().max(1e-300),
            "{name} row {i}: score {gs} vs cpu {ws}"
        );
    }
}

#[test]
pub(crate) fn sample_step_emulated_draws_the_cpu_kernels_tokens() {
    let mut r = StdRng::seed_from_u64(0x5a3c);
    let mut n = 0;
    for &v in &[5usize, 37, 256, 643] {
        for (temperature, top_k, top_p) in [
            (1.0, None, None),
            (0.0, None, None),
            (0.7, Some(1), None),
            (1.3, Some(v / 3 + 1), None),
            (0.9, None, Some(0.5)),
            (1.0, None, Some(1e-12)),
            (1.0, Some(v), Some(0.999_999)),
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
                let name = format!(
                    "V {v} T {temperature} k {top_k:?} p {top_p:?} mode {m} shift {shift} style {style}"
                );
                case(&mut r, &name, v, 13, spec, style);
                n += 1;
            }
        }
    }
}
