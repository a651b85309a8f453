//! The f64 path (the audit precision): every op family run by the CPU executor on f64
//! inputs against the naive f64 reference, forward and autograd, on fresh random inputs.
//! Both sides compute in f64, so the bars are a few hundred ulps, not f32's 1e-5: an op
//! that silently narrowed to f32 anywhere (a kernel, a decomposition constant, a cast in
//! a composite) fails them by seven orders of magnitude.
//!
//! Fused ops have no f64 kernels: `Program::compile` replaces them by their
//! decompositions, checked here too.

mod common;
use common::*;
use gidd_engine::op::{BinaryOp, DotDims};
use gidd_engine::{api, AttnSpec, DType, Graph, HostTensor, Program, Tensor};

/// f64 forward vs the f64 reference: different summation orders only.
const FWD: f64 = 1e-12;
/// Gradients chain more ops (and reductions).
const GRAD: f64 = 1e-10;

fn f64s(r: &mut rand::rngs::StdRng, shape: &[usize], lo: f32, hi: f32) -> HostTensor {
    // f32 draws widened, then perturbed below f32's resolution so the low bits matter
    let t = rand_f32(r, shape, lo, hi).convert(DType::F64);
    let v: Vec<f64> = t
        .to_f64_vec()
        .iter()
        .enumerate()
        .map(|(i, x)| x * (1.0 + 1e-9 * ((i % 7) as f64 - 3.0)))
        .collect();
    HostTensor::f64(shape.to_vec(), v).unwrap()
}

#[test]
fn f64_elementwise_and_reductions_match_reference() {
    let mut r = rng(seed("f64 elementwise"));
    let s = [odd_size(&mut r, 6), odd_size(&mut r, 9)];
    let pos = f64s(&mut r, &s, 0.2, 3.0);
    let any = f64s(&mut r, &s, -3.0, 3.0);
    for name in [
        "neg", "exp", "log", "tanh", "sigmoid", "sqrt", "rsqrt", "abs", "sin", "cos", "relu",
    ] {
        let x = if matches!(name, "log" | "sqrt" | "rsqrt") {
            pos.clone()
        } else {
            any.clone()
        };
        gradcheck(
            name,
            &[x],
            &[],
            |x, _| {
                let x = &x[0];
                match name {
                    "neg" => x.neg(),
                    "exp" => x.exp(),
                    "log" => x.log(),
                    "tanh" => x.tanh(),
                    "sigmoid" => x.sigmoid(),
                    "sqrt" => x.sqrt(),
                    "rsqrt" => x.rsqrt(),
                    "abs" => x.abs(),
                    "sin" => x.sin(),
                    "cos" => x.cos(),
                    _ => x.relu(),
                }
                .unwrap()
            },
            FWD,
            GRAD,
        );
    }
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
    ] {
        let y = f64s(&mut r, &[1, s[1]], 0.5, 2.0);
        gradcheck(
            &format!("f64 {op:?}"),
            &[pos.clone(), y],
            &[],
            |x, _| x[0].binary(&x[1], op).unwrap(),
            FWD,
            GRAD,
        );
    }
    let s0 = odd_size(&mut r, 4);
    let x3 = f64s(&mut r, &[s0, s[0], s[1]], -2.0, 2.0);
    gradcheck(
        "f64 sum 0,2",
        &[x3.clone()],
        &[],
        |x, _| x[0].sum(&[0, 2], true).unwrap(),
        FWD,
        GRAD,
    );
    gradcheck(
        "f64 max 1",
        &[x3.clone()],
        &[],
        |x, _| x[0].max(&[1], false).unwrap(),
        FWD,
        GRAD,
    );
    // leading-dims sum (the bias-gradient path) and a chain through convert
    gradcheck(
        "f64 sum leading, through f32",
        &[x3],
        &[],
        |x, _| {
            let y = x[0].sum(&[0], false).unwrap();
            y.to(DType::F32)
                .unwrap()
                .to(DType::F64)
                .unwrap()
                .add(&y)
                .unwrap()
        },
        // the f32 round trip is exact in the reference interpreter (it holds f64)
        1e-7,
        1e-7,
    );
}

#[test]
fn f64_dot_and_gather_match_reference() {
    let mut r = rng(seed("f64 dot"));
    let (bt, m, n, k) = (
        odd_size(&mut r, 3),
        odd_size(&mut r, 17),
        odd_size(&mut r, 19),
        odd_size(&mut r, 23),
    );
    for (ls, rs, dd) in [
        (
            vec![m, k],
            vec![n, k],
            DotDims {
                lhs_batch: vec![],
                rhs_batch: vec![],
                lhs_contract: vec![1],
                rhs_contract: vec![1],
            },
        ),
        (
            vec![k, bt, m],
            vec![bt, k, n],
            DotDims {
                lhs_batch: vec![1],
                rhs_batch: vec![0],
                lhs_contract: vec![0],
                rhs_contract: vec![1],
            },
        ),
    ] {
        let a = f64s(&mut r, &ls, -1.0, 1.0);
        let b = f64s(&mut r, &rs, -1.0, 1.0);
        gradcheck(
            &format!("f64 dot {ls:?} x {rs:?}"),
            &[a, b],
            &[],
            |x, _| x[0].dot_general(&x[1], dd.clone()).unwrap(),
            FWD,
            GRAD,
        );
    }
    let (v, d) = (odd_size(&mut r, 11) + 1, odd_size(&mut r, 9));
    let table = f64s(&mut r, &[v, d], -1.0, 1.0);
    let m = odd_size(&mut r, 7);
    let ids = rand_ids(&mut r, &[2, m], v as i32);
    gradcheck(
        "f64 embedding",
        &[table],
        &[("ids", ids.clone())],
        |x, e| x[0].embedding(&e[0]).unwrap(),
        0.0,
        GRAD,
    );
    let logits = f64s(&mut r, &[2, ids.shape[1], v], -1.0, 1.0);
    gradcheck(
        "f64 take_last",
        &[logits],
        &[("ids", ids)],
        |x, e| x[0].take_last(&e[0]).unwrap(),
        FWD,
        GRAD,
    );
}

#[test]
fn f64_fused_ops_run_as_their_decompositions() {
    let mut r = rng(seed("f64 fused"));
    let s = [
        odd_size(&mut r, 4),
        odd_size(&mut r, 5),
        odd_size(&mut r, 40),
    ];
    let x = f64s(&mut r, &s, -4.0, 4.0);
    gradcheck(
        "f64 softmax",
        &[x.clone()],
        &[],
        |x, _| x[0].softmax().unwrap(),
        FWD,
        GRAD,
    );
    gradcheck(
        "f64 log_softmax",
        &[x.clone()],
        &[],
        |x, _| x[0].log_softmax().unwrap(),
        FWD,
        GRAD,
    );
    let w = f64s(&mut r, &[s[2]], -0.5, 0.5);
    gradcheck(
        "f64 rms_norm",
        &[x, w],
        &[],
        |x, _| x[0].rms_norm(&x[1], 1e-6).unwrap(),
        FWD,
        GRAD,
    );
    let (b, l, h, d) = (
        odd_size(&mut r, 2),
        odd_size(&mut r, 5),
        odd_size(&mut r, 3),
        2 * odd_size(&mut r, 9),
    );
    let q = f64s(&mut r, &[b, l, h, d], -1.0, 1.0);
    let cos = f64s(&mut r, &[b, l, d / 2], -1.0, 1.0);
    let sin = f64s(&mut r, &[b, l, d / 2], -1.0, 1.0);
    gradcheck(
        "f64 rope",
        &[q],
        &[("cos", cos), ("sin", sin)],
        |x, e| x[0].rope(&e[0], &e[1]).unwrap(),
        FWD,
        GRAD,
    );
    for case in 0..3 {
        let (b, h, lq, lk, d) = (
            odd_size(&mut r, 2),
            odd_size(&mut r, 3),
            odd_size(&mut r, 9),
            odd_size(&mut r, 11),
            odd_size(&mut r, 17),
        );
        let q = f64s(&mut r, &[b, h, lq, d], -2.0, 2.0);
        let k = f64s(&mut r, &[b, h, lk, d], -2.0, 2.0);
        let v = f64s(&mut r, &[b, h, lk, d], -2.0, 2.0);
        // case 2 masks whole rows: uniform attention, as in the reference
        let mask = rand_bool(&mut r, &[b, lq, lk], if case == 2 { 0.0 } else { 0.7 });
        let spec = AttnSpec {
            scale: (d as f32).powf(-0.5),
            softcap: (case != 1).then_some(3.0),
        };
        gradcheck(
            &format!("f64 attention case {case}"),
            &[q, k, v],
            &[("mask", mask)],
            |x, e| api::attention(&x[0], &x[1], &x[2], &e[0], spec).unwrap(),
            FWD,
            GRAD,
        );
    }
    let (b, l, v) = (
        odd_size(&mut r, 3),
        odd_size(&mut r, 5),
        5 + odd_size(&mut r, 40),
    );
    let logits = f64s(&mut r, &[b, l, v], -3.0, 3.0);
    let xi = rand_ids(&mut r, &[b, l], v as i32);
    let z = rand_ids(&mut r, &[b, l], v as i32);
    let lsnr = f64s(&mut r, &[b, l], -10.0, 10.0);
    let spec = gidd_engine::op::MarginalSpec {
        mask_id: 3,
        min_log_snr: -9.0,
        max_log_snr: 9.0,
        scale: 1.0,
        shift: 0.0,
    };
    gradcheck(
        "f64 diffusion_kl",
        &[logits],
        &[("z", z), ("x", xi), ("l", lsnr)],
        |t, e| {
            let (kl, lpz, _) = api::diffusion_kl(&t[0], &e[0], &e[1], &e[2], spec).unwrap();
            Tensor::concat(&[&kl, &lpz], 1).unwrap()
        },
        // the reference's 1 - alpha cancellation near the clip, now at f64's resolution
        1e-9,
        1e-9,
    );
}

#[test]
fn f64_programs_hold_no_fused_ops_and_f32_programs_keep_them() {
    // (fused op count, ops) of a norm then a softmax compiled at dtype dt
    let plan = |dt: DType| -> (usize, Vec<&'static str>) {
        let g = Graph::new();
        let x = g.input("x", &[3, 8], dt);
        let w = g.input("w", &[8], dt);
        let y = x.rms_norm(&w, 1e-6).unwrap().softmax().unwrap();
        let p = Program::compile(&[y], &["x", "w"]).unwrap();
        let fused = p.nodes.iter().filter(|n| n.op.is_fused()).count();
        (fused, p.nodes.iter().map(|n| n.op.name()).collect())
    };
    let (f64_fused, f64_ops) = plan(DType::F64);
    let (f32_fused, f32_ops) = plan(DType::F32);
    assert_eq!(f64_fused, 0, "f64 program kept a fused op: {f64_ops:?}");
    assert_eq!(f32_fused, 2, "f32 program lost its fused ops: {f32_ops:?}");
}
