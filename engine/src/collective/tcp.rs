//! Process ranks: the collectives of a group of processes (torchrun's RANK, WORLD_SIZE,
//! MASTER_ADDR, MASTER_PORT) over TCP, on host buffers.
//!
//! Rendezvous: rank 0 serves the store ([`super::tcp_store`]) at MASTER_ADDR:MASTER_PORT and
//! listens on a free port for the collectives, which it publishes in the store; every other
//! rank reads it, connects, and says who it is. A star: rank 0 is the hub.
//!
//! A round: every rank sends its contribution to rank 0, which reads them in rank order and
//! sends every rank all of them; each rank then checks and computes its own result with
//! the thread ranks' code ([`super::round`]), so process ranks give bitwise the thread
//! ranks' numbers. (Rank 0 forwards whole rounds: a reduce_scatter moves world times the
//! bytes a ring would. Simple and exact; a host-memory path, not a fast one.)
//!
//! Failure: a rank whose connection closes (its process exited or was killed), that sends
//! an abort, or that does not arrive within the timeout is named to every other rank: rank
//! 0 sends them a failure frame, and a rank whose connection to rank 0 closes names rank 0.
//! The group is unusable after a failure.
//!
//! Wire format, integers little-endian. Rank to hub: kind u8 (0 contribution, 1 abort);
//! contribution = op u8 (index in [`OPS`]), meta (u32 count, u64 each), data (dtype u8,
//! u64 byte length, bytes); abort = reason (u32 length, utf-8). Hub to rank: kind u8
//! (0 round: world contributions; 1 failed: rank u64, reason). Hello, on connecting: rank
//! u64, world u64.

use super::round::{Contribution, Round, OPS};
use super::tcp_store::{RankEnv, StoreServer, TcpStore};
use super::{Collective, CollectiveError, Result};
use crate::dtype::DType;
use crate::host::Data;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DTYPES: [DType; 8] = [
    DType::F32,
    DType::F64,
    DType::BF16,
    DType::I32,
    DType::U32,
    DType::I64,
    DType::Bool,
    // last: the wire codes of the others stay what they were
    DType::F16,
];

/// The store key under which rank 0 publishes its collectives' port.
const HUB_KEY: &str = "gidd/collective-port";

/// One connection: to rank 0 (on other ranks), or to rank `peer` (on rank 0).
struct Link {
    peer: usize,
    io: Mutex<(BufReader<TcpStream>, BufWriter<TcpStream>)>,
    /// the socket itself, to shut it down while a round holds `io`
    raw: TcpStream,
}

/// This process's rank of a TCP group.
pub struct TcpComm {
    rank: usize,
    world: usize,
    timeout: Duration,
    /// rank 0: one link per other rank, in rank order; other ranks: the link to rank 0
    links: Vec<Link>,
    failed: Mutex<Option<(usize, String)>>,
    _store: TcpStore,
    _server: Option<StoreServer>,
}

enum Frame {
    Contribution(Contribution),
    Abort(String),
}

enum Reply {
    Round(Vec<Arc<Contribution>>),
    Failed(usize, String),
}

impl TcpComm {
    /// Meets the other ranks of `env`'s group; `timeout` bounds the rendezvous and how long
    /// a rank waits for the others at one collective.
    pub fn connect(env: &RankEnv, timeout: Duration) -> std::result::Result<TcpComm, String> {
        let (store, server) = TcpStore::for_rank(env, timeout).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        let io = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| format!("rank {}: {what}: {e}", env.rank)
        };
        let link = |peer: usize, s: TcpStream| -> std::result::Result<Link, String> {
            s.set_nodelay(true).map_err(io("set_nodelay"))?;
            s.set_read_timeout(Some(timeout))
                .map_err(io("read timeout"))?;
            Ok(Link {
                peer,
                io: Mutex::new((
                    BufReader::new(s.try_clone().map_err(io("clone"))?),
                    BufWriter::new(s.try_clone().map_err(io("clone"))?),
                )),
                raw: s,
            })
        };
        let links = if env.rank == 0 {
            let l = TcpListener::bind("0.0.0.0:0").map_err(io("binding the collectives' port"))?;
            let port = l.local_addr().map_err(io("local address"))?.port();
            store
                .set(HUB_KEY, &port.to_le_bytes())
                .map_err(|e| e.to_string())?;
            l.set_nonblocking(true).map_err(io("nonblocking"))?;
            let mut got: Vec<Option<Link>> = (1..env.world).map(|_| None).collect();
            while got.iter().any(Option::is_none) {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).map_err(io("blocking"))?;
                        s.set_read_timeout(Some(timeout))
                            .map_err(io("read timeout"))?;
                        let (mut r, mut w) = ([0u8; 8], [0u8; 8]);
                        (&s).read_exact(&mut r).map_err(io("reading a hello"))?;
                        (&s).read_exact(&mut w).map_err(io("reading a hello"))?;
                        let (r, w) = (
                            u64::from_le_bytes(r) as usize,
                            u64::from_le_bytes(w) as usize,
                        );
                        if w != env.world || r == 0 || r >= env.world || got[r - 1].is_some() {
                            return Err(format!(
                                "rank 0: a process says it is rank {r} of {w}, in a group of {} (RANK and WORLD_SIZE must be 0..N-1 and N on every rank)",
                                env.world
                            ));
                        }
                        got[r - 1] = Some(link(r, s)?);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() >= deadline {
                            let missing: Vec<usize> =
                                (1..env.world).filter(|&r| got[r - 1].is_none()).collect();
                            return Err(format!(
                                "rank 0: ranks {missing:?} did not connect within {:.0}s",
                                timeout.as_secs_f64()
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(io("accepting a rank")(e)),
                }
            }
            got.into_iter().flatten().collect()
        } else {
            let v = store.get(HUB_KEY).map_err(|e| e.to_string())?;
            let port = u16::from_le_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| "the store's collective port is not 2 bytes".to_string())?,
            );
            let addr = format!("{}:{port}", env.master_addr);
            let s = TcpStream::connect(&addr)
                .map_err(io(&format!("connecting to rank 0 at {addr}")))?;
            let mut hello = (env.rank as u64).to_le_bytes().to_vec();
            hello.extend((env.world as u64).to_le_bytes());
            (&s).write_all(&hello).map_err(io("saying hello"))?;
            vec![link(0, s)?]
        };
        Ok(TcpComm {
            rank: env.rank,
            world: env.world,
            timeout,
            links,
            failed: Mutex::new(None),
            _store: store,
            _server: server,
        })
    }

    fn failure(&self) -> Option<(usize, String)> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the group's first failure and returns it as the error every rank reports.
    fn record(&self, rank: usize, reason: String) -> CollectiveError {
        let mut f = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        let (rank, reason) = f.get_or_insert((rank, reason)).clone();
        CollectiveError::PeerFailed { rank, reason }
    }

    /// Why reading from `peer` failed, as that rank's failure.
    fn lost(&self, peer: usize, op: &str, e: std::io::Error) -> (usize, String) {
        let why = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "did not reach {op} within {:.0}s",
                self.timeout.as_secs_f64()
            ),
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                format!("its connection closed during {op} (the process exited or was killed)")
            }
            _ => format!("its connection failed during {op}: {e}"),
        };
        (peer, why)
    }

    /// Rank 0: tells every rank still connected that `rank` failed.
    fn tell_all(&self, rank: usize, reason: &str) {
        for l in &self.links {
            if l.peer != rank {
                if let Ok(mut io) = l.io.try_lock() {
                    let w = &mut io.1;
                    let mut b = vec![1u8];
                    b.extend((rank as u64).to_le_bytes());
                    put_str(&mut b, reason);
                    let _ = w.write_all(&b).and_then(|_| w.flush());
                }
            }
        }
    }
}

impl Round for TcpComm {
    fn me(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.world
    }
    fn fail(&self, reason: &str) {
        if self.failure().is_some() {
            return;
        }
        self.record(self.rank, reason.to_string());
        if self.rank == 0 {
            self.tell_all(0, reason);
        } else if let Some(l) = self.links.first() {
            // a round may hold the link (the communication thread waiting for rank 0):
            // then closing the socket is the message, and rank 0 names this rank
            if let Ok(mut io) = l.io.try_lock() {
                let mut b = vec![1u8];
                put_str(&mut b, reason);
                let _ = io.1.write_all(&b).and_then(|_| io.1.flush());
            }
        }
        for l in &self.links {
            let _ = l.raw.shutdown(Shutdown::Both);
        }
    }
    fn exchange(&self, c: Contribution) -> Result<Vec<Arc<Contribution>>> {
        if let Some((rank, reason)) = self.failure() {
            return Err(CollectiveError::PeerFailed { rank, reason });
        }
        let op = c.op;
        if self.rank != 0 {
            let l = &self.links[0];
            let mut io = l.io.lock().unwrap_or_else(|e| e.into_inner());
            let (r, w) = &mut *io;
            let mut b = vec![0u8];
            put_contribution(&mut b, &c);
            if let Err(e) = w.write_all(&b).and_then(|_| w.flush()) {
                let (p, why) = self.lost(0, op, e);
                return Err(self.record(p, why));
            }
            return match read_reply(r, self.world) {
                Ok(Reply::Round(all)) => Ok(all),
                Ok(Reply::Failed(p, why)) => Err(self.record(p, why)),
                Err(e) => {
                    let (p, why) = self.lost(0, op, e);
                    Err(self.record(p, why))
                }
            };
        }
        let mut all = vec![Arc::new(c)];
        for l in &self.links {
            let mut io = l.io.lock().unwrap_or_else(|e| e.into_inner());
            let got = match read_frame(&mut io.0) {
                Ok(Frame::Contribution(c)) => Ok(c),
                Ok(Frame::Abort(why)) => Err((l.peer, why)),
                Err(e) => Err(self.lost(l.peer, op, e)),
            };
            drop(io);
            match got {
                Ok(c) => all.push(Arc::new(c)),
                Err((p, why)) => {
                    let e = self.record(p, why.clone());
                    self.tell_all(p, &why);
                    return Err(e);
                }
            }
        }
        let mut b = vec![0u8];
        for c in &all {
            put_contribution(&mut b, c);
        }
        for l in &self.links {
            let mut io = l.io.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = io.1.write_all(&b).and_then(|_| io.1.flush()) {
                drop(io);
                let (p, why) = self.lost(l.peer, op, e);
                let err = self.record(p, why.clone());
                self.tell_all(p, &why);
                return Err(err);
            }
        }
        Ok(all)
    }
}

impl Collective for TcpComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.world
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

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u32).to_le_bytes());
    b.extend(s.as_bytes());
}

fn put_contribution(b: &mut Vec<u8>, c: &Contribution) {
    b.push(OPS.iter().position(|&o| o == c.op).unwrap_or(OPS.len()) as u8);
    b.extend((c.meta.len() as u32).to_le_bytes());
    for &m in &c.meta {
        b.extend((m as u64).to_le_bytes());
    }
    let d = c.data.dtype();
    b.push(DTYPES.iter().position(|&x| x == d).unwrap_or(DTYPES.len()) as u8);
    let bytes = c.data.as_bytes();
    b.extend((bytes.len() as u64).to_le_bytes());
    b.extend(bytes);
}

fn bad(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

fn read_u8(r: &mut impl Read) -> std::io::Result<u8> {
    let mut b = [0u8];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_str(r: &mut impl Read) -> std::io::Result<String> {
    let n = read_u32(r)? as usize;
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

fn read_contribution(r: &mut impl Read) -> std::io::Result<Contribution> {
    let code = read_u8(r)? as usize;
    let op = *OPS
        .get(code)
        .ok_or_else(|| bad(format!("op code {code}")))?;
    let nm = read_u32(r)? as usize;
    let meta = (0..nm)
        .map(|_| read_u64(r).map(|m| m as usize))
        .collect::<std::io::Result<_>>()?;
    let dc = read_u8(r)? as usize;
    let dtype = *DTYPES
        .get(dc)
        .ok_or_else(|| bad(format!("dtype code {dc}")))?;
    let n = read_u64(r)? as usize;
    if n % dtype.size() != 0 {
        return Err(bad(format!("{n} bytes of {dtype:?}")));
    }
    let mut bytes = vec![0u8; n];
    r.read_exact(&mut bytes)?;
    Ok(Contribution {
        op,
        data: data_from_bytes(dtype, &bytes),
        meta,
    })
}

/// `b` as elements of `T` (copied: the bytes need not be aligned).
fn pods<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
    let mut v = vec![T::zeroed(); b.len() / std::mem::size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(b);
    v
}

fn data_from_bytes(dtype: DType, b: &[u8]) -> Data {
    match dtype {
        DType::F32 => Data::F32(pods(b)),
        DType::F64 => Data::F64(pods(b)),
        DType::BF16 => Data::BF16(pods(b)),
        DType::F16 => Data::F16(pods(b)),
        DType::I32 => Data::I32(pods(b)),
        DType::U32 => Data::U32(pods(b)),
        DType::I64 => Data::I64(pods(b)),
        DType::Bool => Data::Bool(b.to_vec()),
    }
}

fn read_frame(r: &mut impl Read) -> std::io::Result<Frame> {
    match read_u8(r)? {
        0 => Ok(Frame::Contribution(read_contribution(r)?)),
        1 => Ok(Frame::Abort(read_str(r)?)),
        k => Err(bad(format!("frame kind {k}"))),
    }
}

fn read_reply(r: &mut impl Read, world: usize) -> std::io::Result<Reply> {
    match read_u8(r)? {
        0 => Ok(Reply::Round(
            (0..world)
                .map(|_| read_contribution(r).map(Arc::new))
                .collect::<std::io::Result<_>>()?,
        )),
        1 => {
            let rank = read_u64(r)? as usize;
            Ok(Reply::Failed(rank, read_str(r)?))
        }
        k => Err(bad(format!("reply kind {k}"))),
    }
}
