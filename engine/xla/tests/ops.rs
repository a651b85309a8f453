//! Every primitive op's emitted StableHLO, run on the XLA CPU plugin, equals the
//! engine's CPU executor: random inputs, odd shapes, every dtype the op admits;
//! bitwise for integers and bools, 1e-5 relative for f32, 1e-12 for f64.

mod common;

use common::{bits, check, ints, rng, uniform, TOL};
use gidd_engine::op::{BinaryOp, CmpOp, DotDims, ReduceOp, UnaryOp};
use gidd_engine::{DType, Graph, HostTensor, Op, Result, Tensor};

const FLOATS: [DType; 3] = [DType::F32, DType::BF16, DType::F64];
const INTS: [DType; 3] = [DType::I32, DType::U32, DType::I64];
const ALL: [DType; 7] = [
    DType::F32,
    DType::F64,
    DType::BF16,
    DType::I32,
    DType::U32,
    DType::I64,
    DType::Bool,
];

fn random(seed: u64, shape: &[usize], d: DType) -> HostTensor {
    let mut r = rng(seed);
    match d {
        DType::F32 | DType::F64 | DType::BF16 => uniform(&mut r, shape, d, -3.0, 3.0),
        DType::Bool => ints(&mut r, shape, d, 0, 2),
        _ => ints(&mut r, shape, d, 0, 1000),
    }
}

#[test]
fn unary_float() -> Result<()> {
    let mut seed = 0;
    for d in FLOATS {
        for shape in [vec![3, 5, 7], vec![1], vec![]] {
            seed += 1;
            let g = Graph::new();
            let x = g.input("x", &shape, d);
            let pos = g.input("pos", &shape, d);
            let mut outs = vec![];
            for u in [
                UnaryOp::Neg,
                UnaryOp::Exp,
                UnaryOp::Tanh,
                UnaryOp::Logistic,
                UnaryOp::Abs,
                UnaryOp::Sin,
                UnaryOp::Cos,
                UnaryOp::Floor,
            ] {
                outs.push(g.apply1(Op::Unary(u), &[&x])?);
            }
            for u in [UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Rsqrt] {
                outs.push(g.apply1(Op::Unary(u), &[&pos])?);
            }
            let mut r = rng(seed);
            let ins = [
                ("x", uniform(&mut r, &shape, d, -4.0, 4.0)),
                ("pos", uniform(&mut r, &shape, d, 0.05, 9.0)),
            ];
            if !check(&format!("unary {d} {shape:?}"), &outs, &ins, TOL) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[test]
fn unary_int_and_bool() -> Result<()> {
    for (i, d) in [DType::I32, DType::I64, DType::U32, DType::Bool]
        .into_iter()
        .enumerate()
    {
        let shape = [4, 9];
        let g = Graph::new();
        let x = g.input("x", &shape, d);
        let mut outs = vec![g.apply1(Op::Unary(UnaryOp::Not), &[&x])?];
        if d == DType::I32 || d == DType::I64 {
            outs.push(g.apply1(Op::Unary(UnaryOp::Neg), &[&x])?);
            outs.push(g.apply1(Op::Unary(UnaryOp::Abs), &[&x])?);
        }
        let ins = [("x", bits(&mut rng(100 + i as u64), &shape, d))];
        if !check(&format!("unary {d}"), &outs, &ins, TOL) {
            return Ok(());
        }
    }
    Ok(())
}

fn binary_all(g: &Graph, ops: &[BinaryOp], x: &Tensor, y: &Tensor) -> Result<Vec<Tensor>> {
    ops.iter()
        .map(|&b| g.apply1(Op::Binary(b), &[x, y]))
        .collect()
}

#[test]
fn binary_float() -> Result<()> {
    use BinaryOp::*;
    for (i, d) in FLOATS.into_iter().enumerate() {
        for shape in [vec![2, 3, 17], vec![]] {
            let g = Graph::new();
            let x = g.input("x", &shape, d);
            let y = g.input("y", &shape, d);
            let p = g.input("p", &shape, d);
            let mut outs = binary_all(&g, &[Add, Sub, Mul, Div, Max, Min, Rem], &x, &y)?;
            outs.push(g.apply1(Op::Binary(Pow), &[&p, &y])?);
            let mut r = rng(200 + i as u64);
            let ins = [
                ("x", uniform(&mut r, &shape, d, -5.0, 5.0)),
                ("y", uniform(&mut r, &shape, d, 0.3, 3.0)),
                ("p", uniform(&mut r, &shape, d, 0.1, 4.0)),
            ];
            if !check(&format!("binary {d} {shape:?}"), &outs, &ins, TOL) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[test]
fn binary_float_special_values() -> Result<()> {
    // NaN propagates through max/min; inf and signed zero pass through.
    let v = vec![
        f32::NAN,
        1.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        2.0,
        0.5,
        f32::NAN,
    ];
    let w = vec![1.0, f32::NAN, 0.0, 3.0, -1.0, f32::INFINITY, 0.0, f32::NAN];
    let g = Graph::new();
    let x = g.input("x", &[8], DType::F32);
    let y = g.input("y", &[8], DType::F32);
    let mut outs = binary_all(
        &g,
        &[BinaryOp::Max, BinaryOp::Min, BinaryOp::Add, BinaryOp::Div],
        &x,
        &y,
    )?;
    outs.push(g.apply1(
        Op::Reduce {
            op: ReduceOp::Max,
            dims: vec![0],
        },
        &[&x],
    )?);
    outs.push(g.apply1(Op::Compare(CmpOp::Ne), &[&x, &y])?);
    outs.push(g.apply1(Op::Compare(CmpOp::Lt), &[&x, &y])?);
    let ins = [
        ("x", HostTensor::f32(vec![8], v)?),
        ("y", HostTensor::f32(vec![8], w)?),
    ];
    check("binary special values", &outs, &ins, TOL);
    Ok(())
}

#[test]
fn binary_int() -> Result<()> {
    use BinaryOp::*;
    for (i, d) in INTS.into_iter().enumerate() {
        let shape = [5, 13];
        let g = Graph::new();
        let x = g.input("x", &shape, d);
        let y = g.input("y", &shape, d);
        let small = g.input("small", &shape, d);
        let sh = g.input("sh", &shape, d);
        // full-range bits: wrapping add/sub/mul, bit ops, max/min
        let mut outs = binary_all(&g, &[Add, Sub, Mul, Max, Min, And, Or, Xor], &x, &y)?;
        // divisors with zeros and negatives
        outs.extend(binary_all(&g, &[Div, Rem], &x, &small)?);
        // shift amounts across and beyond the bit width
        outs.extend(binary_all(&g, &[ShiftLeft, ShiftRightLogical], &x, &sh)?);
        let mut r = rng(300 + i as u64);
        let lo = if d == DType::U32 { 0 } else { -3 };
        let ins = [
            ("x", bits(&mut r, &shape, d)),
            ("y", bits(&mut r, &shape, d)),
            ("small", ints(&mut r, &shape, d, lo, 4)),
            ("sh", ints(&mut r, &shape, d, 0, 70)),
        ];
        if !check(&format!("binary {d}"), &outs, &ins, TOL) {
            return Ok(());
        }
    }
    let g = Graph::new();
    let x = g.input("x", &[3, 7], DType::Bool);
    let y = g.input("y", &[3, 7], DType::Bool);
    let outs = binary_all(&g, &[And, Or, Xor], &x, &y)?;
    let mut r = rng(310);
    let ins = [
        ("x", bits(&mut r, &[3, 7], DType::Bool)),
        ("y", bits(&mut r, &[3, 7], DType::Bool)),
    ];
    check("binary bool", &outs, &ins, TOL);
    Ok(())
}

#[test]
fn compare_select() -> Result<()> {
    use CmpOp::*;
    for (i, d) in ALL.into_iter().enumerate() {
        let shape = [6, 11];
        let g = Graph::new();
        let x = g.input("x", &shape, d);
        let y = g.input("y", &shape, d);
        let p = g.input("p", &shape, DType::Bool);
        let mut outs: Vec<Tensor> = [Eq, Ne, Lt, Le, Gt, Ge]
            .iter()
            .map(|&c| g.apply1(Op::Compare(c), &[&x, &y]))
            .collect::<Result<_>>()?;
        outs.push(g.apply1(Op::Select, &[&p, &x, &y])?);
        // few distinct values, so that equality happens
        let mut r = rng(400 + i as u64);
        let (xs, ys) = if d.is_float() {
            let a = ints(&mut r, &shape, DType::I32, -3, 4).convert(d);
            let b = ints(&mut r, &shape, DType::I32, -3, 4).convert(d);
            (a, b)
        } else {
            let hi = if d == DType::Bool { 2 } else { 4 };
            (
                ints(&mut r, &shape, d, 0, hi),
                ints(&mut r, &shape, d, 0, hi),
            )
        };
        let ins = [
            ("x", xs),
            ("y", ys),
            ("p", ints(&mut r, &shape, DType::Bool, 0, 2)),
        ];
        if !check(&format!("compare/select {d}"), &outs, &ins, TOL) {
            return Ok(());
        }
    }
    Ok(())
}

#[test]
fn convert_all_pairs() -> Result<()> {
    for (i, from) in ALL.into_iter().enumerate() {
        let shape = [3, 10];
        let g = Graph::new();
        let x = g.input("x", &shape, from);
        let outs: Vec<Tensor> = ALL
            .iter()
            .map(|&to| g.apply1(Op::Convert { to }, &[&x]))
            .collect::<Result<_>>()?;
        let mut r = rng(500 + i as u64);
        // values every dtype represents: small integers and halves, some negative
        let xs = match from {
            DType::F32 | DType::F64 | DType::BF16 => uniform(&mut r, &shape, from, -100.0, 100.0),
            DType::U32 | DType::Bool => random(500 + i as u64, &shape, from),
            _ => ints(&mut r, &shape, from, -1000, 1000),
        };
        if !check(&format!("convert from {from}"), &outs, &[("x", xs)], TOL) {
            return Ok(());
        }
    }
    // integer truncation across widths
    let g = Graph::new();
    let x = g.input("x", &[64], DType::I64);
    let outs = vec![
        g.apply1(Op::Convert { to: DType::I32 }, &[&x])?,
        g.apply1(Op::Convert { to: DType::U32 }, &[&x])?,
    ];
    let u = g.input("u", &[64], DType::U32);
    let outs2 = [
        g.apply1(Op::Convert { to: DType::I32 }, &[&u])?,
        g.apply1(Op::Convert { to: DType::I64 }, &[&u])?,
    ];
    let mut r = rng(550);
    let ins = [
        ("x", bits(&mut r, &[64], DType::I64)),
        ("u", bits(&mut r, &[64], DType::U32)),
    ];
    check(
        "convert int truncation",
        &[outs, outs2.to_vec()].concat(),
        &ins,
        TOL,
    );
    Ok(())
}

#[test]
fn leaves() -> Result<()> {
    let g = Graph::new();
    let mut outs = vec![];
    for (i, d) in ALL.into_iter().enumerate() {
        let shape = [2, 3, 5];
        outs.push(g.constant(random(600 + i as u64, &shape, d)));
        outs.push(g.constant(random(610 + i as u64, &[], d)));
        for x in [0.0, 1.0, -2.5, 7.0, 3e9] {
            outs.push(g.splat(x, &shape, d));
        }
        for dim in 0..3 {
            if d != DType::Bool {
                outs.push(g.iota(&shape, dim, d)?);
            }
        }
    }
    for x in [
        f64::INFINITY,
        f64::NEG_INFINITY,
        f32::MIN as f64,
        1e-40,
        0.1,
    ] {
        outs.push(g.splat(x, &[4], DType::F32));
        outs.push(g.splat(x, &[4], DType::BF16));
        outs.push(g.splat(x, &[4], DType::F64));
    }
    outs.push(g.splat(f64::NAN, &[3], DType::F32));
    // A program needs an input: a dummy one, added to every leaf.
    let z = g.input("z", &[], DType::F32);
    outs.push(z.clone());
    check(
        "constant/splat/iota",
        &outs,
        &[("z", HostTensor::scalar_f32(1.0))],
        TOL,
    );
    Ok(())
}

#[test]
fn movement() -> Result<()> {
    for (i, d) in ALL.into_iter().enumerate() {
        let g = Graph::new();
        let x = g.input("x", &[3, 1, 5], d);
        let y = g.input("y", &[3, 4, 5], d);
        let outs = vec![
            g.apply1(
                Op::BroadcastInDim {
                    shape: vec![2, 3, 4, 5],
                    dims: vec![1, 2, 3],
                },
                &[&x],
            )?,
            g.apply1(
                Op::BroadcastInDim {
                    shape: vec![3, 7, 5, 2],
                    dims: vec![0, 1, 2],
                },
                &[&x],
            )?,
            g.apply1(Op::Reshape { shape: vec![5, 3] }, &[&x])?,
            g.apply1(Op::Reshape { shape: vec![60] }, &[&y])?,
            g.apply1(
                Op::Transpose {
                    perm: vec![2, 0, 1],
                },
                &[&y],
            )?,
            g.apply1(
                Op::Transpose {
                    perm: vec![1, 2, 0],
                },
                &[&y],
            )?,
            g.apply1(
                Op::Slice {
                    start: vec![1, 1, 0],
                    limit: vec![3, 4, 3],
                },
                &[&y],
            )?,
            g.apply1(
                Op::Slice {
                    start: vec![0, 2, 4],
                    limit: vec![3, 2, 5],
                },
                &[&y],
            )?,
            g.apply1(Op::Concatenate { dim: 1 }, &[&x, &y, &x])?,
            g.apply1(Op::Concatenate { dim: 0 }, &[&y, &y])?,
        ];
        let ins = [
            ("x", random(700 + i as u64, &[3, 1, 5], d)),
            ("y", random(710 + i as u64, &[3, 4, 5], d)),
        ];
        if !check(&format!("movement {d}"), &outs, &ins, TOL) {
            return Ok(());
        }
    }
    Ok(())
}

fn dims(lb: &[usize], rb: &[usize], lc: &[usize], rc: &[usize]) -> DotDims {
    DotDims {
        lhs_batch: lb.to_vec(),
        rhs_batch: rb.to_vec(),
        lhs_contract: lc.to_vec(),
        rhs_contract: rc.to_vec(),
    }
}

#[test]
fn dot_general() -> Result<()> {
    let cases: Vec<(Vec<usize>, Vec<usize>, DotDims)> = vec![
        (vec![7, 13], vec![13, 5], dims(&[], &[], &[1], &[0])),
        (vec![13, 7], vec![5, 13], dims(&[], &[], &[0], &[1])),
        (vec![3, 7, 13], vec![3, 13, 5], dims(&[0], &[0], &[2], &[1])),
        (
            vec![2, 3, 7, 9],
            vec![2, 3, 5, 9],
            dims(&[0, 1], &[0, 1], &[3], &[3]),
        ),
        (
            vec![4, 6, 3],
            vec![6, 3, 5],
            dims(&[], &[], &[1, 2], &[0, 1]),
        ),
        (vec![7], vec![5], dims(&[], &[], &[], &[])),
        (vec![9], vec![9], dims(&[], &[], &[0], &[0])),
        (vec![5, 4, 3], vec![3, 5, 2], dims(&[0], &[1], &[2], &[0])),
    ];
    for d in FLOATS {
        for (i, (ls, rs, dd)) in cases.iter().enumerate() {
            let g = Graph::new();
            let a = g.input("a", ls, d);
            let b = g.input("b", rs, d);
            let out = g.apply1(Op::DotGeneral(dd.clone()), &[&a, &b])?;
            let ins = [
                ("a", random(800 + i as u64, ls, d)),
                ("b", random(820 + i as u64, rs, d)),
            ];
            if !check(&format!("dot_general {d} {ls:?}x{rs:?}"), &[out], &ins, TOL) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[test]
fn reduce() -> Result<()> {
    let dims_list: [&[usize]; 6] = [&[0], &[1], &[2], &[0, 2], &[0, 1, 2], &[]];
    for (i, d) in [DType::F32, DType::BF16, DType::I32, DType::U32, DType::I64]
        .into_iter()
        .enumerate()
    {
        let g = Graph::new();
        let x = g.input("x", &[4, 7, 33], d);
        let mut outs = vec![];
        for ds in dims_list {
            for op in [ReduceOp::Sum, ReduceOp::Max] {
                outs.push(g.apply1(
                    Op::Reduce {
                        op,
                        dims: ds.to_vec(),
                    },
                    &[&x],
                )?);
            }
        }
        let ins = [("x", random(900 + i as u64, &[4, 7, 33], d))];
        if !check(&format!("reduce {d}"), &outs, &ins, TOL) {
            return Ok(());
        }
    }
    Ok(())
}

#[test]
fn gather_scatter_add() -> Result<()> {
    // (x shape, axis, index shape)
    let cases: [(&[usize], usize, &[usize]); 5] = [
        (&[11, 6], 0, &[4, 3]),
        (&[3, 9, 5], 1, &[7]),
        (&[3, 4, 8], 2, &[2, 5]),
        (&[10], 0, &[]),
        (&[5, 6], 1, &[3, 2, 2]),
    ];
    let mut seed = 1000;
    for (xs, axis, is) in cases {
        for d in [DType::F32, DType::BF16, DType::I32] {
            for id in INTS {
                seed += 1;
                let g = Graph::new();
                let x = g.input("x", xs, d);
                let idx = g.input("idx", is, id);
                let gathered = g.apply1(Op::Gather { axis }, &[&x, &idx])?;
                let u = g.input("u", gathered.shape(), d);
                let scattered = g.apply1(
                    Op::ScatterAdd {
                        axis,
                        shape: xs.to_vec(),
                    },
                    &[&u, &idx],
                )?;
                // indices include out-of-range ones on both sides (clamped)
                let len = xs[axis] as i64;
                let lo = if id == DType::U32 { 0 } else { -2 };
                let ins = [
                    ("x", random(seed, xs, d)),
                    ("idx", ints(&mut rng(seed + 50), is, id, lo, len + 3)),
                    ("u", random(seed + 99, gathered.shape(), d)),
                ];
                let case = format!("gather/scatter {d} x{xs:?} axis {axis} idx {id}{is:?}");
                if !check(&case, &[gathered, scattered], &ins, TOL) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[test]
fn convert_float_out_of_range() -> Result<()> {
    // Rust's `as` saturates and maps NaN to 0; so must the emitted convert.
    let v = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        3e9,
        -3e9,
        5e18,
        -5e18,
        2147483520.0,
        -2147483648.0,
        4294967040.0,
        -1.5,
        -0.7,
        0.7,
        1e20,
        -1e20,
        16777217.0,
    ];
    let g = Graph::new();
    let x = g.input("x", &[16], DType::F32);
    let xb = g.input("xb", &[16], DType::BF16);
    let mut outs = vec![];
    for to in INTS {
        outs.push(g.apply1(Op::Convert { to }, &[&x])?);
        outs.push(g.apply1(Op::Convert { to }, &[&xb])?);
    }
    let t = HostTensor::f32(vec![16], v)?;
    check(
        "convert float out of range",
        &outs,
        &[("x", t.clone()), ("xb", t.convert(DType::BF16))],
        TOL,
    );
    Ok(())
}
