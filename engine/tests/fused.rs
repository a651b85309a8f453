//! Fused ops against their decompositions and the f64 reference (gradient-checked),
//! counter-based random draws, typed shape errors, the memory plan, and the f64 path.

mod common;
use common::*;
use gidd_engine::{
    api, AttnSpec, CpuExecutor, DType, Error, Executor, Graph, HostTensor, Program, Tensor,
};
use rand::Rng;

#[test]
fn fused_softmax_norm_rope_match_decomposition_and_gradcheck() {
    for p in PRECS {
        let mut r = rng(seed("fused"));
        let s = [
            odd_size(&mut r, 4),
            odd_size(&mut r, 5),
            odd_size(&mut r, 40),
        ];
        let x = rand_in(p, &mut r, &s, -4.0, 4.0);
        gradcheck(
            "softmax",
            &[x.clone()],
            &[],
            |x, _| x[0].softmax().unwrap(),
            p.fwd,
            p.grad,
        );
        gradcheck(
            "log_softmax",
            &[x.clone()],
            &[],
            |x, _| x[0].log_softmax().unwrap(),
            p.fwd,
            p.grad,
        );
        let w = rand_in(p, &mut r, &[s[2]], -0.5, 0.5);
        gradcheck(
            "rms_norm",
            &[x, w],
            &[],
            |x, _| x[0].rms_norm(&x[1], 1e-6).unwrap(),
            p.fwd,
            p.grad,
        );
        let (b, l, h, d) = (
            odd_size(&mut r, 2),
            odd_size(&mut r, 5),
            odd_size(&mut r, 3),
            2 * odd_size(&mut r, 9),
        );
        let q = rand_in(p, &mut r, &[b, l, h, d], -1.0, 1.0);
        let cos = rand_in(p, &mut r, &[b, l, d / 2], -1.0, 1.0);
        let sin = rand_in(p, &mut r, &[b, l, d / 2], -1.0, 1.0);
        gradcheck(
            "rope",
            &[q],
            &[("cos", cos), ("sin", sin)],
            |x, e| x[0].rope(&e[0], &e[1]).unwrap(),
            p.fwd,
            p.grad,
        );
    }
}

#[test]
fn attention_matches_decomposition_and_gradcheck() {
    for p in PRECS {
        let mut r = rng(seed("attention"));
        for case in 0..4 {
            let (b, h, lq, lk, d) = (
                odd_size(&mut r, 2),
                odd_size(&mut r, 3),
                odd_size(&mut r, 9),
                odd_size(&mut r, 11),
                odd_size(&mut r, 17),
            );
            let q = rand_in(p, &mut r, &[b, h, lq, d], -2.0, 2.0);
            let k = rand_in(p, &mut r, &[b, h, lk, d], -2.0, 2.0);
            let v = rand_in(p, &mut r, &[b, h, lk, d], -2.0, 2.0);
            // Case 3 masks whole rows: they must come out uniform, as in the reference.
            let mask = rand_bool(&mut r, &[b, lq, lk], if case == 3 { 0.0 } else { 0.7 });
            let spec = AttnSpec {
                scale: (d as f32).powf(-0.5),
                softcap: if case % 2 == 0 { Some(3.0) } else { None },
            };
            if case == 2 {
                let kb = rand_in(p, &mut r, &[h, d], -1.0, 1.0);
                let vb = rand_in(p, &mut r, &[h, d], -1.0, 1.0);
                gradcheck(
                    "attention+bias slot",
                    &[q, k, v, kb, vb],
                    &[("mask", mask)],
                    |x, e| {
                        api::attention_with_bias_slot(
                            &x[0],
                            &x[1],
                            &x[2],
                            &e[0],
                            Some((&x[3], &x[4])),
                            spec,
                        )
                        .unwrap()
                    },
                    p.fwd,
                    p.grad,
                );
            } else {
                gradcheck(
                    &format!("attention case {case}"),
                    &[q, k, v],
                    &[("mask", mask)],
                    |x, e| api::attention(&x[0], &x[1], &x[2], &e[0], spec).unwrap(),
                    p.fwd,
                    p.grad,
                );
            }
        }
    }
}

#[test]
fn philox_graph_equals_host_bitwise() {
    let mut r = rng(seed("philox"));
    let n = odd_size(&mut r, 50) + 3;
    let key = [r.random::<u32>(), r.random::<u32>()];
    let stream: u32 = r.random();
    let g = Graph::new();
    let s = g.input("seed", &[2], DType::U32);
    let st = g.input("stream", &[], DType::U32);
    let u = api::uniform_f32(&g, &[n], &s, &st).unwrap();
    let out = run_cpu(
        &[u],
        &[
            ("seed", &HostTensor::u32(vec![2], key.to_vec()).unwrap()),
            ("stream", &HostTensor::u32(vec![], vec![stream]).unwrap()),
        ],
    );
    let host = gidd_engine::rng::uniform_f32(n, key, stream);
    assert_eq!(out[0].as_f32().unwrap(), &host[..]);
    // Known-answer test for Philox-4x32-10 (Random123's kat_vectors: counter and key all ones... the zero vector)
    assert_eq!(
        gidd_engine::rng::philox4x32([0, 0, 0, 0], [0, 0]),
        [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
    );
}

#[test]
fn shape_errors_are_typed_and_name_the_op() {
    let g = Graph::new();
    let a = g.input("a", &[2, 3], DType::F32);
    let b = g.input("b", &[4, 5], DType::F32);
    match a.matmul(&b) {
        Err(Error::Shape { op, shapes, .. }) => {
            assert_eq!(op, "dot_general");
            assert_eq!(shapes, vec![vec![2, 3], vec![4, 5]]);
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    assert!(matches!(a.add(&b), Err(Error::Shape { .. })));
    let i = g.input("i", &[2, 3], DType::I32);
    assert!(matches!(i.exp(), Err(Error::DType { .. })));
    assert!(matches!(
        a.reshape(&[7]),
        Err(Error::Shape { op: "reshape", .. })
    ));
    assert!(matches!(
        a.transpose(&[0, 0]),
        Err(Error::Shape {
            op: "transpose",
            ..
        })
    ));
}

#[test]
fn memory_plan_reuses_buffers_and_runs_repeatably() {
    let g = Graph::new();
    let x = g.input("x", &[64, 64], DType::F32);
    let mut h = x.clone();
    for _ in 0..8 {
        h = h
            .tanh()
            .unwrap()
            .mul_scalar(1.5)
            .unwrap()
            .exp()
            .unwrap()
            .log()
            .unwrap();
    }
    let p = gidd_engine::Program::compile(&[h.sum_all().unwrap()], &["x"]).unwrap();
    assert!(
        p.planned_bytes() * 4 <= p.unplanned_bytes(),
        "plan {} vs {}",
        p.planned_bytes(),
        p.unplanned_bytes()
    );
    let mut lp = gidd_engine::CpuExecutor.load(&p).unwrap();
    let mut r = rng(seed("plan"));
    let xs = rand_f32(&mut r, &[64, 64], -1.0, 1.0);
    let a = gidd_engine::CpuExecutor.run(&mut lp, &[&xs]).unwrap();
    let b = gidd_engine::CpuExecutor.run(&mut lp, &[&xs]).unwrap();
    assert_eq!(a, b);
    let bad = HostTensor::zeros(DType::F32, vec![3]);
    assert!(matches!(
        gidd_engine::CpuExecutor.run(&mut lp, &[&bad]),
        Err(Error::InputMismatch { .. })
    ));
}

#[test]
fn fused_diffusion_kl_matches_decomposition_and_gradcheck() {
    for p in PRECS {
        let mut r = rng(seed("diffusion_kl"));
        for shift in [-1000.0f32, 0.0, 1000.0] {
            let (b, l, v) = (
                odd_size(&mut r, 3),
                odd_size(&mut r, 5),
                5 + odd_size(&mut r, 40),
            );
            let logits = rand_in(p, &mut r, &[b, l, v], -3.0, 3.0);
            let x = rand_ids(&mut r, &[b, l], v as i32);
            let z = rand_ids(&mut r, &[b, l], v as i32);
            let lsnr = rand_in(p, &mut r, &[b, l], -10.0, 10.0);
            let spec = gidd_engine::op::MarginalSpec {
                mask_id: 3,
                min_log_snr: -9.0,
                max_log_snr: 9.0,
                scale: 1.0,
                shift,
            };
            gradcheck(
                &format!("diffusion_kl shift {shift}"),
                &[logits],
                &[("z", z), ("x", x), ("l", lsnr)],
                |t, e| {
                    let (kl, lpz, _) = api::diffusion_kl(&t[0], &e[0], &e[1], &e[2], spec).unwrap();
                    Tensor::concat(&[&kl, &lpz], 1).unwrap()
                },
                // the 1 - alpha cancellation near the clip (see kernels/src/gidd_loss/tests.rs)
                if p.dt == DType::F64 { 1e-9 } else { 1e-4 },
                p.grad,
            );
        }
    }
}

#[test]
fn position_keyed_uniforms_equal_host_and_split_across_micro_batches() {
    let mut r = rng(seed("uniform_rows"));
    let (rows, cols) = (2 * odd_size(&mut r, 4), odd_size(&mut r, 30));
    let key = [r.random::<u32>(), r.random::<u32>()];
    let g = Graph::new();
    let s = g.input("seed", &[2], DType::U32);
    let st = g.input("stream", &[], DType::U32);
    let r0 = g.input("row0", &[], DType::U32);
    let u = api::uniform_rows(&g, rows / 2, cols, &s, &st, &r0).unwrap();
    let seed_t = HostTensor::u32(vec![2], key.to_vec()).unwrap();
    let stream_t = HostTensor::u32(vec![], vec![7]).unwrap();
    let full = gidd_engine::rng::uniform_rows(rows, cols, key, 7, 0);
    for half in 0..2 {
        let row0 = HostTensor::u32(vec![], vec![(half * rows / 2) as u32]).unwrap();
        let out = run_cpu(
            &[u.clone()],
            &[("seed", &seed_t), ("stream", &stream_t), ("row0", &row0)],
        );
        assert_eq!(
            out[0].as_f32().unwrap(),
            &full[half * rows / 2 * cols..(half + 1) * rows / 2 * cols],
            "half {half}"
        );
    }
}

#[test]
fn row_keyed_uniforms_draw_the_given_rows_of_the_host_draw() {
    let mut r = rng(seed("uniform_rows_at"));
    let (rows, cols) = (odd_size(&mut r, 9), odd_size(&mut r, 30));
    let key = [r.random::<u32>(), r.random::<u32>()];
    // repeated, unordered and large indices (the likelihood's splits share one index)
    let ids: Vec<u32> = (0..rows)
        .map(|i| match i % 3 {
            0 => 5,
            1 => r.random_range(0..40u32),
            _ => u32::MAX - i as u32,
        })
        .collect();
    let g = Graph::new();
    let s = g.input("seed", &[2], DType::U32);
    let st = g.input("stream", &[], DType::U32);
    let ri = g.input("rows", &[rows], DType::U32);
    let u = api::uniform_rows_at(&g, cols, &s, &st, &ri).unwrap();
    let out = run_cpu(
        &[u],
        &[
            ("seed", &HostTensor::u32(vec![2], key.to_vec()).unwrap()),
            ("stream", &HostTensor::u32(vec![], vec![11]).unwrap()),
            ("rows", &HostTensor::u32(vec![rows], ids.clone()).unwrap()),
        ],
    );
    let got = out[0].as_f32().unwrap();
    for (k, &id) in ids.iter().enumerate() {
        let want = gidd_engine::rng::uniform_rows(1, cols, key, 11, id);
        assert_eq!(
            &got[k * cols..(k + 1) * cols],
            &want[..],
            "row {k} (id {id})"
        );
    }
}

#[test]
fn uniforms_keyed_per_row_draw_each_rows_own_host_draw() {
    let mut r = rng(seed("uniform_rows_at keyed"));
    for _ in 0..3 {
        let (rows, cols) = (odd_size(&mut r, 9), odd_size(&mut r, 30));
        // a key per row: repeated keys, keys differing in one word, edge values
        let keys: Vec<[u32; 2]> = (0..rows)
            .map(|i| match i % 4 {
                0 => [7, 0],
                1 => [7, 1],
                2 => [u32::MAX, u32::MAX - i as u32],
                _ => [r.random::<u32>(), r.random::<u32>()],
            })
            .collect();
        let ids: Vec<u32> = (0..rows).map(|i| (i as u32 % 3) * 1000).collect();
        let g = Graph::new();
        let s = g.input("seed", &[rows, 2], DType::U32);
        let st = g.input("stream", &[], DType::U32);
        let ri = g.input("rows", &[rows], DType::U32);
        let u = api::uniform_rows_at(&g, cols, &s, &st, &ri).unwrap();
        let flat: Vec<u32> = keys.iter().flatten().copied().collect();
        let out = run_cpu(
            &[u],
            &[
                ("seed", &HostTensor::u32(vec![rows, 2], flat).unwrap()),
                ("stream", &HostTensor::u32(vec![], vec![4]).unwrap()),
                ("rows", &HostTensor::u32(vec![rows], ids.clone()).unwrap()),
            ],
        );
        let got = out[0].as_f32().unwrap();
        for k in 0..rows {
            let want = gidd_engine::rng::uniform_rows(1, cols, keys[k], 4, ids[k]);
            assert_eq!(&got[k * cols..(k + 1) * cols], &want[..], "row {k}");
        }
    }
    // a key of the wrong shape is refused, naming the shapes it takes
    let g = Graph::new();
    let s = g.input("seed", &[3, 2], DType::U32);
    let st = g.input("stream", &[], DType::U32);
    let ri = g.input("rows", &[2], DType::U32);
    let e = api::uniform_rows_at(&g, 5, &s, &st, &ri).unwrap_err();
    assert!(e.to_string().contains("[rows, 2]"), "{e}");
}

#[test]
fn bernoulli_and_randint_from_counter_uniforms() {
    let mut r = rng(seed("bernoulli"));
    let (rows, cols) = (64, 257);
    let key = [r.random::<u32>(), r.random::<u32>()];
    let g = Graph::new();
    let s = g.input("seed", &[2], DType::U32);
    let st = g.input("stream", &[], DType::U32);
    let r0 = g.input("row0", &[], DType::U32);
    let u = api::uniform_rows(&g, rows, cols, &s, &st, &r0).unwrap();
    let b = api::bernoulli(&u, &g.scalar(0.3, DType::F32))
        .unwrap()
        .to(DType::F32)
        .unwrap();
    let k = api::randint(&u, 7).unwrap();
    let ins = [
        HostTensor::u32(vec![2], key.to_vec()).unwrap(),
        HostTensor::u32(vec![], vec![3]).unwrap(),
        HostTensor::u32(vec![], vec![0]).unwrap(),
    ];
    let out = run_cpu(
        &[b, k],
        &[("seed", &ins[0]), ("stream", &ins[1]), ("row0", &ins[2])],
    );
    let host = gidd_engine::rng::uniform_rows(rows, cols, key, 3, 0);
    let n = (rows * cols) as f64;
    // Exactly the host draws thresholded/floored; and the frequencies are right (4 sigma).
    let bits = out[0].to_f64_vec();
    let ints = out[1].to_f64_vec();
    for i in 0..host.len() {
        assert_eq!(bits[i], f64::from(u8::from(host[i] < 0.3)));
        assert_eq!(ints[i], ((host[i] * 7.0).floor() as i32).min(6) as f64);
    }
    let mean = bits.iter().sum::<f64>() / n;
    assert!(
        (mean - 0.3).abs() < 4.0 * (0.3f64 * 0.7 / n).sqrt(),
        "bernoulli mean {mean}"
    );
    for v in 0..7 {
        let f = ints.iter().filter(|&&x| x == v as f64).count() as f64 / n;
        assert!(
            (f - 1.0 / 7.0).abs() < 4.0 * ((1.0 / 7.0) * (6.0 / 7.0) / n).sqrt(),
            "randint frequency of {v}: {f}"
        );
    }
}

// What only the f64 path has: fused ops compiled as their decompositions, and
// f64 <-> f32 conversions inside a gradient chain.

#[test]
fn f64_sum_over_leading_dims_and_through_f32_matches_reference() {
    let mut r = rng(seed("f64 leading"));
    let s = [
        odd_size(&mut r, 4),
        odd_size(&mut r, 6),
        odd_size(&mut r, 33),
    ];
    let x = rand_in(PRECS[1], &mut r, &s, -2.0, 2.0);
    gradcheck(
        "f64 sum leading, through f32",
        &[x],
        &[],
        |x, _| {
            // the leading-dims sum (bias gradients' path), plus a round trip through f32
            let y = x[0].sum(&[0], false).unwrap();
            y.to(DType::F32)
                .unwrap()
                .to(DType::F64)
                .unwrap()
                .add(&y)
                .unwrap()
        },
        // the reference interpreter holds f64 throughout, so the f32 round trip is exact there
        1e-7,
        1e-7,
    );
}

#[test]
fn the_cpu_executor_runs_f64_fused_ops_as_decompositions_and_f32_ones_as_kernels() {
    // (fused op count, ops) of a norm then a softmax compiled at dtype dt, as the cpu
    // executor lowers it (`Executor::supports_fused`)
    let plan = |dt: DType| -> (usize, Vec<&'static str>) {
        let g = Graph::new();
        let x = g.input("x", &[3, 8], dt);
        let w = g.input("w", &[8], dt);
        let y = x.rms_norm(&w, 1e-6).unwrap().softmax().unwrap();
        let p = Program::compile(&[y], &["x", "w"]).unwrap();
        assert_eq!(p.nodes.iter().filter(|n| n.op.is_fused()).count(), 2);
        let p = gidd_engine::rewrite::lower_for(&p, &|op, d| CpuExecutor.supports_fused(op, d))
            .unwrap();
        assert_eq!(p.inputs.len(), 2, "lowering keeps the inputs");
        let fused = p.nodes.iter().filter(|n| n.op.is_fused()).count();
        (fused, p.nodes.iter().map(|n| n.op.name()).collect())
    };
    let (f64_fused, f64_ops) = plan(DType::F64);
    let (f32_fused, f32_ops) = plan(DType::F32);
    assert_eq!(f64_fused, 0, "f64 program kept a fused op: {f64_ops:?}");
    assert_eq!(f32_fused, 2, "f32 program lost its fused ops: {f32_ops:?}");
}

/// The sampling step has no decomposition: an executor without its kernel refuses it at load
/// with a message saying so; shapes and ids out of range are refused too.
#[test]
fn sample_step_is_fused_only_and_refuses_bad_input() {
    use gidd_engine::op::{Op, SampleMode, SampleSpec};
    let spec = SampleSpec {
        mask_id: 3,
        temperature: 1.0,
        top_k: None,
        top_p: None,
        mode: SampleMode::Adaptive,
    };
    let g = Graph::new();
    let lg = g.input("lg", &[2, 7], DType::F32);
    let rows = g.input("rows", &[2, 4], DType::I32);
    let out = g.apply1(Op::SampleStep(spec), &[&lg, &rows]).unwrap();
    let p = Program::compile(&[out], &["lg", "rows"]).unwrap();
    let e = gidd_engine::rewrite::lower_for(&p, &|_, _| false).unwrap_err();
    assert!(e.to_string().contains("no exact decomposition"), "{e}");
    // wrong shapes: rows not [R, 4], mask id outside V
    let bad = g.input("bad", &[2, 3], DType::I32);
    assert!(g.apply1(Op::SampleStep(spec), &[&lg, &bad]).is_err());
    let small = g.input("small", &[2, 3], DType::F32);
    assert!(g.apply1(Op::SampleStep(spec), &[&small, &rows]).is_err());
    // a current token outside the vocabulary
    let mut lp = CpuExecutor.load(&p).unwrap();
    let l = HostTensor::f32(vec![2, 7], vec![0.5; 14]).unwrap();
    let r = HostTensor::i32(vec![2, 4], vec![1, -1, 0, 0, 7, -1, 0, 0]).unwrap();
    let e = CpuExecutor.run(&mut lp, &[&l, &r]).unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
}
