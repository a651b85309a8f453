//! The host side of collective nodes on cuda, without a GPU: the order of a run (which
//! steps are queued before a collective is issued, where its results are waited for),
//! where operands are read and results written, and a staged run on the host model of the
//! kernels (crate::emulate) following that order with thread ranks' collectives, against
//! the cpu executor's ranks.

#![allow(clippy::unwrap_used)]

use super::{operands, outputs, script, Act, Src};
use crate::emulate::Mem;
use crate::plan::{Arg, Plan, Ptr, Step};
use gidd_engine::collective::nodes::{self, source_node};
use gidd_engine::collective::{run_ranks, shard_len, Collective};
use gidd_engine::{
    grad, CpuExecutor, DType, Data, Executor, Graph, HostTensor, Op, Program, Tensor,
};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);
const SHAPES: [(&str, [usize; 2]); 3] = [("w1", [5, 3]), ("b", [1, 3]), ("w2", [3, 4])];

fn full(i: usize) -> HostTensor {
    let s = SHAPES[i].1;
    let v = (0..s[0] * s[1])
        .map(|j| ((i * 37 + j * 11) % 17) as f32 / 17.0 - 0.4)
        .collect();
    HostTensor::f32(s.to_vec(), v).unwrap()
}

fn shard(t: &HostTensor, world: usize, rank: usize) -> HostTensor {
    let v = t.to_f32_vec();
    let len = shard_len(v.len(), world);
    let s = (rank * len..(rank + 1) * len)
        .map(|j| v.get(j).copied().unwrap_or(0.0))
        .collect();
    HostTensor::f32(vec![len], s).unwrap()
}

fn rows(rank: usize) -> HostTensor {
    let v = (0..10)
        .map(|j| ((rank * 7 + j * 3) % 13) as f32 / 13.0 - 0.5)
        .collect();
    HostTensor::f32(vec![2, 5], v).unwrap()
}

/// sum((tanh(x w1 + b) w2)^2) with the parameters gathered from shards, the gradients
/// reduce-scattered, scheduled as FSDP schedules it (gathered again for the backward).
fn sharded(world: usize) -> Program {
    let g = Graph::new();
    let shards: Vec<Tensor> = SHAPES
        .iter()
        .map(|(n, s)| g.input(n, &[shard_len(s[0] * s[1], world)], DType::F32))
        .collect();
    let x = g.input("x", &[2, 5], DType::F32);
    let gather = |ins: &[&Tensor], k: &[usize]| {
        let shapes = k.iter().map(|&i| SHAPES[i].1.to_vec()).collect();
        g.apply(Op::AllGather { world, shapes }, ins).unwrap()
    };
    let mut p = gather(&[&shards[0], &shards[1]], &[0, 1]);
    p.extend(gather(&[&shards[2]], &[2]));
    let h = x.matmul(&p[0]).unwrap();
    let y = h.add(&p[1].broadcast_to(h.shape()).unwrap()).unwrap();
    let l = y
        .tanh()
        .unwrap()
        .matmul(&p[2])
        .unwrap()
        .square()
        .unwrap()
        .sum_all()
        .unwrap();
    let bwd = g.data().nodes.len();
    let mut outs = vec![l.clone()];
    for d in grad(&l, &p).unwrap() {
        outs.push(g.apply1(Op::ReduceScatter { world }, &[&d]).unwrap());
    }
    Program::compile_scheduled(&outs, &["w1", "b", "w2", "x"], bwd).unwrap()
}

fn planned(world: usize, chains: bool) -> (Program, Plan) {
    let p = gidd_engine::rewrite::lower_for(&sharded(world), &|_, _| false).unwrap();
    let plan = crate::lower::plan_with(&p, false, chains).unwrap();
    (p, plan)
}

/// The planned buffers a step touches.
fn slots_of(s: &Step) -> Vec<usize> {
    let ptrs: Vec<Ptr> = match s {
        Step::Launch(l) => l
            .args
            .iter()
            .filter_map(|(_, a)| match a {
                Arg::Ptr(p) | Arg::TensorMap(p, _) => Some(*p),
                _ => None,
            })
            .collect(),
        Step::Zero { dst, .. } => vec![*dst],
        Step::Copy { dst, src, .. } => vec![*dst, *src],
    };
    ptrs.into_iter()
        .filter_map(|p| match p {
            Ptr::Slot(s, _) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn the_script_issues_after_the_operands_and_waits_before_the_readers() {
    for world in [1, 2, 3] {
        for chains in [false, true] {
            let (p, plan) = planned(world, chains);
            let acts = script(&p, &plan);
            let read = nodes::read_values(&p);
            let (mut queued, mut issued, mut waited): (usize, Vec<usize>, Vec<usize>) =
                (0, vec![], vec![]);
            // the steps queued when each collective is issued and waited for
            let mut issue_at = std::collections::HashMap::new();
            let mut wait_at = std::collections::HashMap::new();
            for a in &acts {
                match a {
                    Act::Queue(r) => {
                        assert_eq!(r.start, queued, "ranges in order, none skipped");
                        assert!(r.end > r.start);
                        // no step queued while a collective is in flight touches the
                        // buffer one of its results will be written into
                        for &c in issued.iter().filter(|c| !waited.contains(*c)) {
                            let outs: Vec<usize> = outputs(&p, c, &read)
                                .unwrap()
                                .into_iter()
                                .flatten()
                                .filter_map(|x| match x {
                                    Ptr::Slot(s, _) => Some(s),
                                    _ => None,
                                })
                                .collect();
                            for s in &plan.steps[r.clone()] {
                                assert!(
                                    slots_of(s).iter().all(|x| !outs.contains(x)),
                                    "world {world}: a step in flight of node {c} uses its result's buffer: {s:?}"
                                );
                            }
                        }
                        queued = r.end;
                    }
                    Act::Issue(c) => {
                        assert_eq!(queued, plan.node_start[*c], "node {c} issued at its place");
                        issue_at.insert(*c, queued);
                        issued.push(*c);
                    }
                    Act::Wait(c) => {
                        assert!(issued.contains(c) && !waited.contains(c));
                        wait_at.insert(*c, queued);
                        waited.push(*c);
                    }
                }
            }
            assert_eq!(queued, plan.steps.len(), "every step queued");
            assert_eq!(issued, waited, "waits in issue order");
            let collectives: Vec<usize> = (0..p.nodes.len())
                .filter(|&n| p.runs[n] && p.nodes[n].op.is_collective())
                .collect();
            assert_eq!(issued, collectives);
            assert!(
                collectives.len() >= 5,
                "gathers, re-gathers, reduce-scatters"
            );
            // every running reader of a result runs after the wait
            for (m, node) in p.nodes.iter().enumerate().filter(|(m, _)| p.runs[*m]) {
                for &v in &node.inputs {
                    let c = source_node(&p, v);
                    if let Some(&w) = wait_at.get(&c) {
                        assert!(
                            w <= plan.node_start[m],
                            "node {m} reads {c} before its wait"
                        );
                    }
                }
            }
            // operands are where the program planned them, with their bytes
            for &c in &collectives {
                for (src, &v) in operands(&p, c).iter().zip(&p.nodes[c].inputs) {
                    let ty = &p.values[v].ty;
                    match src {
                        Src::Device(_, n) => assert_eq!(*n, (ty.numel() * 4) as u64),
                        Src::Host(d) => assert_eq!(d.len(), ty.numel()),
                    }
                }
            }
        }
    }
}

/// Rank `c`'s run of `p` on the host model, staged as the executor stages it.
fn staged(
    p: &Program,
    plan: &Plan,
    c: &(dyn Collective + Sync),
    ins: &[&HostTensor],
) -> Vec<HostTensor> {
    let mut m = Mem::new(plan, ins);
    let read = nodes::read_values(p);
    let mut results: Vec<(usize, Vec<Data>)> = vec![];
    for a in script(p, plan) {
        match a {
            Act::Queue(r) => m.steps(plan, r),
            Act::Issue(n) => {
                let ops: Vec<Data> = operands(p, n)
                    .into_iter()
                    .zip(&p.nodes[n].inputs)
                    .map(|(s, &v)| match s {
                        Src::Host(d) => d,
                        Src::Device(ptr, bytes) => {
                            let a = m.addr(plan, ptr);
                            let b = m.bytes(a, bytes as usize).to_vec();
                            let ty = &p.values[v].ty;
                            crate::executor::decode(&b, ty.shape.clone(), ty.dtype)
                                .unwrap()
                                .data
                        }
                    })
                    .collect();
                let j = nodes::job(p, n, &ops).unwrap();
                results.push((n, nodes::run(c, &j).unwrap()));
            }
            Act::Wait(n) => {
                let (got, outs) = results.remove(0);
                assert_eq!(got, n);
                for (dst, d) in outputs(p, n, &read).unwrap().into_iter().zip(outs) {
                    if let Some(ptr) = dst {
                        let a = m.addr(plan, ptr);
                        let b = d.as_bytes();
                        m.bytes(a, b.len()).copy_from_slice(b);
                    }
                }
            }
        }
    }
    m.outputs(p, plan)
}

#[test]
fn a_staged_run_on_the_host_model_gives_the_cpu_ranks_results() {
    let params: Vec<HostTensor> = (0..3).map(full).collect();
    for world in [1, 2, 3] {
        let prog = sharded(world);
        let inputs = |r: usize| {
            let mut v: Vec<HostTensor> = params.iter().map(|t| shard(t, world, r)).collect();
            v.push(rows(r));
            v
        };
        let want = run_ranks(world, T, |c| {
            let mut lp = CpuExecutor.load(&prog)?;
            let ins = inputs(c.rank());
            CpuExecutor.run_with(&mut lp, c, &ins.iter().collect::<Vec<_>>())
        })
        .unwrap();
        for chains in [false, true] {
            let (p, plan) = planned(world, chains);
            let got = run_ranks(world, T, |c| {
                let ins = inputs(c.rank());
                Ok::<_, String>(staged(&p, &plan, c, &ins.iter().collect::<Vec<_>>()))
            })
            .unwrap();
            for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                for (o, (g, w)) in g.iter().zip(w).enumerate() {
                    let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
                    assert_eq!(g.len(), w.len());
                    for (x, y) in g.iter().zip(&w) {
                        assert!(
                            (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                            "world {world} chains {chains} rank {r} output {o}: {x} vs cpu {y}"
                        );
                    }
                }
            }
        }
    }
}
