//! The float checks: every op kind of the engine (elementwise, movement, contraction,
//! reduction, indexing, and every fused op with its backward), each on seeded random
//! inputs of awkward sizes, and on edge values where the result is defined.

use super::float::{Case, FwdTol, Input};
use gidd_engine::api;
use gidd_engine::op::{BinaryOp, CmpOp, DotDims, MarginalSpec, Op, UnaryOp};
use gidd_engine::rng::HostRng;
use gidd_engine::{AttnSpec, DType, HostTensor, Result, Tensor};

const INF: f64 = f64::INFINITY;
const NAN: f64 = f64::NAN;

/// A size that is often awkward: 1, odd, just past a SIMD width, or any up to `max`.
fn odd(r: &mut HostRng, max: usize) -> usize {
    let pick = match r.below(4) {
        0 => 1,
        1 if max >= 3 => {
            let v: Vec<usize> = [3, 7, 15, 17, 31, 33, 65]
                .into_iter()
                .filter(|&x| x <= max)
                .collect();
            v[r.below(v.len() as u32) as usize]
        }
        _ => 1 + r.below(max as u32) as usize,
    };
    pick.clamp(1, max)
}

fn uniform(r: &mut HostRng, shape: &[usize], lo: f64, hi: f64) -> HostTensor {
    let n = shape.iter().product();
    let v = (0..n).map(|_| lo + (hi - lo) * r.next_f64()).collect();
    HostTensor {
        shape: shape.to_vec(),
        data: gidd_engine::Data::F64(v),
    }
}

fn ids(r: &mut HostRng, shape: &[usize], n: usize, dt: DType) -> HostTensor {
    let len = shape.iter().product();
    let v: Vec<i64> = (0..len).map(|_| r.below(n as u32) as i64).collect();
    HostTensor {
        shape: shape.to_vec(),
        data: gidd_engine::Data::I64(v),
    }
    .convert(dt)
}

fn bools(r: &mut HostRng, shape: &[usize], p: f64) -> HostTensor {
    let len = shape.iter().product();
    let v = (0..len).map(|_| u8::from(r.next_f64() < p)).collect();
    HostTensor {
        shape: shape.to_vec(),
        data: gidd_engine::Data::Bool(v),
    }
}

/// Edge values as a float input of shape `shape` (their count).
fn vals(shape: &[usize], v: &[f64]) -> HostTensor {
    HostTensor {
        shape: shape.to_vec(),
        data: gidd_engine::Data::F64(v.to_vec()),
    }
}

/// A differentiated float input.
fn x(name: &'static str, value: HostTensor) -> Input {
    Input {
        name,
        value,
        diff: true,
    }
}

/// An input no gradient is taken for (ids, masks, tables).
fn fixed(name: &'static str, value: HostTensor) -> Input {
    Input {
        name,
        value,
        diff: false,
    }
}

fn case(
    r: &mut HostRng,
    op: impl Into<String>,
    inputs: Vec<Input>,
    fwd: FwdTol,
    build: impl Fn(&[Tensor], DType) -> Result<Vec<Tensor>> + 'static,
) -> Case {
    Case {
        op: op.into(),
        inputs,
        build: Box::new(build),
        fwd,
        edge: false,
        seed: r.next_u32() as u64,
    }
}

fn edge(
    r: &mut HostRng,
    op: impl Into<String>,
    inputs: Vec<Input>,
    fwd: FwdTol,
    build: impl Fn(&[Tensor], DType) -> Result<Vec<Tensor>> + 'static,
) -> Case {
    Case {
        edge: true,
        ..case(r, op, inputs, fwd, build)
    }
}

/// Every float check, in table order.
pub(crate) fn float_cases(r: &mut HostRng, quick: bool) -> Vec<Case> {
    let mut v = vec![];
    elementwise(r, &mut v);
    movement(r, &mut v);
    contraction(r, quick, &mut v);
    fused(r, quick, &mut v);
    if !quick {
        large(r, &mut v);
    }
    v
}

/// Sizes past a device kernel's block and vector widths (rows of a vocabulary, tables of
/// thousands of rows, sums over thousands of elements), where the small shapes above fit
/// one block: the paths a GPU kernel takes only for long rows.
fn large(r: &mut HostRng, v: &mut Vec<Case>) {
    use FwdTol::{Exact, Rounded};
    let i = vec![
        x("a", uniform(r, &[129, 1031], -2.0, 2.0)),
        x("b", uniform(r, &[1, 1031], -2.0, 2.0)),
    ];
    v.push(case(r, "mul (large, broadcast)", i, Rounded, |x, _| {
        Ok(vec![x[0].mul(&x[1])?])
    }));
    let i = vec![x("x", uniform(r, &[7, 5001], -2.0, 2.0))];
    v.push(case(r, "reduce sum [1] (large)", i, Rounded, |x, _| {
        Ok(vec![x[0].sum(&[1], false)?])
    }));
    let i = vec![x("x", uniform(r, &[3001, 9], -2.0, 2.0))];
    v.push(case(r, "reduce sum [0] (large)", i, Rounded, |x, _| {
        Ok(vec![x[0].sum(&[0], false)?])
    }));
    let i = vec![x("x", uniform(r, &[5, 4099], -2.0, 2.0))];
    v.push(case(r, "reduce max [1] (large)", i, Exact, |x, _| {
        Ok(vec![x[0].max(&[1], false)?])
    }));
    let i = vec![x("x", uniform(r, &[3, 5003], -8.0, 8.0))];
    v.push(case(
        r,
        "softmax, log_softmax (large)",
        i,
        Rounded,
        |x, dt| {
            let a = x[0].to(dt.accum())?;
            Ok(vec![a.softmax()?.to(dt)?, a.log_softmax()?.to(dt)?])
        },
    ));
    let i = vec![
        x("x", uniform(r, &[9, 2051], -2.0, 2.0)),
        x("w", uniform(r, &[2051], -0.5, 0.5)),
    ];
    v.push(case(r, "rms_norm (large)", i, Rounded, |x, _| {
        Ok(vec![x[0].rms_norm(&x[1], 1e-6)?])
    }));
    let i = vec![
        x("table", uniform(r, &[5003, 67], -1.0, 1.0)),
        fixed("ids", ids(r, &[3, 37], 5003, DType::I32)),
    ];
    v.push(case(r, "gather (large table)", i, Exact, |x, _| {
        Ok(vec![x[0].gather(0, &x[1])?])
    }));
    let i = vec![
        x("a", uniform(r, &[257, 513], -1.0, 1.0)),
        x("b", uniform(r, &[513, 130], -1.0, 1.0)),
    ];
    v.push(case(r, "dot_general (large)", i, Rounded, |x, _| {
        Ok(vec![x[0].dot_general(&x[1], dims(&[], &[], &[1], &[0]))?])
    }));
    let spec = AttnSpec {
        scale: 0.125,
        softcap: Some(30.0),
    };
    let i = vec![
        x("q", uniform(r, &[1, 2, 130, 64], -2.0, 2.0)),
        x("k", uniform(r, &[1, 2, 257, 64], -2.0, 2.0)),
        x("v", uniform(r, &[1, 2, 257, 64], -2.0, 2.0)),
        fixed("mask", bools(r, &[1, 130, 257], 0.9)),
    ];
    v.push(case(r, "attention (large)", i, Rounded, move |x, _| {
        Ok(vec![api::attention(&x[0], &x[1], &x[2], &x[3], spec)?])
    }));
    let spec = MarginalSpec {
        mask_id: 3,
        min_log_snr: -9.0,
        max_log_snr: 9.0,
        scale: 1.0,
        shift: 0.0,
    };
    let i = vec![
        x("logits", uniform(r, &[2, 3, 4099], -3.0, 3.0)),
        fixed("z", ids(r, &[2, 3], 4099, DType::I32)),
        fixed("labels", ids(r, &[2, 3], 4099, DType::I32)),
        fixed("log_snr", uniform(r, &[2, 3], -8.0, 8.0)),
    ];
    v.push(case(
        r,
        "diffusion_kl (large)",
        i,
        FwdTol::Loose(10.0),
        move |x, _| {
            let (kl, log_p, log_q) = api::diffusion_kl(&x[0], &x[1], &x[2], &x[3], spec)?;
            Ok(vec![kl, log_p, log_q])
        },
    ));
}

fn elementwise(r: &mut HostRng, v: &mut Vec<Case>) {
    use FwdTol::{Exact, Rounded};
    use UnaryOp as U;
    // (op, input range, forward bar, differentiable, edge values)
    type UnaryRow = (UnaryOp, f64, f64, FwdTol, bool, &'static [f64]);
    #[rustfmt::skip]
    let unary: [UnaryRow; 11] = [
        (U::Neg, -3.0, 3.0, Exact, true, &[0.0, -0.0, INF, -INF, NAN, 1e30]),
        (U::Exp, -3.0, 3.0, Rounded, true, &[0.0, -0.0, INF, -INF, NAN, 1e30, -1e30, -80.0]),
        (U::Log, 0.1, 4.0, Rounded, true, &[0.0, -0.0, -1.0, INF, NAN, 1.0, 1e30, 1e-30]),
        (U::Tanh, -3.0, 3.0, Rounded, true, &[0.0, -0.0, INF, -INF, NAN, 1e30, -20.0, 1e-30]),
        (U::Logistic, -6.0, 6.0, Rounded, true, &[0.0, INF, -INF, NAN, 1e30, -1e30, -50.0, 50.0]),
        (U::Sqrt, 0.1, 4.0, Rounded, true, &[0.0, -0.0, -1.0, INF, NAN, 1e30, 1e-30]),
        // rsqrt(-0) is left out: IEEE says -inf, and no model depends on the sign
        (U::Rsqrt, 0.1, 4.0, Rounded, true, &[0.0, -1.0, INF, NAN, 1e30, 1e-30, 4.0]),
        (U::Abs, -3.0, 3.0, Exact, true, &[-0.0, INF, -INF, NAN, -1e30]),
        (U::Sin, -3.0, 3.0, Rounded, true, &[0.0, -0.0, INF, -INF, NAN, 100.0]),
        (U::Cos, -3.0, 3.0, Rounded, true, &[0.0, -0.0, INF, -INF, NAN, 100.0]),
        (U::Floor, -3.0, 3.0, Exact, false, &[-0.5, 0.5, -0.0, 2.0, -2.0, 1e30, INF, -INF, NAN]),
    ];
    for (u, lo, hi, fwd, diff, edges) in unary {
        let name = format!("{u:?}").to_lowercase();
        let s = [odd(r, 9), odd(r, 70)];
        let value = uniform(r, &s, lo, hi);
        let input = if diff {
            x("x", value)
        } else {
            fixed("x", value)
        };
        let op =
            move |x: &[Tensor], _: DType| Ok(vec![x[0].graph().apply1(Op::Unary(u), &[&x[0]])?]);
        v.push(case(r, name.clone(), vec![input], fwd, op));
        v.push(edge(
            r,
            name,
            vec![fixed("x", vals(&[edges.len()], edges))],
            fwd,
            op,
        ));
    }

    use BinaryOp as B;
    // (op, range of a, range of b, forward bar, differentiable, edge a, edge b)
    type Edge = (&'static [f64], &'static [f64]);
    type BinaryRow = (BinaryOp, (f64, f64), (f64, f64), FwdTol, bool, Edge);
    #[rustfmt::skip]
    let binary: [BinaryRow; 8] = [
        (B::Add, (-2.0, 2.0), (-2.0, 2.0), Rounded, true,
            (&[INF, INF, -INF, NAN, 1.0, -0.0], &[-INF, INF, -INF, 1.0, -1.0, -0.0])),
        (B::Sub, (-2.0, 2.0), (-2.0, 2.0), Rounded, true, (&[INF, INF, NAN, 1.0], &[INF, -INF, 1.0, 1.0])),
        (B::Mul, (-2.0, 2.0), (-2.0, 2.0), Rounded, true,
            (&[0.0, INF, -0.0, NAN, INF], &[INF, -1.0, 1.0, 0.0, INF])),
        (B::Div, (-2.0, 2.0), (0.5, 2.0), Rounded, true,
            (&[1.0, -1.0, 0.0, 1.0, INF, INF, -0.0], &[0.0, 0.0, 0.0, INF, INF, 2.0, 1.0])),
        (B::Max, (-2.0, 2.0), (-2.0, 2.0), Exact, true,
            (&[NAN, 1.0, -INF, INF, 2.0], &[1.0, NAN, -INF, -INF, 3.0])),
        (B::Min, (-2.0, 2.0), (-2.0, 2.0), Exact, true,
            (&[NAN, 1.0, -INF, INF, 2.0], &[1.0, NAN, -INF, -INF, 3.0])),
        (B::Pow, (0.5, 2.0), (-2.0, 2.0), Rounded, true,
            (&[0.0, 2.0, -8.0, 0.0, 1.0, 4.0, INF], &[0.0, -INF, 0.5, -1.0, 5.0, 0.5, 2.0])),
        // fmod is exact in every float format: the remainder fits the divisor's precision
        (B::Rem, (-5.0, 5.0), (0.5, 2.0), Exact, false,
            (&[1.0, INF, 1.0, -5.5, 5.5, -0.0], &[0.0, 1.0, INF, 2.0, -2.0, 1.0])),
    ];
    for (b, (la, ha), (lb, hb), fwd, diff, (ea, eb)) in binary {
        let name = format!("{b:?}").to_lowercase();
        let (m, n) = (odd(r, 9), odd(r, 40));
        // b broadcasts along dim 0 half the time
        let sb = if r.below(2) == 0 { [1, n] } else { [m, n] };
        let (va, vb) = (uniform(r, &[m, n], la, ha), uniform(r, &sb, lb, hb));
        let ins = if diff {
            vec![x("a", va), x("b", vb)]
        } else {
            vec![fixed("a", va), fixed("b", vb)]
        };
        let op = move |x: &[Tensor], _: DType| Ok(vec![x[0].binary(&x[1], b)?]);
        v.push(case(r, name.clone(), ins, fwd, op));
        let s = [ea.len()];
        v.push(edge(
            r,
            name,
            vec![fixed("a", vals(&s, ea)), fixed("b", vals(&s, eb))],
            fwd,
            op,
        ));
    }

    let cmps = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ];
    for c in cmps {
        let (m, n) = (odd(r, 9), odd(r, 40));
        // b takes a's value where `same` holds, so equality is exercised
        let ins = vec![
            fixed("a", uniform(r, &[m, n], -2.0, 2.0)),
            fixed("b", uniform(r, &[m, n], -2.0, 2.0)),
            fixed("same", bools(r, &[m, n], 0.3)),
        ];
        v.push(case(
            r,
            format!("compare {c:?}").to_lowercase(),
            ins,
            Exact,
            move |x, _| Ok(vec![x[0].compare(&x[2].select(&x[0], &x[1])?, c)?]),
        ));
    }
    let (ea, eb) = (
        [NAN, 1.0, INF, -INF, 0.0, NAN, INF],
        [1.0, NAN, INF, -INF, -0.0, NAN, 1.0],
    );
    let ins = vec![fixed("a", vals(&[7], &ea)), fixed("b", vals(&[7], &eb))];
    v.push(edge(r, "compare (all six)", ins, Exact, move |x, _| {
        cmps.iter().map(|&c| x[0].compare(&x[1], c)).collect()
    }));

    let (m, n) = (odd(r, 9), odd(r, 40));
    let ins = vec![
        fixed("p", bools(r, &[m, n], 0.5)),
        x("a", uniform(r, &[m, n], -2.0, 2.0)),
        x("b", uniform(r, &[1, n], -2.0, 2.0)),
    ];
    v.push(case(r, "select", ins, Exact, |x, _| {
        Ok(vec![x[0].select(&x[1], &x[2])?])
    }));

    // converts inside a differentiated chain (their exact values: `super::exact`)
    let s = [odd(r, 9), odd(r, 40)];
    let ins = vec![x("x", uniform(r, &s, -3.0, 3.0))];
    // The arithmetic stays at dt: an f64 row must not hold f32 math, whose rounding an
    // executor may legitimately change (XLA contracts a*b+c into one FMA). bf16 is reached
    // through f32: the cpu's f64 -> bf16 is half's, within one ulp of nearest
    // (kernels/src/elementwise/tests.rs), so an f64 twin must not convert that way.
    v.push(case(
        r,
        "convert (f32, bf16, f64 chain)",
        ins,
        Rounded,
        |x, dt| {
            let a = x[0].to(DType::F32)?.to(dt)?;
            let b = x[0]
                .to(DType::F32)?
                .to(DType::BF16)?
                .to(DType::F32)?
                .to(dt)?;
            let c = x[0].to(DType::F64)?.to(dt)?;
            Ok(vec![a.mul(&b)?.add(&c)?])
        },
    ));
}

fn movement(r: &mut HostRng, v: &mut Vec<Case>) {
    use FwdTol::Exact;
    let (a, b, c) = (odd(r, 5), odd(r, 6), odd(r, 33));
    let x3 = |r: &mut HostRng| x("x", uniform(r, &[a, b, c], -1.0, 1.0));
    let i = vec![x3(r)];
    v.push(case(
        r,
        "broadcast_in_dim (new dim)",
        i,
        Exact,
        move |x, _| {
            Ok(vec![x[0]
                .reshape(&[a, 1, b, c])?
                .broadcast_to(&[a, 3, b, c])?])
        },
    ));
    let i = vec![x("x", uniform(r, &[1, c], -1.0, 1.0))];
    v.push(case(
        r,
        "broadcast_in_dim (size 1)",
        i,
        Exact,
        move |x, _| Ok(vec![x[0].broadcast_to(&[4, 2, c])?]),
    ));
    let i = vec![x("x", uniform(r, &[a, c], -1.0, 1.0))];
    v.push(case(
        r,
        "broadcast_in_dim (dims 0,2)",
        i,
        Exact,
        move |x, _| Ok(vec![x[0].broadcast_in_dim(&[a, 5, c], vec![0, 2])?]),
    ));
    let i = vec![x3(r)];
    v.push(case(r, "reshape", i, Exact, move |x, _| {
        Ok(vec![x[0].reshape(&[c, a * b])?])
    }));
    let i = vec![x3(r)];
    v.push(case(r, "reshape + transpose", i, Exact, move |x, _| {
        Ok(vec![x[0].reshape(&[a * b, c])?.t()?])
    }));
    let i = vec![x3(r)];
    v.push(case(r, "transpose [2,0,1]", i, Exact, |x, _| {
        Ok(vec![x[0].transpose(&[2, 0, 1])?])
    }));
    let d = odd(r, 17);
    let i = vec![x("x", uniform(r, &[b, a, 3, d], -1.0, 1.0))];
    v.push(case(r, "transpose [0,2,1,3]", i, Exact, |x, _| {
        Ok(vec![x[0].transpose(&[0, 2, 1, 3])?])
    }));
    let s0 = r.below(b as u32) as usize;
    let i = vec![x3(r)];
    v.push(case(r, "slice", i, Exact, move |x, _| {
        Ok(vec![x[0].slice(&[0, s0, 1.min(c - 1)], &[a, b, c])?])
    }));
    let e = odd(r, 4);
    let i = vec![x3(r), x("y", uniform(r, &[a, e, c], -1.0, 1.0))];
    v.push(case(r, "concatenate", i, Exact, |x, _| {
        Ok(vec![Tensor::concat(&[&x[0], &x[1], &x[0]], 1)?])
    }));

    // gather and its adjoint
    let (vocab, dm, m) = (1 + odd(r, 40), odd(r, 33), odd(r, 7));
    let i = vec![
        x("table", uniform(r, &[vocab, dm], -1.0, 1.0)),
        fixed("ids", ids(r, &[2, m], vocab, DType::I32)),
    ];
    v.push(case(r, "gather (axis 0, i32 ids)", i, Exact, |x, _| {
        Ok(vec![x[0].gather(0, &x[1])?])
    }));
    let i = vec![x3(r), fixed("ids", ids(r, &[m], b, DType::I64))];
    v.push(case(r, "gather (axis 1, i64 ids)", i, Exact, |x, _| {
        Ok(vec![x[0].gather(1, &x[1])?])
    }));
    let i = vec![
        x("updates", uniform(r, &[2, m, dm], -1.0, 1.0)),
        fixed("ids", ids(r, &[2, m], vocab.min(5), DType::I32)),
    ];
    v.push(case(
        r,
        "scatter_add (repeated ids)",
        i,
        FwdTol::Rounded,
        move |x, _| Ok(vec![x[0].scatter_add(0, &x[1], &[vocab, dm])?]),
    ));
}

fn dims(lb: &[usize], rb: &[usize], lc: &[usize], rc: &[usize]) -> DotDims {
    DotDims {
        lhs_batch: lb.to_vec(),
        rhs_batch: rb.to_vec(),
        lhs_contract: lc.to_vec(),
        rhs_contract: rc.to_vec(),
    }
}

fn contraction(r: &mut HostRng, quick: bool, v: &mut Vec<Case>) {
    use FwdTol::{Exact, Rounded};
    let (bt, m, n, k) = (odd(r, 3), odd(r, 17), odd(r, 19), odd(r, 70));
    let layouts = [
        (
            "[m,k]x[k,n]",
            vec![m, k],
            vec![k, n],
            dims(&[], &[], &[1], &[0]),
        ),
        (
            "[k,m]x[n,k]",
            vec![k, m],
            vec![n, k],
            dims(&[], &[], &[0], &[1]),
        ),
        (
            "[b,m,k]x[b,n,k]",
            vec![bt, m, k],
            vec![bt, n, k],
            dims(&[0], &[0], &[2], &[2]),
        ),
        (
            "[m,b,k]x[k,b,n]",
            vec![m, bt, k],
            vec![k, bt, n],
            dims(&[1], &[1], &[2], &[0]),
        ),
        (
            "[b,k,m,2]x[2,b,k,n]",
            vec![bt, k, m, 2],
            vec![2, bt, k, n],
            dims(&[0], &[1], &[1, 3], &[2, 0]),
        ),
        // past the blocking of the GEMM kernels in every dim
        (
            "[m,k]x[k,n] large",
            vec![65, 129],
            vec![129, 67],
            dims(&[], &[], &[1], &[0]),
        ),
    ];
    for (name, ls, rs, dd) in layouts.into_iter().take(if quick { 3 } else { 6 }) {
        let i = vec![
            x("a", uniform(r, &ls, -1.0, 1.0)),
            x("b", uniform(r, &rs, -1.0, 1.0)),
        ];
        v.push(case(
            r,
            format!("dot_general {name}"),
            i,
            Rounded,
            move |x, _| Ok(vec![x[0].dot_general(&x[1], dd.clone())?]),
        ));
    }

    let s = [odd(r, 5), odd(r, 6), odd(r, 70)];
    let sums: [(&str, &[usize], bool); 4] = [
        ("reduce sum [2]", &[2], false),
        ("reduce sum [0]", &[0], false),
        ("reduce sum [0,2]", &[0, 2], true),
        ("reduce sum (all)", &[0, 1, 2], false),
    ];
    for (name, d, keep) in sums {
        let i = vec![x("x", uniform(r, &s, -2.0, 2.0))];
        v.push(case(r, name, i, Rounded, move |x, _| {
            Ok(vec![x[0].sum(d, keep)?])
        }));
    }
    let i = vec![x("x", uniform(r, &s, -2.0, 2.0))];
    v.push(case(r, "reduce max [1]", i, Exact, |x, _| {
        Ok(vec![x[0].max(&[1], false)?])
    }));
    let e = [1.0, NAN, 2.0, -INF, -INF, -INF, 0.0, -1.0, -0.5];
    v.push(edge(
        r,
        "reduce max [1]",
        vec![fixed("x", vals(&[3, 3], &e))],
        Exact,
        |x, _| Ok(vec![x[0].max(&[1], false)?]),
    ));
}

fn fused(r: &mut HostRng, quick: bool, v: &mut Vec<Case>) {
    use FwdTol::Rounded;
    let s = [odd(r, 4), odd(r, 5), odd(r, 70)];
    let i = vec![x("x", uniform(r, &s, -4.0, 4.0))];
    v.push(case(r, "softmax", i, Rounded, |x, dt| {
        Ok(vec![x[0].to(dt.accum())?.softmax()?.to(dt)?])
    }));
    let i = vec![x("x", uniform(r, &s, -4.0, 4.0))];
    v.push(case(r, "log_softmax", i, Rounded, |x, dt| {
        Ok(vec![x[0].to(dt.accum())?.log_softmax()?.to(dt)?])
    }));
    // -inf logits (masked), a wide spread, and huge magnitudes
    let e = [
        0.0, -INF, 1.0, 2.0, 1000.0, 0.0, -1000.0, 1.0, -1e30, 0.0, 1e30, 5.0,
    ];
    v.push(edge(
        r,
        "softmax, log_softmax",
        vec![fixed("x", vals(&[3, 4], &e))],
        Rounded,
        |x, dt| {
            let a = x[0].to(dt.accum())?;
            Ok(vec![a.softmax()?.to(dt)?, a.log_softmax()?.to(dt)?])
        },
    ));
    let i = vec![
        x("x", uniform(r, &s, -2.0, 2.0)),
        x("w", uniform(r, &s[2..], -0.5, 0.5)),
    ];
    v.push(case(r, "rms_norm", i, Rounded, |x, _| {
        Ok(vec![x[0].rms_norm(&x[1], 1e-6)?])
    }));
    // a zero row (rstd = eps^-1/2) and a row of small values where eps matters
    let e = [
        0.0, 0.0, 0.0, 0.0, 1e-3, -1e-3, 2e-3, 0.0, 1.0, 2.0, 3.0, 4.0,
    ];
    let i = vec![
        fixed("x", vals(&[3, 4], &e)),
        fixed("w", vals(&[4], &[0.0, 0.5, -0.5, 1.0])),
    ];
    v.push(edge(r, "rms_norm", i, Rounded, |x, _| {
        Ok(vec![x[0].rms_norm(&x[1], 1e-6)?])
    }));

    let (b, l, h, d) = (odd(r, 2), odd(r, 5), odd(r, 3), 2 * odd(r, 17));
    let i = vec![
        x("x", uniform(r, &[b, l, h, d], -1.0, 1.0)),
        fixed("cos", uniform(r, &[b, l, d / 2], -1.0, 1.0)),
        fixed("sin", uniform(r, &[b, l, d / 2], -1.0, 1.0)),
    ];
    v.push(case(r, "rope", i, Rounded, |x, _| {
        Ok(vec![x[0].rope(&x[1], &x[2])?])
    }));

    // (name, soft-cap, mask density, bias slot)
    let attn = [
        ("attention softcap", Some(3.0), 0.7, false),
        ("attention bias slot", Some(3.0), 0.7, true),
        ("attention", None, 0.7, false),
        ("attention all masked", None, 0.0, false),
    ];
    for (name, softcap, p, bias) in attn.into_iter().take(if quick { 2 } else { 4 }) {
        let (b, h, lq, lk, d) = (odd(r, 2), odd(r, 3), odd(r, 9), odd(r, 11), odd(r, 33));
        let spec = AttnSpec {
            scale: (d as f32).powf(-0.5),
            softcap,
        };
        let mut i = vec![
            x("q", uniform(r, &[b, h, lq, d], -2.0, 2.0)),
            x("k", uniform(r, &[b, h, lk, d], -2.0, 2.0)),
            x("v", uniform(r, &[b, h, lk, d], -2.0, 2.0)),
            fixed("mask", bools(r, &[b, lq, lk], p)),
        ];
        if bias {
            i.push(x("k_bias", uniform(r, &[h, d], -1.0, 1.0)));
            i.push(x("v_bias", uniform(r, &[h, d], -1.0, 1.0)));
        }
        v.push(case(r, name, i, Rounded, move |x, _| {
            let slot = (x.len() == 6).then(|| (&x[4], &x[5]));
            Ok(vec![api::attention_with_bias_slot(
                &x[0], &x[1], &x[2], &x[3], slot, spec,
            )?])
        }));
    }

    for shift in [0.0f32, -1000.0, 1000.0]
        .into_iter()
        .take(if quick { 1 } else { 3 })
    {
        let (b, l, vocab) = (odd(r, 3), odd(r, 5), 5 + odd(r, 65));
        let spec = MarginalSpec {
            mask_id: 3,
            min_log_snr: -9.0,
            max_log_snr: 9.0,
            scale: 1.0,
            shift,
        };
        let i = vec![
            x("logits", uniform(r, &[b, l, vocab], -3.0, 3.0)),
            fixed("z", ids(r, &[b, l], vocab, DType::I32)),
            fixed("labels", ids(r, &[b, l], vocab, DType::I32)),
            // log-SNR past the schedule's clip at both ends
            fixed("log_snr", uniform(r, &[b, l], -10.0, 10.0)),
            fixed("masked", bools(r, &[b, l], 0.3)),
        ];
        // 1 - alpha cancels near the clip: the f32 kernel's log p_t[z] is off by up to 5e-5
        // relative (400 seeds), the engine's own f32 bar for this op is 1e-4
        let fwd = FwdTol::Loose(10.0);
        v.push(case(
            r,
            format!("diffusion_kl shift {shift}"),
            i,
            fwd,
            move |x, _| {
                // z is the mask id where `masked` holds
                let mask_id = x[1]
                    .graph()
                    .splat(spec.mask_id as f64, x[1].shape(), DType::I32);
                let z = x[4].select(&mask_id, &x[1])?;
                let (kl, log_p, log_q) = api::diffusion_kl(&x[0], &z, &x[2], &x[3], spec)?;
                Ok(vec![kl, log_p, log_q])
            },
        ));
    }
}
