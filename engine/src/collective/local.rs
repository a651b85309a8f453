//! In-process ranks: `world` threads of one process meet at a shared table, one
//! collective at a time.
//!
//! Each collective is a round in two phases. Filling: every rank puts its contribution in
//! its slot. Draining: once all slots are full, every rank takes (shared) handles on all of
//! them and computes its own result outside the lock; the last rank to take clears the
//! table for the next round. A rank that fails marks the table, and every waiting rank
//! wakes and returns the failure instead of waiting for it.

use super::round::{Contribution, Part, Round};
use super::{Collective, CollectiveError, Result};
use crate::host::Data;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(PartialEq, Eq, Clone, Copy)]
enum Phase {
    Filling,
    Draining,
}

struct Table {
    phase: Phase,
    slots: Vec<Option<Arc<Contribution>>>,
    taken: usize,
    /// The first failure: (rank, reason). Sticky: the group is unusable after it.
    failed: Option<(usize, String)>,
    /// Ranks whose handle is gone (its thread finished or unwound).
    left: Vec<bool>,
}

struct Shared {
    world: usize,
    timeout: Duration,
    table: Mutex<Table>,
    cv: Condvar,
}

impl Shared {
    /// The table even when a thread panicked while holding it: every mutation of it is
    /// completed before any call that could panic, so it is never left half-updated.
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn fail(&self, rank: usize, reason: String) {
        let mut t = self.lock();
        if t.failed.is_none() {
            t.failed = Some((rank, reason));
        }
        drop(t);
        self.cv.notify_all();
    }
}

/// A group of `world` in-process ranks; [`LocalGroup::comms`] hands out one handle per rank.
pub struct LocalGroup {
    shared: Arc<Shared>,
}

impl LocalGroup {
    /// `timeout`: how long a rank waits for the others at one collective before it
    /// declares the missing ranks failed.
    pub fn new(world: usize, timeout: Duration) -> LocalGroup {
        LocalGroup {
            shared: Arc::new(Shared {
                world,
                timeout,
                table: Mutex::new(Table {
                    phase: Phase::Filling,
                    slots: (0..world).map(|_| None).collect(),
                    taken: 0,
                    failed: None,
                    left: vec![false; world],
                }),
                cv: Condvar::new(),
            }),
        }
    }
    /// One handle per rank, in rank order.
    pub fn comms(&self) -> Vec<LocalComm> {
        (0..self.shared.world)
            .map(|rank| LocalComm {
                rank,
                shared: self.shared.clone(),
            })
            .collect()
    }
    /// The first failure recorded in the group: (rank, reason).
    pub fn failure(&self) -> Option<(usize, String)> {
        self.shared.lock().failed.clone()
    }
}

/// One rank's handle. Dropping it (the rank's thread finishing or unwinding) tells the
/// others that this rank will not join any further collective.
pub struct LocalComm {
    rank: usize,
    shared: Arc<Shared>,
}

impl Drop for LocalComm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.fail(self.rank, "panicked".into());
        }
        self.shared.lock().left[self.rank] = true;
        self.shared.cv.notify_all();
    }
}

impl LocalComm {
    /// Waits on the condition variable until `ready` holds, the group fails, or the timeout
    /// passes (then the ranks that `missing` names are declared failed).
    fn wait<'a>(
        &'a self,
        mut t: MutexGuard<'a, Table>,
        op: &'static str,
        deadline: Instant,
        ready: impl Fn(&Table) -> bool,
        missing: impl Fn(&Table) -> Vec<usize>,
    ) -> Result<MutexGuard<'a, Table>> {
        loop {
            if let Some((rank, reason)) = &t.failed {
                return Err(CollectiveError::PeerFailed {
                    rank: *rank,
                    reason: reason.clone(),
                });
            }
            if ready(&t) {
                return Ok(t);
            }
            let miss = missing(&t);
            if let Some(&r) = miss.iter().find(|&&r| t.left[r]) {
                let reason = format!("exited before joining {op}");
                t.failed = Some((r, reason.clone()));
                self.shared.cv.notify_all();
                return Err(CollectiveError::PeerFailed { rank: r, reason });
            }
            let now = Instant::now();
            if now >= deadline {
                let reason = format!(
                    "did not reach {op} within {:.0}s (waiting rank {}; missing ranks {miss:?})",
                    self.shared.timeout.as_secs_f64(),
                    self.rank
                );
                let r = miss.first().copied().unwrap_or(self.rank);
                t.failed = Some((r, reason.clone()));
                self.shared.cv.notify_all();
                return Err(CollectiveError::PeerFailed { rank: r, reason });
            }
            t = self
                .shared
                .cv
                .wait_timeout(t, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// One round: contributes `c`, returns every rank's contribution in rank order.
    fn exchange_in(&self, c: Contribution) -> Result<Vec<Arc<Contribution>>> {
        let op = c.op;
        let deadline = Instant::now() + self.shared.timeout;
        let world = self.shared.world;
        // wait for the previous round to drain before filling this one
        let t = self.wait(
            self.shared.lock(),
            op,
            deadline,
            |t| t.phase == Phase::Filling,
            // the previous round's ranks are only taking their results: none can be missing
            |_| vec![],
        )?;
        let mut t = t;
        t.slots[self.rank] = Some(Arc::new(c));
        if t.slots.iter().all(Option::is_some) {
            t.phase = Phase::Draining;
            self.shared.cv.notify_all();
        }
        let mut t = self.wait(
            t,
            op,
            deadline,
            |t| t.phase == Phase::Draining,
            |t| (0..world).filter(|&r| t.slots[r].is_none()).collect(),
        )?;
        let all: Vec<Arc<Contribution>> = t.slots.iter().flatten().cloned().collect();
        t.taken += 1;
        if t.taken == world {
            t.slots.iter_mut().for_each(|s| *s = None);
            t.taken = 0;
            t.phase = Phase::Filling;
            self.shared.cv.notify_all();
        }
        drop(t);
        Ok(all)
    }
}

impl Round for LocalComm {
    fn me(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.world
    }
    fn fail(&self, reason: &str) {
        self.shared.fail(self.rank, reason.to_string());
    }
    fn exchange(&self, c: Contribution) -> Result<Vec<Part>> {
        let me = self.rank;
        Ok(self
            .exchange_in(c)?
            .iter()
            .map(|c| Part {
                op: c.op,
                meta: c.meta.clone(),
                data: c.pieces[me].clone(),
            })
            .collect())
    }
}

impl Collective for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.shared.world
    }
    fn all_gather(&self, chunk: &Data) -> Result<Data> {
        self.do_all_gather(chunk)
    }
    fn reduce_scatter(&self, input: &Data, counts: &[usize]) -> Result<Data> {
        self.do_reduce_scatter(input, counts)
    }
    fn all_reduce(&self, x: &Data) -> Result<Data> {
        self.do_all_reduce(x)
    }
    fn broadcast(&self, x: &Data, root: usize) -> Result<Data> {
        self.do_broadcast(x, root)
    }
    fn barrier(&self) -> Result<()> {
        self.do_barrier()
    }
    fn abort(&self, reason: &str) {
        self.fail(reason)
    }
}

/// Why a group of ranks failed: the first rank that failed and how (its error, its panic
/// message, or what the others saw), with every rank's own error text.
#[derive(Debug, thiserror::Error)]
#[error("rank {rank} of {world} failed: {reason}")]
pub struct RanksError {
    pub rank: usize,
    pub world: usize,
    pub reason: String,
    /// (rank, error text) of every rank that did not succeed
    pub all: Vec<(usize, String)>,
}

/// Runs `f` on `world` threads, one per rank, each with its handle, and returns the
/// results in rank order. A rank's error or panic fails the group (the others' collectives
/// return instead of waiting); the error returned names the first rank that failed.
pub fn run_ranks<T, E, F>(
    world: usize,
    timeout: Duration,
    f: F,
) -> std::result::Result<Vec<T>, RanksError>
where
    T: Send,
    E: std::fmt::Display + Send,
    F: Fn(&LocalComm) -> std::result::Result<T, E> + Sync,
{
    let group = LocalGroup::new(world, timeout);
    let outcomes: Vec<std::result::Result<T, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = group
            .comms()
            .into_iter()
            .map(|comm| {
                let f = &f;
                s.spawn(move || {
                    let r = f(&comm);
                    if let Err(e) = &r {
                        comm.abort(&format!("{e:#}"));
                    }
                    r.map_err(|e| format!("{e:#}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => r,
                Err(p) => Err(format!("panicked: {}", panic_text(p.as_ref()))),
            })
            .collect()
    });
    let all: Vec<(usize, String)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(r, o)| o.as_ref().err().map(|e| (r, e.clone())))
        .collect();
    if all.is_empty() {
        return Ok(outcomes.into_iter().flatten().collect());
    }
    let (rank, recorded) = group
        .failure()
        .unwrap_or_else(|| (all[0].0, all[0].1.clone()));
    // the failed rank's own text (a panic message) says more than what the table recorded
    let reason = all
        .iter()
        .find(|(r, _)| *r == rank)
        .map(|(_, e)| e.clone())
        .unwrap_or(recorded);
    Err(RanksError {
        rank,
        world,
        reason,
        all,
    })
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}
