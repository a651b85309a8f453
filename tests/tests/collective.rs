//! The in-process collectives on their own: uneven and empty shards, f32/f64/bf16,
//! rank-order sums whatever the thread timing, and failing ranks that stop the others
//! with an error naming them instead of a hang.

use gidd_engine::collective::{run_ranks, Collective, CollectiveError, LocalGroup};
use gidd_engine::Data;
use half::bf16;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Rank r's values: distinct per rank and element, exact in every float dtype.
fn vals(r: usize, n: usize) -> Vec<f64> {
    (0..n).map(|i| (r * 1000 + i) as f64 * 0.5).collect()
}

fn as_dtype(v: &[f64], dtype: &str) -> Data {
    match dtype {
        "f32" => Data::F32(v.iter().map(|&x| x as f32).collect()),
        "f64" => Data::F64(v.to_vec()),
        "bf16" => Data::BF16(v.iter().map(|&x| bf16::from_f64(x)).collect()),
        _ => unreachable!(),
    }
}

fn to_f64(d: &Data) -> Vec<f64> {
    (0..d.len()).map(|i| d.get_f64(i)).collect()
}

#[test]
fn all_gather_concatenates_uneven_and_empty_chunks_in_rank_order() {
    for world in [1, 2, 3, 4, 7] {
        for dtype in ["f32", "f64", "bf16"] {
            // rank r sends r elements: rank 0 sends none
            let out = run_ranks(world, T, |c| {
                let chunk = as_dtype(&vals(c.rank(), c.rank()), dtype);
                c.all_gather(&chunk)
            })
            .expect("all_gather");
            let want: Vec<f64> = (0..world).flat_map(|r| vals(r, r)).collect();
            let want = to_f64(&as_dtype(&want, dtype));
            for (r, got) in out.iter().enumerate() {
                assert_eq!(got.dtype(), as_dtype(&[], dtype).dtype());
                assert_eq!(to_f64(got), want, "world {world} {dtype} rank {r}");
            }
        }
    }
}

#[test]
fn reduce_scatter_sums_segments_of_sizes_not_divisible_by_world() {
    for world in [1, 2, 3, 4] {
        for dtype in ["f32", "f64", "bf16"] {
            // 10 elements over `world` ranks: uneven, and the last segment empty at world 4
            let counts: Vec<usize> = match world {
                4 => vec![4, 3, 3, 0],
                w => (0..w).map(|r| 10 / w + usize::from(r < 10 % w)).collect(),
            };
            let n: usize = counts.iter().sum();
            let out = run_ranks(world, T, |c| {
                c.reduce_scatter(&as_dtype(&vals(c.rank(), n), dtype), &counts)
            })
            .expect("reduce_scatter");
            let mut start = 0;
            for (r, got) in out.iter().enumerate() {
                assert_eq!(got.len(), counts[r]);
                for (i, g) in to_f64(got).into_iter().enumerate() {
                    let want: f64 = (0..world)
                        .map(|q| to_f64(&as_dtype(&vals(q, n), dtype))[start + i])
                        .sum();
                    // bf16 sums in f32, rounded once: within half an ulp of bf16 (8 bits)
                    let tol = if dtype == "bf16" {
                        want.abs() / 256.0
                    } else {
                        0.0
                    };
                    assert!(
                        (g - want).abs() <= tol,
                        "world {world} {dtype} rank {r}[{i}]: {g} vs {want}"
                    );
                }
                start += counts[r];
            }
        }
    }
}

/// f32 addition does not associate: ((1 + 1e8) + 1) - 1e8 is 0 in rank order (1e8 + 1
/// rounds to 1e8) but (1 + 1) + (1e8 - 1e8) is 2. The result must be the rank-order one on every rank, every time,
/// however the threads are scheduled (each rank sleeps a different, varying time first).
#[test]
fn all_reduce_sums_in_rank_order_whatever_the_timing() {
    let xs = [1.0f32, 1e8, 1.0, -1e8];
    let want = ((xs[0] + xs[1]) + xs[2]) + xs[3];
    assert_ne!(
        want,
        (xs[0] + xs[2]) + (xs[1] + xs[3]),
        "the test needs order to matter"
    );
    for trial in 0..20u64 {
        let out = run_ranks(4, T, |c| {
            let r = c.rank() as u64;
            std::thread::sleep(Duration::from_micros((r * 7 + trial * 13) % 5 * 300));
            c.all_reduce(&Data::F32(vec![xs[c.rank()]; 3]))
        })
        .expect("all_reduce");
        for got in out {
            assert_eq!(got, Data::F32(vec![want; 3]), "trial {trial}");
        }
    }
    // f64 and bf16 too (bf16 accumulates in f32 and rounds once)
    let out = run_ranks(3, T, |c| {
        let v = vals(c.rank(), 5);
        Ok::<_, CollectiveError>((
            c.all_reduce(&as_dtype(&v, "f64"))?,
            c.all_reduce(&as_dtype(&v, "bf16"))?,
        ))
    })
    .expect("all_reduce");
    let want: Vec<f64> = (0..5)
        .map(|i| (0..3).map(|r| vals(r, 5)[i]).sum())
        .collect();
    for (f, b) in out {
        assert_eq!(to_f64(&f), want);
        let wb: Vec<f64> = want.iter().map(|&x| bf16::from_f64(x).to_f64()).collect();
        assert_eq!(to_f64(&b), wb);
    }
}

#[test]
fn broadcast_and_barrier() {
    for root in 0..3 {
        let out = run_ranks(3, T, |c| {
            c.barrier()?;
            let mine = Data::I32(vec![c.rank() as i32 * 10; 4]);
            let got = c.broadcast(&mine, root)?;
            c.barrier()?;
            Ok::<_, CollectiveError>(got)
        })
        .expect("broadcast");
        for got in out {
            assert_eq!(got, Data::I32(vec![root as i32 * 10; 4]));
        }
    }
}

#[test]
fn a_rank_that_errors_stops_the_others_with_its_name() {
    let t0 = std::time::Instant::now();
    let e = run_ranks(4, T, |c| {
        c.all_reduce(&Data::F32(vec![1.0]))?;
        if c.rank() == 2 {
            return Err(anyhow_like("disk full"));
        }
        // the others wait here for rank 2, which never comes
        c.all_reduce(&Data::F32(vec![1.0]))?;
        Ok(())
    })
    .expect_err("rank 2 failed");
    assert_eq!(e.rank, 2, "{e}");
    assert!(e.to_string().contains("disk full"), "{e}");
    // every other rank returned an error naming rank 2
    assert_eq!(e.all.len(), 4, "{:?}", e.all);
    for (r, msg) in &e.all {
        if *r != 2 {
            assert!(msg.contains("rank 2 failed"), "rank {r}: {msg}");
        }
    }
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the others did not wait for the timeout"
    );
}

#[test]
fn a_rank_that_panics_stops_the_others_with_its_name() {
    let e = run_ranks(3, T, |c| {
        c.barrier()?;
        if c.rank() == 1 {
            panic!("boom in rank one");
        }
        c.all_gather(&Data::F64(vec![1.0]))?;
        Ok::<_, CollectiveError>(())
    })
    .expect_err("rank 1 panicked");
    assert_eq!(e.rank, 1, "{e}");
    assert!(e.reason.contains("boom in rank one"), "{e}");
    for (r, msg) in &e.all {
        if *r != 1 {
            assert!(msg.contains("rank 1 failed: panicked"), "rank {r}: {msg}");
        }
    }
}

#[test]
fn a_rank_that_never_arrives_times_out_and_is_named() {
    let group = LocalGroup::new(2, Duration::from_millis(300));
    let mut comms = group.comms();
    let late = comms.pop().expect("rank 1");
    let early = comms.pop().expect("rank 0");
    let e = early.barrier().expect_err("rank 1 never came");
    match e {
        CollectiveError::PeerFailed { rank, reason } => {
            assert_eq!(rank, 1);
            assert!(reason.contains("did not reach barrier"), "{reason}");
        }
        other => panic!("unexpected {other}"),
    }
    // the group stays failed: the late rank learns it too
    assert!(late.barrier().is_err());
}

#[test]
fn a_rank_that_exits_early_is_named() {
    let e = run_ranks(2, T, |c| {
        if c.rank() == 0 {
            return Ok(());
        }
        c.barrier()
    })
    .expect_err("rank 0 left");
    assert_eq!(e.rank, 0, "{e}");
    assert!(
        e.to_string().contains("exited before joining barrier"),
        "{e}"
    );
}

#[test]
fn mismatched_calls_are_reported_not_mixed() {
    let e = run_ranks(2, T, |c| {
        if c.rank() == 0 {
            c.all_reduce(&Data::F32(vec![1.0, 2.0])).map(|_| ())
        } else {
            c.all_reduce(&Data::F32(vec![1.0])).map(|_| ())
        }
    })
    .expect_err("lengths differ");
    assert!(e.to_string().contains("ranks disagree"), "{e}");
    let e = run_ranks(2, T, |c| {
        if c.rank() == 0 {
            c.barrier()
        } else {
            c.all_reduce(&Data::F64(vec![1.0])).map(|_| ())
        }
    })
    .expect_err("ops differ");
    assert!(
        e.to_string().contains("barrier") && e.to_string().contains("all_reduce"),
        "{e}"
    );
    // bad counts fail clearly on the rank that passed them, and stop the other one
    let e = run_ranks(2, T, |c| {
        c.reduce_scatter(&Data::F32(vec![0.0; 5]), &[2, 2])
            .map(|_| ())
    })
    .expect_err("counts do not cover the input");
    assert!(e.to_string().contains("counts summing to 4"), "{e}");
    let e = run_ranks(1, T, |c| c.all_reduce(&Data::Bool(vec![1])).map(|_| ())).expect_err("bool");
    assert!(e.to_string().contains("cannot be summed"), "{e}");
}

/// A plain error type standing in for a rank's own failure.
fn anyhow_like(msg: &str) -> Box<dyn std::error::Error + Send + Sync> {
    msg.into()
}
