//! Reverse-mode autograd as a graph transform: `grad` appends the backward graph.

mod rules;

use crate::error::{Error, Result};
use crate::graph::{Tensor, ValueId};
use std::collections::HashMap;

/// Gradients of the scalar `loss` with respect to each of `wrt` (zeros where
/// `loss` does not depend on it), appended to the graph.
pub fn grad(loss: &Tensor, wrt: &[Tensor]) -> Result<Vec<Tensor>> {
    if loss.rank() != 0 || !loss.dtype().is_float() {
        return Err(Error::shape(
            "grad",
            "loss must be a float scalar",
            &[loss.shape()],
        ));
    }
    let seed = loss.full_like(1.0);
    vjp(std::slice::from_ref(loss), &[Some(seed)], wrt)
}

/// Vector-Jacobian product: cotangents of `outputs` pulled back to `wrt`.
pub fn vjp(
    outputs: &[Tensor],
    cotangents: &[Option<Tensor>],
    wrt: &[Tensor],
) -> Result<Vec<Tensor>> {
    let g = outputs[0].graph().clone();
    let (nodes, values) = {
        let d = g.data();
        (d.nodes.clone(), d.values.clone())
    };
    // Which values depend on wrt (only those carry cotangents back).
    let mut needs = vec![false; values.len()];
    for t in wrt {
        needs[t.id()] = true;
    }
    let last_node = outputs
        .iter()
        .map(|t| values[t.id()].node)
        .max()
        .unwrap_or(0);
    for node in &nodes[..=last_node] {
        if node.inputs.iter().any(|&i| needs[i]) {
            for &o in &node.outputs {
                needs[o] = true;
            }
        }
    }
    let mut ct: HashMap<ValueId, Tensor> = HashMap::new();
    for (o, c) in outputs.iter().zip(cotangents) {
        if let Some(c) = c {
            accumulate(&mut ct, o.id(), c.clone())?;
        }
    }
    for ni in (0..=last_node).rev() {
        let node = &nodes[ni];
        if !node.outputs.iter().any(|o| ct.contains_key(o))
            || !node.inputs.iter().any(|&i| needs[i])
        {
            continue;
        }
        let ins: Vec<Tensor> = node.inputs.iter().map(|&i| g.tensor(i)).collect();
        let outs: Vec<Tensor> = node.outputs.iter().map(|&o| g.tensor(o)).collect();
        let gs: Vec<Option<Tensor>> = node.outputs.iter().map(|o| ct.get(o).cloned()).collect();
        let want: Vec<bool> = node
            .inputs
            .iter()
            .map(|&i| needs[i] && values[i].ty.dtype.is_float())
            .collect();
        let din = rules::vjp_rule(&node.op, &ins, &outs, &gs, &want)?;
        for ((&i, d), w) in node.inputs.iter().zip(din).zip(&want) {
            if let (Some(d), true) = (d, *w) {
                accumulate(&mut ct, i, d)?;
            }
        }
    }
    wrt.iter()
        .map(|t| match ct.get(&t.id()) {
            Some(c) => Ok(c.clone()),
            None => Ok(t.full_like(0.0)),
        })
        .collect()
}

fn accumulate(ct: &mut HashMap<ValueId, Tensor>, id: ValueId, d: Tensor) -> Result<()> {
    let v = match ct.remove(&id) {
        Some(prev) => prev.add(&d)?,
        None => d,
    };
    ct.insert(id, v);
    Ok(())
}
