//! The engine's collectives over NCCL (cudarc's bindings, `libnccl.so.2` loaded at run time):
//! one rank per process and GPU, ranks meeting through the TCP store (torchrun's RANK,
//! WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) to share rank 0's NCCL unique id.
//!
//! The interface is the engine's, over host buffers: each call copies in, runs the NCCL
//! collective on the rank's stream, and copies out. NCCL sums in the order of its own
//! algorithm (ring or tree), deterministic for one topology and NCCL version but not the
//! rank order of the in-process group. Uneven all_gather and reduce_scatter are padded to
//! the longest chunk (NCCL wants equal counts).
//!
//! A rank that fails records it in the store; every later collective of the others checks
//! the store first and returns the failure. A collective already inside NCCL when a peer
//! dies waits for NCCL's own error handling.
//!
//! Never run here: written against cudarc 0.19's API and compiled, but no machine this was
//! built on had a GPU or NCCL.

use cudarc::driver::{CudaContext, CudaStream, DeviceRepr, ValidAsZeroBits};
use cudarc::nccl::safe::{Comm, Id, NcclType, ReduceOp};
use gidd_engine::collective::data::{concat, slice};
use gidd_engine::collective::tcp_store::{RankEnv, StoreServer, TcpStore};
use gidd_engine::collective::{summable, Collective, CollectiveError, Result};
use gidd_engine::Data;
use std::sync::Arc;
use std::time::Duration;

const ID_KEY: &str = "gidd/nccl_id";
const FAILED_KEY: &str = "gidd/failed";

pub struct NcclComm {
    comm: Comm,
    stream: Arc<CudaStream>,
    store: TcpStore,
    /// rank 0 serves the store for the group's lifetime
    _server: Option<StoreServer>,
}

fn backend(op: &'static str, what: impl std::fmt::Debug) -> CollectiveError {
    CollectiveError::Backend {
        op,
        msg: format!("{what:?}"),
    }
}

impl NcclComm {
    /// Joins the group the environment describes (`RankEnv::from_vars(|k| std::env::var(k).ok())`)
    /// on GPU LOCAL_RANK: a clean error without a driver, a GPU or NCCL.
    pub fn join(env: &RankEnv, timeout: Duration) -> Result<NcclComm> {
        let op = "nccl init";
        // SAFETY: both only probe for the libraries with dlopen.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(backend(op, "no CUDA driver (libcuda.so) found"));
        }
        if !unsafe { cudarc::nccl::sys::is_culib_present() } {
            return Err(backend(
                op,
                "no NCCL library (libnccl.so.2) found: install NCCL 2.24 or later",
            ));
        }
        let (store, server) =
            TcpStore::for_rank(env, timeout).map_err(|e| backend(op, e.to_string()))?;
        // cudarc panics on a symbol its library lacks: an error here, not a crash
        let inner = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let ctx = CudaContext::new(env.local_rank).map_err(|e| backend(op, e))?;
            let stream = ctx.default_stream();
            let id = if env.rank == 0 {
                let id = Id::new().map_err(|e| backend(op, e))?;
                let bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
                store
                    .set(ID_KEY, &bytes)
                    .map_err(|e| backend(op, e.to_string()))?;
                id
            } else {
                let bytes = store.get(ID_KEY).map_err(|e| backend(op, e.to_string()))?;
                let mut internal = [0 as std::ffi::c_char; 128];
                if bytes.len() != internal.len() {
                    return Err(backend(op, format!("an NCCL id of {} bytes", bytes.len())));
                }
                for (d, &b) in internal.iter_mut().zip(&bytes) {
                    *d = b as std::ffi::c_char;
                }
                Id::uninit(internal)
            };
            let comm = Comm::from_rank(stream.clone(), env.rank, env.world, id)
                .map_err(|e| backend(op, e))?;
            Ok((comm, stream))
        }))
        .unwrap_or_else(|_| {
            Err(backend(
                op,
                "the CUDA or NCCL library lacks a symbol cudarc needs",
            ))
        })?;
        Ok(NcclComm {
            comm: inner.0,
            stream: inner.1,
            store,
            _server: server,
        })
    }

    /// A peer's recorded failure, if any.
    fn check_peers(&self, op: &'static str) -> Result<()> {
        match self.store.try_get(FAILED_KEY) {
            Ok(None) => Ok(()),
            Ok(Some(v)) => {
                let text = String::from_utf8_lossy(&v).to_string();
                let (rank, reason) = text.split_once(':').unwrap_or(("?", &text));
                Err(CollectiveError::PeerFailed {
                    rank: rank.trim().parse().unwrap_or(usize::MAX),
                    reason: reason.trim().to_string(),
                })
            }
            Err(e) => Err(backend(op, e.to_string())),
        }
    }

    fn sync(&self, op: &'static str) -> Result<()> {
        self.stream.synchronize().map_err(|e| backend(op, e))
    }

    /// Host `x` on the device, `f` on it and a zeroed receive buffer of `out` elements, back to host.
    fn run<T: DeviceRepr + ValidAsZeroBits + NcclType + Clone>(
        &self,
        op: &'static str,
        x: &[T],
        out: usize,
        f: impl FnOnce(
            &Comm,
            &cudarc::driver::CudaSlice<T>,
            &mut cudarc::driver::CudaSlice<T>,
        ) -> std::result::Result<(), cudarc::nccl::result::NcclError>,
    ) -> Result<Vec<T>> {
        // a zero-length device buffer is not allocated: one element stands in
        let send = if x.is_empty() {
            self.stream.alloc_zeros::<T>(1)
        } else {
            self.stream.clone_htod(x)
        }
        .map_err(|e| backend(op, e))?;
        let mut recv = self
            .stream
            .alloc_zeros::<T>(out.max(1))
            .map_err(|e| backend(op, e))?;
        f(&self.comm, &send, &mut recv).map_err(|e| backend(op, e))?;
        self.sync(op)?;
        let mut v = self.stream.clone_dtoh(&recv).map_err(|e| backend(op, e))?;
        v.truncate(out);
        Ok(v)
    }
}

/// Runs `$body` with `$v` the typed vector of `$d` and `$wrap` the matching `Data` variant.
macro_rules! typed {
    ($d:expr, $op:expr, |$v:ident, $wrap:ident| $body:expr) => {
        match $d {
            Data::F32($v) => {
                let $wrap = Data::F32;
                $body
            }
            Data::F64($v) => {
                let $wrap = Data::F64;
                $body
            }
            Data::BF16($v) => {
                let $wrap = Data::BF16;
                $body
            }
            Data::F16($v) => {
                let $wrap = Data::F16;
                $body
            }
            Data::I32($v) => {
                let $wrap = Data::I32;
                $body
            }
            Data::U32($v) => {
                let $wrap = Data::U32;
                $body
            }
            Data::I64($v) => {
                let $wrap = Data::I64;
                $body
            }
            Data::Bool($v) => {
                let $wrap = Data::Bool;
                $body
            }
            Data::Mapped(_) => {
                return Err(CollectiveError::Invalid {
                    op: $op,
                    msg: "mapped storage must be materialized before a collective".into(),
                })
            }
        }
    };
}

impl Collective for NcclComm {
    fn rank(&self) -> usize {
        self.comm.rank()
    }
    fn world(&self) -> usize {
        self.comm.world_size()
    }
    fn all_gather(&self, chunk: &Data) -> Result<Data> {
        let op = "all_gather";
        self.check_peers(op)?;
        let w = self.world();
        // the lengths first: chunks may differ, NCCL's all_gather wants one count
        let lens = self.run(op, &[chunk.len() as u64], w, |c, s, r| {
            c.all_gather(s, r).map(|_| ())
        })?;
        let m = lens.iter().copied().max().unwrap_or(0) as usize;
        if m == 0 {
            return Ok(slice(chunk, 0, 0));
        }
        let pad = Data::zeros(chunk.dtype(), m - chunk.len());
        let padded = concat(&[chunk, &pad], op)?;
        let all = typed!(&padded, op, |v, wrap| wrap(self.run(
            op,
            v,
            w * m,
            |c, s, r| c.all_gather(s, r).map(|_| ())
        )?));
        let parts: Vec<Data> = lens
            .iter()
            .enumerate()
            .map(|(q, &l)| slice(&all, q * m, l as usize))
            .collect();
        concat(&parts.iter().collect::<Vec<_>>(), op)
    }
    fn reduce_scatter(&self, input: &Data, counts: &[usize]) -> Result<Data> {
        let op = "reduce_scatter";
        self.check_peers(op)?;
        if !summable(input.dtype())
            || counts.len() != self.world()
            || counts.iter().sum::<usize>() != input.len()
        {
            return Err(CollectiveError::Invalid {
                op,
                msg: format!(
                    "{:?} input of {} elements with counts {counts:?} for {} ranks",
                    input.dtype(),
                    input.len(),
                    self.world()
                ),
            });
        }
        let m = counts.iter().copied().max().unwrap_or(0);
        if m == 0 {
            return Ok(slice(input, 0, 0));
        }
        // every segment padded to the longest: NCCL's reduce_scatter wants one count
        let mut segs = vec![];
        let mut at = 0;
        for &c in counts {
            segs.push(slice(input, at, c));
            segs.push(Data::zeros(input.dtype(), m - c));
            at += c;
        }
        let padded = concat(&segs.iter().collect::<Vec<_>>(), op)?;
        let mine = typed!(&padded, op, |v, wrap| wrap(self.run(
            op,
            v,
            m,
            |c, s, r| c.reduce_scatter(s, r, &ReduceOp::Sum).map(|_| ())
        )?));
        Ok(slice(&mine, 0, counts[self.rank()]))
    }
    fn all_reduce(&self, x: &Data) -> Result<Data> {
        let op = "all_reduce";
        self.check_peers(op)?;
        if !summable(x.dtype()) {
            return Err(CollectiveError::Invalid {
                op,
                msg: format!("{:?} buffers cannot be summed", x.dtype()),
            });
        }
        let n = x.len();
        Ok(typed!(x, op, |v, wrap| wrap(self.run(
            op,
            v,
            n,
            |c, s, r| c.all_reduce(s, r, &ReduceOp::Sum).map(|_| ())
        )?)))
    }
    fn broadcast(&self, x: &Data, root: usize) -> Result<Data> {
        let op = "broadcast";
        self.check_peers(op)?;
        if root >= self.world() {
            return Err(CollectiveError::Invalid {
                op,
                msg: format!("root {root} is not a rank of {}", self.world()),
            });
        }
        // the root's length first
        let len = self.run(op, &[x.len() as u64], 1, |c, s, r| {
            c.broadcast(Some(s), r, root as i32).map(|_| ())
        })?[0] as usize;
        let body = if self.rank() == root {
            x.clone()
        } else {
            Data::zeros(x.dtype(), len)
        };
        Ok(typed!(&body, op, |v, wrap| wrap(self.run(
            op,
            v,
            len,
            |c, s, r| c.broadcast(Some(s), r, root as i32).map(|_| ())
        )?)))
    }
    fn barrier(&self) -> Result<()> {
        self.all_reduce(&Data::F32(vec![0.0])).map(|_| ())
    }
    fn abort(&self, reason: &str) {
        // best effort: the store may be what failed
        let _ = self
            .store
            .set(FAILED_KEY, format!("{}: {reason}", self.rank()).as_bytes());
    }
}
