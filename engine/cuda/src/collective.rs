//! Collective nodes (FSDP's gathers and reduce-scatters) on the cuda executor, staged
//! through host memory with the rank's host collective (`gidd_engine::collective::nodes`,
//! the cpu executor's code; process ranks over TCP): the steps before a collective are
//! queued, the stream synchronized and its operands copied to the host (one device-to-host
//! copy per operand, then a stream synchronize), the job handed to a communication thread,
//! and the steps that do not read its results queued meanwhile, so the GPU computes the
//! next layer while the ranks gather. Before the first step that reads a result, the
//! result is copied into its planned buffer in the arena on the stream (host-to-device,
//! stream-ordered before the later steps). Runs with collectives queue their steps
//! directly (no CUDA graph, no staging of inputs: the host steps sit between them).
//!
//! [`script`] is the whole order (queued step ranges, issues, waits) and [`operands`] /
//! [`outputs`] where each collective reads and writes: host-side, unit-tested without a
//! device. The device side ([`CudaExecutor`]'s [`CollectiveExecutor`] impl) has never run:
//! no machine this was built on had a GPU.

use crate::executor::{CudaBuffer, CudaExecutor, CudaProgram};
use crate::plan::{bytes_of, Plan, Ptr};
use gidd_engine::collective::nodes::{self, Comm, Done, Stage};
use gidd_engine::program::Loc;
use gidd_engine::{CollectiveExecutor, Data, Program};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::mpsc::Receiver;

/// One thing a run with collectives does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Queue these steps on the stream.
    Queue(Range<usize>),
    /// Synchronize, copy collective node `n`'s operands out, hand it to the communication
    /// thread.
    Issue(usize),
    /// Wait for collective node `n` (and those issued before it) and queue the copies of
    /// its results into the arena.
    Wait(usize),
}

/// The order of a run of `p` planned as `plan`.
pub fn script(p: &Program, plan: &Plan) -> Vec<Act> {
    let n = plan.steps.len();
    let mut out = vec![];
    let mut at = 0;
    for (k, st) in nodes::staging_plan(p, &plan.node_start, n) {
        if k > at {
            out.push(Act::Queue(at..k));
            at = k;
        }
        out.push(match st {
            Stage::Issue(c) => Act::Issue(c),
            Stage::Wait(c) => Act::Wait(c),
        });
    }
    if at < n {
        out.push(Act::Queue(at..n));
    }
    out
}

/// Where an operand of a collective is read from.
#[derive(Debug, Clone, PartialEq)]
pub enum Src {
    /// Device memory (a planned buffer or an input) and its bytes.
    Device(Ptr, u64),
    /// A literal or splat, on the host already.
    Host(Data),
}

/// Where each operand of collective node `ni` is read from.
pub fn operands(p: &Program, ni: usize) -> Vec<Src> {
    p.nodes[ni]
        .inputs
        .iter()
        .map(|&v| {
            let ty = &p.values[v].ty;
            let bytes = bytes_of(ty.numel(), ty.dtype);
            match &p.loc[v] {
                Loc::Slot(s) => Src::Device(Ptr::Slot(*s, 0), bytes),
                Loc::Input(i) => Src::Device(Ptr::Input(*i, 0), bytes),
                Loc::Const(c) => Src::Host(c.data.materialize().into_owned()),
                Loc::Splat(x) => Src::Host(nodes::splat(*x, ty.dtype, ty.numel())),
            }
        })
        .collect()
}

/// Where each result of collective node `ni` is written: its planned buffer, or nowhere
/// for a result no node reads (`read`: `nodes::read_values`; its buffer may be another
/// value's by then).
pub fn outputs(p: &Program, ni: usize, read: &[bool]) -> gidd_engine::Result<Vec<Option<Ptr>>> {
    p.nodes[ni]
        .outputs
        .iter()
        .map(|&v| match (read[v], &p.loc[v]) {
            (false, _) => Ok(None),
            (true, Loc::Slot(s)) => Ok(Some(Ptr::Slot(*s, 0))),
            (true, l) => Err(gidd_engine::Error::Msg(format!(
                "result {v} of {} is planned at {l:?}, not in a buffer",
                p.nodes[ni].op.name()
            ))),
        })
        .collect()
}

impl CudaExecutor {
    fn execute_with(
        &self,
        lp: &mut CudaProgram,
        comm: Comm,
        inputs: &[&CudaBuffer],
        donated: usize,
    ) -> gidd_engine::Result<Vec<CudaBuffer>> {
        self.check_inputs(lp, inputs)?;
        if lp.profile.is_some() {
            return Err(gidd_engine::Error::Msg(
                "profiling a program with collectives is not supported on cuda".into(),
            ));
        }
        self.dev.bind()?;
        let acts = script(&lp.program, &lp.plan);
        let read = nodes::read_values(&lp.program);
        let addr: Vec<u64> = inputs.iter().map(|b| b.mem.ptr).collect();
        std::thread::scope(|s| {
            let (jobs, jr) = std::sync::mpsc::channel();
            let (dt, done) = std::sync::mpsc::channel();
            s.spawn(move || nodes::serve(comm, jr, dt));
            let mut pending = VecDeque::new();
            let r = (|| -> gidd_engine::Result<Vec<CudaBuffer>> {
                for a in &acts {
                    match a {
                        Act::Queue(r) => self.queue_range(lp, &addr, r.clone())?,
                        Act::Issue(ni) => {
                            let ops = self.read_operands(lp, &addr, *ni)?;
                            if jobs.send(nodes::job(&lp.program, *ni, &ops)?).is_err() {
                                return Err(nodes::stopped(&done));
                            }
                            pending.push_back(*ni);
                        }
                        Act::Wait(ni) => {
                            while pending.contains(ni) {
                                self.finish_one(lp, &done, &mut pending, &read)?;
                            }
                        }
                    }
                }
                let base = lp.arena.ptr;
                let at = |p: Ptr| match p {
                    Ptr::Input(i, o) => addr.get(i).map_or(0, |a| a + o),
                    p => base + lp.plan.arena.offset(p).unwrap_or(0),
                };
                Ok(self.collect_outputs(lp, inputs, donated, &at)?)
            })();
            if let Err(e) = &r {
                comm.abort(&e.to_string());
            }
            drop(jobs);
            r
        })
    }

    /// Collective `ni`'s operands on the host, after every step queued so far.
    fn read_operands(
        &self,
        lp: &CudaProgram,
        addr: &[u64],
        ni: usize,
    ) -> gidd_engine::Result<Vec<Data>> {
        let p = &lp.program;
        operands(p, ni)
            .into_iter()
            .zip(&p.nodes[ni].inputs)
            .map(|(src, &v)| match src {
                Src::Host(d) => Ok(d),
                Src::Device(ptr, n) => {
                    let at = match ptr {
                        Ptr::Input(i, o) => addr[i] + o,
                        ptr => lp.arena.ptr + lp.plan.arena.offset(ptr).unwrap_or(0),
                    };
                    let mut bytes = vec![0u8; n as usize];
                    if n > 0 {
                        // synchronizes the stream: the steps queued before are done
                        self.dev.download(&mut bytes, at)?;
                    }
                    let ty = &p.values[v].ty;
                    Ok(crate::executor::decode(&bytes, ty.shape.clone(), ty.dtype)?.data)
                }
            })
            .collect()
    }

    /// Queues the copies of the next finished collective's results into the arena.
    fn finish_one(
        &self,
        lp: &CudaProgram,
        done: &Receiver<Done>,
        pending: &mut VecDeque<usize>,
        read: &[bool],
    ) -> gidd_engine::Result<()> {
        let (ni, r) = nodes::next_done(done, pending)?;
        let p = &lp.program;
        for (dst, d) in outputs(p, ni, read)?.into_iter().zip(r) {
            if let Some(ptr) = dst {
                let bytes = d.materialize();
                let bytes = bytes.as_bytes();
                if !bytes.is_empty() {
                    let at = lp.arena.ptr + lp.plan.arena.offset(ptr).unwrap_or(0);
                    self.dev.upload(at, bytes)?;
                }
            }
        }
        Ok(())
    }
}

impl CollectiveExecutor for CudaExecutor {
    /// Collectives staged through host memory, overlapping the steps that do not read them.
    fn run_donating_with(
        &self,
        lp: &mut CudaProgram,
        comm: Comm,
        donated: Vec<CudaBuffer>,
        rest: &[&CudaBuffer],
    ) -> gidd_engine::Result<Vec<CudaBuffer>> {
        let mut ins: Vec<&CudaBuffer> = donated.iter().collect();
        ins.extend_from_slice(rest);
        let n = donated.len();
        self.execute_with(lp, comm, &ins, n)
    }
}

#[cfg(test)]
#[path = "tests_collective.rs"]
mod tests;
