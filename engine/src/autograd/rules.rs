//! Every backward rule, in one match, written with graph ops.

use super::vjp;
use crate::decompose::decompose;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::Tensor;
use crate::op::{BinaryOp, DotDims, Op, ReduceOp, UnaryOp};

/// Cotangents of the inputs of one node given its outputs' cotangents.
/// `want[i]` says whether input i needs one (others may be returned as None).
pub fn vjp_rule(
    op: &Op,
    x: &[Tensor],
    y: &[Tensor],
    gs: &[Option<Tensor>],
    want: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let none = |n: usize| vec![None; n];
    // Single-output ops: the cotangent of output 0 (zeros if only others were used).
    let g0 = || -> Tensor { gs[0].clone().unwrap_or_else(|| y[0].full_like(0.0)) };
    Ok(match op {
        Op::Input { .. } | Op::Constant(_) | Op::Splat(_) | Op::Iota { .. } => vec![],
        // integer outputs: nothing to differentiate
        Op::Compare(_) | Op::SampleStep(_) => none(2),
        Op::Unary(u) => {
            let (g, a, out) = (g0(), &x[0], &y[0]);
            let d = match u {
                UnaryOp::Neg => Some(g.neg()?),
                UnaryOp::Exp => Some(g.mul(out)?),
                UnaryOp::Log => Some(g.div(a)?),
                UnaryOp::Tanh => Some(g.mul(&out.square()?.rsub_scalar(1.0)?)?),
                UnaryOp::Logistic => Some(g.mul(&out.mul(&out.rsub_scalar(1.0)?)?)?),
                UnaryOp::Sqrt => Some(g.mul_scalar(0.5)?.div(out)?),
                UnaryOp::Rsqrt => Some(g.mul(&out.mul(out)?.mul(out)?)?.mul_scalar(-0.5)?),
                UnaryOp::Abs => Some(a.ge(&a.full_like(0.0))?.select(&g, &g.neg()?)?),
                UnaryOp::Sin => Some(g.mul(&a.cos()?)?),
                UnaryOp::Cos => Some(g.mul(&a.sin()?)?.neg()?),
                UnaryOp::Floor | UnaryOp::Not => None,
            };
            vec![d]
        }
        Op::Binary(b) => {
            let (g, a, c) = (g0(), &x[0], &x[1]);
            match b {
                BinaryOp::Add => vec![Some(g.clone()), Some(g)],
                BinaryOp::Sub => vec![Some(g.clone()), Some(g.neg()?)],
                BinaryOp::Mul => vec![Some(g.mul(c)?), Some(g.mul(a)?)],
                BinaryOp::Div => vec![Some(g.div(c)?), Some(g.mul(&y[0])?.div(c)?.neg()?)],
                BinaryOp::Max | BinaryOp::Min => {
                    // Ties go to the second operand, so relu(x) = max(x, 0) has gradient 0 at 0 as in torch.
                    let first = if *b == BinaryOp::Max {
                        a.compare(c, crate::op::CmpOp::Gt)?
                    } else {
                        a.lt(c)?
                    };
                    let z = g.full_like(0.0);
                    vec![Some(first.select(&g, &z)?), Some(first.select(&z, &g)?)]
                }
                BinaryOp::Pow => {
                    let da = g.mul(c)?.mul(&a.pow(&c.add_scalar(-1.0)?)?)?;
                    let dc = if want[1] {
                        Some(g.mul(&y[0])?.mul(&a.log()?)?)
                    } else {
                        None
                    };
                    vec![Some(da), dc]
                }
                BinaryOp::Rem
                | BinaryOp::And
                | BinaryOp::Or
                | BinaryOp::Xor
                | BinaryOp::ShiftLeft
                | BinaryOp::ShiftRightLogical => none(2),
            }
        }
        Op::Select => {
            let g = g0();
            let z = g.full_like(0.0);
            vec![None, Some(x[0].select(&g, &z)?), Some(x[0].select(&z, &g)?)]
        }
        Op::Convert { .. } => {
            let d = x[0].dtype();
            vec![if d.is_float() {
                Some(g0().to(d)?)
            } else {
                None
            }]
        }
        Op::BroadcastInDim { shape, dims } => {
            let g = g0();
            let src = x[0].shape();
            let summed: Vec<usize> = (0..shape.len())
                .filter(|r| {
                    dims.iter()
                        .position(|d| d == r)
                        .is_none_or(|i| src[i] != shape[*r])
                })
                .collect();
            let r = if summed.is_empty() {
                g
            } else {
                g.sum(&summed, false)?
            };
            vec![Some(r.reshape(src)?)]
        }
        Op::Reshape { .. } => vec![Some(g0().reshape(x[0].shape())?)],
        Op::Transpose { perm } => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            vec![Some(g0().transpose(&inv)?)]
        }
        Op::Slice { start, limit } => {
            let mut g = g0();
            let full = x[0].shape();
            for d in 0..full.len() {
                let mut parts = vec![];
                let zeros = |n: usize, g: &Tensor| {
                    let mut s = g.shape().to_vec();
                    s[d] = n;
                    g.graph().zeros(&s, g.dtype())
                };
                if start[d] > 0 {
                    parts.push(zeros(start[d], &g));
                }
                parts.push(g.clone());
                if limit[d] < full[d] {
                    parts.push(zeros(full[d] - limit[d], &g));
                }
                if parts.len() > 1 {
                    let refs: Vec<&Tensor> = parts.iter().collect();
                    g = Tensor::concat(&refs, d)?;
                }
            }
            vec![Some(g)]
        }
        Op::Concatenate { dim } => {
            let g = g0();
            let mut off = 0;
            let mut out = vec![];
            for t in x {
                let n = t.shape()[*dim];
                out.push(Some(g.narrow(*dim, off, off + n)?));
                off += n;
            }
            out
        }
        Op::DotGeneral(dd) => dot_vjp(dd, &x[0], &x[1], &g0(), want)?,
        Op::Reduce {
            op: ReduceOp::Sum,
            dims,
        } => {
            let kept: Vec<usize> = (0..x[0].rank()).filter(|d| !dims.contains(d)).collect();
            vec![Some(g0().broadcast_in_dim(x[0].shape(), kept)?)]
        }
        Op::Reduce {
            op: ReduceOp::Max,
            dims,
        } => {
            let kept: Vec<usize> = (0..x[0].rank()).filter(|d| !dims.contains(d)).collect();
            let yb = y[0].broadcast_in_dim(x[0].shape(), kept.clone())?;
            let gb = g0().broadcast_in_dim(x[0].shape(), kept)?;
            let hit = x[0].eq(&yb)?;
            vec![Some(hit.select(&gb, &gb.full_like(0.0))?)]
        }
        Op::Gather { axis } => vec![Some(g0().scatter_add(*axis, &x[1], x[0].shape())?), None],
        Op::ScatterAdd { axis, .. } => vec![Some(g0().gather(*axis, &x[1])?), None],
        Op::Softmax => vec![Some(x[0].graph().apply1(Op::SoftmaxBwd, &[&y[0], &g0()])?)],
        Op::LogSoftmax => {
            let g = g0();
            let s = g.sum_last(true)?;
            vec![Some(g.sub(&y[0].exp()?.mul(&s)?)?)]
        }
        Op::RmsNorm { .. } => {
            if gs[1].is_some() {
                return Err(unsupported(
                    op,
                    "the rstd output is auxiliary and has no gradient",
                ));
            }
            let r = x[0]
                .graph()
                .apply(Op::RmsNormBwd, &[&x[0], &x[1], &y[1], &g0()])?;
            vec![Some(r[0].clone()), Some(r[1].clone())]
        }
        Op::Rope => vec![
            Some(x[0].graph().apply1(Op::RopeBwd, &[&g0(), &x[1], &x[2]])?),
            None,
            None,
        ],
        Op::RopeBwd => vec![
            Some(x[0].graph().apply1(Op::Rope, &[&g0(), &x[1], &x[2]])?),
            None,
            None,
        ],
        Op::Attention(spec) => {
            if gs[1].is_some() {
                return Err(unsupported(
                    op,
                    "the lse output is auxiliary and has no gradient",
                ));
            }
            let r = x[0].graph().apply(
                Op::AttentionBwd(*spec),
                &[&x[0], &x[1], &x[2], &x[3], &y[0], &y[1], &g0()],
            )?;
            vec![
                Some(r[0].clone()),
                Some(r[1].clone()),
                Some(r[2].clone()),
                None,
            ]
        }
        Op::DiffusionKl(spec) => {
            // No gradient reaches the log-SNR or the ids (the reference never differentiates them).
            let zero = || y[0].full_like(0.0);
            let gk = gs[0].clone().unwrap_or_else(zero);
            let gp = gs[1].clone().unwrap_or_else(zero);
            let d = x[0].graph().apply1(
                Op::DiffusionKlBwd(*spec),
                &[&x[0], &x[1], &x[2], &x[3], &gk, &gp],
            )?;
            vec![Some(d), None, None, None]
        }
        // The adjoint pair under SPMD (the loss is the sum of every rank's): a gathered
        // tensor's cotangents from all ranks sum into each rank's shard, and back.
        Op::AllGather { world, .. } => gs
            .iter()
            .zip(want)
            .map(|(g, &w)| match (g, w) {
                (Some(g), true) => {
                    let rs = Op::ReduceScatter { world: *world };
                    Ok(Some(g.graph().apply1(rs, &[g])?))
                }
                _ => Ok(None),
            })
            .collect::<Result<_>>()?,
        Op::ReduceScatter { world } => {
            let ag = Op::AllGather {
                world: *world,
                shapes: vec![x[0].shape().to_vec()],
            };
            vec![Some(x[0].graph().apply1(ag, &[&g0()])?)]
        }
        // Second-order rules: differentiate the decomposition.
        Op::SoftmaxBwd | Op::RmsNormBwd | Op::AttentionBwd(_) | Op::DiffusionKlBwd(_) => {
            let outs = decompose(op, x)?;
            let r = vjp(&outs, gs, x)?;
            r.into_iter()
                .zip(x)
                .map(|(d, t)| if t.dtype().is_float() { Some(d) } else { None })
                .collect()
        }
    })
}

fn unsupported(op: &Op, why: &str) -> Error {
    Error::BackwardNotSupported {
        op: op.name().to_string(),
        why: why.to_string(),
    }
}

/// Free (neither batch nor contracting) dims of an operand, in order.
fn free_dims(rank: usize, batch: &[usize], contract: &[usize]) -> Vec<usize> {
    (0..rank)
        .filter(|d| !batch.contains(d) && !contract.contains(d))
        .collect()
}

/// dot_general's VJP: each operand's cotangent is another dot_general of the
/// output cotangent with the other operand, transposed back into the operand's order.
fn dot_vjp(
    dd: &DotDims,
    l: &Tensor,
    r: &Tensor,
    g: &Tensor,
    want: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let nb = dd.lhs_batch.len();
    let lf = free_dims(l.rank(), &dd.lhs_batch, &dd.lhs_contract);
    let rf = free_dims(r.rank(), &dd.rhs_batch, &dd.rhs_contract);
    let gb: Vec<usize> = (0..nb).collect();
    let g_lf: Vec<usize> = (nb..nb + lf.len()).collect();
    let g_rf: Vec<usize> = (nb + lf.len()..nb + lf.len() + rf.len()).collect();
    let mut out = vec![None, None];
    if want[0] {
        // g . r over r's free dims -> [batch, lhs free, r's contract dims sorted]
        let d = g.dot_general(
            r,
            DotDims {
                lhs_batch: gb.clone(),
                rhs_batch: dd.rhs_batch.clone(),
                lhs_contract: g_rf.clone(),
                rhs_contract: rf.clone(),
            },
        )?;
        let mut rc_sorted = dd.rhs_contract.clone();
        rc_sorted.sort_unstable();
        let mut order: Vec<usize> = dd.lhs_batch.clone();
        order.extend(&lf);
        order.extend(
            rc_sorted.iter().map(|rc| {
                dd.lhs_contract[dd.rhs_contract.iter().position(|x| x == rc).unwrap_or(0)]
            }),
        );
        out[0] = Some(d.transpose(&inverse(&order))?);
    }
    if want[1] {
        let d = g.dot_general(
            l,
            DotDims {
                lhs_batch: gb,
                rhs_batch: dd.lhs_batch.clone(),
                lhs_contract: g_lf,
                rhs_contract: lf.clone(),
            },
        )?;
        let mut lc_sorted = dd.lhs_contract.clone();
        lc_sorted.sort_unstable();
        let mut order: Vec<usize> = dd.rhs_batch.clone();
        order.extend(&rf);
        order.extend(
            lc_sorted.iter().map(|lc| {
                dd.rhs_contract[dd.lhs_contract.iter().position(|x| x == lc).unwrap_or(0)]
            }),
        );
        out[1] = Some(d.transpose(&inverse(&order))?);
    }
    let _ = DType::F32;
    Ok(out)
}

/// `order[p]` names the operand dim at result position p; the transpose that
/// puts dims back in operand order takes operand dim d from position inverse[d].
fn inverse(order: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; order.len()];
    for (p, &d) in order.iter().enumerate() {
        inv[d] = p;
    }
    inv
}
