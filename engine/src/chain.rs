//! What the device executors' elementwise-chain fusers share (engine/wgpu/src/fuse.rs and
//! engine/cuda/src/chain.rs): a chain is a run of consecutive nodes that one generated kernel
//! computes in registers; these say which values it reads from memory, which it must write
//! back, and where a view member reads its operand.

use crate::dtype::strides;
use crate::op::Op;
use crate::program::{Loc, Program};
use std::collections::HashSet;

/// Whether `op` reads its operand at a strided index (so the operand comes from memory).
pub fn is_view(op: &Op) -> bool {
    matches!(
        op,
        Op::BroadcastInDim { .. } | Op::Transpose { .. } | Op::Slice { .. }
    )
}

/// A run of nodes (indices into `Program::nodes`, in order) that becomes one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub nodes: Vec<usize>,
}

/// Whether a node of `op` may join an elementwise chain (each executor adds its own dtype
/// and size rules).
pub fn is_chain_op(op: &Op) -> bool {
    is_view(op)
        || matches!(
            op,
            Op::Unary(_)
                | Op::Binary(_)
                | Op::Compare(_)
                | Op::Select
                | Op::Convert { .. }
                | Op::Iota { .. }
        )
}

/// The value a value stands for: aliasing reshapes (which do not run) are looked through.
pub fn canonical(p: &Program, mut v: usize) -> usize {
    loop {
        let ni = p.values[v].node;
        match p.nodes[ni].op {
            Op::Reshape { .. } if !p.runs[ni] => v = p.nodes[ni].inputs[0],
            _ => return v,
        }
    }
}

/// What a chain reads from memory and writes back.
pub struct ChainIo {
    /// Values from outside the chain, each once (canonical), in first-use order.
    pub reads: Vec<usize>,
    /// Those of `reads` that some member reads elementwise (at index i), not through a view.
    pub direct: Vec<usize>,
    /// Members' outputs read after the chain or returned by the program, in member order
    /// (a lone node's output always: it is lowered because its value is needed).
    pub writes: Vec<usize>,
}

impl ChainIo {
    /// The reads and writes of the chain `nodes` (indices into `p.nodes`, in order).
    pub fn of(p: &Program, nodes: &[usize]) -> ChainIo {
        let member: HashSet<usize> = nodes.iter().copied().collect();
        let inside = |v: usize| member.contains(&p.values[v].node);
        let (mut reads, mut direct) = (vec![], vec![]);
        for &ni in nodes {
            for &v in &p.nodes[ni].inputs {
                let c = canonical(p, v);
                if !inside(c) && !reads.contains(&c) {
                    reads.push(c);
                }
                if !inside(c) && !is_view(&p.nodes[ni].op) && !direct.contains(&c) {
                    direct.push(c);
                }
            }
        }
        let mut used_after = vec![false; p.values.len()];
        for (ni, node) in p.nodes.iter().enumerate() {
            if p.runs[ni] && !member.contains(&ni) {
                for &v in &node.inputs {
                    used_after[canonical(p, v)] = true;
                }
            }
        }
        for &v in &p.outputs {
            used_after[canonical(p, v)] = true;
        }
        let writes = nodes
            .iter()
            .map(|&ni| p.nodes[ni].outputs[0])
            .filter(|&v| used_after[v] || nodes.len() == 1)
            .collect();
        ChainIo {
            reads,
            direct,
            writes,
        }
    }

    /// The reads that are buffers (a splat is a literal in a kernel's text), in order.
    pub fn buffer_reads(&self, p: &Program) -> Vec<usize> {
        self.reads
            .iter()
            .copied()
            .filter(|&v| !matches!(p.loc[v], Loc::Splat(_)))
            .collect()
    }
}

/// Where view node `ni` reads its operand for output element `i`: offset + sum over the
/// output's dims of (coordinate * stride), as (offset, the operand stride per output dim;
/// 0 where the coordinate does not move the read).
pub fn view_strides(p: &Program, ni: usize) -> (usize, Vec<usize>) {
    let node = &p.nodes[ni];
    let shape = &p.values[node.outputs[0]].ty.shape;
    let xs = &p.values[node.inputs[0]].ty.shape;
    let xst = strides(xs);
    match &node.op {
        Op::BroadcastInDim { dims, .. } => {
            let mut st = vec![0; shape.len()];
            for (k, &d) in dims.iter().enumerate() {
                if xs[k] != 1 {
                    st[d] = xst[k];
                }
            }
            (0, st)
        }
        Op::Transpose { perm } => (0, perm.iter().map(|&q| xst[q]).collect()),
        Op::Slice { start, .. } => (start.iter().zip(&xst).map(|(a, s)| a * s).sum(), xst),
        _ => (0, vec![0; shape.len()]),
    }
}
