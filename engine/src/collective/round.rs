//! What every implementation of [`Collective`] by rounds shares: a collective is one round
//! in which each rank contributes (op, data, arguments) and receives every rank's
//! contribution, then checks that all ranks agree and computes its own result from them.
//! Computing results from the same contributions with the same code (sums in rank order)
//! is what makes thread ranks ([`super::local`]) and process ranks ([`super::tcp`]) give
//! bitwise the same numbers.

use super::data::{concat, slice, sum_in_order};
use super::{summable, CollectiveError, Result};
use crate::host::Data;
use std::sync::Arc;

/// What one rank brought to a round.
#[derive(Debug)]
pub struct Contribution {
    pub op: &'static str,
    pub data: Data,
    /// reduce_scatter: the counts; all_reduce: [len]; broadcast: [root]
    pub meta: Vec<usize>,
}

/// The names of the ops, in the order of their wire codes.
pub(super) const OPS: [&str; 5] = [
    "all_gather",
    "reduce_scatter",
    "all_reduce",
    "broadcast",
    "barrier",
];

/// A transport of rounds; the collectives themselves are its provided methods.
pub(super) trait Round {
    fn me(&self) -> usize;
    fn size(&self) -> usize;
    /// Marks this rank failed (the group stops).
    fn fail(&self, reason: &str);
    /// Contributes `c`; every rank's contribution, in rank order.
    fn exchange(&self, c: Contribution) -> Result<Vec<Arc<Contribution>>>;

    /// One round, checked: every rank sees the same contributions, so all agree on the verdict.
    fn round(&self, c: Contribution) -> Result<Vec<Arc<Contribution>>> {
        let op = c.op;
        let all = self.exchange(c)?;
        for (r, x) in all.iter().enumerate() {
            if x.op != op {
                return Err(CollectiveError::Mismatch {
                    op,
                    msg: format!(
                        "rank {} called {op} while rank {r} called {}",
                        self.me(),
                        x.op
                    ),
                });
            }
            if x.data.dtype() != all[0].data.dtype() {
                return Err(CollectiveError::Mismatch {
                    op,
                    msg: format!(
                        "rank 0 sent {:?}, rank {r} sent {:?}",
                        all[0].data.dtype(),
                        x.data.dtype()
                    ),
                });
            }
            if x.meta != all[0].meta {
                return Err(CollectiveError::Mismatch {
                    op,
                    msg: format!(
                        "rank 0 passed {:?}, rank {r} passed {:?}",
                        all[0].meta, x.meta
                    ),
                });
            }
        }
        Ok(all)
    }

    fn check_summable(&self, op: &'static str, x: &Data) -> Result<()> {
        if summable(x.dtype()) {
            Ok(())
        } else {
            Err(CollectiveError::Invalid {
                op,
                msg: format!("{:?} buffers cannot be summed", x.dtype()),
            })
        }
    }

    fn do_all_gather(&self, chunk: &Data) -> Result<Data> {
        let all = self.round(Contribution {
            op: "all_gather",
            data: chunk.clone(),
            meta: vec![],
        })?;
        let parts: Vec<&Data> = all.iter().map(|c| &c.data).collect();
        concat(&parts, "all_gather")
    }

    fn do_reduce_scatter(&self, input: &Data, counts: &[usize]) -> Result<Data> {
        let op = "reduce_scatter";
        self.check_summable(op, input)?;
        if counts.len() != self.size() || counts.iter().sum::<usize>() != input.len() {
            // fail the group too: the others would otherwise wait for this rank forever
            let msg = format!(
                "rank {}: {} counts summing to {} for {} ranks and {} elements",
                self.me(),
                counts.len(),
                counts.iter().sum::<usize>(),
                self.size(),
                input.len()
            );
            self.fail(&msg);
            return Err(CollectiveError::Invalid { op, msg });
        }
        let all = self.round(Contribution {
            op,
            data: input.clone(),
            meta: counts.to_vec(),
        })?;
        let start: usize = counts[..self.me()].iter().sum();
        let parts: Vec<&Data> = all.iter().map(|c| &c.data).collect();
        sum_in_order(&parts, start, counts[self.me()], op)
    }

    fn do_all_reduce(&self, x: &Data) -> Result<Data> {
        let op = "all_reduce";
        self.check_summable(op, x)?;
        let all = self.round(Contribution {
            op,
            data: x.clone(),
            meta: vec![x.len()],
        })?;
        let parts: Vec<&Data> = all.iter().map(|c| &c.data).collect();
        sum_in_order(&parts, 0, x.len(), op)
    }

    fn do_broadcast(&self, x: &Data, root: usize) -> Result<Data> {
        let op = "broadcast";
        if root >= self.size() {
            let msg = format!("root {root} is not a rank of {}", self.size());
            self.fail(&msg);
            return Err(CollectiveError::Invalid { op, msg });
        }
        // only the root's payload travels; the others send an empty one of their dtype
        let data = if self.me() == root {
            x.clone()
        } else {
            slice(x, 0, 0)
        };
        let all = self.round(Contribution {
            op,
            data,
            meta: vec![root],
        })?;
        Ok(all[root].data.clone())
    }

    fn do_barrier(&self) -> Result<()> {
        self.round(Contribution {
            op: "barrier",
            data: Data::U32(vec![]),
            meta: vec![],
        })
        .map(|_| ())
    }
}
