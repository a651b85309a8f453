//! Shape and dtype rules: the one place where op inputs are checked.
//! Every failure is a typed error naming the op and the input shapes.

use crate::dtype::{numel, DType};
use crate::error::{Error, Result};
use crate::op::{BinaryOp, DotDims, Op, TensorType, UnaryOp};

fn shapes(ins: &[&TensorType]) -> Vec<Vec<usize>> {
    ins.iter().map(|t| t.shape.clone()).collect()
}

fn serr(op: &Op, msg: impl Into<String>, ins: &[&TensorType]) -> Error {
    Error::Shape {
        op: op.name(),
        msg: msg.into(),
        shapes: shapes(ins),
    }
}

fn derr(op: &Op, msg: impl Into<String>, ins: &[&TensorType]) -> Error {
    Error::DType {
        op: op.name(),
        msg: msg.into(),
        dtypes: ins.iter().map(|t| t.dtype).collect(),
    }
}

fn arity(op: &Op, ins: &[&TensorType], n: usize) -> Result<()> {
    if ins.len() != n {
        return Err(serr(
            op,
            format!("expects {n} inputs, got {}", ins.len()),
            ins,
        ));
    }
    Ok(())
}

fn same_type(op: &Op, ins: &[&TensorType]) -> Result<()> {
    for t in &ins[1..] {
        if t.shape != ins[0].shape {
            return Err(serr(
                op,
                "operands must have equal shapes (broadcast explicitly)",
                ins,
            ));
        }
        if t.dtype != ins[0].dtype {
            return Err(derr(
                op,
                "operands must have equal dtypes (convert explicitly)",
                ins,
            ));
        }
    }
    Ok(())
}

fn want_dtype(
    op: &Op,
    ins: &[&TensorType],
    i: usize,
    ok: impl Fn(DType) -> bool,
    what: &str,
) -> Result<()> {
    if !ok(ins[i].dtype) {
        return Err(derr(op, format!("input {i} must be {what}"), ins));
    }
    Ok(())
}

/// Output types of `op` applied to inputs of types `ins`.
pub fn infer(op: &Op, ins: &[&TensorType]) -> Result<Vec<TensorType>> {
    let out = |shape: Vec<usize>, dtype: DType| Ok(vec![TensorType::new(shape, dtype)]);
    match op {
        Op::Input { .. } | Op::Constant(_) | Op::Splat(_) | Op::Iota { .. } => {
            Err(serr(op, "leaf ops are created with an explicit type", ins))
        }
        Op::Unary(u) => {
            arity(op, ins, 1)?;
            let d = ins[0].dtype;
            let ok = match u {
                UnaryOp::Not => d == DType::Bool || d.is_int(),
                UnaryOp::Neg | UnaryOp::Abs => d != DType::Bool && d != DType::U32,
                _ => d.is_float(),
            };
            if !ok {
                return Err(derr(op, format!("{u:?} is not defined for {d}"), ins));
            }
            out(ins[0].shape.clone(), d)
        }
        Op::Binary(b) => {
            arity(op, ins, 2)?;
            same_type(op, ins)?;
            let d = ins[0].dtype;
            let ok = match b {
                BinaryOp::Pow => d.is_float(),
                BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => d.is_int() || d == DType::Bool,
                BinaryOp::ShiftLeft | BinaryOp::ShiftRightLogical => d.is_int(),
                _ => d != DType::Bool,
            };
            if !ok {
                return Err(derr(op, format!("{b:?} is not defined for {d}"), ins));
            }
            out(ins[0].shape.clone(), d)
        }
        Op::Compare(_) => {
            arity(op, ins, 2)?;
            same_type(op, ins)?;
            out(ins[0].shape.clone(), DType::Bool)
        }
        Op::Select => {
            arity(op, ins, 3)?;
            want_dtype(op, ins, 0, |d| d == DType::Bool, "bool")?;
            if ins[0].shape != ins[1].shape {
                return Err(serr(
                    op,
                    "predicate and operands must have equal shapes",
                    ins,
                ));
            }
            same_type(op, &ins[1..])?;
            out(ins[1].shape.clone(), ins[1].dtype)
        }
        Op::Convert { to } => {
            arity(op, ins, 1)?;
            out(ins[0].shape.clone(), *to)
        }
        Op::BroadcastInDim { shape, dims } => {
            arity(op, ins, 1)?;
            let s = &ins[0].shape;
            if dims.len() != s.len() {
                return Err(serr(
                    op,
                    format!("dims {dims:?} must name one result dim per operand dim"),
                    ins,
                ));
            }
            for (i, &d) in dims.iter().enumerate() {
                if d >= shape.len()
                    || (s[i] != 1 && s[i] != shape[d])
                    || (i > 0 && dims[i - 1] >= d)
                {
                    return Err(serr(
                        op,
                        format!("cannot broadcast into {shape:?} with dims {dims:?} (dims increasing, sizes 1 or equal)"),
                        ins,
                    ));
                }
            }
            out(shape.clone(), ins[0].dtype)
        }
        Op::Reshape { shape } => {
            arity(op, ins, 1)?;
            if numel(shape) != numel(&ins[0].shape) {
                return Err(serr(
                    op,
                    format!("cannot reshape to {shape:?}: element counts differ"),
                    ins,
                ));
            }
            out(shape.clone(), ins[0].dtype)
        }
        Op::Transpose { perm } => {
            arity(op, ins, 1)?;
            let s = &ins[0].shape;
            let mut seen = vec![false; s.len()];
            if perm.len() != s.len()
                || perm
                    .iter()
                    .any(|&p| p >= s.len() || std::mem::replace(&mut seen[p], true))
            {
                return Err(serr(
                    op,
                    format!("{perm:?} is not a permutation of the operand's dims"),
                    ins,
                ));
            }
            out(perm.iter().map(|&p| s[p]).collect(), ins[0].dtype)
        }
        Op::Slice { start, limit } => {
            arity(op, ins, 1)?;
            let s = &ins[0].shape;
            if start.len() != s.len()
                || limit.len() != s.len()
                || (0..s.len()).any(|i| start[i] > limit[i] || limit[i] > s[i])
            {
                return Err(serr(
                    op,
                    format!("bad slice start {start:?} limit {limit:?}"),
                    ins,
                ));
            }
            out(
                (0..s.len()).map(|i| limit[i] - start[i]).collect(),
                ins[0].dtype,
            )
        }
        Op::Concatenate { dim } => {
            if ins.is_empty() {
                return Err(serr(op, "needs at least one operand", ins));
            }
            let r = ins[0].shape.len();
            if *dim >= r {
                return Err(serr(op, format!("dim {dim} out of range"), ins));
            }
            let mut shape = ins[0].shape.clone();
            shape[*dim] = 0;
            for t in ins {
                let ok = t.shape.len() == r
                    && (0..r).all(|i| i == *dim || t.shape[i] == ins[0].shape[i]);
                if !ok {
                    return Err(serr(
                        op,
                        format!("operands must agree except on dim {dim}"),
                        ins,
                    ));
                }
                if t.dtype != ins[0].dtype {
                    return Err(derr(op, "operands must have equal dtypes", ins));
                }
                shape[*dim] += t.shape[*dim];
            }
            out(shape, ins[0].dtype)
        }
        Op::DotGeneral(dd) => {
            arity(op, ins, 2)?;
            infer_dot(op, dd, ins)
        }
        Op::Reduce { dims, .. } => {
            arity(op, ins, 1)?;
            let s = &ins[0].shape;
            if dims.iter().any(|&d| d >= s.len()) || dims.windows(2).any(|w| w[0] >= w[1]) {
                return Err(serr(
                    op,
                    format!("reduce dims {dims:?} must be increasing and in range"),
                    ins,
                ));
            }
            let shape = (0..s.len())
                .filter(|i| !dims.contains(i))
                .map(|i| s[i])
                .collect();
            out(shape, ins[0].dtype)
        }
        Op::Gather { axis } => {
            arity(op, ins, 2)?;
            let (x, idx) = (ins[0], ins[1]);
            if *axis >= x.shape.len() {
                return Err(serr(op, format!("axis {axis} out of range"), ins));
            }
            want_dtype(op, ins, 1, |d| d.is_int(), "an integer index tensor")?;
            let mut shape = x.shape[..*axis].to_vec();
            shape.extend(&idx.shape);
            shape.extend(&x.shape[axis + 1..]);
            out(shape, x.dtype)
        }
        Op::ScatterAdd { axis, shape } => {
            arity(op, ins, 2)?;
            let (upd, idx) = (ins[0], ins[1]);
            want_dtype(op, ins, 1, |d| d.is_int(), "an integer index tensor")?;
            if *axis >= shape.len() {
                return Err(serr(
                    op,
                    format!("axis {axis} out of range for {shape:?}"),
                    ins,
                ));
            }
            let mut want = shape[..*axis].to_vec();
            want.extend(&idx.shape);
            want.extend(&shape[axis + 1..]);
            if upd.shape != want {
                return Err(serr(op, format!("updates must have shape {want:?}"), ins));
            }
            out(shape.clone(), upd.dtype)
        }
        Op::Softmax | Op::LogSoftmax => {
            arity(op, ins, 1)?;
            want_dtype(op, ins, 0, wide, WIDE)?;
            if ins[0].shape.is_empty() {
                return Err(serr(op, "needs rank >= 1", ins));
            }
            out(ins[0].shape.clone(), ins[0].dtype)
        }
        Op::SoftmaxBwd => {
            arity(op, ins, 2)?;
            same_type(op, ins)?;
            want_dtype(op, ins, 0, wide, WIDE)?;
            out(ins[0].shape.clone(), ins[0].dtype)
        }
        Op::RmsNorm { .. } => {
            arity(op, ins, 2)?;
            let (x, w) = (ins[0], ins[1]);
            want_dtype(op, ins, 0, wide, WIDE)?;
            want_dtype(op, ins, 1, |d| d == x.dtype, "x's dtype")?;
            let n = *x
                .shape
                .last()
                .ok_or_else(|| serr(op, "x needs rank >= 1", ins))?;
            if w.shape != [n] {
                return Err(serr(op, format!("weight must be [{n}]"), ins));
            }
            let rows = x.shape[..x.shape.len() - 1].to_vec();
            Ok(vec![x.clone(), TensorType::new(rows, x.dtype)])
        }
        Op::RmsNormBwd => {
            arity(op, ins, 4)?;
            let (x, w) = (ins[0], ins[1]);
            if ins[3].shape != x.shape || ins[2].shape != x.shape[..x.shape.len() - 1] {
                return Err(serr(
                    op,
                    "expects (x, w, rstd, dy) with dy like x and rstd like x without its last dim",
                    ins,
                ));
            }
            Ok(vec![x.clone(), w.clone()])
        }
        Op::Rope | Op::RopeBwd => {
            arity(op, ins, 3)?;
            let x = &ins[0].shape;
            if x.len() != 3 || !x[2].is_multiple_of(2) {
                return Err(serr(op, "x must be [rows, heads, d] with d even", ins));
            }
            let half = vec![x[0], x[2] / 2];
            if ins[1].shape != half || ins[2].shape != half {
                return Err(serr(op, format!("cos and sin must be {half:?}"), ins));
            }
            want_dtype(op, ins, 0, wide, WIDE)?;
            let d = ins[0].dtype;
            for i in 1..3 {
                want_dtype(op, ins, i, |t| t == d, "x's dtype")?;
            }
            out(x.clone(), d)
        }
        Op::Attention(_) => {
            arity(op, ins, 4)?;
            let (q, k, v, m) = (&ins[0].shape, &ins[1].shape, &ins[2].shape, &ins[3].shape);
            let ok = q.len() == 4
                && k.len() == 4
                && k == v
                && q[0] == k[0]
                && q[1] == k[1]
                && q[3] == k[3]
                && *m == [q[0], q[2], k[2]];
            if !ok {
                return Err(serr(
                    op,
                    "expects q [B,H,Lq,D], k and v [B,H,Lk,D], mask [B,Lq,Lk]",
                    ins,
                ));
            }
            want_dtype(op, ins, 0, wide, WIDE)?;
            let d = ins[0].dtype;
            for i in 1..3 {
                want_dtype(op, ins, i, |t| t == d, "q's dtype")?;
            }
            want_dtype(op, ins, 3, |d| d == DType::Bool, "bool")?;
            Ok(vec![ins[0].clone(), TensorType::new(q[..3].to_vec(), d)])
        }
        Op::DiffusionKl(_) | Op::DiffusionKlBwd(_) => {
            arity(
                op,
                ins,
                if matches!(op, Op::DiffusionKl(_)) {
                    4
                } else {
                    6
                },
            )?;
            let lg = &ins[0].shape;
            let rows = lg.get(..lg.len().wrapping_sub(1)).unwrap_or(&[]).to_vec();
            if lg.is_empty() || lg[lg.len() - 1] < 5 {
                return Err(serr(
                    op,
                    "logits must be [.., V] with V > 4 (the special ids)",
                    ins,
                ));
            }
            want_dtype(op, ins, 0, wide, "f32 or f64 logits")?;
            let d = ins[0].dtype;
            want_dtype(op, ins, 1, |d| d.is_int(), "integer noisy ids z")?;
            want_dtype(op, ins, 2, |d| d.is_int(), "integer labels x")?;
            for i in 3..ins.len() {
                want_dtype(op, ins, i, |t| t == d, "the logits' dtype")?;
            }
            if ins[1..].iter().any(|t| t.shape != rows) {
                return Err(serr(
                    op,
                    format!(
                        "z, x, l (and cotangents) must have the logits' shape without V: {rows:?}"
                    ),
                    ins,
                ));
            }
            if matches!(op, Op::DiffusionKl(_)) {
                let t = TensorType::new(rows, d);
                Ok(vec![t.clone(), t.clone(), t])
            } else {
                Ok(vec![ins[0].clone()])
            }
        }
        Op::SampleStep(spec) => {
            arity(op, ins, 2)?;
            let (lg, rows) = (&ins[0].shape, &ins[1].shape);
            if lg.len() != 2 || lg[1] <= spec.mask_id || *rows != [lg[0], 4] {
                return Err(serr(
                    op,
                    format!(
                        "expects logits [R, V] with the mask id {} < V and rows [R, 4]",
                        spec.mask_id
                    ),
                    ins,
                ));
            }
            want_dtype(op, ins, 0, |d| d == DType::F32, "f32 logits")?;
            want_dtype(
                op,
                ins,
                1,
                |d| d == DType::I32,
                "i32 (z, ban, u hi, u lo) rows",
            )?;
            out(vec![lg[0], 3], DType::I32)
        }
        Op::AttentionBwd(_) => {
            arity(op, ins, 7)?;
            Ok(vec![ins[0].clone(), ins[1].clone(), ins[2].clone()])
        }
        Op::AllGather { world, shapes } => {
            arity(op, ins, shapes.len())?;
            if *world == 0 || shapes.is_empty() {
                return Err(serr(
                    op,
                    "needs a world of at least 1 rank and a tensor",
                    ins,
                ));
            }
            let d = ins[0].dtype;
            for (i, s) in shapes.iter().enumerate() {
                let len = crate::collective::shard_len(numel(s), *world);
                if ins[i].shape != [len] {
                    return Err(serr(
                        op,
                        format!(
                            "input {i} must be the flat shard [{len}] of {s:?} over {world} ranks"
                        ),
                        ins,
                    ));
                }
                want_dtype(op, ins, i, |t| t == d, "the first shard's dtype")?;
            }
            Ok(shapes
                .iter()
                .map(|s| TensorType::new(s.clone(), d))
                .collect())
        }
        Op::ReduceScatter { world } => {
            arity(op, ins, 1)?;
            if *world == 0 {
                return Err(serr(op, "needs a world of at least 1 rank", ins));
            }
            want_dtype(op, ins, 0, crate::collective::summable, "a summable dtype")?;
            let len = crate::collective::shard_len(ins[0].numel(), *world);
            out(vec![len], ins[0].dtype)
        }
    }
}

/// Fused ops accumulate in f32, or in f64 for an f64 run (compiled as their decompositions).
fn wide(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64)
}
const WIDE: &str = "f32 or f64 (fused ops accumulate in f32, or f64)";

fn infer_dot(op: &Op, dd: &DotDims, ins: &[&TensorType]) -> Result<Vec<TensorType>> {
    let (l, r) = (&ins[0].shape, &ins[1].shape);
    if ins[0].dtype != ins[1].dtype || !ins[0].dtype.is_float() {
        return Err(derr(op, "operands must be float of one dtype", ins));
    }
    let in_range = |ds: &[usize], rank: usize| ds.iter().all(|&d| d < rank);
    let ok = dd.lhs_batch.len() == dd.rhs_batch.len()
        && dd.lhs_contract.len() == dd.rhs_contract.len()
        && in_range(&dd.lhs_batch, l.len())
        && in_range(&dd.lhs_contract, l.len())
        && in_range(&dd.rhs_batch, r.len())
        && in_range(&dd.rhs_contract, r.len())
        && dd
            .lhs_batch
            .iter()
            .zip(&dd.rhs_batch)
            .all(|(&a, &b)| l[a] == r[b])
        && dd
            .lhs_contract
            .iter()
            .zip(&dd.rhs_contract)
            .all(|(&a, &b)| l[a] == r[b]);
    if !ok {
        return Err(serr(
            op,
            format!("dimension numbers {dd:?} do not fit the operands"),
            ins,
        ));
    }
    let mut shape: Vec<usize> = dd.lhs_batch.iter().map(|&d| l[d]).collect();
    shape.extend(
        (0..l.len())
            .filter(|d| !dd.lhs_batch.contains(d) && !dd.lhs_contract.contains(d))
            .map(|d| l[d]),
    );
    shape.extend(
        (0..r.len())
            .filter(|d| !dd.rhs_batch.contains(d) && !dd.rhs_contract.contains(d))
            .map(|d| r[d]),
    );
    Ok(vec![TensorType::new(shape, ins[0].dtype)])
}
