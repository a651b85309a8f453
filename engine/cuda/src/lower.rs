//! Lowering a program's nodes to steps: one exhaustive match over the engine's ops (no
//! wildcard arm, so a new op is a compile error here). Fused ops go to crate::fused: `load`
//! decomposes every fused op without a PTX kernel first (`supports_fused`), so those that
//! remain have one.

use crate::error::{CudaError, Result};
use crate::plan::{
    bytes_of, dtype_code, elementwise_args, no_f64, u32_of, Arg, Builder, Operand, Plan,
};
use crate::{movement, ops};
use gidd_engine::op::Op;
use gidd_engine::{DType, Program};
use gidd_kernels::ptx::{binary_code, cmp_code, code, unary_code};

/// Whether the float kernels (f32 math over f32 or bf16 storage) take `d`; else the integer ones.
pub fn is_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::BF16)
}

/// The plan of a program whose fused ops are already decomposed, for a device without the
/// sm_90a kernels.
pub fn plan(p: &Program) -> Result<Plan> {
    plan_for(p, false)
}

/// [`plan`] for a device that runs the sm_90a kernels (`hopper`) or not; chains of
/// elementwise ops become generated kernels unless GIDD_CUDA_CHAINS=0 (crate::chain).
pub fn plan_for(p: &Program, hopper: bool) -> Result<Plan> {
    plan_with(p, hopper, crate::chain::enabled())
}

/// [`plan_for`] with the chains of elementwise ops fused (`chains`) or one launch per op.
pub fn plan_with(p: &Program, hopper: bool, chains: bool) -> Result<Plan> {
    if let Some(v) = p.values.iter().find(|v| v.ty.dtype == DType::F64) {
        return Err(CudaError::Unsupported(format!(
            "the program has an f64 value ({}): {}",
            v.ty,
            no_f64()
        )));
    }
    if let Some(v) = p
        .values
        .iter()
        .find(|v| v.ty.numel() > crate::plan::MAX_ELEMS)
    {
        u32_of(v.ty.numel())?;
    }
    let mut b = Builder::new(p);
    b.hopper = hopper;
    let chains = if chains {
        crate::chain::chains(p)
    } else {
        vec![]
    };
    // each chain is lowered at its first member; its other members have nothing left to do
    let mut chain_at = vec![None; p.nodes.len()];
    for (k, c) in chains.iter().enumerate() {
        for (j, &ni) in c.nodes.iter().enumerate() {
            chain_at[ni] = Some((k, j == 0));
        }
    }
    // where each chain's launch is: every member of it is computed there
    let mut chain_start = vec![0; chains.len()];
    for (ni, node) in p.nodes.iter().enumerate() {
        if let Some((k, first)) = chain_at[ni] {
            if first {
                chain_start[k] = b.steps.len();
            }
            b.node_start.push(chain_start[k]);
            if first {
                crate::chain::lower(&mut b, &chains[k])?;
                b.end_node();
            }
            continue;
        }
        b.node_start.push(b.steps.len());
        // collectives queue no step: the run stages them through the host (crate::collective)
        if p.runs[ni] && !node.op.is_collective() {
            if node.op.is_fused() {
                crate::fused::lower(&mut b, &node.op, &node.inputs, &node.outputs)?;
            } else {
                lower_node(&mut b, &node.op, &node.inputs, node.outputs[0])?;
            }
            b.end_node();
        }
    }
    b.finish()
}

fn lower_node(b: &mut Builder, op: &Op, ins: &[usize], out: usize) -> Result<()> {
    let d = b.dtype(out);
    let n = b.numel(out);
    match op {
        Op::Input { .. } | Op::Constant(_) | Op::Splat(_) => {
            return Err(CudaError::Unsupported(format!(
                "{} node planned to run: leaves are bound, never computed",
                op.name()
            )))
        }
        Op::Reshape { .. } => {
            // the plan aliases reshapes; one that still runs is a copy of the bytes
            let (src, dst) = (b.ptr(ins[0])?, b.out(out)?);
            b.copy(dst, src, bytes_of(n, d));
        }
        Op::Iota { dim } => {
            let shape = b.shape(out);
            let stride: usize = shape[dim + 1..].iter().product();
            let o = b.out(out)?;
            let args = vec![
                ("n", Arg::Val(u32_of(n)?)),
                ("stride", Arg::Val(u32_of(stride.max(1))?)),
                ("size", Arg::Val(u32_of(shape[*dim].max(1))?)),
                ("to", Arg::Val(dtype_code(d)? as u64)),
                ("out", Arg::Ptr(o)),
            ];
            b.launch_1d("iota", n, args);
        }
        Op::Unary(u) => {
            let x = b.operand(ins[0])?;
            let o = b.out(out)?;
            let entry = if is_float(d) {
                "unary_float"
            } else {
                "unary_int"
            };
            let mut args =
                elementwise_args(n, unary_code(*u), dtype_code(d)?, o, &[("x", "xs", x)])?;
            name_dtype_slot(&mut args, d);
            b.launch_1d(entry, n, args);
        }
        Op::Binary(bo) => {
            let (x, y) = (b.operand(ins[0])?, b.operand(ins[1])?);
            let o = b.out(out)?;
            let entry = if is_float(d) {
                "binary_float"
            } else {
                "binary_int"
            };
            let ops = [("a", "as", x), ("b", "bs", y)];
            let mut args = elementwise_args(n, binary_code(*bo), dtype_code(d)?, o, &ops)?;
            name_dtype_slot(&mut args, d);
            b.launch_1d(entry, n, args);
        }
        Op::Compare(c) => {
            let di = b.dtype(ins[0]);
            let (x, y) = (b.operand(ins[0])?, b.operand(ins[1])?);
            let o = b.out(out)?;
            let entry = if is_float(di) {
                "compare_float"
            } else {
                "compare_int"
            };
            let ops = [("a", "as", x), ("b", "bs", y)];
            let mut args = elementwise_args(n, cmp_code(*c), dtype_code(di)?, o, &ops)?;
            name_dtype_slot(&mut args, di);
            b.launch_1d(entry, n, args);
        }
        Op::Select => {
            let p = b.raw_operand(ins[0])?;
            let (x, y) = (b.raw_operand(ins[1])?, b.raw_operand(ins[2])?);
            let o = b.out(out)?;
            let mut args = vec![
                ("n", Arg::Val(u32_of(n)?)),
                ("w", Arg::Val(d.size() as u64)),
                ("out", Arg::Ptr(o)),
            ];
            for (name, splat, op) in [("p", "ps", p), ("a", "as", x), ("b", "bs", y)] {
                operand_slots(&mut args, name, splat, op);
            }
            b.launch_1d("select", n, args);
        }
        Op::Convert { to } => convert(b, ins[0], out, *to)?,
        Op::BroadcastInDim { shape, dims } => movement::broadcast(b, ins[0], out, shape, dims)?,
        Op::Transpose { perm } => movement::transpose(b, ins[0], out, perm)?,
        Op::Slice { start, .. } => movement::slice(b, ins[0], out, start)?,
        Op::Concatenate { dim } => movement::concatenate(b, ins, out, *dim)?,
        Op::DotGeneral(dd) => ops::dot_general(b, dd, ins[0], ins[1], out)?,
        Op::Reduce { op, dims } => ops::reduce(b, *op, dims, ins[0], out)?,
        Op::Gather { axis } => ops::gather(b, *axis, ins[0], ins[1], out)?,
        Op::ScatterAdd { axis, shape } => ops::scatter_add(b, *axis, shape, ins[0], ins[1], out)?,
        Op::Softmax
        | Op::LogSoftmax
        | Op::SoftmaxBwd
        | Op::RmsNorm { .. }
        | Op::RmsNormBwd
        | Op::Rope
        | Op::RopeBwd
        | Op::Attention(_)
        | Op::AttentionBwd(_)
        | Op::DiffusionKl(_)
        | Op::DiffusionKlBwd(_)
        | Op::SampleStep(_) => {
            return Err(CudaError::Unsupported(format!(
                "fused op {} reached the primitives' lowering (crate::fused lowers fused ops)",
                op.name()
            )))
        }
        Op::AllGather { .. } | Op::ReduceScatter { .. } => {
            return Err(CudaError::Unsupported(format!(
                "{}: internal: collectives run through the host (crate::collective), never as a step",
                op.name()
            )))
        }
    }
    Ok(())
}

/// The integer kernels call their dtype slot `kind`.
fn name_dtype_slot(args: &mut [(&'static str, Arg)], d: DType) {
    if !is_float(d) {
        args[2].0 = "kind";
    }
}

fn operand_slots(
    args: &mut Vec<(&'static str, Arg)>,
    name: &'static str,
    splat: &'static str,
    op: Operand,
) {
    match op {
        Operand::Buf(p) => {
            args.push((name, Arg::Ptr(p)));
            args.push((splat, Arg::Val(0)));
        }
        Operand::Splat(bits) => {
            args.push((name, Arg::Null));
            args.push((splat, Arg::Val(bits)));
        }
    }
}

/// `convert` from the input's dtype to `to`; a conversion to the same dtype is a copy.
pub fn convert(b: &mut Builder, x: usize, out: usize, to: DType) -> Result<()> {
    let from = b.dtype(x);
    let n = b.numel(out);
    let (src, dst) = (b.ptr(x)?, b.out(out)?);
    if from == to {
        b.copy(dst, src, bytes_of(n, to));
        return Ok(());
    }
    let args = vec![
        ("n", Arg::Val(u32_of(n)?)),
        ("from", Arg::Val(dtype_code(from)? as u64)),
        ("to", Arg::Val(dtype_code(to)? as u64)),
        ("out", Arg::Ptr(dst)),
        ("x", Arg::Ptr(src)),
    ];
    b.launch_1d("convert", n, args);
    Ok(())
}

/// The f64 accumulator of a scatter-add converted into the output: `convert` from code F64.
pub fn convert_from_f64(b: &mut Builder, acc: crate::plan::Ptr, out: usize) -> Result<()> {
    let d = b.dtype(out);
    let n = b.numel(out);
    let dst = b.out(out)?;
    let args = vec![
        ("n", Arg::Val(u32_of(n)?)),
        ("from", Arg::Val(code::F64 as u64)),
        ("to", Arg::Val(dtype_code(d)? as u64)),
        ("out", Arg::Ptr(dst)),
        ("x", Arg::Ptr(acc)),
    ];
    b.launch_1d("convert", n, args);
    Ok(())
}
