//! Collective nodes on the cpu executor (the host-side work every executor shares is in
//! `crate::collective::nodes`). Each one is issued, in program order, to a
//! communication thread that calls the rank's collective, and the executor waits for its
//! result at the first node that reads it (or at the end of the run). The schedule
//! (`crate::schedule`) issues the next layer's gather together with this layer's, so the
//! next layer's parameters are gathered while this layer computes: a real overlap on
//! thread ranks (the other ranks' threads do the copying and summing meanwhile), not only
//! an ordering. Every rank issues the same collectives in the same order, one at a time
//! from its communication thread, as the collectives require.

use super::elem::{with_dtype, Arg, Elem};
pub use crate::collective::nodes::Comm;
use crate::collective::nodes::{self, Done, Job};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::Node;
use crate::host::Data;
use crate::program::{Loc, Program};
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender};

pub(super) use nodes::{read_values, serve};

/// The first `n` elements of `a` as owned data.
fn owned(a: &Arg, dtype: DType, n: usize) -> Data {
    let mut d = Data::zeros(dtype, n);
    with_dtype!(dtype, T, {
        T::vec_mut(&mut d).expect("zeros of dtype")[..n].copy_from_slice(&a.slice::<T>(n));
    });
    d
}

/// The job of collective node `ni` on its operands `a`.
pub(super) fn job(p: &Program, ni: usize, node: &Node, a: &[Arg]) -> Result<Job> {
    let operands: Vec<Data> = node
        .inputs
        .iter()
        .zip(a)
        .map(|(&v, x)| {
            let t = &p.values[v].ty;
            owned(x, t.dtype, t.numel())
        })
        .collect();
    nodes::job(p, ni, &operands)
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

impl InFlight {
    pub fn issue(&mut self, j: Job) -> Result<()> {
        let ni = j.node;
        if self.jobs.send(j).is_err() {
            return Err(nodes::stopped(&self.done));
        }
        self.pending.push_back(ni);
        Ok(())
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
        let (ni, r) = nodes::next_done(&self.done, &mut self.pending)?;
        for (&v, d) in p.nodes[ni].outputs.iter().zip(r) {
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
