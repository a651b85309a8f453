//! A naive f64 interpreter of primitive graphs: floats are held in f64 whatever
//! their declared dtype; integers keep their dtype's wrapping semantics. Fused
//! ops are first replaced by their decompositions.

use gidd_engine::op::{BinaryOp, CmpOp, Op, ReduceOp, UnaryOp};
use gidd_engine::{rewrite, DType, Tensor};
use std::collections::HashMap;

fn strides(s: &[usize]) -> Vec<usize> {
    let mut st = vec![1; s.len()];
    for i in (0..s.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * s[i + 1];
    }
    st
}

fn unravel(mut i: usize, s: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; s.len()];
    for d in (0..s.len()).rev() {
        idx[d] = i % s[d];
        i /= s[d];
    }
    idx
}

fn ravel(idx: &[usize], s: &[usize]) -> usize {
    idx.iter().zip(strides(s)).map(|(i, st)| i * st).sum()
}

fn wrap(x: f64, d: DType) -> f64 {
    match d {
        DType::I32 => (x as i128 as i32) as f64,
        DType::U32 => (x as i128 as u32) as f64,
        DType::I64 => (x as i128 as i64) as f64,
        DType::Bool => f64::from(u8::from(x != 0.0)),
        _ => x,
    }
}

/// Evaluates `outputs` with named inputs; returns each output's elements as f64.
pub fn eval(outputs: &[Tensor], inputs: &HashMap<String, Vec<f64>>) -> Vec<Vec<f64>> {
    let outs = rewrite::decompose_fused(outputs).expect("decompose");
    let g = outs[0].graph().clone();
    let data = g.data().clone();
    let mut vals: Vec<Vec<f64>> = vec![vec![]; data.values.len()];
    for node in &data.nodes {
        let ty = &data.values[node.outputs[0]].ty;
        let n = ty.numel();
        let x = |i: usize| &vals[node.inputs[i]];
        let xs = |i: usize| &data.values[node.inputs[i]].ty.shape;
        let xd = |i: usize| data.values[node.inputs[i]].ty.dtype;
        let out: Vec<f64> = match &node.op {
            Op::Input { name } => inputs
                .get(name)
                .unwrap_or_else(|| panic!("missing input {name}"))
                .clone(),
            Op::Constant(c) => c.to_f64_vec(),
            Op::Splat(v) => vec![wrap(*v, ty.dtype); n],
            Op::Iota { dim } => (0..n).map(|i| unravel(i, &ty.shape)[*dim] as f64).collect(),
            Op::Unary(u) => x(0)
                .iter()
                .map(|&a| match u {
                    UnaryOp::Neg => wrap(-a, ty.dtype),
                    UnaryOp::Exp => a.exp(),
                    UnaryOp::Log => a.ln(),
                    UnaryOp::Tanh => a.tanh(),
                    UnaryOp::Logistic => 1.0 / (1.0 + (-a).exp()),
                    UnaryOp::Sqrt => a.sqrt(),
                    UnaryOp::Rsqrt => 1.0 / a.sqrt(),
                    UnaryOp::Abs => a.abs(),
                    UnaryOp::Sin => a.sin(),
                    UnaryOp::Cos => a.cos(),
                    UnaryOp::Floor => a.floor(),
                    UnaryOp::Not => match ty.dtype {
                        DType::Bool => 1.0 - a,
                        d => wrap(!(a as i64) as f64, d),
                    },
                })
                .collect(),
            Op::Binary(b) => {
                let d = ty.dtype;
                let bits = |v: f64| -> u64 {
                    match d {
                        DType::I32 => v as i32 as u32 as u64,
                        DType::U32 => v as u32 as u64,
                        _ => v as i64 as u64,
                    }
                };
                let width = match d {
                    DType::I64 => 64,
                    DType::Bool => 8,
                    _ => 32,
                };
                let from_bits = |u: u64| -> f64 {
                    match d {
                        DType::I32 => u as u32 as i32 as f64,
                        DType::U32 => u as u32 as f64,
                        DType::Bool => (u & 1) as f64,
                        _ => u as i64 as f64,
                    }
                };
                x(0).iter()
                    .zip(x(1))
                    .map(|(&a, &c)| match b {
                        BinaryOp::Add if d.is_float() => a + c,
                        BinaryOp::Sub if d.is_float() => a - c,
                        BinaryOp::Mul if d.is_float() => a * c,
                        BinaryOp::Add => wrap_int(a as i128 + c as i128, d),
                        BinaryOp::Sub => wrap_int(a as i128 - c as i128, d),
                        BinaryOp::Mul => wrap_int((a as i128).wrapping_mul(c as i128), d),
                        BinaryOp::Div if d.is_float() => a / c,
                        BinaryOp::Div => {
                            if c == 0.0 {
                                0.0
                            } else {
                                (a / c).trunc()
                            }
                        }
                        BinaryOp::Rem if d.is_float() => a % c,
                        BinaryOp::Rem => {
                            if c == 0.0 {
                                0.0
                            } else {
                                a % c
                            }
                        }
                        BinaryOp::Max => {
                            if a.is_nan() || c.is_nan() {
                                f64::NAN
                            } else {
                                a.max(c)
                            }
                        }
                        BinaryOp::Min => {
                            if a.is_nan() || c.is_nan() {
                                f64::NAN
                            } else {
                                a.min(c)
                            }
                        }
                        BinaryOp::Pow => a.powf(c),
                        BinaryOp::And => from_bits(bits(a) & bits(c)),
                        BinaryOp::Or => from_bits(bits(a) | bits(c)),
                        BinaryOp::Xor => from_bits(bits(a) ^ bits(c)),
                        BinaryOp::ShiftLeft => {
                            if c as u64 >= width {
                                0.0
                            } else {
                                from_bits(bits(a) << (c as u64))
                            }
                        }
                        BinaryOp::ShiftRightLogical => {
                            let mask = if width == 64 {
                                u64::MAX
                            } else {
                                (1u64 << width) - 1
                            };
                            if c as u64 >= width {
                                0.0
                            } else {
                                from_bits((bits(a) & mask) >> (c as u64))
                            }
                        }
                    })
                    .collect()
            }
            Op::Compare(c) => x(0)
                .iter()
                .zip(x(1))
                .map(|(&a, &b)| {
                    f64::from(u8::from(match c {
                        CmpOp::Eq => a == b,
                        CmpOp::Ne => a != b,
                        CmpOp::Lt => a < b,
                        CmpOp::Le => a <= b,
                        CmpOp::Gt => a > b,
                        CmpOp::Ge => a >= b,
                    }))
                })
                .collect(),
            Op::Select => (0..n)
                .map(|i| if x(0)[i] != 0.0 { x(1)[i] } else { x(2)[i] })
                .collect(),
            Op::Convert { to } => x(0)
                .iter()
                .map(|&a| match (*to, xd(0).is_float()) {
                    (t, _) if t.is_float() => a,
                    (t, true) => wrap(a.trunc(), t),
                    (DType::U32, false) | (DType::I32, false) | (DType::I64, false) => {
                        // integer narrowing keeps the low bits
                        let v = a as i128;
                        match *to {
                            DType::U32 => v as u32 as f64,
                            DType::I32 => v as i32 as f64,
                            _ => v as i64 as f64,
                        }
                    }
                    (t, false) => wrap(a, t),
                })
                .collect(),
            Op::BroadcastInDim { shape, dims } => (0..n)
                .map(|i| {
                    let idx = unravel(i, shape);
                    let s = xs(0);
                    let src: Vec<usize> = dims
                        .iter()
                        .enumerate()
                        .map(|(k, &d)| if s[k] == 1 { 0 } else { idx[d] })
                        .collect();
                    x(0)[ravel(&src, s)]
                })
                .collect(),
            Op::Reshape { .. } => x(0).clone(),
            Op::Transpose { perm } => (0..n)
                .map(|i| {
                    let idx = unravel(i, &ty.shape);
                    let mut src = vec![0; perm.len()];
                    for (k, &p) in perm.iter().enumerate() {
                        src[p] = idx[k];
                    }
                    x(0)[ravel(&src, xs(0))]
                })
                .collect(),
            Op::Slice { start, .. } => (0..n)
                .map(|i| {
                    let idx = unravel(i, &ty.shape);
                    let src: Vec<usize> = idx.iter().zip(start).map(|(a, b)| a + b).collect();
                    x(0)[ravel(&src, xs(0))]
                })
                .collect(),
            Op::Concatenate { dim } => (0..n)
                .map(|i| {
                    let mut idx = unravel(i, &ty.shape);
                    let mut part = 0;
                    while idx[*dim] >= xs(part)[*dim] {
                        idx[*dim] -= xs(part)[*dim];
                        part += 1;
                    }
                    x(part)[ravel(&idx, xs(part))]
                })
                .collect(),
            Op::DotGeneral(dd) => {
                let (ls, rs) = (xs(0), xs(1));
                let lf: Vec<usize> = (0..ls.len())
                    .filter(|d| !dd.lhs_batch.contains(d) && !dd.lhs_contract.contains(d))
                    .collect();
                let rf: Vec<usize> = (0..rs.len())
                    .filter(|d| !dd.rhs_batch.contains(d) && !dd.rhs_contract.contains(d))
                    .collect();
                let cshape: Vec<usize> = dd.lhs_contract.iter().map(|&d| ls[d]).collect();
                let kn: usize = cshape.iter().product();
                (0..n)
                    .map(|i| {
                        let idx = unravel(i, &ty.shape);
                        let nb = dd.lhs_batch.len();
                        let mut li = vec![0; ls.len()];
                        let mut ri = vec![0; rs.len()];
                        for (k, (&a, &b)) in dd.lhs_batch.iter().zip(&dd.rhs_batch).enumerate() {
                            li[a] = idx[k];
                            ri[b] = idx[k];
                        }
                        for (k, &d) in lf.iter().enumerate() {
                            li[d] = idx[nb + k];
                        }
                        for (k, &d) in rf.iter().enumerate() {
                            ri[d] = idx[nb + lf.len() + k];
                        }
                        let mut s = 0.0;
                        for c in 0..kn {
                            let ci = unravel(c, &cshape);
                            for (k, (&a, &b)) in
                                dd.lhs_contract.iter().zip(&dd.rhs_contract).enumerate()
                            {
                                li[a] = ci[k];
                                ri[b] = ci[k];
                            }
                            s += x(0)[ravel(&li, ls)] * x(1)[ravel(&ri, rs)];
                        }
                        s
                    })
                    .collect()
            }
            Op::Reduce { op, dims } => {
                let s = xs(0);
                let mut out = vec![
                    if *op == ReduceOp::Sum {
                        0.0
                    } else {
                        f64::NEG_INFINITY
                    };
                    n
                ];
                for (i, &v) in x(0).iter().enumerate() {
                    let idx = unravel(i, s);
                    let kept: Vec<usize> = (0..s.len())
                        .filter(|d| !dims.contains(d))
                        .map(|d| idx[d])
                        .collect();
                    let o = ravel(&kept, &ty.shape);
                    out[o] = match op {
                        ReduceOp::Sum => out[o] + v,
                        ReduceOp::Max => {
                            if v.is_nan() || out[o].is_nan() {
                                f64::NAN
                            } else {
                                out[o].max(v)
                            }
                        }
                    };
                }
                out
            }
            Op::Gather { axis } => {
                let s = xs(0);
                let is = xs(1);
                (0..n)
                    .map(|i| {
                        let idx = unravel(i, &ty.shape);
                        let id_pos = ravel(&idx[*axis..axis + is.len()], is);
                        let id = (x(1)[id_pos] as i64).clamp(0, s[*axis] as i64 - 1) as usize;
                        let mut src = idx[..*axis].to_vec();
                        src.push(id);
                        src.extend(&idx[axis + is.len()..]);
                        x(0)[ravel(&src, s)]
                    })
                    .collect()
            }
            Op::ScatterAdd { axis, shape } => {
                let us = xs(0);
                let is = xs(1);
                let mut out = vec![0.0; n];
                for (i, &v) in x(0).iter().enumerate() {
                    let idx = unravel(i, us);
                    let id_pos = ravel(&idx[*axis..axis + is.len()], is);
                    let id = (x(1)[id_pos] as i64).clamp(0, shape[*axis] as i64 - 1) as usize;
                    let mut dst = idx[..*axis].to_vec();
                    dst.push(id);
                    dst.extend(&idx[axis + is.len()..]);
                    out[ravel(&dst, shape)] += v;
                }
                out
            }
            op => panic!("fused op {} left after decomposition", op.name()),
        };
        assert_eq!(out.len(), n, "{}: wrong element count", node.op.name());
        vals[node.outputs[0]] = out;
    }
    outs.iter().map(|t| vals[t.id()].clone()).collect()
}

/// Integers are held in f64, so values beyond 2^53 (wide i64 products) are not
/// exact here; the RNG is checked bitwise against the host Philox instead.
fn wrap_int(v: i128, d: DType) -> f64 {
    match d {
        DType::I32 => v as i32 as f64,
        DType::U32 => v as u32 as f64,
        DType::I64 => v as i64 as f64,
        _ => f64::from(u8::from(v != 0)),
    }
}
