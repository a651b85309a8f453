//! A small key-value store over TCP where the ranks of a multi-process group meet (to pass
//! the NCCL unique id, and for barriers before a communicator exists), with torchrun's
//! conventions: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Rank 0 serves it
//! at MASTER_ADDR:MASTER_PORT and is a client of it like every other rank.
//!
//! Wire format, one request then one reply per round trip, integers little-endian:
//! request = op u8 (1 set, 2 get, 3 add), key (u32 length + bytes), value (u32 length +
//! bytes; add: an i64); reply = status u8 (0 ok, 1 not found yet) + value (u32 length +
//! bytes). `get` of a missing key replies "not found yet" and the client asks again until
//! its timeout, so the server never blocks on a key.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("environment: {0}")]
    Env(String),
    #[error("store at {addr}: {what}: {source}")]
    Io {
        addr: String,
        what: String,
        source: std::io::Error,
    },
    #[error("store at {addr}: {what} not done within {secs:.0}s")]
    Timeout {
        addr: String,
        what: String,
        secs: f64,
    },
    #[error("store at {addr}: bad reply: {0}", addr = .1)]
    Protocol(String, String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A process's place in a group, as torchrun (and srun/mpirun wrappers) export it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankEnv {
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// Under torchrun (TORCHELASTIC_USE_AGENT_STORE=True) its agent serves a c10d TCPStore at
    /// MASTER_ADDR:MASTER_PORT: the ranks meet there, under this key prefix (the run id and
    /// restart count, so a restarted group never reads the keys of the attempt before it).
    pub torch_agent_store: Option<String>,
}

impl RankEnv {
    /// Reads RANK, WORLD_SIZE, LOCAL_RANK (default: RANK), MASTER_ADDR, MASTER_PORT and
    /// torchrun's TORCHELASTIC_USE_AGENT_STORE, _RUN_ID, _RESTART_COUNT through
    /// `var` (`std::env::var` in a launched process; a table in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<RankEnv> {
        let num = |k: &str| -> Result<Option<usize>> {
            match var(k) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    StoreError::Env(format!("{k}={v:?} is not a non-negative integer"))
                }),
            }
        };
        let need = |k: &str, v: Option<usize>| {
            v.ok_or_else(|| StoreError::Env(format!("{k} is not set (launch with torchrun, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)")))
        };
        let rank = need("RANK", num("RANK")?)?;
        let world = need("WORLD_SIZE", num("WORLD_SIZE")?)?;
        if world == 0 || rank >= world {
            return Err(StoreError::Env(format!(
                "RANK={rank} is not a rank of WORLD_SIZE={world}"
            )));
        }
        let local_rank = num("LOCAL_RANK")?.unwrap_or(rank);
        let master_addr =
            var("MASTER_ADDR").ok_or_else(|| StoreError::Env("MASTER_ADDR is not set".into()))?;
        let port = need("MASTER_PORT", num("MASTER_PORT")?)?;
        let master_port = u16::try_from(port)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| StoreError::Env(format!("MASTER_PORT={port} is not a TCP port")))?;
        let agent = var("TORCHELASTIC_USE_AGENT_STORE")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let torch_agent_store = agent.then(|| {
            let run = var("TORCHELASTIC_RUN_ID").unwrap_or_else(|| "none".into());
            let restart = var("TORCHELASTIC_RESTART_COUNT").unwrap_or_else(|| "0".into());
            format!("/gidd/{run}/{restart}/")
        });
        Ok(RankEnv {
            rank,
            world,
            local_rank,
            master_addr,
            master_port,
            torch_agent_store,
        })
    }
}

const SET: u8 = 1;
const GET: u8 = 2;
const ADD: u8 = 3;

/// The server: a table and one thread per connection. It lives as long as the process.
pub struct StoreServer {
    pub addr: SocketAddr,
}

impl StoreServer {
    /// Binds `addr` (port 0 picks a free one: see `self.addr`) and serves in the background.
    pub fn start(addr: &str) -> Result<StoreServer> {
        let io = |what: &str| {
            let (addr, what) = (addr.to_string(), what.to_string());
            move |source| StoreError::Io { addr, what, source }
        };
        let listener = TcpListener::bind(addr).map_err(io("bind"))?;
        let local = listener.local_addr().map_err(io("local address"))?;
        let table: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = Arc::default();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let table = table.clone();
                // a client that misbehaves or goes away ends its own connection only
                std::thread::spawn(move || serve(conn, &table));
            }
        });
        Ok(StoreServer { addr: local })
    }
}

fn serve(conn: TcpStream, table: &Mutex<HashMap<Vec<u8>, Vec<u8>>>) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = BufWriter::new(conn);
    loop {
        let mut op = [0u8];
        if r.read(&mut op)? == 0 {
            return Ok(()); // the client closed the connection
        }
        let key = read_blob(&mut r)?;
        let val = read_blob(&mut r)?;
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        let (status, reply) = match op[0] {
            SET => {
                t.insert(key, val);
                (0u8, vec![])
            }
            GET => match t.get(&key) {
                Some(v) => (0, v.clone()),
                None => (1, vec![]),
            },
            ADD => {
                let by = i64::from_le_bytes(val.as_slice().try_into().unwrap_or([0; 8]));
                let cur = t
                    .get(&key)
                    .and_then(|v| v.as_slice().try_into().ok())
                    .map(i64::from_le_bytes)
                    .unwrap_or(0);
                let now = (cur + by).to_le_bytes().to_vec();
                t.insert(key, now.clone());
                (0, now)
            }
            _ => (2, b"unknown op".to_vec()),
        };
        drop(t);
        w.write_all(&[status])?;
        write_blob(&mut w, &reply)?;
        w.flush()?;
    }
}

fn read_blob(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    let mut v = vec![0u8; u32::from_le_bytes(n) as usize];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn write_blob(w: &mut impl Write, v: &[u8]) -> std::io::Result<()> {
    let n = u32::try_from(v.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "value over 4 GiB"))?;
    w.write_all(&n.to_le_bytes())?;
    w.write_all(v)
}

/// A client of the store: every rank, rank 0 included.
pub struct TcpStore {
    addr: String,
    timeout: Duration,
    conn: Mutex<(BufReader<TcpStream>, BufWriter<TcpStream>)>,
    /// `Some(key prefix)`: the peer is PyTorch's c10d TCPStore (torchrun's agent store).
    torch: Option<String>,
}

impl TcpStore {
    /// Connects to `addr`, retrying until `timeout` (rank 0's server may not be up yet).
    pub fn connect(addr: &str, timeout: Duration) -> Result<TcpStore> {
        let deadline = Instant::now() + timeout;
        let io = |what: &str, source| StoreError::Io {
            addr: addr.to_string(),
            what: what.to_string(),
            source,
        };
        let target: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| io("resolving the address", e))?
            .collect();
        loop {
            match target
                .iter()
                .find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).ok())
            {
                Some(s) => {
                    s.set_nodelay(true).map_err(|e| io("set_nodelay", e))?;
                    let r = s.try_clone().map_err(|e| io("clone", e))?;
                    return Ok(TcpStore {
                        addr: addr.to_string(),
                        timeout,
                        conn: Mutex::new((BufReader::new(r), BufWriter::new(s))),
                        torch: None,
                    });
                }
                None if Instant::now() >= deadline => {
                    return Err(StoreError::Timeout {
                        addr: addr.to_string(),
                        what: "connecting (is rank 0 up, and MASTER_ADDR/MASTER_PORT right?)"
                            .into(),
                        secs: timeout.as_secs_f64(),
                    })
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The store of a launched rank: rank 0 serves at MASTER_ADDR:MASTER_PORT (binding every
    /// interface on that port), every rank connects.
    /// Under torchrun every rank is a client of its agent's store instead.
    pub fn for_rank(env: &RankEnv, timeout: Duration) -> Result<(TcpStore, Option<StoreServer>)> {
        let addr = format!("{}:{}", env.master_addr, env.master_port);
        if let Some(prefix) = &env.torch_agent_store {
            return Ok((TcpStore::connect_torch(&addr, prefix, timeout)?, None));
        }
        let server = match env.rank {
            0 => Some(StoreServer::start(&format!("0.0.0.0:{}", env.master_port))?),
            _ => None,
        };
        Ok((TcpStore::connect(&addr, timeout)?, server))
    }

    /// Connects to a PyTorch c10d TCPStore at `addr` (keys under `prefix`).
    pub fn connect_torch(addr: &str, prefix: &str, timeout: Duration) -> Result<TcpStore> {
        let mut store = TcpStore::connect(addr, timeout)?;
        store.torch = Some(prefix.to_string());
        let nonce = std::process::id() ^ 0x6769_6464;
        let c = store.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        super::torch_store::handshake(&mut c.0, &mut c.1, nonce).map_err(|source| {
            StoreError::Io {
                addr: addr.to_string(),
                what: "greeting torchrun's store (TORCHELASTIC_USE_AGENT_STORE=True)".into(),
                source,
            }
        })?;
        Ok(store)
    }

    /// One request to a torch store: `f` on the connection, with the key prefixed.
    fn torch_call<T>(
        &self,
        prefix: &str,
        key: &str,
        f: impl FnOnce(&mut BufReader<TcpStream>, &mut BufWriter<TcpStream>, &str) -> std::io::Result<T>,
    ) -> Result<T> {
        let mut c = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let (r, w) = &mut *c;
        f(r, w, &format!("{prefix}{key}")).map_err(|source| StoreError::Io {
            addr: self.addr.clone(),
            what: format!("request for {key:?}"),
            source,
        })
    }

    fn call(&self, op: u8, key: &str, val: &[u8]) -> Result<(u8, Vec<u8>)> {
        let mut c = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let (r, w) = &mut *c;
        let io = |source| StoreError::Io {
            addr: self.addr.clone(),
            what: format!("request for {key:?}"),
            source,
        };
        w.write_all(&[op]).map_err(io)?;
        write_blob(w, key.as_bytes()).map_err(io)?;
        write_blob(w, val).map_err(io)?;
        w.flush().map_err(io)?;
        let mut st = [0u8];
        r.read_exact(&mut st).map_err(io)?;
        let v = read_blob(r).map_err(io)?;
        if st[0] > 1 {
            return Err(StoreError::Protocol(
                String::from_utf8_lossy(&v).into(),
                self.addr.clone(),
            ));
        }
        Ok((st[0], v))
    }

    /// The address this process reaches the store from: the interface the other ranks,
    /// which reach the same host, can reach this one on.
    pub fn local_ip(&self) -> Option<std::net::IpAddr> {
        let c = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        c.1.get_ref().local_addr().ok().map(|a| a.ip())
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        if let Some(p) = &self.torch {
            return self.torch_call(p, key, |_, w, k| super::torch_store::set(w, k, value));
        }
        self.call(SET, key, value).map(|_| ())
    }

    /// The value of `key` if some rank has set it, without waiting.
    pub fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        if let Some(p) = &self.torch {
            use super::torch_store::{check, get};
            return self.torch_call(p, key, |r, w, k| {
                if check(r, w, k)? {
                    get(r, w, k).map(Some)
                } else {
                    Ok(None)
                }
            });
        }
        let (st, v) = self.call(GET, key, &[])?;
        Ok((st == 0).then_some(v))
    }

    /// The value of `key`, waiting (up to the timeout) for some rank to set it.
    pub fn get(&self, key: &str) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(v) = self.try_get(key)? {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Timeout {
                    addr: self.addr.clone(),
                    what: format!("waiting for key {key:?}"),
                    secs: self.timeout.as_secs_f64(),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Adds `by` to the integer at `key` (0 when unset) and returns the new value.
    pub fn add(&self, key: &str, by: i64) -> Result<i64> {
        if let Some(p) = &self.torch {
            return self.torch_call(p, key, |r, w, k| super::torch_store::add(r, w, k, by));
        }
        let (_, v) = self.call(ADD, key, &by.to_le_bytes())?;
        let b: [u8; 8] = v.as_slice().try_into().map_err(|_| {
            StoreError::Protocol(format!("add returned {} bytes", v.len()), self.addr.clone())
        })?;
        Ok(i64::from_le_bytes(b))
    }

    /// Returns once `world` ranks have called it with the same `name` (names are single-use).
    pub fn barrier(&self, name: &str, world: usize) -> Result<()> {
        if self.add(&format!("{name}/arrived"), 1)? == world as i64 {
            self.set(&format!("{name}/done"), b"1")?;
        }
        self.get(&format!("{name}/done")).map(|_| ())
    }
}
