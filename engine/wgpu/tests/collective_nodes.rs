//! Collective nodes (FSDP's gathers and reduce-scatters) on the wgpu executor, staged
//! through host memory: thread ranks, one wgpu device each, give the cpu executor's ranks'
//! loss and gradient shards (f32 and packed bf16; uneven shards, one all padding at 4
//! ranks), and a plain run of such a program is refused with what to do.

mod common;

use gidd_engine::collective::{run_ranks, shard_len, Collective};
use gidd_engine::{
    grad, CollectiveExecutor, CpuExecutor, DType, Executor, Graph, HostTensor, Op, Program, Tensor,
};
use gidd_wgpu::WgpuExecutor;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);
const SHAPES: [(&str, [usize; 2]); 3] = [("w1", [5, 3]), ("b", [1, 3]), ("w2", [3, 4])];

fn full(i: usize, d: DType) -> HostTensor {
    let s = SHAPES[i].1;
    let v = (0..s[0] * s[1])
        .map(|j| ((i * 37 + j * 11) % 17) as f32 / 17.0 - 0.4)
        .collect();
    HostTensor::f32(s.to_vec(), v).expect("param").convert(d)
}

fn shard(t: &HostTensor, world: usize, rank: usize) -> HostTensor {
    let v = t.to_f32_vec();
    let len = shard_len(v.len(), world);
    let s = (rank * len..(rank + 1) * len)
        .map(|j| v.get(j).copied().unwrap_or(0.0))
        .collect();
    HostTensor::f32(vec![len], s)
        .expect("shard")
        .convert(t.dtype())
}

fn rows(rank: usize, d: DType) -> HostTensor {
    let v = (0..10)
        .map(|j| ((rank * 7 + j * 3) % 13) as f32 / 13.0 - 0.5)
        .collect();
    HostTensor::f32(vec![2, 5], v).expect("x").convert(d)
}

/// sum((tanh(x w1 + b) w2)^2), parameters gathered from shards (w1 and b as one unit),
/// gradients reduce-scattered, scheduled as FSDP schedules it.
fn sharded(world: usize, d: DType) -> Program {
    let g = Graph::new();
    let shards: Vec<Tensor> = SHAPES
        .iter()
        .map(|(n, s)| g.input(n, &[shard_len(s[0] * s[1], world)], d))
        .collect();
    let x = g.input("x", &[2, 5], d);
    let gather = |ins: &[&Tensor], k: &[usize]| {
        let shapes = k.iter().map(|&i| SHAPES[i].1.to_vec()).collect();
        g.apply(Op::AllGather { world, shapes }, ins)
            .expect("gather")
    };
    let mut p = gather(&[&shards[0], &shards[1]], &[0, 1]);
    p.extend(gather(&[&shards[2]], &[2]));
    let h = x.matmul(&p[0]).expect("mm");
    let y = h
        .add(&p[1].broadcast_to(h.shape()).expect("b"))
        .expect("add");
    let l = y
        .tanh()
        .and_then(|t| t.matmul(&p[2]))
        .and_then(|t| t.square())
        .and_then(|t| t.sum_all())
        .expect("loss");
    let bwd = g.data().nodes.len();
    let mut outs = vec![l.clone()];
    for dg in grad(&l, &p).expect("grad") {
        outs.push(g.apply1(Op::ReduceScatter { world }, &[&dg]).expect("rs"));
    }
    Program::compile_scheduled(&outs, &["w1", "b", "w2", "x"], bwd).expect("compile")
}

fn inputs(world: usize, rank: usize, d: DType) -> Vec<HostTensor> {
    let mut v: Vec<HostTensor> = (0..3).map(|i| shard(&full(i, d), world, rank)).collect();
    v.push(rows(rank, d));
    v
}

#[test]
fn wgpu_ranks_give_the_cpu_ranks_loss_and_gradient_shards() {
    if common::wgpu().is_none() {
        return;
    }
    for (d, tol) in [(DType::F32, 1e-5), (DType::BF16, 2e-2)] {
        for world in [1, 2, 4] {
            let prog = sharded(world, d);
            let want = run_ranks(world, T, |c| {
                let mut lp = CpuExecutor.load(&prog)?;
                let ins = inputs(world, c.rank(), d);
                CpuExecutor.run_with(&mut lp, c, &ins.iter().collect::<Vec<_>>())
            })
            .expect("cpu ranks");
            let got = run_ranks(world, T, |c| -> Result<Vec<HostTensor>, String> {
                // a device per rank, as `gidd train --nproc N --backend wgpu` opens them
                let x = WgpuExecutor::new().map_err(|e| e.to_string())?;
                let mut lp = x.load(&prog).map_err(|e| e.to_string())?;
                let ins: Vec<_> = inputs(world, c.rank(), d)
                    .iter()
                    .map(|t| x.upload(t))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                let refs: Vec<_> = ins.iter().collect();
                // twice: the second run reuses the program's buffers and bind groups
                for _ in 0..2 {
                    x.run_donating_with(&mut lp, c, vec![], &refs)
                        .map_err(|e| e.to_string())?;
                }
                let outs = x
                    .run_donating_with(&mut lp, c, vec![], &refs)
                    .map_err(|e| e.to_string())?;
                outs.iter()
                    .map(|b| x.download(b).map_err(|e| e.to_string()))
                    .collect()
            })
            .expect("wgpu ranks");
            for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.len(), w.len());
                for (o, (g, w)) in g.iter().zip(w).enumerate() {
                    assert_eq!((&g.shape, g.dtype()), (&w.shape, w.dtype()));
                    let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
                    let num: f64 = g.iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum();
                    let den: f64 = w.iter().map(|b| b * b).sum();
                    let e = num.sqrt() / den.sqrt().max(1e-30);
                    assert!(
                        e <= tol,
                        "{d:?} world {world} rank {r} output {o}: rel err {e:e}: {g:?} vs cpu {w:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_plain_run_of_a_program_with_collectives_says_what_to_do() {
    let Some(x) = common::wgpu() else { return };
    let mut lp = x.load(&sharded(2, DType::F32)).expect("load");
    let ins: Vec<_> = inputs(2, 0, DType::F32)
        .iter()
        .map(|t| x.upload(t).expect("upload"))
        .collect();
    let e = x
        .run(&mut lp, &ins.iter().collect::<Vec<_>>())
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("run_donating_with"), "{e}");
}
