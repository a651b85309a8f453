//! Compiling a graph into a program: prune to what the outputs need, fold
//! trivial constants, alias reshapes, and plan memory from value liveness so
//! that buffers are reused (the plan persists across runs: no per-step allocation).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Node, Tensor, Value, ValueId};
use crate::host::HostTensor;
use crate::op::{Op, TensorType};
use crate::schedule::Emit;
use std::sync::Arc;

/// Where a value lives while a program runs.
#[derive(Clone, Debug)]
pub enum Loc {
    /// Program input i (the caller's buffer, read-only).
    Input(usize),
    /// A planned buffer.
    Slot(usize),
    /// A scalar splat: never materialised unless a kernel needs it.
    Splat(f64),
    /// A literal.
    Const(Arc<HostTensor>),
}

/// A compiled program: nodes in execution order over renumbered values.
#[derive(Clone, Debug)]
pub struct Program {
    pub nodes: Vec<Node>,
    pub values: Vec<Value>,
    /// (name, value) of each runtime input, in call order.
    pub inputs: Vec<(String, ValueId)>,
    pub outputs: Vec<ValueId>,
    pub loc: Vec<Loc>,
    /// (dtype, elements) of each planned buffer.
    pub slots: Vec<(DType, usize)>,
    /// Whether node i must run (false for folded splats and aliasing reshapes).
    pub runs: Vec<bool>,
    /// (input, output) pairs: the output may be written into the input's storage when the
    /// caller donates that input ([`crate::Executor::run_donating`]). A training step
    /// declares each parameter and optimizer-state input with its updated output, so a
    /// device holds one copy of the state, not two.
    pub aliases: Vec<(usize, usize)>,
}

impl Program {
    /// Compiles the part of `outputs`' graph they depend on. Inputs are ordered as
    /// `input_order` names them; every `Input` op reached must be named there.
    pub fn compile(outputs: &[Tensor], input_order: &[&str]) -> Result<Program> {
        Program::compile_inner(outputs, input_order, true, None)
    }

    /// Like `compile`, but names in `input_order` that the outputs do not use are left
    /// out (a program over part of a model, e.g. only its keys and values, needs fewer
    /// parameters); `inputs` tells which were kept, in `input_order`'s order.
    pub fn compile_pruned(outputs: &[Tensor], input_order: &[&str]) -> Result<Program> {
        Program::compile_inner(outputs, input_order, false, None)
    }

    /// Like `compile`, for a graph with collectives (FSDP): each all_gather runs just before
    /// the first node that reads it, the next one issued with it (a prefetch), and again
    /// before the first node from `backward_from` on (the graph's node count when the
    /// backward began) that reads it, so that no gathered tensor lives from the forward to
    /// the backward; each reduce_scatter runs as soon as its operand is complete. See
    /// [`crate::schedule`].
    pub fn compile_scheduled(
        outputs: &[Tensor],
        input_order: &[&str],
        backward_from: usize,
    ) -> Result<Program> {
        Program::compile_inner(outputs, input_order, true, Some(backward_from))
    }

    fn compile_inner(
        outputs: &[Tensor],
        input_order: &[&str],
        strict: bool,
        backward_from: Option<usize>,
    ) -> Result<Program> {
        let g = outputs
            .first()
            .ok_or_else(|| Error::Msg("a program needs at least one output".into()))?
            .graph()
            .clone();
        let data = g.data();
        // Prune: mark nodes reachable backwards from the outputs.
        let mut live = vec![false; data.nodes.len()];
        let mut stack: Vec<usize> = outputs.iter().map(|t| data.values[t.id()].node).collect();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut live[n], true) {
                continue;
            }
            stack.extend(data.nodes[n].inputs.iter().map(|&v| data.values[v].node));
        }
        // Renumber values of live nodes, in graph order or in the collectives' schedule.
        let emits = match backward_from {
            None => (0..data.nodes.len())
                .filter(|&n| live[n])
                .map(|node| Emit { node, again: false })
                .collect(),
            Some(b) => crate::schedule::schedule(&data, &live, b, outputs)?,
        };
        let mut map = vec![usize::MAX; data.values.len()];
        // the values of the gathers emitted again for the backward: (old value, new value)
        let mut again: std::collections::HashMap<ValueId, ValueId> = Default::default();
        let mut nodes = vec![];
        let mut values = vec![];
        for &Emit {
            node: ni,
            again: twice,
        } in &emits
        {
            let node = &data.nodes[ni];
            let new_ni = nodes.len();
            let outs: Vec<ValueId> = node
                .outputs
                .iter()
                .map(|&v| {
                    values.push(Value {
                        node: new_ni,
                        index: data.values[v].index,
                        ty: data.values[v].ty.clone(),
                    });
                    let nv = values.len() - 1;
                    if twice {
                        again.insert(v, nv);
                    } else {
                        map[v] = nv;
                    }
                    nv
                })
                .collect();
            let bwd = backward_from.is_some_and(|b| ni >= b);
            let ins = node
                .inputs
                .iter()
                .map(|&v| match again.get(&v) {
                    Some(&nv) if bwd => nv,
                    _ => map[v],
                })
                .collect();
            nodes.push(Node {
                op: node.op.clone(),
                inputs: ins,
                outputs: outs,
            });
        }
        let outputs: Vec<ValueId> = outputs.iter().map(|t| map[t.id()]).collect();
        let mut inputs = vec![];
        for node in &nodes {
            if let Op::Input { name } = &node.op {
                if inputs.iter().any(|(n, _): &(String, ValueId)| n == name) {
                    return Err(Error::Msg(format!(
                        "two graph inputs are both named '{name}'"
                    )));
                }
                inputs.push((name.clone(), node.outputs[0]));
            }
        }
        let mut ordered = vec![];
        for name in input_order {
            match inputs.iter().position(|(n, _)| n == name) {
                Some(i) => ordered.push(inputs.remove(i)),
                None if !strict => {}
                None => {
                    return Err(Error::Msg(format!(
                        "input '{name}' is not used by the program's outputs"
                    )))
                }
            }
        }
        if let Some((n, _)) = inputs.first() {
            return Err(Error::Msg(format!(
                "graph input '{n}' was not given a position in the input order"
            )));
        }
        drop(data);
        let mut p = Program {
            nodes,
            values,
            inputs: ordered,
            outputs,
            loc: vec![],
            slots: vec![],
            runs: vec![],
            aliases: vec![],
        };
        p.plan();
        Ok(p)
    }

    /// Declares that output `o` may reuse input `i`'s storage, for each `(i, o)`. Each
    /// input and output appears at most once, and the two must have the same type.
    pub fn with_aliases(mut self, pairs: &[(usize, usize)]) -> Result<Program> {
        let (ni, no) = (self.inputs.len(), self.outputs.len());
        let mut used_in = vec![false; ni];
        let mut used_out = vec![false; no];
        for &(i, o) in pairs {
            if i >= ni || o >= no {
                return Err(Error::Msg(format!(
                    "alias ({i}, {o}) is out of range: the program has {ni} inputs and {no} outputs"
                )));
            }
            let (ti, to) = (
                &self.values[self.inputs[i].1].ty,
                &self.values[self.outputs[o]].ty,
            );
            if ti != to {
                return Err(Error::Msg(format!(
                    "alias of input {i} ('{}', {ti}) with output {o} ({to}): types differ",
                    self.inputs[i].0
                )));
            }
            if std::mem::replace(&mut used_in[i], true) || std::mem::replace(&mut used_out[o], true)
            {
                return Err(Error::Msg(format!(
                    "alias ({i}, {o}): input {i} or output {o} is aliased twice"
                )));
            }
        }
        self.aliases = pairs.to_vec();
        Ok(self)
    }

    pub fn input_types(&self) -> Vec<(&str, &TensorType)> {
        self.inputs
            .iter()
            .map(|(n, v)| (n.as_str(), &self.values[*v].ty))
            .collect()
    }

    pub fn output_types(&self) -> Vec<&TensorType> {
        self.outputs.iter().map(|&v| &self.values[v].ty).collect()
    }

    /// Bytes of planned buffers (the peak of intermediate memory).
    pub fn planned_bytes(&self) -> usize {
        self.slots.iter().map(|(d, n)| d.size() * n).sum()
    }

    /// Bytes all intermediates would take with no reuse.
    pub fn unplanned_bytes(&self) -> usize {
        (0..self.values.len())
            .filter(|&v| matches!(self.loc[v], Loc::Slot(_)))
            .map(|v| self.values[v].ty.numel() * self.values[v].ty.dtype.size())
            .sum()
    }

    fn plan(&mut self) {
        let nv = self.values.len();
        let input_pos: std::collections::HashMap<ValueId, usize> = self
            .inputs
            .iter()
            .enumerate()
            .map(|(i, (_, v))| (*v, i))
            .collect();
        // root[v]: the value whose storage v shares (reshapes alias their input).
        let mut root: Vec<ValueId> = (0..nv).collect();
        let mut loc: Vec<Option<Loc>> = vec![None; nv];
        let mut runs = vec![true; self.nodes.len()];
        for (ni, node) in self.nodes.iter().enumerate() {
            let out = node.outputs[0];
            let ty = &self.values[out].ty;
            let folded = match &node.op {
                Op::Input { .. } => Some(Loc::Input(input_pos[&out])),
                Op::Splat(x) => Some(Loc::Splat(round_to(*x, ty.dtype))),
                Op::Constant(c) => Some(Loc::Const(c.clone())),
                Op::BroadcastInDim { .. } | Op::Convert { .. } | Op::Reshape { .. } => {
                    match &loc[node.inputs[0]] {
                        Some(Loc::Splat(x)) => Some(Loc::Splat(round_to(*x, ty.dtype))),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(l) = folded {
                loc[out] = Some(l);
                runs[ni] = false;
            } else if let Op::Reshape { .. } = node.op {
                let src = node.inputs[0];
                root[out] = root[src];
                loc[out] = match &loc[src] {
                    Some(Loc::Const(c)) => Some(Loc::Const(Arc::new(HostTensor {
                        shape: ty.shape.clone(),
                        data: c.data.clone(),
                    }))),
                    other => other.clone(),
                };
                runs[ni] = false;
            }
        }
        // Last use of each root (program outputs live to the end).
        let end = self.nodes.len();
        let mut last = vec![0usize; nv];
        for (ni, node) in self.nodes.iter().enumerate() {
            for &o in &node.outputs {
                last[root[o]] = last[root[o]].max(ni);
            }
            for &i in &node.inputs {
                last[root[i]] = last[root[i]].max(ni);
            }
        }
        for &o in &self.outputs {
            last[root[o]] = end;
        }
        // Greedy slot assignment in execution order.
        let mut slots: Vec<(DType, usize)> = vec![];
        let mut free: Vec<usize> = vec![];
        let mut slot_of = vec![usize::MAX; nv];
        let mut dying: Vec<Vec<ValueId>> = vec![vec![]; end + 1];
        for v in 0..nv {
            if root[v] == v {
                dying[last[v]].push(v);
            }
        }
        for (ni, node) in self.nodes.iter().enumerate() {
            if runs[ni] {
                for &o in &node.outputs {
                    let ty = &self.values[o].ty;
                    let n = ty.numel();
                    // Best fit among free slots of this dtype; else grow the largest; else a new slot.
                    let same: Vec<usize> = free
                        .iter()
                        .copied()
                        .filter(|&s| slots[s].0 == ty.dtype)
                        .collect();
                    let pick = same
                        .iter()
                        .copied()
                        .filter(|&s| slots[s].1 >= n)
                        .min_by_key(|&s| slots[s].1)
                        .or_else(|| same.iter().copied().max_by_key(|&s| slots[s].1));
                    let s = match pick {
                        Some(s) => {
                            free.retain(|&f| f != s);
                            slots[s].1 = slots[s].1.max(n);
                            s
                        }
                        None => {
                            slots.push((ty.dtype, n));
                            slots.len() - 1
                        }
                    };
                    slot_of[o] = s;
                    loc[o] = Some(Loc::Slot(s));
                }
            } else if let (Op::Reshape { .. }, Some(Loc::Slot(_))) =
                (&node.op, &loc[node.outputs[0]])
            {
                // alias: loc already copied from the source
            }
            for &v in &dying[ni] {
                if slot_of[v] != usize::MAX {
                    free.push(slot_of[v]);
                }
            }
        }
        // Reshape aliases of planned values point at their root's slot.
        for v in 0..nv {
            if root[v] != v {
                if let Some(Loc::Slot(_)) | None = loc[v] {
                    if slot_of[root[v]] != usize::MAX {
                        loc[v] = Some(Loc::Slot(slot_of[root[v]]));
                    }
                }
            }
        }
        self.loc = loc
            .into_iter()
            .map(|l| l.unwrap_or(Loc::Splat(0.0)))
            .collect();
        self.slots = slots;
        self.runs = runs;
    }
}

/// Whether the outputs' graph holds a fused op with an f64 operand (one the outputs do not
/// depend on only costs a needless decomposition at compile time).
/// A splat converted to the value's dtype, as the executor would store it.
fn round_to(x: f64, d: DType) -> f64 {
    match d {
        DType::F32 => x as f32 as f64,
        DType::F64 => x,
        DType::BF16 => half::bf16::from_f64(x).to_f64(),
        DType::F16 => half::f16::from_f64(x).to_f64(),
        DType::I32 => x as i32 as f64,
        DType::U32 => x as u32 as f64,
        DType::I64 => x as i64 as f64,
        DType::Bool => f64::from(u8::from(x != 0.0)),
    }
}
