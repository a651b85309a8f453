//! Graph-to-graph rewrites. A replay copies a graph or a compiled program into a new graph
//! with chosen fused ops replaced by their decompositions: the reference program fused
//! kernels are tested against, and what an executor without a kernel for an op runs
//! (`Executor::supports_fused`).

use crate::decompose::decompose;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Graph, Node, Tensor, Value, ValueId};
use crate::op::Op;
use crate::program::Program;

/// Replays the graph of `outputs` into a new graph with fused ops decomposed;
/// returns the new outputs (inputs keep their names).
pub fn decompose_fused(outputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let Some(first) = outputs.first() else {
        return Ok(vec![]);
    };
    let old = first.graph().clone();
    let data = old.data().clone();
    let last = outputs
        .iter()
        .map(|t| data.values[t.id()].node)
        .max()
        .unwrap_or(0);
    let map = replay(&data.nodes[..=last], &data.values, &|_, _| false)?;
    Ok(outputs.iter().filter_map(|t| map[t.id()].clone()).collect())
}

/// The dtype a fused op is judged by: its first floating-point operand's.
fn op_dtype(node: &Node, values: &[Value]) -> DType {
    node.inputs
        .iter()
        .map(|&v| values[v].ty.dtype)
        .find(|d| d.is_float())
        .unwrap_or(DType::F32)
}

/// Replays `nodes` into a new graph, decomposing each fused op for which `keep(op, dtype)`
/// is false. Returns the new tensor of each old value id (None where never defined).
fn replay(
    nodes: &[Node],
    values: &[Value],
    keep: &dyn Fn(&Op, DType) -> bool,
) -> Result<Vec<Option<Tensor>>> {
    let g = Graph::new();
    let mut map: Vec<Option<Tensor>> = vec![None; values.len()];
    for node in nodes {
        let ins = node
            .inputs
            .iter()
            .map(|&v| {
                map[v]
                    .clone()
                    .ok_or_else(|| Error::Msg(format!("value {v} used before it is defined")))
            })
            .collect::<Result<Vec<Tensor>>>()?;
        let ty = &values[node.outputs[0]].ty;
        let outs = match &node.op {
            Op::Input { name } => vec![g.input(name, &ty.shape, ty.dtype)],
            Op::Constant(c) => vec![g.constant((**c).clone())],
            Op::Splat(x) => vec![g.splat(*x, &ty.shape, ty.dtype)],
            Op::Iota { dim } => vec![g.iota(&ty.shape, *dim, ty.dtype)?],
            op if op.is_fused() && !keep(op, op_dtype(node, values)) => decompose(op, &ins)?,
            op => {
                let refs: Vec<&Tensor> = ins.iter().collect();
                g.apply(op.clone(), &refs)?
            }
        };
        if outs.len() != node.outputs.len() {
            return Err(Error::Msg(format!(
                "{} gave {} outputs, expected {}",
                node.op.name(),
                outs.len(),
                node.outputs.len()
            )));
        }
        for (&v, t) in node.outputs.iter().zip(outs) {
            map[v] = Some(t);
        }
    }
    Ok(map)
}

/// A compiled program replayed into a graph: its inputs (in call order) and outputs.
pub struct Replayed {
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<Tensor>,
}

/// Replays `p` with each fused op for which `keep(op, dtype)` is false decomposed.
pub fn replay_program(p: &Program, keep: &dyn Fn(&Op, DType) -> bool) -> Result<Replayed> {
    let map = replay(&p.nodes, &p.values, keep)?;
    let get = |v: ValueId| {
        map[v]
            .clone()
            .ok_or_else(|| Error::Msg(format!("program value {v} is never defined")))
    };
    Ok(Replayed {
        inputs: p
            .inputs
            .iter()
            .map(|(_, v)| get(*v))
            .collect::<Result<_>>()?,
        outputs: p.outputs.iter().map(|&v| get(v)).collect::<Result<_>>()?,
    })
}

/// `p` for an executor that runs the fused ops `keep` accepts and the decompositions of
/// the rest: `p` itself when nothing changes, else recompiled with the same inputs,
/// outputs and aliases (so callers see no difference but the kernels run).
pub fn lower_for(p: &Program, keep: &dyn Fn(&Op, DType) -> bool) -> Result<Program> {
    let all_kept = p
        .nodes
        .iter()
        .all(|n| !n.op.is_fused() || keep(&n.op, op_dtype(n, &p.values)));
    if all_kept {
        return Ok(p.clone());
    }
    let r = replay_program(p, keep)?;
    let names: Vec<&str> = p.inputs.iter().map(|(n, _)| n.as_str()).collect();
    // Pruned: an input only a decomposed op read (none today) must not fail the compile.
    let mut low = Program::compile_pruned(&r.outputs, &names)?;
    if low.inputs.len() != p.inputs.len() {
        return Err(Error::Msg(
            "lowering a program dropped one of its inputs".into(),
        ));
    }
    low.aliases = p.aliases.clone();
    Ok(low)
}
