//! The tensor-core attention forward (attention_mma_d{64,128}.ptx) in bf16 programs, run by
//! its lane-level model (crate::emulate_attention_mma) against the cpu executor: head dims 64
//! and 128, query counts below, at and past the 128-row block, key counts not a multiple of
//! the 32-key tile, soft cap on and off, fully masked rows, rows and whole blocks with fully
//! masked tiles (skipped), the learned bias slot, and the backward (SIMT) fed by its lse.

#![allow(clippy::unwrap_used)]

use crate::plan::{Plan, Step};
use crate::tests::check_lowered;
use gidd_engine::op::Op;
use gidd_engine::{api, grad, AttnSpec, CpuExecutor, DType, Executor, Graph, HostTensor, Program};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) fn launches(p: &Plan, entry: &str) -> usize {
    p.steps
        .iter()
        .filter(|s| matches!(s, Step::Launch(l) if l.entry == entry))
        .count()
}

pub(crate) fn rand_bf16(r: &mut StdRng, shape: &[usize], lo: f32, hi: f32) -> HostTensor {
    let n = shape.iter().product();
    HostTensor::f32(
        shape.to_vec(),
        (0..n).map(|_| r.random_range(lo..hi)).collect(),
    )
    .unwrap()
    .convert(DType::BF16)
}

/// The mask patterns: 0 random (70% open) with batch 0's query 0 fully masked and query 1
/// fully open; 1 every query sees keys < 20 only (later tiles skipped by whole blocks); 2
/// keys 32..63 masked for all and query 2 fully masked (a middle tile needed only by it); 3
/// keys 128..255 masked for all but query 5, fully masked (whole 128-key blocks of dk, dv
/// whose tiles only a fully masked query needs).
pub(crate) fn mask(r: &mut StdRng, kind: usize, bs: usize, lq: usize, lk: usize) -> Vec<bool> {
    let mut mv: Vec<bool> = (0..bs * lq * lk).map(|_| r.random_bool(0.7)).collect();
    for i in 0..bs * lq {
        let row = &mut mv[i * lk..(i + 1) * lk];
        match kind {
            0 if i == 0 => row.fill(false),
            0 if i == 1 => row.fill(true),
            1 => row.iter_mut().enumerate().for_each(|(j, m)| *m = j < 20),
            2 if i % lq == 2 => row.fill(false),
            2 => row[32.min(lk)..64.min(lk)].fill(false),
            3 if i % lq == 5 => row.fill(false),
            3 => row[128.min(lk)..256.min(lk)].fill(false),
            _ => {}
        }
    }
    mv
}

pub(crate) fn attention_bf16_runs_on_tensor_cores() {
    let mut r = StdRng::seed_from_u64(31);
    // (B, H, Lq, Lk, D, cap, bias, mask kind, backward)
    let cases = [
        (2, 2, 37, 45, 64, Some(30.0), false, 0, true),
        (1, 2, 133, 70, 128, None, true, 0, true),
        (1, 1, 129, 97, 64, None, false, 1, true),
        (2, 1, 21, 100, 128, Some(5.0), true, 2, true),
        (1, 1, 256, 64, 64, Some(50.0), false, 2, true),
        (1, 2, 40, 300, 64, None, false, 3, true),
    ];
    for (bs, h, lq, lk, d, cap, bias, kind, bwd) in cases {
        let spec = AttnSpec {
            scale: (d as f32).powf(-0.5),
            softcap: cap,
        };
        let g = Graph::new();
        let bf = DType::BF16;
        let (q, k, v) = (
            g.input("q", &[bs, h, lq, d], bf),
            g.input("k", &[bs, h, lk, d], bf),
            g.input("v", &[bs, h, lk, d], bf),
        );
        let m = g.input("mask", &[bs, lq, lk], DType::Bool);
        let (kb, vb) = (g.input("kb", &[h, d], bf), g.input("vb", &[h, d], bf));
        let w = g.input("w", &[bs, h, lq, d], bf);
        let slot = bias.then_some((&kb, &vb));
        let o = api::attention_with_bias_slot(&q, &k, &v, &m, slot, spec).unwrap();
        let mut inputs = vec![
            ("q", rand_bf16(&mut r, &[bs, h, lq, d], -2.0, 2.0)),
            ("k", rand_bf16(&mut r, &[bs, h, lk, d], -2.0, 2.0)),
            ("v", rand_bf16(&mut r, &[bs, h, lk, d], -1.0, 1.0)),
            (
                "mask",
                HostTensor::bool(vec![bs, lq, lk], mask(&mut r, kind, bs, lq, lk)).unwrap(),
            ),
        ];
        if bias {
            inputs.push(("kb", rand_bf16(&mut r, &[h, d], -1.0, 1.0)));
            inputs.push(("vb", rand_bf16(&mut r, &[h, d], -1.0, 1.0)));
        }
        let case = format!(
            "bf16 attention B{bs} H{h} Lq{lq} Lk{lk} D{d} cap {cap:?} bias {bias} mask {kind}"
        );
        let keep = crate::fused::supports;
        let p = check_lowered(&case, std::slice::from_ref(&o), &inputs, 5e-3, &keep);
        let entry = format!("attention_mma_fwd_d{d}");
        assert_eq!(launches(&p, &entry), 1, "{case}");
        assert_eq!(launches(&p, "attention_fwd"), 0, "{case}");
        if bwd {
            let loss = o
                .to(DType::F32)
                .unwrap()
                .mul(&w.to(DType::F32).unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let mut wrt = vec![q.clone(), k.clone(), v.clone()];
            if bias {
                wrt.extend([kb.clone(), vb.clone()]);
            }
            let grads = grad(&loss, &wrt).unwrap();
            inputs.push(("w", rand_bf16(&mut r, &[bs, h, lq, d], -1.0, 1.0)));
            let case = format!("{case}, backward");
            let p = check_lowered(&case, &grads, &inputs, 6e-3, &keep);
            assert_eq!(launches(&p, &entry), 1, "{case}");
            for e in [
                "attention_bwd_rows",
                &format!("attention_mma_dq_d{d}"),
                &format!("attention_mma_dkdv_d{d}"),
            ] {
                assert_eq!(launches(&p, e), 1, "{case}: {e}");
            }
            for e in ["attention_bwd_dq", "attention_bwd_dkdv"] {
                assert_eq!(launches(&p, e), 0, "{case}: {e}");
            }
        }
    }
}

#[test]
fn attention_bf16_runs_on_tensor_cores_test() {
    attention_bf16_runs_on_tensor_cores();
}

/// The kernel's lse (the backward's input) and out, straight from the op, element by
/// element: within bf16 rounding of the cpu's f32 on the same bf16 numbers.
#[test]
fn lse_and_out_match_the_cpu_elementwise() {
    let mut r = StdRng::seed_from_u64(32);
    for (lq, lk, d, cap, kind) in [(70, 83, 128, Some(20.0), 0), (150, 40, 64, None, 2)] {
        let (bs, h) = (2, 2);
        let g = Graph::new();
        let bf = DType::BF16;
        let names = ["q", "k", "v", "mask"];
        let shapes = [[bs, h, lq, d], [bs, h, lk, d], [bs, h, lk, d]];
        let ins: Vec<_> = (0..3)
            .map(|i| g.input(names[i], &shapes[i], bf).to(DType::F32).unwrap())
            .collect();
        let m = g.input("mask", &[bs, lq, lk], DType::Bool);
        let spec = AttnSpec {
            scale: (d as f32).powf(-0.5),
            softcap: cap,
        };
        let outs = g
            .apply(Op::Attention(spec), &[&ins[0], &ins[1], &ins[2], &m])
            .unwrap();
        let mut host: Vec<HostTensor> = (0..3)
            .map(|i| rand_bf16(&mut r, &shapes[i], -2.0, 2.0))
            .collect();
        host.push(HostTensor::bool(vec![bs, lq, lk], mask(&mut r, kind, bs, lq, lk)).unwrap());
        let p = Program::compile(&outs, &names).unwrap();
        let refs: Vec<&HostTensor> = host.iter().collect();
        let mut lp = CpuExecutor.load(&p).unwrap();
        let want = CpuExecutor.run(&mut lp, &refs).unwrap();
        let low = gidd_engine::rewrite::lower_for(&p, &crate::fused::supports).unwrap();
        let pl = crate::lower::plan(&low).unwrap();
        assert_eq!(launches(&pl, &format!("attention_mma_fwd_d{d}")), 1);
        let got = crate::emulate::run(&low, &pl, &refs);
        let case = format!("Lq{lq} Lk{lk} D{d} cap {cap:?} mask {kind}");
        for (o, tol) in [(0, 2e-2), (1, 2e-2)] {
            let (g, w) = (got[o].to_f32_vec(), want[o].to_f32_vec());
            let mut worst = 0f32;
            for (i, (x, y)) in g.iter().zip(&w).enumerate() {
                let e = if *y == f32::MIN {
                    (x - y).abs() / f32::MAX
                } else {
                    (x - y).abs()
                };
                assert!(e <= tol, "{case}: output {o}[{i}]: {x} vs cpu {y}");
                worst = worst.max(e);
            }
            println!("{case}: output {o} max abs err {worst:e}");
        }
    }
}
