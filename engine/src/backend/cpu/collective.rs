//! Collective nodes on the cpu executor. Each one is issued, in program order, to a
//! communication thread that calls the rank's collective, and the executor waits for its
//! result at the first node that reads it (or at the end of the run). The schedule
//! (`crate::schedule`) issues the next layer's gather together with this layer's, so the
//! next layer's parameters are gathered while this layer computes: a real overlap on
//! thread ranks (the other ranks' threads do the copying and summing meanwhile), not only
//! an ordering. Every rank issues the same collectives in the same order, one at a time
//! from its communication thread, as the collectives require.

use super::elem::{with_dtype, Arg, Elem};
use crate::collective::data::{concat, slice};
use crate::collective::{shard_len, Collective};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::Node;
use crate::host::Data;
use crate::op::Op;
use crate::program::{Loc, Program};
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender};

/// A rank's collective, as the communication thread borrows it.
pub type Comm<'a> = &'a (dyn Collective + Sync);

/// One collective to run: the node it belongs to and its operand, copied out of the
/// program's buffers (which the memory plan may reuse before the collective is done).
pub(super) struct Job {
    node: usize,
    op: Op,
    /// the operand: a gather's shards end to end, a reduce-scatter's tensor zero-padded
    data: Data,
    /// a gather's per-tensor shard lengths and element counts
    parts: Vec<(usize, usize)>,
}

/// What the communication thread did for one job: the node's outputs, in order.
type Done = (usize, Result<Vec<Data>>);

/// Runs `jobs` on `comm` in order until the sender hangs up.
pub(super) fn serve(comm: Comm, jobs: Receiver<Job>, done: Sender<Done>) {
    for j in jobs {
        let r = run_job(comm, &j);
        let failed = r.is_err();
        if done.send((j.node, r)).is_err() || failed {
            return;
        }
    }
}

fn run_job(comm: Comm, j: &Job) -> Result<Vec<Data>> {
    let err = |e: crate::collective::CollectiveError| {
        Error::Msg(format!("{} (rank {}): {e}", j.op.name(), comm.rank()))
    };
    match &j.op {
        Op::AllGather { world, .. } => {
            let total: usize = j.parts.iter().map(|p| p.0).sum();
            let all = comm.all_gather(&j.data).map_err(err)?;
            let mut off = 0;
            j.parts
                .iter()
                .map(|&(len, numel)| {
                    let ranks: Vec<Data> = (0..*world)
                        .map(|q| slice(&all, q * total + off, len))
                        .collect();
                    off += len;
                    let refs: Vec<&Data> = ranks.iter().collect();
                    let whole = concat(&refs, "all_gather").map_err(err)?;
                    Ok(slice(&whole, 0, numel))
                })
                .collect()
        }
        Op::ReduceScatter { world } => {
            let len = j.data.len() / world;
            Ok(vec![comm
                .reduce_scatter(&j.data, &vec![len; *world])
                .map_err(err)?])
        }
        other => Err(Error::Msg(format!("{} is not a collective", other.name()))),
    }
}

/// The first `n` elements of `a` as owned data, followed by `pad` zeros.
fn owned(a: &Arg, dtype: DType, n: usize, pad: usize) -> Data {
    let mut d = Data::zeros(dtype, n + pad);
    with_dtype!(dtype, T, {
        T::vec_mut(&mut d).expect("zeros of dtype")[..n].copy_from_slice(&a.slice::<T>(n));
    });
    d
}

/// The job of collective node `ni` on its operands `a`.
pub(super) fn job(p: &Program, ni: usize, node: &Node, a: &[Arg]) -> Result<Job> {
    let ty = |v: usize| &p.values[v].ty;
    let (data, parts) = match &node.op {
        Op::AllGather { shapes, .. } => {
            let d = ty(node.inputs[0]).dtype;
            let shards: Vec<Data> = node
                .inputs
                .iter()
                .zip(a)
                .map(|(&v, x)| owned(x, d, ty(v).numel(), 0))
                .collect();
            let refs: Vec<&Data> = shards.iter().collect();
            let data = concat(&refs, "all_gather").map_err(|e| Error::Msg(e.to_string()))?;
            let parts = node
                .inputs
                .iter()
                .zip(shapes)
                .map(|(&v, s)| (ty(v).numel(), s.iter().product()))
                .collect();
            (data, parts)
        }
        Op::ReduceScatter { world } => {
            let t = ty(node.inputs[0]);
            let n = t.numel();
            let pad = shard_len(n, *world) * world - n;
            (owned(&a[0], t.dtype, n, pad), vec![])
        }
        other => return Err(Error::Msg(format!("{} is not a collective", other.name()))),
    };
    Ok(Job {
        node: ni,
        op: node.op.clone(),
        data,
        parts,
    })
}

/// The collectives issued and not yet waited for, in issue order (the order the
/// communication thread finishes them in).
pub(super) struct InFlight {
    pub jobs: Sender<Job>,
    pub done: Receiver<Done>,
    pub pending: VecDeque<usize>,
    /// whether each value is read by a node or is a program output
    pub read: Vec<bool>,
}

/// Whether each value of `p` is read by a node or is one of its outputs.
pub(super) fn read_values(p: &Program) -> Vec<bool> {
    let mut read = vec![false; p.values.len()];
    for n in &p.nodes {
        n.inputs.iter().for_each(|&v| read[v] = true);
    }
    p.outputs.iter().for_each(|&v| read[v] = true);
    read
}

impl InFlight {
    pub fn issue(&mut self, j: Job) -> Result<()> {
        let ni = j.node;
        if self.jobs.send(j).is_err() {
            return Err(self.stopped());
        }
        self.pending.push_back(ni);
        Ok(())
    }

    /// Why the communication thread stopped: it stops after a failed collective (another
    /// rank failed, say), whose error it sent before it went.
    fn stopped(&mut self) -> Error {
        while let Ok((_, r)) = self.done.try_recv() {
            if let Err(e) = r {
                return e;
            }
        }
        Error::Msg("the communication thread stopped".into())
    }

    /// Waits until node `ni` (if in flight) is done, writing the outputs of every
    /// collective finished meanwhile into their buffers.
    pub fn wait_for(&mut self, ni: usize, p: &Program, slots: &mut [Data]) -> Result<()> {
        while self.pending.contains(&ni) {
            self.finish_one(p, slots)?;
        }
        Ok(())
    }

    /// Waits for everything in flight.
    pub fn drain(&mut self, p: &Program, slots: &mut [Data]) -> Result<()> {
        while !self.pending.is_empty() {
            self.finish_one(p, slots)?;
        }
        Ok(())
    }

    fn finish_one(&mut self, p: &Program, slots: &mut [Data]) -> Result<()> {
        let (ni, r) = self
            .done
            .recv()
            .map_err(|_| Error::Msg("the communication thread stopped".into()))?;
        if self.pending.pop_front() != Some(ni) {
            return Err(Error::Msg(format!(
                "collective of node {ni} finished out of issue order"
            )));
        }
        for (&v, d) in p.nodes[ni].outputs.iter().zip(r?) {
            // an output no node reads (a bias the backward's gather brings along) was
            // planned dead at its node: its buffer may hold a live value by now
            if !self.read[v] {
                continue;
            }
            let Loc::Slot(s) = p.loc[v] else {
                return Err(Error::Msg(format!(
                    "output {v} of {} has no buffer",
                    p.nodes[ni].op.name()
                )));
            };
            let n = p.values[v].ty.numel();
            with_dtype!(p.values[v].ty.dtype, T, {
                let dst = T::vec_mut(&mut slots[s]).expect("slot dtype");
                dst[..n].copy_from_slice(&T::slice(&d).expect("collective dtype")[..n]);
            });
        }
        Ok(())
    }
}
