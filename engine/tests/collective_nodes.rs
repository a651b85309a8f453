//! Collective nodes in programs (FSDP): all_gather and reduce_scatter run by the cpu
//! executor through each rank's collective give what the unsharded program gives, the
//! collectives' schedule gathers layer by layer (again for the backward) so the memory
//! plan shrinks, and a rank that never arrives stops the others with its name.

use gidd_engine::collective::{run_ranks, shard_len, Collective};
use gidd_engine::{
    grad, CpuExecutor, DType, Data, Executor, Graph, HostTensor, Op, Program, Tensor,
};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Odd sizes: shards are padded, and at 4 ranks `b`'s last shard is all padding.
const SHAPES: [(&str, [usize; 2]); 3] = [("w1", [5, 3]), ("b", [1, 3]), ("w2", [3, 4])];

fn full(i: usize) -> HostTensor {
    let s = SHAPES[i].1;
    let n = s[0] * s[1];
    let v = (0..n)
        .map(|j| ((i * 37 + j * 11) % 17) as f64 / 17.0 - 0.4)
        .collect();
    HostTensor::new(s.to_vec(), Data::F64(v)).expect("param")
}

fn shard(t: &HostTensor, world: usize, rank: usize) -> HostTensor {
    let v = t.to_f64_vec();
    let len = shard_len(v.len(), world);
    let s: Vec<f64> = (rank * len..(rank + 1) * len)
        .map(|j| v.get(j).copied().unwrap_or(0.0))
        .collect();
    HostTensor::new(vec![len], Data::F64(s)).expect("shard")
}

/// Rank r's rows.
fn rows(rank: usize) -> HostTensor {
    let v = (0..10)
        .map(|j| ((rank * 7 + j * 3) % 13) as f64 / 13.0 - 0.5)
        .collect();
    HostTensor::new(vec![2, 5], Data::F64(v)).expect("x")
}

/// sum((tanh(x w1 + b) w2)^2) over the parameters `p`.
fn loss(x: &Tensor, p: &[Tensor]) -> Tensor {
    let h = x.matmul(&p[0]).expect("mm");
    let b = p[1].broadcast_to(h.shape()).expect("bias");
    let y = h.add(&b).expect("add").tanh().expect("tanh");
    y.matmul(&p[2])
        .expect("mm")
        .square()
        .expect("sq")
        .sum_all()
        .expect("sum")
}

/// The sharded program: (w1, b) gathered as one unit, w2 as another; outputs the loss of
/// this rank's rows, then this rank's shard of each gradient summed over ranks (by explicit
/// reduce_scatter nodes, or by differentiating with respect to the shards themselves).
fn sharded(world: usize, through_vjp: bool) -> Program {
    let g = Graph::new();
    let shards: Vec<Tensor> = SHAPES
        .iter()
        .map(|(n, s)| g.input(n, &[shard_len(s[0] * s[1], world)], DType::F64))
        .collect();
    let x = g.input("x", &[2, 5], DType::F64);
    let mut gathered = g
        .apply(
            Op::AllGather {
                world,
                shapes: vec![SHAPES[0].1.to_vec(), SHAPES[1].1.to_vec()],
            },
            &[&shards[0], &shards[1]],
        )
        .expect("gather 1");
    let w2 = Op::AllGather {
        world,
        shapes: vec![SHAPES[2].1.to_vec()],
    };
    gathered.extend(g.apply(w2, &[&shards[2]]).expect("gather 2"));
    let l = loss(&x, &gathered);
    let bwd = g.data().nodes.len();
    let mut outs = vec![l.clone()];
    if through_vjp {
        outs.extend(grad(&l, &shards).expect("grad"));
    } else {
        for d in grad(&l, &gathered).expect("grad") {
            outs.push(g.apply1(Op::ReduceScatter { world }, &[&d]).expect("rs"));
        }
    }
    Program::compile_scheduled(&outs, &["w1", "b", "w2", "x"], bwd).expect("compile")
}

#[test]
fn collective_nodes_give_the_unsharded_gradients_summed_over_ranks() {
    // the reference: each rank's rows through the plain program, gradients summed in rank order
    let g = Graph::new();
    let p: Vec<Tensor> = SHAPES
        .iter()
        .map(|(n, s)| g.input(n, s, DType::F64))
        .collect();
    let x = g.input("x", &[2, 5], DType::F64);
    let l = loss(&x, &p);
    let mut outs = vec![l.clone()];
    outs.extend(grad(&l, &p).expect("grad"));
    let plain = Program::compile(&outs, &["w1", "b", "w2", "x"]).expect("plain");
    let params: Vec<HostTensor> = (0..3).map(full).collect();
    for world in [1, 2, 3, 4] {
        let mut want_loss = vec![];
        let mut want_grads = vec![vec![0.0; 15], vec![0.0; 3], vec![0.0; 12]];
        let mut lp = CpuExecutor.load(&plain).expect("load");
        for r in 0..world {
            let xr = rows(r);
            let o = CpuExecutor
                .run(&mut lp, &[&params[0], &params[1], &params[2], &xr])
                .expect("run");
            want_loss.push(o[0].to_f64_vec()[0]);
            for (w, t) in want_grads.iter_mut().zip(&o[1..]) {
                for (a, b) in w.iter_mut().zip(t.to_f64_vec()) {
                    *a += b;
                }
            }
        }
        for through_vjp in [false, true] {
            let prog = sharded(world, through_vjp);
            let got = run_ranks(world, T, |c| {
                let mut lp = CpuExecutor.load(&prog)?;
                let sh: Vec<HostTensor> =
                    params.iter().map(|t| shard(t, world, c.rank())).collect();
                let xr = rows(c.rank());
                CpuExecutor.run_with(&mut lp, c, &[&sh[0], &sh[1], &sh[2], &xr])
            })
            .expect("ranks");
            for (r, o) in got.iter().enumerate() {
                assert_eq!(
                    o[0].to_f64_vec()[0],
                    want_loss[r],
                    "world {world} rank {r} loss"
                );
                for (i, w) in want_grads.iter().enumerate() {
                    let want = shard(
                        &HostTensor::new(vec![w.len()], Data::F64(w.clone())).expect("t"),
                        world,
                        r,
                    );
                    // the same products, summed in the same rank order: bitwise equal
                    assert_eq!(
                        o[1 + i].to_f64_vec(),
                        want.to_f64_vec(),
                        "world {world} rank {r} grad {} (vjp {through_vjp})",
                        SHAPES[i].0
                    );
                }
            }
        }
    }
}

/// A chain of `layers` [d, d] layers, each its own gathered unit, on d rows (activations
/// the size of a weight, as in a model: the greedy memory plan then reuses slots whole).
fn chain(world: usize, layers: usize, d: usize, scheduled: bool) -> Program {
    let g = Graph::new();
    let len = shard_len(d * d, world);
    let shards: Vec<Tensor> = (0..layers)
        .map(|i| g.input(&format!("w{i}"), &[len], DType::F32))
        .collect();
    let x = g.input("x", &[d, d], DType::F32);
    let ws: Vec<Tensor> = shards
        .iter()
        .map(|s| {
            let op = Op::AllGather {
                world,
                shapes: vec![vec![d, d]],
            };
            g.apply1(op, &[s]).expect("gather")
        })
        .collect();
    let mut h = x;
    for w in &ws {
        h = h.matmul(w).expect("mm").tanh().expect("tanh");
    }
    let l = h.square().expect("sq").sum_all().expect("sum");
    let bwd = g.data().nodes.len();
    let mut outs = vec![l.clone()];
    for gr in grad(&l, &ws).expect("grad") {
        outs.push(g.apply1(Op::ReduceScatter { world }, &[&gr]).expect("rs"));
    }
    let mut names: Vec<String> = (0..layers).map(|i| format!("w{i}")).collect();
    names.push("x".into());
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    match scheduled {
        true => Program::compile_scheduled(&outs, &refs, bwd),
        false => Program::compile(&outs, &refs),
    }
    .expect("compile")
}

#[test]
fn the_schedule_gathers_layer_by_layer_and_again_for_the_backward() {
    let (layers, d, world) = (6, 64, 2);
    let sched = chain(world, layers, d, true);
    let flat = chain(world, layers, d, false);
    let positions = |p: &Program| -> Vec<usize> {
        (0..p.nodes.len())
            .filter(|&i| matches!(p.nodes[i].op, Op::AllGather { .. }))
            .collect()
    };
    // every layer gathered for the forward, and again for the backward but the last one
    // (its forward copy serves its backward, right after) and the first (the backward needs
    // no gradient of x, so it never reads w0)
    assert_eq!(positions(&sched).len(), 2 * layers - 2);
    assert_eq!(positions(&flat).len(), layers);
    // prefetch of depth one: before any layer's matmul at most two gathers are issued
    // beyond the layers already computed
    let mut gathers = 0;
    let mut matmuls = 0;
    for n in &sched.nodes {
        match n.op {
            Op::AllGather { .. } => gathers += 1,
            Op::DotGeneral(_) if matmuls < layers => {
                matmuls += 1;
                assert!(
                    gathers <= matmuls + 1,
                    "{gathers} gathers before matmul {matmuls}"
                );
            }
            _ => {}
        }
    }
    // the whole model's gathered weights and gradients are never all planned at once
    let w = d * d * 4;
    eprintln!(
        "{layers} layers of {w} bytes, {world} ranks: planned {} bytes scheduled, {} in graph order",
        sched.planned_bytes(),
        flat.planned_bytes()
    );
    assert!(
        flat.planned_bytes() >= sched.planned_bytes() + 2 * w,
        "planned: {} scheduled vs {} in graph order",
        sched.planned_bytes(),
        flat.planned_bytes()
    );
    // and both orders compute the same
    let mut outs = vec![];
    for p in [&sched, &flat] {
        outs.push(
            run_ranks(world, T, |c| {
                let mut lp = CpuExecutor.load(p)?;
                let ins: Vec<HostTensor> = (0..layers)
                    .map(|i| {
                        let v = (0..shard_len(d * d, world))
                            .map(|j| ((i + j * 7 + c.rank() * 5) % 19) as f32 / 190.0 - 0.05)
                            .collect();
                        HostTensor::f32(vec![shard_len(d * d, world)], v).expect("shard")
                    })
                    .chain([HostTensor::f32(vec![d, d], vec![0.3; d * d]).expect("x")])
                    .collect();
                let refs: Vec<&HostTensor> = ins.iter().collect();
                CpuExecutor.run_with(&mut lp, c, &refs)
            })
            .expect("ranks"),
        );
    }
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn collectives_need_a_rank_and_a_missing_rank_is_named() {
    let p = sharded(2, false);
    let params: Vec<HostTensor> = (0..3).map(|i| shard(&full(i), 2, 0)).collect();
    let mut lp = CpuExecutor.load(&p).expect("load");
    let x = rows(0);
    let e = CpuExecutor
        .run(&mut lp, &[&params[0], &params[1], &params[2], &x])
        .expect_err("no collective given");
    assert!(e.to_string().contains("run_with"), "{e}");
    // rank 1 fails before its program runs: rank 0's gather reports it instead of waiting
    let err = run_ranks(2, T, |c| {
        if c.rank() == 1 {
            anyhow_like("rank 1 lost its data")?;
        }
        let mut lp = CpuExecutor.load(&p).map_err(|e| e.to_string())?;
        CpuExecutor
            .run_with(&mut lp, c, &[&params[0], &params[1], &params[2], &x])
            .map_err(|e| e.to_string())
    })
    .expect_err("rank 1 failed");
    assert_eq!(err.rank, 1, "{err}");
    let r0 = &err
        .all
        .iter()
        .find(|(r, _)| *r == 0)
        .expect("rank 0's error")
        .1;
    assert!(r0.contains("rank 1 failed"), "{r0}");
}

fn anyhow_like(msg: &str) -> Result<(), String> {
    Err(msg.to_string())
}
