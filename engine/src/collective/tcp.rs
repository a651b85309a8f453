//! Process ranks: the collectives of a group of processes (torchrun's RANK, WORLD_SIZE,
//! MASTER_ADDR, MASTER_PORT) over TCP, on host buffers.
//!
//! Rendezvous: rank 0 serves the store ([`super::tcp_store`]) at MASTER_ADDR:MASTER_PORT;
//! every rank listens on a free port and publishes its address there (the interface it
//! reaches the store from), connects to every lower rank and accepts every higher one: a
//! full mesh, one connection per pair of ranks.
//!
//! A round ([`super::round`]): each rank sends every other rank the piece addressed to it
//! (one sending thread per peer, so no two ranks wait on each other's full socket buffers)
//! and reads every other rank's piece for it in rank order. all_gather and reduce_scatter
//! send (world - 1) / world of the tensor per rank, as a ring does ([`TcpComm::traffic`]
//! counts it); every rank computes its result with the thread ranks' code, so process
//! ranks give bitwise the thread ranks' numbers.
//!
//! Failure: a rank whose connection closes (its process exited or was killed), that sends
//! a failure frame, or that does not arrive within the timeout is named: every rank reads
//! from every other rank each round, so each sees a vanished rank itself, and a rank that
//! sees a failure tells every other rank it is still connected to (a rank that arrives late
//! then learns that it was declared failed). The group is unusable after a failure.
//! Frames: [`super::tcp_wire`].

use super::round::{Contribution, Part, Round};
use super::tcp_store::{RankEnv, StoreServer, TcpStore};
use super::tcp_wire::{hello, put_failed, put_piece, read_frame, read_hello, Frame};
use super::{Collective, CollectiveError, Result, Traffic};
use crate::host::Data;
use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The store key under which rank r publishes the address of its collectives: `{KEY}/{r}`.
const PEER_KEY: &str = "gidd/collective-peer";

/// The connection to one other rank.
struct Link {
    peer: usize,
    r: Mutex<BufReader<TcpStream>>,
    w: Mutex<BufWriter<TcpStream>>,
    /// the socket itself, to shut it down while a round holds the reader or writer
    raw: TcpStream,
}

/// This process's rank of a TCP group.
pub struct TcpComm {
    rank: usize,
    world: usize,
    timeout: Duration,
    /// one link per other rank, in rank order
    links: Vec<Link>,
    failed: Mutex<Option<(usize, String)>>,
    /// payload bytes, bytes on the wire, rounds
    sent: [AtomicU64; 3],
    _store: TcpStore,
    _server: Option<StoreServer>,
}

impl TcpComm {
    /// Meets the other ranks of `env`'s group; `timeout` bounds the rendezvous and how long
    /// a rank waits for the others at one collective.
    pub fn connect(env: &RankEnv, timeout: Duration) -> std::result::Result<TcpComm, String> {
        let (store, server) = TcpStore::for_rank(env, timeout).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        let (me, world) = (env.rank, env.world);
        let io = |what: &str| {
            let what = what.to_string();
            move |e: std::io::Error| format!("rank {me}: {what}: {e}")
        };
        let link = |peer: usize, s: TcpStream| -> std::result::Result<Link, String> {
            s.set_nonblocking(false).map_err(io("blocking"))?;
            s.set_nodelay(true).map_err(io("set_nodelay"))?;
            s.set_read_timeout(Some(timeout))
                .map_err(io("read timeout"))?;
            s.set_write_timeout(Some(timeout))
                .map_err(io("write timeout"))?;
            Ok(Link {
                peer,
                r: Mutex::new(BufReader::new(s.try_clone().map_err(io("clone"))?)),
                w: Mutex::new(BufWriter::new(s.try_clone().map_err(io("clone"))?)),
                raw: s,
            })
        };
        let l = TcpListener::bind("0.0.0.0:0").map_err(io("binding the collectives' port"))?;
        let port = l.local_addr().map_err(io("local address"))?.port();
        let ip = store
            .local_ip()
            .ok_or_else(|| format!("rank {me}: no local address toward the store"))?;
        store
            .set(
                &format!("{PEER_KEY}/{me}"),
                std::net::SocketAddr::new(ip, port).to_string().as_bytes(),
            )
            .map_err(|e| e.to_string())?;
        let mut got: Vec<Option<Link>> = (0..world).map(|_| None).collect();
        for (j, slot) in got.iter_mut().enumerate().take(me) {
            let v = store
                .get(&format!("{PEER_KEY}/{j}"))
                .map_err(|e| e.to_string())?;
            let addr = String::from_utf8_lossy(&v).into_owned();
            let target = addr
                .to_socket_addrs()
                .map_err(io(&format!("resolving rank {j}'s address {addr}")))?
                .next()
                .ok_or_else(|| {
                    format!("rank {me}: rank {j}'s address {addr} resolves to nothing")
                })?;
            let s = loop {
                match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(io(&format!("connecting to rank {j} at {addr}"))(e))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            };
            (&s).write_all(&hello(me, world))
                .map_err(io("saying hello"))?;
            *slot = Some(link(j, s)?);
        }
        l.set_nonblocking(true).map_err(io("nonblocking"))?;
        while got.iter().skip(me + 1).any(Option::is_none) {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).map_err(io("blocking"))?;
                    s.set_read_timeout(Some(timeout))
                        .map_err(io("read timeout"))?;
                    let (r, w) = read_hello(&mut &s).map_err(io("reading a hello"))?;
                    if w != world || r <= me || r >= world || got[r].is_some() {
                        return Err(format!(
                            "rank {me}: a process says it is rank {r} of {w}, in a group of {world} (RANK and WORLD_SIZE must be 0..N-1 and N on every rank)"
                        ));
                    }
                    got[r] = Some(link(r, s)?);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing: Vec<usize> =
                            (me + 1..world).filter(|&r| got[r].is_none()).collect();
                        return Err(format!(
                            "rank {me}: ranks {missing:?} did not connect within {:.0}s",
                            timeout.as_secs_f64()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(io("accepting a rank")(e)),
            }
        }
        Ok(TcpComm {
            rank: me,
            world,
            timeout,
            links: got.into_iter().flatten().collect(),
            failed: Mutex::new(None),
            sent: Default::default(),
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

    /// Why talking to `peer` failed, as that rank's failure.
    fn lost(&self, peer: usize, op: &str, e: std::io::Error) -> (usize, String) {
        use std::io::ErrorKind as K;
        let why = match e.kind() {
            K::WouldBlock | K::TimedOut => format!(
                "did not reach {op} within {:.0}s",
                self.timeout.as_secs_f64()
            ),
            K::UnexpectedEof | K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted => {
                format!("its connection closed during {op} (the process exited or was killed)")
            }
            _ => format!("its connection failed during {op}: {e}"),
        };
        (peer, why)
    }

    /// Tells every other rank still connected (but `rank`) that `rank` failed.
    fn tell_all(&self, rank: usize, reason: &str) {
        for l in self.links.iter().filter(|l| l.peer != rank) {
            if let Ok(mut w) = l.w.try_lock() {
                let _ = put_failed(&mut *w, rank, reason);
            }
        }
    }

    /// What this rank has sent since it connected.
    pub fn traffic(&self) -> Traffic {
        let [payload, wire, rounds] = [0, 1, 2].map(|i| self.sent[i].load(Ordering::Relaxed));
        Traffic {
            payload,
            wire,
            rounds,
        }
    }

    /// Sends `c`'s piece to `l`'s rank.
    fn send(&self, l: &Link, c: &Contribution) -> std::result::Result<(), (usize, String)> {
        let mut w = l.w.lock().unwrap_or_else(|e| e.into_inner());
        match put_piece(&mut *w, c.op, &c.meta, &c.pieces[l.peer]) {
            Ok((payload, wire)) => {
                self.sent[0].fetch_add(payload, Ordering::Relaxed);
                self.sent[1].fetch_add(wire, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(self.lost(l.peer, c.op, e)),
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
        // a round may hold a writer (a sending thread waiting on a peer): then closing
        // the socket is the message, and that peer names this rank
        self.tell_all(self.rank, reason);
        for l in &self.links {
            let _ = l.raw.shutdown(Shutdown::Both);
        }
    }
    fn exchange(&self, c: Contribution) -> Result<Vec<Part>> {
        if let Some((rank, reason)) = self.failure() {
            return Err(CollectiveError::PeerFailed { rank, reason });
        }
        let (op, me) = (c.op, self.rank);
        self.sent[2].fetch_add(1, Ordering::Relaxed);
        let mut parts: Vec<Option<Part>> = vec![None; self.world];
        parts[me] = Some(Part {
            op,
            meta: c.meta.clone(),
            data: c.pieces[me].clone(),
        });
        let (read_err, send_err) = std::thread::scope(|s| {
            let senders: Vec<_> = self
                .links
                .iter()
                .map(|l| {
                    let c = &c;
                    s.spawn(move || self.send(l, c))
                })
                .collect();
            let mut read_err = None;
            for l in &self.links {
                let mut r = l.r.lock().unwrap_or_else(|e| e.into_inner());
                match read_frame(&mut *r) {
                    Ok(Frame::Piece(p)) => parts[l.peer] = Some(p),
                    Ok(Frame::Failed(rank, why)) => read_err = Some((rank, why)),
                    Err(e) => read_err = Some(self.lost(l.peer, op, e)),
                }
                if read_err.is_some() {
                    break;
                }
            }
            let send_err = senders
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err((me, "a sending thread panicked".into())))
                })
                .find_map(|r| r.err());
            (read_err, send_err)
        });
        // what a peer said or how its stream ended names the failure best; a failed send
        // (a peer that stopped reading) only where every read went through
        if let Some((p, why)) = read_err.or(send_err) {
            let e = self.record(p, why);
            if let CollectiveError::PeerFailed { rank, reason } = &e {
                self.tell_all(*rank, reason);
            }
            return Err(e);
        }
        Ok(parts.into_iter().flatten().collect())
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
    fn traffic(&self) -> Option<Traffic> {
        Some(TcpComm::traffic(self))
    }
}
