//! The TCP store multi-process ranks meet at: values pass between ranks, `get` waits for a
//! later `set`, `add` counts, barriers hold until every rank arrives, and missing keys,
//! absent servers and bad torchrun variables fail with errors that say what is wrong.

use gidd_engine::collective::tcp_store::{RankEnv, StoreServer, TcpStore};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn server() -> String {
    let s = StoreServer::start("127.0.0.1:0").expect("server");
    format!("127.0.0.1:{}", s.addr.port())
}

#[test]
fn ranks_pass_an_id_count_and_meet_at_barriers() {
    let addr = server();
    let world = 4;
    let got: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..world)
            .map(|rank| {
                let addr = addr.clone();
                s.spawn(move || {
                    let st = TcpStore::connect(&addr, Duration::from_secs(20)).expect("connect");
                    if rank == 0 {
                        // the others are already waiting in get: set comes late on purpose
                        std::thread::sleep(Duration::from_millis(200));
                        st.set("nccl_id", &[7u8; 128]).expect("set");
                    }
                    let id = st.get("nccl_id").expect("get");
                    for round in 0..3 {
                        st.barrier(&format!("b{round}"), world).expect("barrier");
                    }
                    st.add("count", rank as i64 + 1).expect("add");
                    st.barrier("after-add", world).expect("barrier");
                    assert_eq!(st.add("count", 0).expect("read"), 10, "1 + 2 + 3 + 4");
                    id
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("rank")).collect()
    });
    for id in got {
        assert_eq!(id, vec![7u8; 128]);
    }
}

#[test]
fn a_barrier_holds_until_the_last_rank() {
    let addr = server();
    let early = TcpStore::connect(&addr, Duration::from_secs(20)).expect("connect");
    let t0 = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            let late = TcpStore::connect(&addr, Duration::from_secs(20)).expect("connect");
            late.barrier("b", 2).expect("late barrier");
        });
        early.barrier("b", 2).expect("early barrier");
    });
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "the barrier did not wait"
    );
}

#[test]
fn missing_keys_and_absent_servers_time_out_with_a_clear_error() {
    let addr = server();
    let st = TcpStore::connect(&addr, Duration::from_millis(300)).expect("connect");
    let e = st.get("never-set").expect_err("nobody sets it");
    assert!(
        e.to_string().contains("waiting for key \"never-set\""),
        "{e}"
    );
    // a port nobody listens on (bound, then released)
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let e = TcpStore::connect(&format!("127.0.0.1:{port}"), Duration::from_millis(300))
        .err()
        .expect("no server");
    assert!(e.to_string().contains("MASTER_ADDR/MASTER_PORT"), "{e}");
}

#[test]
fn torchrun_variables_are_read_and_checked() {
    let vars = |kv: &[(&str, &str)]| {
        let m: HashMap<String, String> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    };
    let ok = RankEnv::from_vars(vars(&[
        ("RANK", "3"),
        ("WORLD_SIZE", "8"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "node0"),
        ("MASTER_PORT", "29500"),
    ]))
    .expect("valid");
    assert_eq!(
        (
            ok.rank,
            ok.world,
            ok.local_rank,
            ok.master_addr.as_str(),
            ok.master_port
        ),
        (3, 8, 1, "node0", 29500)
    );
    assert_eq!(ok.torch_agent_store, None);
    // torchrun's agent serves the store: every rank is its client, keys under run and attempt
    let tr = RankEnv::from_vars(vars(&[
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ("TORCHELASTIC_RUN_ID", "job7"),
        ("TORCHELASTIC_RESTART_COUNT", "2"),
    ]))
    .expect("valid");
    assert_eq!(tr.torch_agent_store.as_deref(), Some("/gidd/job7/2/"));
    let base = [("MASTER_ADDR", "h"), ("MASTER_PORT", "1")];
    for (extra, want) in [
        (vec![("WORLD_SIZE", "2")], "RANK is not set"),
        (
            vec![("RANK", "2"), ("WORLD_SIZE", "2")],
            "not a rank of WORLD_SIZE=2",
        ),
        (vec![("RANK", "x"), ("WORLD_SIZE", "2")], "RANK=\"x\""),
    ] {
        let mut kv = base.to_vec();
        kv.extend(extra);
        let e = RankEnv::from_vars(vars(&kv)).expect_err("bad");
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    let e = RankEnv::from_vars(vars(&[
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("MASTER_ADDR", "h"),
        ("MASTER_PORT", "70000"),
    ]))
    .expect_err("port");
    assert!(e.to_string().contains("not a TCP port"), "{e}");
}
