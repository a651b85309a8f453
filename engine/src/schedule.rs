//! The order a program with collectives runs in (`Program::compile_scheduled`): what makes
//! FSDP's memory shrink with the world size in a static program.
//!
//! The graph declares every parameter gather up front and every gradient reduce-scatter
//! after the whole backward; run in that order, the gathered model and the full gradients
//! would all be alive at once. The schedule instead
//! - issues each all_gather just before the first node that reads it, so the memory plan
//!   frees a layer's gathered parameters after their last forward use;
//! - issues it again, as a node of its own, before the first backward node (one from
//!   `backward_from` on) that reads it: the backward gathers the layer again instead of
//!   keeping the forward's copy alive (but for the forward's last gather, whose backward
//!   follows at once);
//! - issues the next gather together with each gather (a prefetch of depth one: the next
//!   layer's parameters are on their way while this layer computes, and both are planned
//!   alive for that span);
//! - issues each reduce_scatter as soon as its operand (a gradient) is complete, so every
//!   full gradient dies there.
//!
//! Every other node keeps its graph order. Every rank compiles the same graph to the same
//! schedule, so the ranks issue their collectives in the same order.

use crate::error::{Error, Result};
use crate::graph::{GraphData, Tensor, ValueId};
use crate::op::Op;
use std::collections::{HashMap, HashSet};

/// One node of the compiled order: graph node `node`, and whether this is its second
/// copy (a gather issued again for the backward).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Emit {
    pub node: usize,
    pub again: bool,
}

/// The order of the live nodes of `data` (see the module comment).
pub(crate) fn schedule(
    data: &GraphData,
    live: &[bool],
    backward_from: usize,
    outputs: &[Tensor],
) -> Result<Vec<Emit>> {
    let n = data.nodes.len();
    let producer = |v: ValueId| data.values[v].node;
    let is_gather = |ni: usize| matches!(data.nodes[ni].op, Op::AllGather { .. });
    let is_rs = |ni: usize| matches!(data.nodes[ni].op, Op::ReduceScatter { .. });
    let mut rs_of: HashMap<ValueId, Vec<usize>> = HashMap::new();
    for ni in (0..n).filter(|&ni| live[ni] && is_rs(ni)) {
        rs_of.entry(data.nodes[ni].inputs[0]).or_default().push(ni);
    }
    let mut base: Vec<Emit> = vec![];
    let mut emitted = vec![false; n];
    let mut gathered: HashSet<(usize, bool)> = HashSet::new();
    // emits `e`, then the reduce-scatters its outputs complete
    let push = |e: Emit, base: &mut Vec<Emit>, emitted: &mut Vec<bool>| {
        base.push(e);
        emitted[e.node] = true;
        for o in &data.nodes[e.node].outputs {
            for &r in rs_of.get(o).into_iter().flatten() {
                if !std::mem::replace(&mut emitted[r], true) {
                    base.push(Emit {
                        node: r,
                        again: false,
                    });
                }
            }
        }
    };
    // the forward's last gather: its backward comes right after its forward, so the
    // backward reads the forward's copy rather than gathering it again
    let mut last_fwd = None;
    for ni in (0..n).filter(|&ni| live[ni] && !is_gather(ni) && !is_rs(ni)) {
        let bwd = ni >= backward_from;
        for &v in &data.nodes[ni].inputs {
            let p = producer(v);
            if is_gather(p) {
                let again = bwd && p < backward_from && last_fwd != Some(p);
                if !bwd {
                    last_fwd = Some(p);
                }
                if gathered.insert((p, again)) {
                    push(Emit { node: p, again }, &mut base, &mut emitted);
                }
            }
        }
        push(
            Emit {
                node: ni,
                again: false,
            },
            &mut base,
            &mut emitted,
        );
    }
    // gathers only the outputs read
    for t in outputs {
        let p = producer(t.id());
        if is_gather(p) && gathered.insert((p, false)) {
            push(
                Emit {
                    node: p,
                    again: false,
                },
                &mut base,
                &mut emitted,
            );
        }
    }
    if let Some(ni) = (0..n).find(|&ni| live[ni] && !emitted[ni]) {
        return Err(Error::Msg(format!(
            "the collectives' schedule left out node {ni} ({})",
            data.nodes[ni].op.name()
        )));
    }
    Ok(prefetch(data, base))
}

/// `base` with each gather's successor (the next gather in `base`) moved up to be issued
/// right after it, where its operands are already computed.
fn prefetch(data: &GraphData, base: Vec<Emit>) -> Vec<Emit> {
    let is_gather = |e: &Emit| matches!(data.nodes[e.node].op, Op::AllGather { .. });
    let gathers: Vec<Emit> = base.iter().copied().filter(is_gather).collect();
    let mut done: HashSet<Emit> = HashSet::new();
    let mut have = vec![false; data.values.len()];
    let mut out: Vec<Emit> = Vec::with_capacity(base.len());
    let mut k = 0;
    for e in base {
        let mut now = vec![];
        if !is_gather(&e) {
            now.push(e);
        } else {
            if !done.contains(&e) {
                now.push(e);
            }
            k += 1;
            if let Some(&next) = gathers.get(k) {
                let ready = data.nodes[next.node].inputs.iter().all(|&v| have[v]);
                if ready && !done.contains(&next) {
                    now.push(next);
                }
            }
        }
        for e in now {
            done.insert(e);
            out.push(e);
            for &o in &data.nodes[e.node].outputs {
                have[o] = true;
            }
        }
    }
    out
}
