//! Every primitive op against the naive f64 reference on fresh random inputs and awkward
//! shapes, in f32 and in f64; every differentiable op gradient-checked.

mod common;
use common::*;
use gidd_engine::op::{BinaryOp, DotDims};
use gidd_engine::{DType, Graph, HostTensor, Tensor};
use rand::Rng;

#[test]
fn unary_ops_match_reference_and_gradcheck() {
    for p in PRECS {
        let mut r = rng(seed("unary"));
        for (name, lo, hi) in [
            ("neg", -3.0, 3.0),
            ("exp", -3.0, 3.0),
            ("log", 0.1, 4.0),
            ("tanh", -3.0, 3.0),
            ("sigmoid", -6.0, 6.0),
            ("sqrt", 0.1, 4.0),
            ("rsqrt", 0.1, 4.0),
            ("abs", -3.0, 3.0),
            ("sin", -3.0, 3.0),
            ("cos", -3.0, 3.0),
            ("relu", -3.0, 3.0),
            ("square", -3.0, 3.0),
        ] {
            let shape = [odd_size(&mut r, 9), odd_size(&mut r, 7)];
            let x = rand_in(p, &mut r, &shape, lo, hi);
            gradcheck(
                name,
                &[x],
                &[],
                |x, _| {
                    match name {
                        "neg" => x[0].neg(),
                        "exp" => x[0].exp(),
                        "log" => x[0].log(),
                        "tanh" => x[0].tanh(),
                        "sigmoid" => x[0].sigmoid(),
                        "sqrt" => x[0].sqrt(),
                        "rsqrt" => x[0].rsqrt(),
                        "abs" => x[0].abs(),
                        "sin" => x[0].sin(),
                        "cos" => x[0].cos(),
                        "relu" => x[0].relu(),
                        _ => x[0].square(),
                    }
                    .unwrap()
                },
                p.fwd,
                p.grad,
            );
        }
    }
}

#[test]
fn binary_ops_broadcast_and_gradcheck() {
    for p in PRECS {
        let mut r = rng(seed("binary"));
        for op in [
            BinaryOp::Add,
            BinaryOp::Sub,
            BinaryOp::Mul,
            BinaryOp::Div,
            BinaryOp::Max,
            BinaryOp::Min,
            BinaryOp::Pow,
        ] {
            let (a, b) = (odd_size(&mut r, 6), odd_size(&mut r, 9));
            // Right operand broadcasts along dim 0 half the time.
            let sb = if r.random_bool(0.5) {
                vec![1, b]
            } else {
                vec![a, b]
            };
            let (lo, hi) = if op == BinaryOp::Pow || op == BinaryOp::Div {
                (0.5, 2.0)
            } else {
                (-2.0, 2.0)
            };
            let x = rand_in(p, &mut r, &[a, b], lo, hi);
            let y = rand_in(p, &mut r, &sb, lo, hi);
            gradcheck(
                &format!("{op:?}"),
                &[x, y],
                &[],
                |x, _| x[0].binary(&x[1], op).unwrap(),
                p.fwd,
                p.grad,
            );
        }
    }
}

#[test]
fn integer_and_bit_ops_match_reference() {
    let mut r = rng(seed("int"));
    let n = odd_size(&mut r, 40);
    let a: Vec<u32> = (0..n).map(|_| r.random()).collect();
    let b: Vec<u32> = (0..n).map(|_| r.random_range(0..40)).collect();
    let (ta, tb) = (
        HostTensor::u32(vec![n], a.clone()).unwrap(),
        HostTensor::u32(vec![n], b.clone()).unwrap(),
    );
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Xor,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::ShiftLeft,
        BinaryOp::ShiftRightLogical,
        BinaryOp::Max,
        BinaryOp::Rem,
    ] {
        let g = Graph::new();
        let x = g.input("a", &[n], DType::U32);
        let y = g.input("b", &[n], DType::U32);
        let z = x.binary(&y, op).unwrap();
        let cpu = run_cpu(&[z], &[("a", &ta), ("b", &tb)]);
        let want: Vec<f64> = a
            .iter()
            .zip(&b)
            .map(|(&p, &q)| {
                (match op {
                    BinaryOp::Add => p.wrapping_add(q),
                    BinaryOp::Sub => p.wrapping_sub(q),
                    BinaryOp::Mul => p.wrapping_mul(q),
                    BinaryOp::Xor => p ^ q,
                    BinaryOp::And => p & q,
                    BinaryOp::Or => p | q,
                    BinaryOp::ShiftLeft => p.checked_shl(q).unwrap_or(0),
                    BinaryOp::ShiftRightLogical => p.checked_shr(q).unwrap_or(0),
                    BinaryOp::Max => p.max(q),
                    _ => {
                        if q == 0 {
                            0
                        } else {
                            p % q
                        }
                    }
                }) as f64
            })
            .collect();
        assert_eq!(cpu[0].to_f64_vec(), want, "{op:?}");
    }
    // compare, select, convert, iota, not
    let g = Graph::new();
    let x = g.input("a", &[n], DType::U32);
    let y = g.input("b", &[n], DType::U32);
    let lt = x.lt(&y).unwrap();
    let sel = lt.select(&x, &y).unwrap();
    let conv = sel.to(DType::I64).unwrap().to(DType::F32).unwrap();
    let io = g.iota(&[3, n], 1, DType::I32).unwrap();
    let nt = lt.not().unwrap();
    let outs = [lt, sel, conv, io, nt];
    let cpu = run_cpu(&outs, &[("a", &ta), ("b", &tb)]);
    let reference = run_ref(&outs, &[("a", &ta), ("b", &tb)]);
    for (i, (c, w)) in cpu.iter().zip(&reference).enumerate() {
        assert_eq!(&c.to_f64_vec(), w, "output {i}");
    }
}

#[test]
fn movement_ops_match_reference_and_gradcheck() {
    for p in PRECS {
        let mut r = rng(seed("movement"));
        let (a, b, c) = (
            odd_size(&mut r, 5),
            odd_size(&mut r, 6),
            odd_size(&mut r, 7),
        );
        let x = rand_in(p, &mut r, &[a, b, c], -1.0, 1.0);
        gradcheck(
            "transpose",
            &[x.clone()],
            &[],
            |x, _| x[0].transpose(&[2, 0, 1]).unwrap(),
            0.0,
            0.0,
        );
        gradcheck(
            "reshape",
            &[x.clone()],
            &[],
            |x, _| x[0].reshape(&[a * b, c]).unwrap().t().unwrap(),
            0.0,
            0.0,
        );
        gradcheck(
            "broadcast",
            &[x.clone()],
            &[],
            |x, _| {
                x[0].reshape(&[a, 1, b, c])
                    .unwrap()
                    .broadcast_to(&[a, 3, b, c])
                    .unwrap()
            },
            0.0,
            0.0,
        );
        gradcheck(
            "broadcast_size1",
            &[rand_in(p, &mut r, &[1, c], -1.0, 1.0)],
            &[],
            |x, _| x[0].broadcast_to(&[4, 2, c]).unwrap(),
            0.0,
            0.0,
        );
        let (s0, s1) = (r.random_range(0..b), b);
        gradcheck(
            "slice",
            &[x.clone()],
            &[],
            |x, _| x[0].slice(&[0, s0, 1.min(c - 1)], &[a, s1, c]).unwrap(),
            0.0,
            0.0,
        );
        let extra = odd_size(&mut r, 4);
        let y = rand_in(p, &mut r, &[a, extra, c], -1.0, 1.0);
        gradcheck(
            "concat",
            &[x, y],
            &[],
            |x, _| Tensor::concat(&[&x[0], &x[1], &x[0]], 1).unwrap(),
            0.0,
            0.0,
        );
    }
}

#[test]
fn dot_general_all_layouts_and_gradcheck() {
    for p in PRECS {
        let mut r = rng(seed("dot"));
        let (bt, m, n, k) = (
            odd_size(&mut r, 3),
            odd_size(&mut r, 17),
            odd_size(&mut r, 19),
            odd_size(&mut r, 23),
        );
        // plain, transposed lhs, transposed rhs, batch dim in the middle
        let cases: Vec<(Vec<usize>, Vec<usize>, DotDims)> = vec![
            (
                vec![m, k],
                vec![k, n],
                DotDims {
                    lhs_batch: vec![],
                    rhs_batch: vec![],
                    lhs_contract: vec![1],
                    rhs_contract: vec![0],
                },
            ),
            (
                vec![k, m],
                vec![n, k],
                DotDims {
                    lhs_batch: vec![],
                    rhs_batch: vec![],
                    lhs_contract: vec![0],
                    rhs_contract: vec![1],
                },
            ),
            (
                vec![bt, m, k],
                vec![bt, n, k],
                DotDims {
                    lhs_batch: vec![0],
                    rhs_batch: vec![0],
                    lhs_contract: vec![2],
                    rhs_contract: vec![2],
                },
            ),
            (
                vec![m, bt, k],
                vec![k, bt, n],
                DotDims {
                    lhs_batch: vec![1],
                    rhs_batch: vec![1],
                    lhs_contract: vec![2],
                    rhs_contract: vec![0],
                },
            ),
            (
                vec![bt, k, m, 2],
                vec![2, bt, k, n],
                DotDims {
                    lhs_batch: vec![0],
                    rhs_batch: vec![1],
                    lhs_contract: vec![1, 3],
                    rhs_contract: vec![2, 0],
                },
            ),
        ];
        for (i, (ls, rs, dd)) in cases.into_iter().enumerate() {
            let x = rand_in(p, &mut r, &ls, -1.0, 1.0);
            let y = rand_in(p, &mut r, &rs, -1.0, 1.0);
            gradcheck(
                &format!("dot case {i}"),
                &[x, y],
                &[],
                |x, _| x[0].dot_general(&x[1], dd.clone()).unwrap(),
                p.fwd,
                p.grad,
            );
        }
    }
}

#[test]
fn bf16_matmul_close_to_f32() {
    let mut r = rng(seed("bf16"));
    let (m, n, k) = (
        odd_size(&mut r, 70),
        odd_size(&mut r, 70),
        64 + odd_size(&mut r, 70),
    );
    let x = rand_f32(&mut r, &[m, k], -1.0, 1.0);
    let y = rand_f32(&mut r, &[k, n], -1.0, 1.0);
    let g = Graph::new();
    let a = g.input("a", &[m, k], DType::F32);
    let b = g.input("b", &[k, n], DType::F32);
    let f = a.matmul(&b).unwrap();
    let h = a
        .to(DType::BF16)
        .unwrap()
        .matmul(&b.to(DType::BF16).unwrap())
        .unwrap()
        .to(DType::F32)
        .unwrap();
    let out = run_cpu(&[f, h], &[("a", &x), ("b", &y)]);
    // bf16 has an 8-bit mantissa: rounding the inputs and the output errs by ~2^-8 of each
    // product, so the error is measured against |x| |y| (the scale of the products): relative
    // to x y itself it is unbounded where a dot product cancels (m = n = 1 gave a 0.095 sum
    // of 81 products of size ~0.3, off by 0.01).
    let (xs, ys) = (x.to_f64_vec(), y.to_f64_vec());
    let (f, h) = (out[0].to_f64_vec(), out[1].to_f64_vec());
    let (mut err, mut scale) = (0.0, 0.0);
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|l| (xs[i * k + l] * ys[l * n + j]).abs()).sum();
            err += (h[i * n + j] - f[i * n + j]).powi(2);
            scale += s * s;
        }
    }
    let e = (err / scale).sqrt();
    assert!(
        e < 1e-2,
        "bf16 matmul error {e} of |x| |y| (m {m}, n {n}, k {k})"
    );
}

#[test]
fn reductions_match_reference_and_gradcheck() {
    for p in PRECS {
        let mut r = rng(seed("reduce"));
        let s = [
            odd_size(&mut r, 5),
            odd_size(&mut r, 6),
            odd_size(&mut r, 33),
        ];
        let x = rand_in(p, &mut r, &s, -2.0, 2.0);
        gradcheck(
            "sum last",
            &[x.clone()],
            &[],
            |x, _| x[0].sum(&[2], false).unwrap(),
            p.fwd,
            p.grad,
        );
        gradcheck(
            "sum 0,2",
            &[x.clone()],
            &[],
            |x, _| x[0].sum(&[0, 2], true).unwrap(),
            p.fwd,
            p.grad,
        );
        gradcheck(
            "max 1",
            &[x.clone()],
            &[],
            |x, _| x[0].max(&[1], false).unwrap(),
            p.fwd,
            p.grad,
        );
        gradcheck(
            "mean",
            &[x],
            &[],
            |x, _| x[0].mean(&[1, 2], false).unwrap(),
            p.fwd,
            p.grad,
        );
    }
}

#[test]
fn gather_scatter_and_gradcheck() {
    for p in PRECS {
        let mut r = rng(seed("gather"));
        let (v, d) = (odd_size(&mut r, 11) + 1, odd_size(&mut r, 9));
        let table = rand_in(p, &mut r, &[v, d], -1.0, 1.0);
        let m = odd_size(&mut r, 7);
        let ids = rand_ids(&mut r, &[2, m], v as i32);
        gradcheck(
            "embedding",
            &[table.clone()],
            &[("ids", ids.clone())],
            |x, e| x[0].embedding(&e[0]).unwrap(),
            0.0,
            p.grad,
        );
        gradcheck(
            "gather axis 1",
            &[table.clone()],
            &[("ids", ids.clone())],
            |x, e| {
                x[0].gather(
                    1,
                    &e[0]
                        .to(DType::I32)
                        .unwrap()
                        .clip(0.0, (d - 1) as f64)
                        .unwrap(),
                )
                .unwrap()
            },
            0.0,
            p.grad,
        );
        let logits = rand_in(p, &mut r, &[2, ids.shape[1], v], -1.0, 1.0);
        gradcheck(
            "take_last",
            &[logits],
            &[("ids", ids)],
            |x, e| x[0].take_last(&e[0]).unwrap(),
            p.fwd,
            p.grad,
        );
    }
}
