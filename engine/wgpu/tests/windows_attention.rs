//! Flash attention, forward and backward, over tensors larger than one storage binding
//! (capped at 64 KiB: common::CAP): windows of whole batches of heads, of heads within one
//! batch, and of query blocks of one head when a batch's [Lq, Lk] mask is larger than a
//! binding (dk and dv then sum over the query windows, their fma chains carried from one
//! window to the next). Against the cpu executor (gradients through autograd, soft cap on
//! and off, masks with fully masked rows), and bit for bit against the uncapped run with
//! both forward kernels (all but the loss, a sum over windows).

mod common;

use common::*;
use gidd_engine::Result;
use gidd_engine::{api, grad, AttnSpec, DType, Data, Executor, Graph, HostTensor, Program};
use gidd_wgpu::AttentionStrategy;
use rand::Rng;

/// (B, H, L, D, soft cap, what the windows are)
const CASES: [(usize, usize, usize, usize, Option<f32>, &str); 3] = [
    // q [4, 3, 67, 40] 126 KiB, a batch's heads 31 KiB: windows of whole batches
    (4, 3, 67, 40, None, "whole batches"),
    // a batch's heads [4, 67, 64] 67 KiB: windows of heads within a batch
    (2, 4, 67, 64, Some(5.0), "heads of one batch"),
    // a batch's mask [150, 150] 88 KiB: windows of query blocks of one head
    (2, 2, 150, 24, None, "query blocks"),
];

#[test]
fn attention_over_windows_matches_the_cpu_and_the_unwindowed_run() -> Result<()> {
    let s = seed(5400);
    let Some(base) = wgpu() else {
        return Ok(());
    };
    for (ci, &(b, h, l, d, cap, what)) in CASES.iter().enumerate() {
        let mut r = rng(s + ci as u64);
        let spec = AttnSpec {
            scale: 1.0 / (d as f32).sqrt(),
            softcap: cap,
        };
        let g = Graph::new();
        let q = g.input("q", &[b, h, l, d], DType::F32);
        let k = g.input("k", &[b, h, l, d], DType::F32);
        let v = g.input("v", &[b, h, l, d], DType::F32);
        let m = g.input("m", &[b, l, l], DType::Bool);
        let c = g.input("c", &[b, h, l, d], DType::F32);
        let o = api::attention(&q, &k, &v, &m, spec)?;
        let loss = o.mul(&c)?.sum_all()?;
        let gr = grad(&loss, &[q.clone(), k.clone(), v.clone()])?;
        let outs = vec![o, loss, gr[0].clone(), gr[1].clone(), gr[2].clone()];
        // a random mask (three in four keys visible) with query row 0 of each batch fully
        // masked (uniform over the keys)
        let mut mv: Vec<u8> = (0..b * l * l)
            .map(|_| u8::from(r.random_bool(0.75)))
            .collect();
        for bi in 0..b {
            mv[bi * l * l..bi * l * l + l].fill(0);
        }
        let ins = [
            ("q", uniform(&mut r, &[b, h, l, d], DType::F32, -1.0, 1.0)),
            ("k", uniform(&mut r, &[b, h, l, d], DType::F32, -1.0, 1.0)),
            ("v", uniform(&mut r, &[b, h, l, d], DType::F32, -1.0, 1.0)),
            ("m", HostTensor::new(vec![b, l, l], Data::Bool(mv))?),
            ("c", uniform(&mut r, &[b, h, l, d], DType::F32, -1.0, 1.0)),
        ];
        for strategy in [AttentionStrategy::Tiled, AttentionStrategy::RowStream] {
            for (x, fused) in capped() {
                let x = x.with_attention(strategy);
                let case = format!("attention over windows ({what}), {strategy:?}, fused={fused}");
                let names: Vec<&str> = ins.iter().map(|(n, _)| *n).collect();
                let p = Program::compile(&outs, &names)?;
                let lp = x.load(&p)?;
                let runs = |e: &str| {
                    lp.dispatch_counts()
                        .iter()
                        .find(|(k, _)| k == e)
                        .map_or(0, |c| c.1)
                };
                // more than one window of each kernel
                for e in ["attention_rows", "attention_dkdv", "attention_dq"] {
                    assert!(
                        runs(e) > 1,
                        "{case}: {e} not windowed ({:?})",
                        lp.dispatch_counts()
                    );
                }
                drop(lp);
                check_on(&x, &case, &outs, &ins, TOL);
                let whole = base.clone().with_fusion(fused).with_attention(strategy);
                // the loss is a sum in windows (f32 partials): held to the cpu only
                let exact = [&outs[..1], &outs[2..]].concat();
                assert_bitwise(&x, &whole, &case, &exact, &ins);
            }
        }
    }
    Ok(())
}
