//! Every primitive op on the wgpu executor equals the engine's cpu executor: random inputs
//! (seeded; the seed is printed), odd shapes, every dtype the op admits and wgpu stores
//! (f32, bf16, i32, u32, i64, bool), edge values; bitwise for integers and bools, 1e-5
//! relative for f32, one rounding step for bf16.

mod common;

use common::{bits, check, ints, rng, seed, uniform, TOL};
use gidd_engine::op::{BinaryOp, CmpOp, UnaryOp};
use gidd_engine::{DType, Graph, HostTensor, Op, Result, Tensor};

const FLOATS: [DType; 3] = [DType::F32, DType::BF16, DType::F16];
const INTS: [DType; 3] = [DType::I32, DType::U32, DType::I64];
const ALL: [DType; 7] = [
    DType::F32,
    DType::BF16,
    DType::F16,
    DType::I32,
    DType::U32,
    DType::I64,
    DType::Bool,
];

fn random(seed: u64, shape: &[usize], d: DType) -> HostTensor {
    let mut r = rng(seed);
    match d {
        DType::F32 | DType::BF16 | DType::F16 => uniform(&mut r, shape, d, -3.0, 3.0),
        DType::Bool => ints(&mut r, shape, d, 0, 2),
        _ => ints(&mut r, shape, d, 0, 1000),
    }
}

#[test]
fn unary_float() -> Result<()> {
    let mut s = seed(1);
    for d in FLOATS {
        for shape in [vec![3, 5, 7], vec![1], vec![], vec![1000, 3]] {
            s += 1;
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
            let mut r = rng(s);
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
fn unary_float_edge_values() -> Result<()> {
    // infinities, NaN, zeros of both signs, tiny and huge values, tanh across its branches
    let v = vec![
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        3e-4,
        -3e-4,
        0.5,
        0.56,
        -0.56,
        9.5,
        -11.0,
        80.0,
        -100.0,
        1e30,
        -2.5,
    ];
    let n = v.len();
    let g = Graph::new();
    let x = g.input("x", &[n], DType::F32);
    let outs: Vec<Tensor> = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Tanh,
        UnaryOp::Logistic,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Abs,
        UnaryOp::Floor,
    ]
    .iter()
    .map(|&u| g.apply1(Op::Unary(u), &[&x]))
    .collect::<Result<_>>()?;
    check(
        "unary edge values",
        &outs,
        &[("x", HostTensor::f32(vec![n], v)?)],
        TOL,
    );
    Ok(())
}

#[test]
fn unary_int_and_bool() -> Result<()> {
    let s = seed(100);
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
        let mut t = bits(&mut rng(s + i as u64), &shape, d);
        // the most negative value, whose negation wraps
        match &mut t.data {
            gidd_engine::Data::I32(v) => v[0] = i32::MIN,
            gidd_engine::Data::I64(v) => v[0] = i64::MIN,
            _ => {}
        }
        if !check(&format!("unary {d}"), &outs, &[("x", t)], TOL) {
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
    let s = seed(200);
    for (i, d) in FLOATS.into_iter().enumerate() {
        for shape in [vec![2, 3, 17], vec![], vec![777]] {
            let g = Graph::new();
            let x = g.input("x", &shape, d);
            let y = g.input("y", &shape, d);
            let p = g.input("p", &shape, d);
            let mut outs = binary_all(&g, &[Add, Sub, Mul, Div, Max, Min, Rem], &x, &y)?;
            outs.push(g.apply1(Op::Binary(Pow), &[&p, &y])?);
            // a splat operand on either side
            let two = g.splat(2.5, &shape, d);
            outs.push(g.apply1(Op::Binary(Sub), &[&two, &x])?);
            outs.push(g.apply1(Op::Binary(Div), &[&x, &two])?);
            let mut r = rng(s + i as u64);
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
    // NaN propagates through max/min; inf and signed zero pass through; pow's edge cases.
    let v = vec![
        f32::NAN,
        1.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        2.0,
        0.5,
        f32::NAN,
        -2.0,
        0.0,
        -3.0,
    ];
    let w = vec![
        1.0,
        f32::NAN,
        0.0,
        3.0,
        -1.0,
        f32::INFINITY,
        0.0,
        f32::NAN,
        3.0,
        -2.0,
        0.5,
    ];
    let n = v.len();
    let g = Graph::new();
    let x = g.input("x", &[n], DType::F32);
    let y = g.input("y", &[n], DType::F32);
    let mut outs = binary_all(
        &g,
        &[
            BinaryOp::Max,
            BinaryOp::Min,
            BinaryOp::Add,
            BinaryOp::Div,
            BinaryOp::Pow,
            BinaryOp::Rem,
        ],
        &x,
        &y,
    )?;
    outs.push(g.apply1(
        Op::Reduce {
            op: gidd_engine::op::ReduceOp::Max,
            dims: vec![0],
        },
        &[&x],
    )?);
    for c in [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Ge] {
        outs.push(g.apply1(Op::Compare(c), &[&x, &y])?);
    }
    let ins = [
        ("x", HostTensor::f32(vec![n], v)?),
        ("y", HostTensor::f32(vec![n], w)?),
    ];
    check("binary special values", &outs, &ins, TOL);
    Ok(())
}

#[test]
fn binary_int() -> Result<()> {
    use BinaryOp::*;
    let s = seed(300);
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
        outs.extend(binary_all(&g, &[Div, Rem], &x, &y)?);
        // shift amounts across and beyond the bit width
        outs.extend(binary_all(&g, &[ShiftLeft, ShiftRightLogical], &x, &sh)?);
        // the Philox pattern: a 64-bit product of a widened u32 and a constant, shifted
        let m = g.splat(0xD251_1F53u32 as f64, &shape, d);
        outs.push(g.apply1(Op::Binary(Mul), &[&x, &m])?);
        let mut r = rng(s + i as u64);
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
    let mut r = rng(s + 10);
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
    let s = seed(400);
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
        let z = g.splat(1.0, &shape, d);
        outs.push(g.apply1(Op::Select, &[&p, &x, &z])?);
        // few distinct values (negative ones too), so that equality happens
        let mut r = rng(s + i as u64);
        let (xs, ys) = match d {
            DType::Bool => (ints(&mut r, &shape, d, 0, 2), ints(&mut r, &shape, d, 0, 2)),
            DType::U32 => (ints(&mut r, &shape, d, 0, 4), ints(&mut r, &shape, d, 0, 4)),
            _ => (
                ints(&mut r, &shape, d, -3, 4),
                ints(&mut r, &shape, d, -3, 4),
            ),
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
    let s = seed(500);
    for (i, from) in ALL.into_iter().enumerate() {
        let shape = [3, 10];
        let g = Graph::new();
        let x = g.input("x", &shape, from);
        let outs: Vec<Tensor> = ALL
            .iter()
            .map(|&to| g.apply1(Op::Convert { to }, &[&x]))
            .collect::<Result<_>>()?;
        let mut r = rng(s + i as u64);
        // values every dtype represents: small integers and halves, some negative
        let xs = match from {
            DType::F32 | DType::BF16 | DType::F16 => uniform(&mut r, &shape, from, -100.0, 100.0),
            DType::U32 | DType::Bool => random(s + 50 + i as u64, &shape, from),
            _ => ints(&mut r, &shape, from, -1000, 1000),
        };
        if !check(&format!("convert from {from}"), &outs, &[("x", xs)], TOL) {
            return Ok(());
        }
    }
    // integer truncation across widths, full-range bits
    let g = Graph::new();
    let x = g.input("x", &[64], DType::I64);
    let u = g.input("u", &[64], DType::U32);
    let i = g.input("i", &[64], DType::I32);
    let outs = vec![
        g.apply1(Op::Convert { to: DType::I32 }, &[&x])?,
        g.apply1(Op::Convert { to: DType::U32 }, &[&x])?,
        g.apply1(Op::Convert { to: DType::I32 }, &[&u])?,
        g.apply1(Op::Convert { to: DType::I64 }, &[&u])?,
        g.apply1(Op::Convert { to: DType::I64 }, &[&i])?,
        g.apply1(Op::Convert { to: DType::U32 }, &[&i])?,
    ];
    let mut r = rng(s + 20);
    let ins = [
        ("x", bits(&mut r, &[64], DType::I64)),
        ("u", bits(&mut r, &[64], DType::U32)),
        ("i", bits(&mut r, &[64], DType::I32)),
    ];
    check("convert int truncation", &outs, &ins, TOL);
    Ok(())
}

#[test]
fn convert_float_out_of_range() -> Result<()> {
    // Rust's `as` saturates and maps NaN to 0; so must the kernels.
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
    let xh = g.input("xh", &[16], DType::F16);
    let mut outs = vec![];
    for to in [DType::I32, DType::U32, DType::I64, DType::Bool] {
        outs.push(g.apply1(Op::Convert { to }, &[&x])?);
        outs.push(g.apply1(Op::Convert { to }, &[&xb])?);
        outs.push(g.apply1(Op::Convert { to }, &[&xh])?);
    }
    let t = HostTensor::f32(vec![16], v)?;
    check(
        "convert float out of range",
        &outs,
        &[
            ("x", t.clone()),
            ("xb", t.convert(DType::BF16)),
            ("xh", t.convert(DType::F16)),
        ],
        TOL,
    );
    Ok(())
}

#[test]
fn leaves() -> Result<()> {
    let s = seed(600);
    let g = Graph::new();
    let z = g.input("z", &[], DType::F32);
    let mut outs = vec![];
    for (i, d) in ALL.into_iter().enumerate() {
        let shape = [2, 3, 5];
        outs.push(g.constant(random(s + i as u64, &shape, d)));
        outs.push(g.constant(random(s + 10 + i as u64, &[], d)));
        for x in [0.0, 1.0, -2.5, 7.0, 3e9] {
            outs.push(g.splat(x, &shape, d));
        }
        for dim in 0..3 {
            outs.push(g.iota(&[2, 3, 300], dim, d)?);
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
        outs.push(g.splat(x, &[4], DType::F16));
    }
    outs.push(g.splat(f64::NAN, &[3], DType::F32));
    // a program needs an input; it is also an output (a copy)
    outs.push(z.clone());
    let ins = [("z", HostTensor::scalar_f32(1.0))];
    check("constant/splat/iota", &outs, &ins, TOL);
    Ok(())
}
