//! The TCP collectives (process ranks) on their own, with ranks as threads of this test
//! meeting over loopback exactly as processes do: every collective gives bitwise what the
//! in-process ranks give (uneven and empty chunks, counts not divisible by the world,
//! f32/f64/bf16), and a rank that fails or goes away is named to the others.

use gidd_engine::collective::tcp_store::RankEnv;
use gidd_engine::collective::{run_ranks, Collective, CollectiveError, TcpComm};
use gidd_engine::Data;
use half::bf16;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `f` on `world` TCP ranks (threads here, each with its own connections), in rank order.
fn tcp_ranks<T: Send>(
    world: usize,
    timeout: Duration,
    f: impl Fn(&TcpComm) -> Result<T, CollectiveError> + Sync,
) -> Vec<Result<T, CollectiveError>> {
    tcp_ranks_at(world, free_port(), None, timeout, f)
}

/// [`tcp_ranks`] meeting at `port`: rank 0 serves the store there, or, with a key prefix, the
/// ranks are clients of a PyTorch TCPStore already serving there (as under torchrun).
fn tcp_ranks_at<T: Send>(
    world: usize,
    port: u16,
    torch_agent_store: Option<String>,
    timeout: Duration,
    f: impl Fn(&TcpComm) -> Result<T, CollectiveError> + Sync,
) -> Vec<Result<T, CollectiveError>> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..world)
            .map(|rank| {
                let f = &f;
                let torch_agent_store = torch_agent_store.clone();
                s.spawn(move || {
                    let env = RankEnv {
                        rank,
                        world,
                        local_rank: rank,
                        master_addr: "127.0.0.1".into(),
                        master_port: port,
                        torch_agent_store,
                    };
                    let c = TcpComm::connect(&env, timeout).expect("rendezvous");
                    let r = f(&c);
                    if let Err(e) = &r {
                        c.abort(&e.to_string());
                    }
                    r
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("rank thread"))
            .collect()
    })
}

fn vals(r: usize, n: usize, dtype: &str) -> Data {
    let v = (0..n).map(|i| (r * 1000 + i) as f64 * 0.37 - 3.0);
    match dtype {
        "f32" => Data::F32(v.map(|x| x as f32).collect()),
        "f64" => Data::F64(v.collect()),
        _ => Data::BF16(v.map(bf16::from_f64).collect()),
    }
}

/// Every collective, as one rank calls them: the results in order.
fn script(c: &dyn Collective, dtype: &str) -> Result<Vec<Data>, CollectiveError> {
    let (r, w) = (c.rank(), c.world());
    // 10 elements over `w` ranks, uneven, the last segment empty at 4 ranks
    let counts: Vec<usize> = match w {
        4 => vec![4, 3, 3, 0],
        w => (0..w).map(|q| 10 / w + usize::from(q < 10 % w)).collect(),
    };
    let mut out = vec![c.all_gather(&vals(r, r, dtype))?];
    out.push(c.reduce_scatter(&vals(r, 10, dtype), &counts)?);
    out.push(c.all_reduce(&vals(r, 5, dtype))?);
    out.push(c.broadcast(&vals(r, 3, dtype), w - 1)?);
    c.barrier()?;
    Ok(out)
}

#[test]
fn tcp_ranks_give_the_in_process_ranks_results_bitwise() {
    for world in [1, 2, 3, 4] {
        for dtype in ["f32", "f64", "bf16"] {
            let want = run_ranks(world, T, |c| script(c, dtype)).expect("thread ranks");
            let got: Vec<Vec<Data>> = tcp_ranks(world, T, |c| script(c, dtype))
                .into_iter()
                .map(|r| r.expect("tcp rank"))
                .collect();
            assert_eq!(got, want, "world {world} {dtype}");
        }
    }
}

/// Under torchrun the ranks meet in its agent's store (PyTorch's c10d TCPStore): served here
/// by PyTorch itself (`$GIDD_TORCH_PYTHON`, default python3, with torch importable; without
/// it the test is skipped and says so), the collectives still give the in-process results.
#[test]
fn tcp_ranks_meet_in_a_pytorch_tcpstore() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let py = std::env::var("GIDD_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let port = free_port();
    // serves until its stdin closes; prints "ready" once listening
    let code = format!(
        "import sys, torch.distributed as d\n\
         s = d.TCPStore('127.0.0.1', {port}, is_master=True, wait_for_workers=False)\n\
         print('ready', flush=True)\nsys.stdin.read()\n"
    );
    let child = Command::new(&py)
        .args(["-c", &code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return gidd_tests::note_skip(
                "collective_tcp::tcp_ranks_meet_in_a_pytorch_tcpstore",
                &format!("{py} did not start ({e}); set GIDD_TORCH_PYTHON to a python with torch"),
            )
        }
    };
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    if line.trim() != "ready" {
        let _ = child.kill();
        return gidd_tests::note_skip(
            "collective_tcp::tcp_ranks_meet_in_a_pytorch_tcpstore",
            &format!("{py} cannot serve a torch TCPStore (no torch?); set GIDD_TORCH_PYTHON to a python with torch"),
        );
    }
    for world in [1, 3] {
        let want = run_ranks(world, T, |c| script(c, "f32")).expect("thread ranks");
        let prefix = Some(format!("/gidd/test/{world}/"));
        let got: Vec<Vec<Data>> = tcp_ranks_at(world, port, prefix, T, |c| script(c, "f32"))
            .into_iter()
            .map(|r| r.expect("tcp rank"))
            .collect();
        assert_eq!(got, want, "world {world} through the torch store");
    }
    drop(child.stdin.take());
    let _ = child.wait();
}

#[test]
fn a_tcp_rank_that_fails_or_leaves_is_named_to_the_others() {
    // rank 2 fails after one collective: the others' next collective names it
    let out = tcp_ranks(3, T, |c| {
        c.barrier()?;
        if c.rank() == 2 {
            c.abort("rank 2 ran out of data");
            return Err(CollectiveError::Invalid {
                op: "test",
                msg: "failed".into(),
            });
        }
        c.all_reduce(&Data::F64(vec![1.0]))
    });
    for (r, o) in out.iter().enumerate().filter(|(r, _)| *r != 2) {
        match o {
            Err(CollectiveError::PeerFailed { rank: 2, reason }) => {
                assert!(reason.contains("ran out of data"), "rank {r}: {reason}")
            }
            other => panic!("rank {r}: {other:?}"),
        }
    }
    // rank 1 drops its connection (as a killed process does) without a word
    let out = tcp_ranks(2, T, |c| {
        if c.rank() == 1 {
            return Ok(Data::F64(vec![]));
        }
        std::thread::sleep(Duration::from_millis(100));
        c.all_reduce(&Data::F64(vec![1.0]))
    });
    match &out[0] {
        Err(CollectiveError::PeerFailed { rank: 1, reason }) => {
            assert!(reason.contains("closed"), "{reason}")
        }
        other => panic!("rank 0: {other:?}"),
    }
    // a rank that never calls: the others time out naming it
    let out = tcp_ranks(2, Duration::from_millis(500), |c| {
        if c.rank() == 1 {
            std::thread::sleep(Duration::from_millis(1500));
            return Ok(Data::F64(vec![]));
        }
        c.all_reduce(&Data::F64(vec![1.0]))
    });
    match &out[0] {
        Err(CollectiveError::PeerFailed { rank: 1, reason }) => {
            assert!(reason.contains("within"), "{reason}")
        }
        other => panic!("rank 0: {other:?}"),
    }
}

/// Bytes each rank sends per collective: (world - 1) / world of the tensor for all_gather
/// and reduce_scatter (what a ring sends), twice that for all_reduce; printed per rank.
#[test]
fn tcp_ranks_send_what_a_ring_sends() {
    const L: usize = 3000; // elements per rank's shard
    for world in [2, 3, 4] {
        let tensor = (world * L * 4) as u64; // f32 bytes of the whole tensor
        let out = tcp_ranks(world, T, |c| {
            let r = c.rank();
            let before = |c: &TcpComm| c.traffic();
            let t0 = before(c);
            c.all_gather(&vals(r, L, "f32"))?;
            let t1 = before(c);
            c.reduce_scatter(&vals(r, world * L, "f32"), &vec![L; world])?;
            let t2 = before(c);
            c.all_reduce(&vals(r, world * L, "f32"))?;
            let t3 = before(c);
            // uneven: rank q's segment is q + 1 shards long
            let counts: Vec<usize> = (0..world).map(|q| (q + 1) * 100).collect();
            let total: usize = counts.iter().sum();
            c.reduce_scatter(&vals(r, total, "f32"), &counts)?;
            let t4 = before(c);
            Ok([t0, t1, t2, t3, t4]
                .windows(2)
                .map(|w| {
                    (
                        w[1].payload - w[0].payload,
                        w[1].wire - w[0].wire,
                        w[1].rounds - w[0].rounds,
                    )
                })
                .collect::<Vec<_>>())
        });
        for (r, o) in out.into_iter().enumerate() {
            let d = o.expect("tcp rank");
            let ring = tensor * (world as u64 - 1) / world as u64;
            eprintln!(
                "world {world} rank {r}: tensor {tensor} B; sent all_gather {} B ({} on the wire), reduce_scatter {} B ({}), all_reduce {} B ({}, {} rounds); ring (N-1)/N = {ring} B",
                d[0].0, d[0].1, d[1].0, d[1].1, d[2].0, d[2].1, d[2].2
            );
            assert_eq!(d[0].0, ring, "world {world} rank {r}: all_gather payload");
            assert_eq!(
                d[1].0, ring,
                "world {world} rank {r}: reduce_scatter payload"
            );
            assert_eq!(
                d[2].0,
                2 * ring,
                "world {world} rank {r}: all_reduce payload"
            );
            assert_eq!((d[0].2, d[1].2, d[2].2), (1, 1, 2));
            // headers: one small frame per peer per round
            assert!(d[0].1 - d[0].0 <= 64 * (world as u64 - 1), "{:?}", d[0]);
            let uneven: usize = (0..world).filter(|&q| q != r).map(|q| (q + 1) * 100).sum();
            assert_eq!(
                d[3].0,
                (uneven * 4) as u64,
                "world {world} rank {r}: uneven"
            );
        }
    }
}
