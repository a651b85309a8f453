//! Collective nodes (`Op::AllGather`, `Op::ReduceScatter`) on host data, for every
//! executor: the cpu executor runs them on its own buffers, the GPU executors stage the
//! operands through host memory (download, collective, upload). A communication thread
//! runs the jobs in issue order ([`serve`]) while the executor goes on with the nodes that
//! do not read their results; [`staging_plan`] says, for an executor that records its
//! nodes as a list of device commands, where each collective is issued and waited for.

use super::data::{concat, slice};
use super::{shard_len, Collective};
use crate::error::{Error, Result};
use crate::host::Data;
use crate::op::Op;
use crate::program::Program;
use std::sync::mpsc::{Receiver, Sender};

/// A rank's collective, as the communication thread borrows it.
pub type Comm<'a> = &'a (dyn Collective + Sync);

/// One collective to run: the node it belongs to and its operand, copied out of the
/// program's buffers (which the memory plan may reuse before the collective is done).
pub struct Job {
    pub node: usize,
    op: Op,
    /// the operand: a gather's shards end to end, a reduce-scatter's tensor zero-padded
    data: Data,
    /// a gather's per-tensor shard lengths and element counts
    parts: Vec<(usize, usize)>,
}

/// What the communication thread did for one job: the node's outputs, in order.
pub type Done = (usize, Result<Vec<Data>>);

/// The job of collective node `ni` of `p`, given each operand's data (at least the
/// operand's element count; extra elements are ignored).
pub fn job(p: &Program, ni: usize, operands: &[Data]) -> Result<Job> {
    let node = &p.nodes[ni];
    let ty = |v: usize| &p.values[v].ty;
    let msg = |e: super::CollectiveError| Error::Msg(e.to_string());
    if operands.len() != node.inputs.len() {
        return Err(Error::Msg(format!(
            "{}: {} operands for {} inputs",
            node.op.name(),
            operands.len(),
            node.inputs.len()
        )));
    }
    let (data, parts) = match &node.op {
        Op::AllGather { shapes, .. } => {
            let shards: Vec<Data> = node
                .inputs
                .iter()
                .zip(operands)
                .map(|(&v, x)| slice(x, 0, ty(v).numel()))
                .collect();
            let refs: Vec<&Data> = shards.iter().collect();
            let parts = node
                .inputs
                .iter()
                .zip(shapes)
                .map(|(&v, s)| (ty(v).numel(), s.iter().product()))
                .collect();
            (concat(&refs, "all_gather").map_err(msg)?, parts)
        }
        Op::ReduceScatter { world } => {
            let t = ty(node.inputs[0]);
            let n = t.numel();
            let pad = shard_len(n, *world) * world - n;
            let zeros = Data::zeros(t.dtype, pad);
            let x = slice(&operands[0], 0, n);
            (
                concat(&[&x, &zeros], "reduce_scatter").map_err(msg)?,
                vec![],
            )
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

/// Runs `jobs` on `comm` in order until the sender hangs up or one fails.
pub fn serve(comm: Comm, jobs: Receiver<Job>, done: Sender<Done>) {
    for j in jobs {
        let r = run(comm, &j);
        let failed = r.is_err();
        if done.send((j.node, r)).is_err() || failed {
            return;
        }
    }
}

/// The outputs of job `j`: a gather's whole tensors (padding dropped), a reduce-scatter's
/// shard.
pub fn run(comm: Comm, j: &Job) -> Result<Vec<Data>> {
    let err = |e: super::CollectiveError| {
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

/// Whether each value of `p` is read by a node or is one of its outputs. A collective
/// output no node reads (a bias the backward's gather brings along) is planned dead at its
/// node, so its buffer may hold a live value by the time the collective is done: such an
/// output is never written.
pub fn read_values(p: &Program) -> Vec<bool> {
    let mut read = vec![false; p.values.len()];
    for n in &p.nodes {
        n.inputs.iter().for_each(|&v| read[v] = true);
    }
    p.outputs.iter().for_each(|&v| read[v] = true);
    read
}

/// A step of running a program with collectives on an executor that records commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Wait until the commands before this point are done, read collective node `n`'s
    /// operands and hand it to the communication thread.
    Issue(usize),
    /// Wait for collective node `n` (and every collective issued before it) and write its
    /// outputs before the commands from this point run.
    Wait(usize),
}

/// Where each collective is issued and waited for, as (command index, stage), in order:
/// `start[ni]` is the index of node `ni`'s first command (the number of commands recorded
/// before it; a collective records none), `commands` the total. A collective is issued
/// at its node and waited for at the first running node that reads one of its outputs,
/// else (only program outputs read it) at the end; waits come in issue order, since the
/// communication thread finishes jobs in that order.
pub fn staging_plan(p: &Program, start: &[usize], commands: usize) -> Vec<(usize, Stage)> {
    let mut out = vec![];
    let mut pending: Vec<usize> = vec![];
    for (ni, n) in p.nodes.iter().enumerate() {
        if !p.runs[ni] {
            continue;
        }
        let need = n
            .inputs
            .iter()
            .filter_map(|&v| pending.iter().position(|&c| c == source_node(p, v)))
            .max();
        if let Some(k) = need {
            for c in pending.drain(..=k) {
                out.push((start[ni], Stage::Wait(c)));
            }
        }
        if n.op.is_collective() {
            out.push((start[ni], Stage::Issue(ni)));
            pending.push(ni);
        }
    }
    out.extend(pending.into_iter().map(|c| (commands, Stage::Wait(c))));
    out
}

/// The node whose buffer value `v` lives in: its producer, or for a reshape the plan
/// aliases (one that does not run), its operand's.
pub fn source_node(p: &Program, v: usize) -> usize {
    let mut n = p.values[v].node;
    while !p.runs[n] && matches!(p.nodes[n].op, Op::Reshape { .. }) {
        n = p.values[p.nodes[n].inputs[0]].node;
    }
    n
}

/// `n` elements of `dtype` equal to `x` (a splat operand, on the host).
pub fn splat(x: f64, dtype: crate::dtype::DType, n: usize) -> Data {
    crate::host::HostTensor::f64(vec![n], vec![x; n])
        .map(|t| t.convert(dtype).data)
        .unwrap_or_else(|_| Data::zeros(dtype, n))
}

/// The results of the oldest collective in flight (`pending`, in issue order), waiting for
/// them; the node's index and its outputs.
pub fn next_done(
    done: &Receiver<Done>,
    pending: &mut std::collections::VecDeque<usize>,
) -> Result<(usize, Vec<Data>)> {
    let (ni, r) = done
        .recv()
        .map_err(|_| Error::Msg("the communication thread stopped".into()))?;
    if pending.pop_front() != Some(ni) {
        return Err(Error::Msg(format!(
            "collective of node {ni} finished out of issue order"
        )));
    }
    Ok((ni, r?))
}

/// Why the communication thread stopped: it stops after a failed collective (another rank
/// failed, say), whose error it sent before it went.
pub fn stopped(done: &Receiver<Done>) -> Error {
    while let Ok((_, r)) = done.try_recv() {
        if let Err(e) = r {
            return e;
        }
    }
    Error::Msg("the communication thread stopped".into())
}
