//! Collectives over host buffers: all_gather, reduce_scatter, all_reduce (sum),
//! broadcast and barrier among the `world` ranks of a group.
//!
//! Every reduction sums in rank order (rank 0 + rank 1 + ...), whatever order the ranks
//! arrive in, so a result never depends on thread or network timing. bf16 sums accumulate
//! in f32 and round once at the end.
//!
//! A rank that fails (returns an error, panics, exits early, or never arrives within the
//! group's timeout) makes every other rank's pending and later collectives return
//! [`CollectiveError::PeerFailed`] naming it, rather than hang.
//!
//! [`local`] is the in-process implementation (ranks as threads of one process): the test
//! double of every multi-rank path and a real one on many-core hosts. [`tcp_store`] is where
//! the ranks of a multi-process group (torchrun's RANK, WORLD_SIZE, MASTER_ADDR, ...) meet,
//! and [`tcp`] the collectives of such a group over TCP on host buffers (the cpu executor's
//! process ranks). Both compute every result with the same code ([`round`]).

pub mod data;
pub mod local;
pub mod nodes;
mod round;
pub mod tcp;
pub mod tcp_store;
mod tcp_wire;
mod torch_store;

pub use local::{run_ranks, LocalComm, LocalGroup, RanksError};
pub use tcp::TcpComm;

use crate::dtype::DType;
use crate::host::Data;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CollectiveError {
    /// Another rank failed: every collective after its failure reports it.
    #[error("rank {rank} failed: {reason}")]
    PeerFailed { rank: usize, reason: String },
    /// The ranks disagree about a collective (a different op, dtype, length, or root).
    #[error("{op}: ranks disagree: {msg}")]
    Mismatch { op: &'static str, msg: String },
    /// The transport failed (an NCCL or CUDA status, the store).
    #[error("{op}: {msg}")]
    Backend { op: &'static str, msg: String },
    /// Input that no group could accept (a count list of the wrong length, an unsummable dtype).
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
}

pub type Result<T> = std::result::Result<T, CollectiveError>;

/// One rank's handle on a group. Every rank must call the same collectives in the same
/// order; each call blocks until all ranks have made it.
pub trait Collective {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// The concatenation, in rank order, of every rank's `chunk` (lengths may differ, and be 0).
    fn all_gather(&self, chunk: &Data) -> Result<Data>;
    /// `input` has `counts.iter().sum()` elements on every rank, split into `world` segments
    /// of `counts[r]` elements; rank r receives the rank-order sum of every rank's segment r.
    fn reduce_scatter(&self, input: &Data, counts: &[usize]) -> Result<Data>;
    /// The elementwise rank-order sum of every rank's `x` (same length on every rank).
    fn all_reduce(&self, x: &Data) -> Result<Data>;
    /// Rank `root`'s `x` on every rank (the others' `x` is ignored but for its dtype).
    fn broadcast(&self, x: &Data, root: usize) -> Result<Data>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;
    /// Marks this rank failed with `reason`: the other ranks' collectives return
    /// [`CollectiveError::PeerFailed`] instead of waiting for it.
    fn abort(&self, reason: &str);
    /// What this rank has sent to the others, where the implementation moves bytes
    /// between processes (None for thread ranks, which share memory).
    fn traffic(&self) -> Option<Traffic> {
        None
    }
}

/// Bytes one rank sent: `payload` the tensors' bytes, `wire` with the frames' headers,
/// over `rounds` exchanges (a collective is one round; all_reduce two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub payload: u64,
    pub wire: u64,
    pub rounds: u64,
}

/// Shard length of a flattened tensor of `numel` elements split over `world` ranks along
/// dim 0: ceil(numel / world); the last shards are padded (and may be all padding).
pub fn shard_len(numel: usize, world: usize) -> usize {
    numel.div_ceil(world.max(1))
}

/// Whether a dtype can be summed by a reduction.
pub fn summable(d: DType) -> bool {
    matches!(
        d,
        DType::F32 | DType::F64 | DType::BF16 | DType::F16 | DType::I32 | DType::U32 | DType::I64
    )
}
