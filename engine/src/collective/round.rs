//! What every implementation of [`Collective`] by rounds shares: a collective is one or two
//! rounds in which each rank addresses a piece of data to every rank (with the op and its
//! arguments) and receives the piece every rank addressed to it, then checks that all ranks
//! agree and computes its own result from them. Computing results from the same pieces
//! with the same code (sums in rank order) is what makes thread ranks ([`super::local`])
//! and process ranks ([`super::tcp`]) give bitwise the same numbers.
//!
//! The pieces are what a bandwidth-optimal exchange moves: all_gather sends a rank's chunk
//! to every other rank, reduce_scatter sends segment j to rank j only (which sums the
//! segments in rank order), all_reduce is a reduce_scatter of equal segments followed by
//! an all_gather of the sums. Over a full mesh each rank sends (world - 1) / world of the
//! tensor for all_gather and reduce_scatter, what a ring sends.

use super::data::{concat, slice, sum_in_order};
use super::{summable, CollectiveError, Result};
use crate::host::Data;
use std::sync::Arc;

/// What one rank brings to a round.
#[derive(Debug)]
pub struct Contribution {
    pub op: &'static str,
    /// reduce_scatter: the counts; all_reduce: [len]; broadcast: [root]
    pub meta: Vec<usize>,
    /// `pieces[r]`: the data for rank r (one per rank; handles may share one buffer)
    pub pieces: Vec<Arc<Data>>,
}

/// What one rank addressed to this one in a round.
#[derive(Debug, Clone)]
pub struct Part {
    pub op: &'static str,
    pub meta: Vec<usize>,
    pub data: Arc<Data>,
}

/// The names of the ops, in the order of their wire codes.
pub(super) const OPS: [&str; 5] = [
    "all_gather",
    "reduce_scatter",
    "all_reduce",
    "broadcast",
    "barrier",
];

/// `len` elements split over `world` ranks as evenly as can be, the first ranks one longer.
pub(super) fn even_counts(len: usize, world: usize) -> Vec<usize> {
    (0..world)
        .map(|q| len / world + usize::from(q < len % world))
        .collect()
}

/// A transport of rounds; the collectives themselves are its provided methods.
pub(super) trait Round {
    fn me(&self) -> usize;
    fn size(&self) -> usize;
    /// Marks this rank failed (the group stops).
    fn fail(&self, reason: &str);
    /// Sends `c.pieces[r]` to every rank r; what every rank addressed to this one, in rank
    /// order (this rank's own piece included).
    fn exchange(&self, c: Contribution) -> Result<Vec<Part>>;

    /// One round, checked: every rank sees every rank's op and arguments, so all agree on
    /// the verdict.
    fn round(&self, c: Contribution) -> Result<Vec<Part>> {
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

    /// The same piece for every rank.
    fn to_all(&self, op: &'static str, meta: Vec<usize>, x: Data) -> Contribution {
        let x = Arc::new(x);
        Contribution {
            op,
            meta,
            pieces: vec![x; self.size()],
        }
    }

    fn do_all_gather(&self, chunk: &Data) -> Result<Data> {
        let op = "all_gather";
        self.gather_round(op, vec![], chunk.materialize().into_owned())
    }

    /// Every rank's `x`, concatenated in rank order.
    fn gather_round(&self, op: &'static str, meta: Vec<usize>, x: Data) -> Result<Data> {
        let all = self.round(self.to_all(op, meta, x))?;
        let parts: Vec<&Data> = all.iter().map(|c| &*c.data).collect();
        concat(&parts, op)
    }

    /// This rank's segment (of `counts`) of the rank-order sum of every rank's `x`.
    fn scatter_round(
        &self,
        op: &'static str,
        meta: Vec<usize>,
        x: &Data,
        counts: &[usize],
    ) -> Result<Data> {
        let mut start = 0;
        let pieces = counts
            .iter()
            .map(|&n| {
                start += n;
                Arc::new(slice(x, start - n, n))
            })
            .collect();
        let all = self.round(Contribution { op, meta, pieces })?;
        let mine = counts[self.me()];
        if let Some((r, p)) = all.iter().enumerate().find(|(_, p)| p.data.len() != mine) {
            return Err(CollectiveError::Mismatch {
                op,
                msg: format!(
                    "rank {r} sent {} elements for rank {}'s segment of {mine}",
                    p.data.len(),
                    self.me()
                ),
            });
        }
        let parts: Vec<&Data> = all.iter().map(|c| &*c.data).collect();
        sum_in_order(&parts, 0, mine, op)
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
        self.scatter_round(op, counts.to_vec(), input, counts)
    }

    /// A reduce_scatter of near-equal segments, then an all_gather of the sums: every
    /// element is still summed in rank order, so the result is the one-round sum's bits.
    fn do_all_reduce(&self, x: &Data) -> Result<Data> {
        let op = "all_reduce";
        self.check_summable(op, x)?;
        let counts = even_counts(x.len(), self.size());
        let mine = self.scatter_round(op, vec![x.len()], x, &counts)?;
        self.gather_round(op, vec![x.len()], mine)
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
            x.materialize().into_owned()
        } else {
            slice(x, 0, 0)
        };
        let all = self.round(self.to_all(op, vec![root], data))?;
        Ok((*all[root].data).clone())
    }

    fn do_barrier(&self) -> Result<()> {
        self.round(self.to_all("barrier", vec![], Data::U32(vec![])))
            .map(|_| ())
    }
}
