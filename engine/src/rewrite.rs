//! Graph-to-graph rewrites. `decompose_fused` replays a graph with every fused
//! op replaced by its decomposition: the reference program that fused kernels
//! are tested against, and what a backend without kernels runs.

use crate::decompose::decompose;
use crate::error::Result;
use crate::graph::{Graph, Tensor};
use crate::op::Op;

/// Replays the graph of `outputs` into a new graph with fused ops decomposed;
/// returns the new outputs (inputs keep their names).
pub fn decompose_fused(outputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let Some(first) = outputs.first() else {
        return Ok(vec![]);
    };
    let old = first.graph().clone();
    let data = old.data().clone();
    let g = Graph::new();
    let mut map: Vec<Option<Tensor>> = vec![None; data.values.len()];
    let last = outputs
        .iter()
        .map(|t| data.values[t.id()].node)
        .max()
        .unwrap_or(0);
    for node in &data.nodes[..=last] {
        let ins: Vec<Tensor> = node.inputs.iter().filter_map(|&v| map[v].clone()).collect();
        let ty = &data.values[node.outputs[0]].ty;
        let outs = match &node.op {
            Op::Input { name } => vec![g.input(name, &ty.shape, ty.dtype)],
            Op::Constant(c) => vec![g.constant((**c).clone())],
            Op::Splat(x) => vec![g.splat(*x, &ty.shape, ty.dtype)],
            Op::Iota { dim } => vec![g.iota(&ty.shape, *dim, ty.dtype)?],
            op if op.is_fused() => decompose(op, &ins)?,
            op => {
                let refs: Vec<&Tensor> = ins.iter().collect();
                g.apply(op.clone(), &refs)?
            }
        };
        for (&v, t) in node.outputs.iter().zip(outs) {
            map[v] = Some(t);
        }
    }
    Ok(outputs.iter().filter_map(|t| map[t.id()].clone()).collect())
}
