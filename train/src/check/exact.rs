//! Exact checks: integer and bit ops, comparisons and selects on integers and booleans,
//! conversions between the dtypes, iota and the counter-based random draws, against
//! values computed on the host. Every result must be bit-equal (NaN equals NaN).

use super::{run_on, shape_str, Row, Status};
use gidd_engine::op::{BinaryOp, CmpOp, Op, UnaryOp};
use gidd_engine::rng::HostRng;
use gidd_engine::{api, DType, Data, Executor, Graph, HostTensor, Program, Result, Tensor};

/// Builds a case's outputs from its inputs.
pub(crate) type Build = Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>>;

/// One program whose outputs each have an expected value (one row each).
pub(crate) struct Case {
    pub inputs: Vec<(String, HostTensor)>,
    pub build: Build,
    /// (op, dtype label, expected value) per output
    pub want: Vec<(String, String, HostTensor)>,
    /// Holds f64 values: a `load` refusal means no f64 path (UNSUPPORTED, not FAIL).
    pub f64: bool,
}

/// The program of `case`.
pub(super) fn program(case: &Case) -> Result<Program> {
    let g = Graph::new();
    let ins: Vec<Tensor> = case
        .inputs
        .iter()
        .map(|(n, t)| g.input(n, &t.shape, t.dtype()))
        .collect();
    let names: Vec<&str> = case.inputs.iter().map(|(n, _)| n.as_str()).collect();
    Program::compile(&(case.build)(&ins)?, &names)
}

/// Rows of `case` on `exec`, one per output.
pub(crate) fn check<E: Executor>(exec: &E, case: &Case) -> Vec<Row> {
    let row = |(op, dt, w): &(String, String, HostTensor), st: Status, note: &str| Row {
        op: op.clone(),
        value: "exact",
        dtype: dt.clone(),
        shape: shape_str(&[&w.shape]),
        max_abs: f64::NAN,
        rel: f64::NAN,
        tol: 0.0,
        margin: if st == Status::Pass {
            0.0
        } else {
            f64::INFINITY
        },
        status: st,
        note: super::first_line(note),
    };
    let every = |st: Status, why: &str| case.want.iter().map(|w| row(w, st, why)).collect();
    let prog = match program(case) {
        Ok(p) => p,
        Err(e) => return every(Status::Fail, &format!("building the program: {e}")),
    };
    let vals: Vec<HostTensor> = case.inputs.iter().map(|(_, t)| t.clone()).collect();
    let got = match run_on(exec, &prog, &vals) {
        Ok(g) => g,
        Err((true, why)) if case.f64 => {
            return every(Status::Unsupported, &format!("load refused f64: {why}"))
        }
        Err((_, why)) => return every(Status::Fail, &why),
    };
    case.want
        .iter()
        .zip(&got)
        .map(|(w, g)| {
            let e = super::Errors::of(&g.to_f64_vec(), &w.2.to_f64_vec());
            let same =
                g.shape == w.2.shape && g.dtype() == w.2.dtype() && bit_equal(&g.data, &w.2.data);
            let note = if g.dtype() != w.2.dtype() {
                format!("returned {}", g.dtype())
            } else if same {
                String::new()
            } else {
                let n = (0..g.numel().min(w.2.numel()))
                    .filter(|&i| !bit_equal_at(&g.data, &w.2.data, i))
                    .count();
                format!("{n} of {} elements differ", w.2.numel())
            };
            let st = if same { Status::Pass } else { Status::Fail };
            Row {
                max_abs: e.max_abs,
                rel: e.rel,
                ..row(w, st, &note)
            }
        })
        .collect()
}

/// Equal element for element, NaN equal to NaN (integers compared as integers).
fn bit_equal(a: &Data, b: &Data) -> bool {
    a.len() == b.len() && (0..a.len()).all(|i| bit_equal_at(a, b, i))
}

fn bit_equal_at(a: &Data, b: &Data, i: usize) -> bool {
    match (a, b) {
        (Data::I64(x), Data::I64(y)) => x[i] == y[i],
        _ => {
            let (x, y) = (a.get_f64(i), b.get_f64(i));
            x == y || (x.is_nan() && y.is_nan())
        }
    }
}

fn bits(dt: DType) -> u32 {
    (dt.size() * 8) as u32
}

/// `x` wrapped into `dt`'s range (two's complement, as StableHLO).
fn wrap(x: i128, dt: DType) -> i128 {
    match dt {
        DType::I32 => x as i32 as i128,
        DType::U32 => x as u32 as i128,
        DType::I64 => x as i64 as i128,
        _ => x,
    }
}

/// The bit pattern of `x` in `dt`.
fn pattern(x: i128, dt: DType) -> u128 {
    (x as u128) & ((1u128 << bits(dt)) - 1)
}

fn int_tensor(dt: DType, v: &[i128]) -> HostTensor {
    let data = match dt {
        DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
        DType::U32 => Data::U32(v.iter().map(|&x| x as u32).collect()),
        DType::I64 => Data::I64(v.iter().map(|&x| x as i64).collect()),
        _ => Data::Bool(v.iter().map(|&x| u8::from(x != 0)).collect()),
    };
    HostTensor {
        shape: vec![v.len()],
        data,
    }
}

/// A random value of `dt`, small (|x| <= 100) half the time so that divisions and
/// remainders are not all 0 or 1; never the minimum of a signed type (its negation wraps,
/// and MIN / -1 is undefined in StableHLO).
fn draw_int(r: &mut HostRng, dt: DType) -> i128 {
    let wide = ((r.next_u32() as i128) << 32) | r.next_u32() as i128;
    let x = if r.below(2) == 0 {
        r.below(201) as i128 - 100
    } else {
        wrap(wide, dt)
    };
    let min = match dt {
        DType::I32 => i32::MIN as i128,
        DType::I64 => i64::MIN as i128,
        _ => -1,
    };
    if x == min {
        0
    } else {
        wrap(x, dt)
    }
}

fn binary_ref(b: BinaryOp, x: i128, y: i128, dt: DType) -> i128 {
    let (px, py) = (pattern(x, dt), pattern(y, dt));
    match b {
        BinaryOp::Add => wrap(x + y, dt),
        BinaryOp::Sub => wrap(x - y, dt),
        BinaryOp::Mul => wrap(x * y, dt),
        BinaryOp::Div => wrap(x / y, dt),
        BinaryOp::Rem => wrap(x % y, dt),
        BinaryOp::Max => x.max(y),
        BinaryOp::Min => x.min(y),
        BinaryOp::And => wrap((px & py) as i128, dt),
        BinaryOp::Or => wrap((px | py) as i128, dt),
        BinaryOp::Xor => wrap((px ^ py) as i128, dt),
        BinaryOp::ShiftLeft => wrap((px << y) as i128, dt),
        BinaryOp::ShiftRightLogical => wrap((px >> y) as i128, dt),
        BinaryOp::Pow => 0,
    }
}

fn cmp_ref(c: CmpOp, x: i128, y: i128) -> i128 {
    i128::from(match c {
        CmpOp::Eq => x == y,
        CmpOp::Ne => x != y,
        CmpOp::Lt => x < y,
        CmpOp::Le => x <= y,
        CmpOp::Gt => x > y,
        CmpOp::Ge => x >= y,
    })
}

const INT_BINARY: [BinaryOp; 12] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Rem,
    BinaryOp::Max,
    BinaryOp::Min,
    BinaryOp::And,
    BinaryOp::Or,
    BinaryOp::Xor,
    BinaryOp::ShiftLeft,
    BinaryOp::ShiftRightLogical,
];
const CMPS: [CmpOp; 6] = [
    CmpOp::Eq,
    CmpOp::Ne,
    CmpOp::Lt,
    CmpOp::Le,
    CmpOp::Gt,
    CmpOp::Ge,
];

/// Every integer op of one integer dtype as one program.
fn int_case(r: &mut HostRng, dt: DType) -> Case {
    let n = 33 + r.below(40) as usize;
    let a: Vec<i128> = (0..n).map(|_| draw_int(r, dt)).collect();
    let b: Vec<i128> = (0..n)
        .map(|_| match draw_int(r, dt) {
            0 => 7,
            y => y,
        })
        .collect();
    // shift amounts below the bit width (past it StableHLO gives 0 and our ops do too,
    // but no program shifts that far)
    let s: Vec<i128> = (0..n).map(|_| r.below(bits(dt)) as i128).collect();
    // a's value a third of the time, so that equality is exercised
    let c: Vec<i128> = (0..n)
        .map(|i| if r.below(3) == 0 { a[i] } else { b[i] })
        .collect();
    let p: Vec<i128> = (0..n).map(|_| r.below(2) as i128).collect();
    let name = |op: String| (op, dt.to_string());
    let mut want = vec![];
    for op in INT_BINARY {
        let rhs = if matches!(op, BinaryOp::ShiftLeft | BinaryOp::ShiftRightLogical) {
            &s
        } else {
            &b
        };
        let v: Vec<i128> = (0..n).map(|i| binary_ref(op, a[i], rhs[i], dt)).collect();
        want.push((name(format!("{op:?}").to_lowercase()), int_tensor(dt, &v)));
    }
    for c_op in CMPS {
        let v: Vec<i128> = (0..n).map(|i| cmp_ref(c_op, a[i], c[i])).collect();
        want.push((
            name(format!("compare {c_op:?}").to_lowercase()),
            int_tensor(DType::Bool, &v),
        ));
    }
    let signed = dt != DType::U32;
    if signed {
        want.push((
            name("neg".into()),
            int_tensor(dt, &a.iter().map(|&x| wrap(-x, dt)).collect::<Vec<_>>()),
        ));
        want.push((
            name("abs".into()),
            int_tensor(
                dt,
                &a.iter().map(|&x| wrap(x.abs(), dt)).collect::<Vec<_>>(),
            ),
        ));
    }
    let not: Vec<i128> = a
        .iter()
        .map(|&x| wrap((pattern(x, dt) ^ pattern(-1, dt)) as i128, dt))
        .collect();
    want.push((name("not".into()), int_tensor(dt, &not)));
    let sel: Vec<i128> = (0..n)
        .map(|i| if p[i] != 0 { a[i] } else { b[i] })
        .collect();
    want.push((name("select".into()), int_tensor(dt, &sel)));
    Case {
        inputs: named(vec![
            int_tensor(dt, &a),
            int_tensor(dt, &b),
            int_tensor(dt, &s),
            int_tensor(dt, &c),
            int_tensor(DType::Bool, &p),
        ]),
        build: Box::new(move |x| {
            let mut o = vec![];
            for op in INT_BINARY {
                let rhs = if matches!(op, BinaryOp::ShiftLeft | BinaryOp::ShiftRightLogical) {
                    &x[2]
                } else {
                    &x[1]
                };
                o.push(x[0].binary(rhs, op)?);
            }
            for c in CMPS {
                o.push(x[0].compare(&x[3], c)?);
            }
            let unary = |u: UnaryOp| x[0].graph().apply1(Op::Unary(u), &[&x[0]]);
            if signed {
                o.push(unary(UnaryOp::Neg)?);
                o.push(unary(UnaryOp::Abs)?);
            }
            o.push(unary(UnaryOp::Not)?);
            o.push(x[4].select(&x[0], &x[1])?);
            Ok(o)
        }),
        want: want.into_iter().map(|((op, dt), t)| (op, dt, t)).collect(),
        f64: false,
    }
}

/// and, or, xor, not, ==, != and select on booleans.
fn bool_case(r: &mut HostRng) -> Case {
    let n = 17 + r.below(20) as usize;
    let mut draw = || (0..n).map(|_| r.below(2) as i128).collect::<Vec<_>>();
    let (a, b, p) = (draw(), draw(), draw());
    let bt = |v: &[i128]| int_tensor(DType::Bool, v);
    let map2 = |f: fn(i128, i128) -> i128| bt(&(0..n).map(|i| f(a[i], b[i])).collect::<Vec<_>>());
    let want = vec![
        ("and", map2(|x, y| x & y)),
        ("or", map2(|x, y| x | y)),
        ("xor", map2(|x, y| x ^ y)),
        ("not", bt(&a.iter().map(|&x| 1 - x).collect::<Vec<_>>())),
        ("compare eq", map2(|x, y| i128::from(x == y))),
        ("compare ne", map2(|x, y| i128::from(x != y))),
        (
            "select",
            bt(&(0..n)
                .map(|i| if p[i] != 0 { a[i] } else { b[i] })
                .collect::<Vec<_>>()),
        ),
    ];
    Case {
        inputs: named(vec![bt(&a), bt(&b), bt(&p)]),
        build: Box::new(|x| {
            Ok(vec![
                x[0].binary(&x[1], BinaryOp::And)?,
                x[0].binary(&x[1], BinaryOp::Or)?,
                x[0].binary(&x[1], BinaryOp::Xor)?,
                x[0].not()?,
                x[0].eq(&x[1])?,
                x[0].compare(&x[1], CmpOp::Ne)?,
                x[2].select(&x[0], &x[1])?,
            ])
        }),
        want: want
            .into_iter()
            .map(|(op, t)| (op.to_string(), "bool".into(), t))
            .collect(),
        f64: false,
    }
}

/// The bf16 nearest to `x` (ties to even): f64 -> f32 rounding to odd, which keeps the
/// second rounding, f32 -> bf16 to nearest, from rounding twice.
fn nearest_bf16(x: f64) -> half::bf16 {
    let mut f = x as f32;
    if f.is_finite() && f as f64 != x {
        if (f as f64).abs() > x.abs() {
            f = f32::from_bits(f.to_bits() - 1); // toward zero
        }
        f = f32::from_bits(f.to_bits() | 1);
    }
    half::bf16::from_f32(f)
}

/// Inputs named x0, x1, ... in order.
fn named(v: Vec<HostTensor>) -> Vec<(String, HostTensor)> {
    v.into_iter()
        .enumerate()
        .map(|(i, t)| (format!("x{i}"), t))
        .collect()
}

/// `t` converted to `to` as the engine defines it: integer to integer wraps (two's
/// complement), everything else as `HostTensor::convert` (round to nearest even,
/// truncation toward zero from float to integer).
fn convert_ref(t: &HostTensor, to: DType) -> HostTensor {
    let v: Option<Vec<i128>> = match &t.data {
        Data::I32(v) => Some(v.iter().map(|&x| x as i128).collect()),
        Data::U32(v) => Some(v.iter().map(|&x| x as i128).collect()),
        Data::I64(v) => Some(v.iter().map(|&x| x as i128).collect()),
        _ => None,
    };
    match v {
        Some(v) if to.is_int() => {
            int_tensor(to, &v.iter().map(|&x| wrap(x, to)).collect::<Vec<_>>())
                .reshape_to(t.shape.clone())
        }
        _ => t.convert(to),
    }
}

/// A tensor of `dt` holding `v` (rounded or wrapped as `HostTensor::convert` does).
fn of(dt: DType, v: &[f64]) -> HostTensor {
    HostTensor {
        shape: vec![v.len()],
        data: Data::F64(v.to_vec()),
    }
    .convert(dt)
}

/// Random f32 values, with ties of bf16 rounding (low 16 bits exactly 0x8000, both
/// parities) and the specials.
fn f32_values(r: &mut HostRng, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n)
        .map(|i| {
            let x = (8.0 * r.next_f64() - 4.0) as f32;
            if i % 3 == 0 {
                f32::from_bits((x.to_bits() & !0xffff) | 0x8000) as f64
            } else {
                x as f64
            }
        })
        .collect();
    v.extend([
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f32::MAX as f64,
        1e-30,
    ]);
    v
}

/// Conversions between every pair of dtypes that programs use, without f64 (one
/// program) or with it (another, UNSUPPORTED where f64 programs are refused).
fn convert_cases(r: &mut HostRng) -> [Case; 2] {
    use DType::{Bool, BF16, F32, F64, I32, I64, U32};
    let n = 33;
    let fl = f32_values(r, n);
    let ints: Vec<f64> = (0..n).map(|_| draw_int(r, I32) as f64).collect::<Vec<_>>();
    let small: Vec<f64> = (0..n)
        .map(|_| r.below(1 << 20) as f64 - (1 << 19) as f64)
        .collect();
    let frac: Vec<f64> = (0..n)
        .map(|_| ((2000.0 * r.next_f64() - 1000.0) as f32) as f64)
        .collect();
    let big_u: Vec<f64> = (0..n).map(|_| r.next_u32() as f64).collect();
    let i64s: Vec<f64> = (0..n).map(|_| (draw_int(r, I64) >> 12) as f64).collect();
    let f64s: Vec<f64> = (0..n).map(|_| 8.0 * r.next_f64() - 4.0).collect();
    // f64 -> bf16 on values where the cpu's conversion (half's, within one ulp of nearest:
    // kernels/src/elementwise/tests.rs) is the nearest, as an executor that rounds
    // correctly gives: the row checks the conversion, not that known deviation
    let to_bf16: Vec<f64> = f64s
        .iter()
        .copied()
        .filter(|&x| half::bf16::from_f64(x) == nearest_bf16(x))
        .collect();
    let mut ties = vec![
        16777217.0,
        -16777217.0,
        2147483647.0,
        -2147483647.0,
        257.0,
        259.0,
    ];
    ties.extend(&ints);
    let mut bool_src = vec![0.0, -0.0, 1.0, -2.5, f64::INFINITY, 1e-30];
    bool_src.extend(&frac[..8]);
    // (from, to, values): the input is `values` as `from`; the expected output is that
    // tensor converted on the host
    let plain: Vec<(DType, DType, Vec<f64>)> = vec![
        (F32, BF16, fl.clone()),
        (BF16, F32, fl.clone()),
        (F32, I32, frac.clone()),
        (I32, F32, ties.clone()),
        (F32, U32, frac.iter().map(|x| x.abs()).collect()),
        (U32, F32, big_u.clone()),
        (I32, U32, ints.clone()),
        (U32, I32, big_u.clone()),
        (I32, I64, ints.clone()),
        (I64, I32, i64s.clone()),
        (U32, I64, big_u.clone()),
        (I64, U32, i64s.clone()),
        (I64, F32, small.clone()),
        (BF16, I32, frac.clone()),
        (I32, BF16, small.clone()),
        (Bool, F32, vec![0.0, 1.0, 1.0, 0.0]),
        (Bool, I32, vec![0.0, 1.0, 1.0, 0.0]),
        (F32, Bool, bool_src.clone()),
        (I32, Bool, vec![0.0, 5.0, -1.0, 0.0]),
    ];
    let wide: Vec<(DType, DType, Vec<f64>)> = vec![
        (F32, F64, fl.clone()),
        (F64, F32, f64s.clone()),
        (F64, BF16, to_bf16),
        (BF16, F64, fl.clone()),
        (F64, I32, frac.iter().map(|x| x + 1e-9).collect()),
        (I32, F64, ints.clone()),
        (F64, I64, i64s.clone()),
        (I64, F64, i64s.clone()),
        (U32, F64, big_u),
        (F64, Bool, bool_src),
    ];
    let make = |pairs: Vec<(DType, DType, Vec<f64>)>, f64: bool| {
        let mut inputs = vec![];
        let mut want = vec![];
        let mut to = vec![];
        for (from, dst, v) in pairs {
            let t = of(from, &v);
            want.push((
                "convert".to_string(),
                format!("{from}>{dst}"),
                convert_ref(&t, dst),
            ));
            inputs.push(t);
            to.push(dst);
        }
        Case {
            inputs: named(inputs),
            build: Box::new(move |x| x.iter().zip(&to).map(|(t, &d)| t.to(d)).collect()),
            want,
            f64,
        }
    };
    [make(plain, false), make(wide, true)]
}

/// iota along a middle dim in every dtype.
fn iota_case(r: &mut HostRng) -> Case {
    let n = 1 + r.below(70) as usize;
    let shape = [3, n, 2];
    let dts = [DType::I32, DType::U32, DType::I64, DType::F32, DType::BF16];
    let idx: Vec<f64> = (0..3 * n * 2).map(|i| ((i / 2) % n) as f64).collect();
    let want = dts
        .iter()
        .map(|&d| {
            let t = of(d, &idx).reshape_to(shape.to_vec());
            ("iota".to_string(), d.to_string(), t)
        })
        .collect();
    Case {
        inputs: vec![],
        build: Box::new(move |_| {
            let g = Graph::new();
            dts.iter().map(|&d| g.iota(&shape, 1, d)).collect()
        }),
        want,
        f64: false,
    }
}

/// The Philox draws of `api::uniform_f32` and `api::uniform_rows` (64-bit integer
/// products, shifts, xors, u32 -> f32) against the host generator.
fn philox_case(r: &mut HostRng) -> Case {
    let n = 5 + r.below(60) as usize;
    let (rows, cols) = (1 + r.below(5) as usize, 1 + r.below(30) as usize);
    let key = [r.next_u32(), r.next_u32()];
    let (stream, row0) = (r.next_u32(), r.below(100));
    let host = gidd_engine::rng::uniform_f32(n, key, stream);
    let host_rows = gidd_engine::rng::uniform_rows(rows, cols, key, stream, row0);
    let u = |shape: Vec<usize>, v: Vec<u32>| HostTensor {
        shape,
        data: Data::U32(v),
    };
    Case {
        inputs: named(vec![
            u(vec![2], key.to_vec()),
            u(vec![], vec![stream]),
            u(vec![], vec![row0]),
        ]),
        build: Box::new(move |x| {
            let g = x[0].graph();
            Ok(vec![
                api::uniform_f32(g, &[n], &x[0], &x[1])?,
                api::uniform_rows(g, rows, cols, &x[0], &x[1], &x[2])?,
            ])
        }),
        want: vec![
            (
                "philox uniform_f32".into(),
                "u32>f32".into(),
                HostTensor {
                    shape: vec![n],
                    data: Data::F32(host),
                },
            ),
            (
                "philox uniform_rows".into(),
                "u32>f32".into(),
                HostTensor {
                    shape: vec![rows, cols],
                    data: Data::F32(host_rows),
                },
            ),
        ],
        f64: false,
    }
}

/// Every exact check, in table order.
pub(crate) fn exact_cases(r: &mut HostRng) -> Vec<Case> {
    let mut v = vec![
        int_case(r, DType::I32),
        int_case(r, DType::U32),
        int_case(r, DType::I64),
        bool_case(r),
    ];
    v.extend(convert_cases(r));
    v.push(iota_case(r));
    v.push(philox_case(r));
    v
}
