//! Lowering a program's nodes to dispatches: one exhaustive match over the engine's ops (no
//! wildcard arm, so a new op is a compile error here). Fused ops reach it only where
//! [`crate::fused::supports`] has a kernel; `load` decomposes the rest into primitives.

use crate::buffer::{elem_bytes, half, is_half};
use crate::error::{Result, WgpuError};
use crate::pipelines::Kernel;
use crate::plan::{u32_of, width, Bind, Builder};
use crate::{movement, ops};
use gidd_engine::op::Op;
use gidd_engine::DType;
use gidd_kernels::wgsl::{binary_code, cmp_code, unary_code, Module};

/// How a kernel family sees a dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// f32 math; `half` (the kernels' HALF constant): 0 for f32, else the value is bf16 (1) or
    /// f16 (2), one word per element where a hand-written kernel sees it (widened in scratch:
    /// `Builder::widened`), results rounded once.
    Float { half: u32 },
    /// One-word integers: `kind` 0 = i32, 1 = u32, 2 = bool.
    Int { kind: u32 },
    /// i64, two words.
    Long,
}

pub fn class(d: DType) -> Result<Class> {
    Ok(match d {
        DType::F32 | DType::BF16 | DType::F16 => Class::Float { half: half(d) },
        DType::I32 => Class::Int { kind: 0 },
        DType::U32 => Class::Int { kind: 1 },
        DType::Bool => Class::Int { kind: 2 },
        DType::I64 => Class::Long,
        DType::F64 => return Err(crate::buffer::no_f64()),
    })
}

/// Adds the dispatches of every node that runs; with `fuse`, runs of elementwise nodes
/// become one generated kernel each ([`crate::fuse`]).
pub fn lower(b: &mut Builder, fuse: bool) -> Result<()> {
    let p = b.p;
    let max = b.max_bindings();
    let chains = if fuse {
        crate::fuse::chains(p, max)
    } else {
        vec![]
    };
    // the chain a node belongs to, and whether it is the chain's last member
    let mut in_chain = vec![None; p.nodes.len()];
    for (c, ch) in chains.iter().enumerate() {
        for &ni in &ch.nodes {
            in_chain[ni] = Some((c, ni == ch.nodes[ch.nodes.len() - 1]));
        }
    }
    for (ni, node) in p.nodes.iter().enumerate() {
        b.node_start.push(b.dispatches.len());
        // collectives record no dispatch: the run stages them through the host
        // (crate::collective)
        if !p.runs[ni] || node.op.is_collective() {
            continue;
        }
        b.doing = node.op.name();
        if let Some((c, last)) = in_chain[ni] {
            if last {
                crate::fuse::lower_chain(b, &chains[c])?;
            }
            continue;
        }
        let packed = node
            .inputs
            .iter()
            .chain(&node.outputs)
            .any(|&v| is_half(p.values[v].ty.dtype));
        match (packed, half_route(&node.op)) {
            (true, HalfRoute::Generated) => crate::fuse::lower_single(b, ni)?,
            (true, HalfRoute::Widened) => {
                b.widened(&node.inputs, &node.outputs, |b| lower_node(b, ni))?
            }
            (true, HalfRoute::Reshape) => {
                // a reshape that runs copies its whole packed words: same element order
                let n = p.values[node.outputs[0]].ty.numel().div_ceil(2);
                movement::copy_words(b, node.inputs[0], node.outputs[0], n)?;
            }
            // a view or iota over a value larger than a binding: the generated kernel, in
            // windows of the output and of what each window reads (crate::positional)
            (false, HalfRoute::Generated)
                if !matches!(
                    node.op,
                    Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Convert { .. }
                ) && node
                    .inputs
                    .iter()
                    .chain(&node.outputs)
                    .any(|&v| b.too_big(v)) =>
            {
                crate::fuse::lower_single(b, ni)?
            }
            (true, HalfRoute::Own) | (false, _) => lower_node(b, ni)?,
        }
    }
    Ok(())
}

/// How a node with a bf16 or f16 operand or result meets packed storage.
enum HalfRoute {
    /// Elementwise ops and views: a generated kernel (crate::fuse) that reads and writes
    /// packed words, two elements per invocation.
    Generated,
    /// Unpacked into scratch around the node's kernel (`Builder::widened`).
    Widened,
    /// A copy of the packed words.
    Reshape,
    /// The lowering handles packed values itself (GEMM, concatenate, reduce, gather,
    /// scatter-add: read in place, no unpacking pass).
    Own,
}

fn half_route(op: &Op) -> HalfRoute {
    match op {
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Convert { .. }
        | Op::Iota { .. }
        | Op::BroadcastInDim { .. }
        | Op::Transpose { .. }
        | Op::Slice { .. } => HalfRoute::Generated,
        Op::Reshape { .. } => HalfRoute::Reshape,
        Op::DotGeneral(_)
        | Op::Concatenate { .. }
        | Op::Reduce { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. } => HalfRoute::Own,
        // the fused ops: the graph builds them over f32 (16-bit programs convert around
        // them), so only a hand-made program reaches this with bf16 or f16
        Op::Input { .. }
        | Op::Constant(_)
        | Op::Splat(_)
        | Op::Softmax
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
        | Op::SampleStep(_)
        | Op::AllGather { .. }
        | Op::ReduceScatter { .. } => HalfRoute::Widened,
    }
}

/// Adds the dispatches of node `ni` (bf16 and f16 values widened, one word each, unless the
/// node's lowering handles packed values itself: see [`half_route`]).
fn lower_node(b: &mut Builder, ni: usize) -> Result<()> {
    let p = b.p;
    let node = &p.nodes[ni];
    {
        let out = node.outputs[0];
        let ty = &p.values[out].ty;
        let n = ty.numel();
        let d = ty.dtype;
        let ins = &node.inputs;
        match &node.op {
            Op::Input { .. } | Op::Constant(_) | Op::Splat(_) => {
                return Err(WgpuError::Unsupported(format!(
                    "{} node planned to run: leaves are bound, never computed",
                    node.op.name()
                )))
            }
            Op::Reshape { .. } => {
                // the plan aliases reshapes; one that still runs is a contiguous copy
                movement::copy_words(b, ins[0], out, n * width(d) as usize)?;
            }
            Op::Iota { dim } => {
                let stride: usize = ty.shape[dim + 1..].iter().product();
                let extra = [u32_of(stride)?, u32_of(ty.shape[*dim])?];
                let k = match class(d)? {
                    Class::Float { half } => {
                        Kernel::new(Module::Convert, "iota_f", 0).with("HALF", half)
                    }
                    Class::Int { kind } => {
                        Kernel::new(Module::Convert, "iota_i", 0).with("TO", kind)
                    }
                    Class::Long => Kernel::new(Module::Convert, "iota_l", 0),
                };
                let o = b.out(out)?;
                b.push_elementwise(k, o, &[], n, &extra)?;
            }
            Op::Unary(u) => {
                let op = unary_code(*u);
                let k = match class(d)? {
                    Class::Float { half } => Kernel::new(Module::Unary, "unary_f", 1)
                        .with("OP", op)
                        .with("HALF", half),
                    Class::Int { kind } => Kernel::new(Module::Unary, "unary_i", 1)
                        .with("OP", op)
                        .with("KIND", kind),
                    Class::Long => Kernel::new(Module::Unary, "unary_l", 1).with("OP", op),
                };
                elementwise(b, k, out, ins, n)?;
            }
            Op::Binary(bo) => {
                let op = binary_code(*bo);
                let k = match class(d)? {
                    Class::Float { half } => Kernel::new(Module::Binary, "binary_f", 2)
                        .with("OP", op)
                        .with("HALF", half),
                    Class::Int { kind } => Kernel::new(Module::Binary, "binary_i", 2)
                        .with("OP", op)
                        .with("KIND", kind),
                    Class::Long => Kernel::new(Module::Binary, "binary_l", 2).with("OP", op),
                };
                elementwise(b, k, out, ins, n)?;
            }
            Op::Compare(c) => {
                let op = cmp_code(*c);
                let k = match class(b.dtype(ins[0]))? {
                    Class::Float { .. } => {
                        Kernel::new(Module::CompareSelect, "compare_f", 2).with("OP", op)
                    }
                    Class::Int { kind } => Kernel::new(Module::CompareSelect, "compare_i", 2)
                        .with("OP", op)
                        .with("KIND", u32::from(kind != 0)),
                    Class::Long => {
                        Kernel::new(Module::CompareSelect, "compare_l", 2).with("OP", op)
                    }
                };
                elementwise(b, k, out, ins, n)?;
            }
            Op::Select => {
                class(d)?;
                let k = Kernel::new(Module::CompareSelect, "select_w", 3).with("W", width(d));
                elementwise(b, k, out, ins, n)?;
            }
            Op::Convert { to } => convert(b, ins[0], out, *to, n)?,
            Op::BroadcastInDim { shape, dims } => {
                class(d)?;
                movement::broadcast(b, ins[0], out, shape, dims)?
            }
            Op::Transpose { perm } => {
                class(d)?;
                movement::transpose(b, ins[0], out, perm)?
            }
            Op::Slice { start, .. } => {
                class(d)?;
                movement::slice(b, ins[0], out, start)?
            }
            Op::Concatenate { dim } => {
                class(d)?;
                // bf16 and f16 always: whole packed words, no widened copy of the output
                // (which could outgrow a binding that the packed value fits)
                match is_half(d) || ins.iter().chain([&out]).any(|&v| b.too_big(v)) {
                    true => crate::positional::concat(b, ins, out, *dim)?,
                    false => movement::concatenate(b, ins, out, *dim)?,
                }
            }
            Op::DotGeneral(dd) => ops::dot_general(b, dd, ins[0], ins[1], out)?,
            Op::Reduce { op, dims } => ops::reduce(b, *op, dims, ins[0], out)?,
            Op::Gather { axis } => ops::gather(b, *axis, ins[0], ins[1], out)?,
            Op::ScatterAdd { axis, shape } => {
                ops::scatter_add(b, *axis, shape, ins[0], ins[1], out)?
            }
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
            | Op::SampleStep(_) => crate::fused::lower(b, &node.op, ins, &node.outputs)?,
            Op::AllGather { .. } | Op::ReduceScatter { .. } => {
                return Err(WgpuError::Unsupported(format!(
                    "{}: internal: collectives run through the host (crate::collective), never as a dispatch",
                    node.op.name()
                )))
            }
        }
    }
    Ok(())
}

/// One elementwise dispatch over the node's operands (several over windows of values larger
/// than a binding).
fn elementwise(b: &mut Builder, k: Kernel, out: usize, ins: &[usize], n: usize) -> Result<()> {
    b.windowed = true;
    let binds = ins
        .iter()
        .map(|&v| b.operand(v))
        .collect::<Result<Vec<_>>>()
        .and_then(|ops| Ok((ops, b.out(out)?)));
    b.windowed = false;
    let (ops, o) = binds?;
    let bytes: Vec<u64> = std::iter::once(out)
        .chain(ins.iter().copied())
        .map(|v| elem_bytes(b.dtype(v)))
        .collect();
    b.push_elementwise_chunked(k, o, &ops, &bytes, n)
}

fn convert(b: &mut Builder, x: usize, out: usize, to: DType, n: usize) -> Result<()> {
    let from = b.dtype(x);
    let (cf, ct) = (class(from)?, class(to)?);
    let m = Module::Convert;
    let k = match (cf, ct) {
        (Class::Float { .. }, Class::Float { half }) => {
            Kernel::new(m, "convert_ff", 1).with("HALF", half)
        }
        (Class::Float { .. }, Class::Int { kind }) => {
            Kernel::new(m, "convert_fi", 1).with("TO", kind)
        }
        (Class::Float { .. }, Class::Long) => Kernel::new(m, "convert_fl", 1),
        (Class::Int { kind }, Class::Float { half }) => Kernel::new(m, "convert_if", 1)
            .with("FROM", kind)
            .with("HALF", half),
        (Class::Int { kind: f }, Class::Int { kind: t }) => Kernel::new(m, "convert_ii", 1)
            .with("FROM", f)
            .with("TO", t),
        (Class::Int { kind }, Class::Long) => Kernel::new(m, "convert_il", 1).with("FROM", kind),
        (Class::Long, Class::Int { kind }) => Kernel::new(m, "convert_li", 1).with("TO", kind),
        (Class::Long, Class::Float { half }) => Kernel::new(m, "convert_lf", 1).with("HALF", half),
        (Class::Long, Class::Long) => {
            // i64 to i64: a copy of the words
            return movement::copy_words(b, x, out, 2 * n);
        }
    };
    elementwise(b, k, out, &[x], n)
}

/// Whether any binding of a dispatch is a program input (its bind group is made per run).
pub fn binds_input(binds: &[Bind]) -> bool {
    binds.iter().any(|b| matches!(b, Bind::Input(_)))
}
