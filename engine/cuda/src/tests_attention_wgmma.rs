//! The Hopper attention forward (attention_wgmma_d{64,128}.ptx) in bf16 programs planned for
//! an sm_90a device, run by its host model (crate::emulate_attention_wgmma) against the cpu
//! executor: head dims 64 and 128, odd query and key counts (one and several 128-row CTAs,
//! more 64-key tiles than stages), soft cap on and off, fully masked rows, tiles skipped
//! (whole CTAs' and the middle ones), the learned bias slot, and the backward (mma.sync)
//! fed by its lse; the PTX holds the constants the model uses.

#![allow(clippy::unwrap_used)]

use crate::tests::check_on;
use crate::tests_attention_mma::{launches, mask, rand_bf16};
use gidd_engine::op::Op;
use gidd_engine::{api, grad, AttnSpec, CpuExecutor, DType, Executor, Graph, HostTensor, Program};
use gidd_kernels::attention::wgmma_ptx as w;
use rand::rngs::StdRng;
use rand::SeedableRng;

#[test]
fn attention_bf16_runs_on_wgmma_on_hopper() {
    let mut r = StdRng::seed_from_u64(41);
    // (B, H, Lq, Lk, D, cap, bias, mask kind)
    let cases = [
        (2, 2, 37, 45, 64, Some(30.0), false, 0),
        (1, 2, 133, 70, 128, None, true, 0),
        (1, 1, 129, 197, 64, None, false, 1),
        (2, 1, 21, 100, 128, Some(5.0), true, 2),
        (1, 1, 200, 131, 64, Some(50.0), false, 2),
        (1, 2, 40, 300, 128, None, false, 3),
        (1, 1, 70, 333, 64, Some(20.0), true, 3),
    ];
    for (bs, h, lq, lk, d, cap, bias, kind) in cases {
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
        let wt = g.input("w", &[bs, h, lq, d], bf);
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
            "wgmma attention B{bs} H{h} Lq{lq} Lk{lk} D{d} cap {cap:?} bias {bias} mask {kind}"
        );
        let keep = crate::fused::supports;
        let p = check_on(&case, std::slice::from_ref(&o), &inputs, 5e-3, &keep, true);
        let entry = w::entry(d).unwrap();
        assert_eq!(launches(&p, entry), 1, "{case}");
        assert_eq!(
            launches(&p, &format!("attention_mma_fwd_d{d}")),
            0,
            "{case}"
        );
        // planned for an sm_80 device: the mma.sync forward
        let p80 = check_on(&case, std::slice::from_ref(&o), &inputs, 5e-3, &keep, false);
        assert_eq!(launches(&p80, entry), 0, "{case}");
        assert_eq!(launches(&p80, &format!("attention_mma_fwd_d{d}")), 1);
        let loss = o
            .to(DType::F32)
            .unwrap()
            .mul(&wt.to(DType::F32).unwrap())
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
        let p = check_on(&case, &grads, &inputs, 6e-3, &keep, true);
        assert_eq!(launches(&p, entry), 1, "{case}");
        for e in [
            format!("attention_mma_dq_d{d}"),
            format!("attention_mma_dkdv_d{d}"),
        ] {
            assert_eq!(launches(&p, &e), 1, "{case}: {e}");
        }
    }
}

/// out and lse straight from the op, element by element and as relative L2 errors (printed:
/// the numbers the note reports).
#[test]
fn wgmma_lse_and_out_match_the_cpu() {
    let mut r = StdRng::seed_from_u64(42);
    for (lq, lk, d, cap, kind) in [
        (70, 83, 128, Some(20.0), 0),
        (150, 200, 64, None, 2),
        (150, 200, 128, None, 0),
        (97, 261, 64, Some(30.0), 3),
    ] {
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
        let pl = crate::lower::plan_with(&low, true, false).unwrap();
        assert_eq!(launches(&pl, w::entry(d).unwrap()), 1);
        let got = crate::emulate::run(&low, &pl, &refs);
        let case = format!("Lq{lq} Lk{lk} D{d} cap {cap:?} mask {kind}");
        for o in 0..2 {
            let (g, w) = (got[o].to_f32_vec(), want[o].to_f32_vec());
            let (mut worst, mut num, mut den) = (0f32, 0f64, 0f64);
            for (i, (x, y)) in g.iter().zip(&w).enumerate() {
                let e = if *y == f32::MIN {
                    (x - y).abs() / f32::MAX
                } else {
                    num += ((x - y) as f64).powi(2);
                    den += (*y as f64).powi(2);
                    (x - y).abs()
                };
                assert!(e <= 2e-2, "{case}: output {o}[{i}]: {x} vs cpu {y}");
                worst = worst.max(e);
            }
            let rel = num.sqrt() / den.sqrt().max(1e-30);
            assert!(rel <= 5e-3, "{case}: output {o} rel L2 {rel:e}");
            println!(
                "{case}: {} max abs err {worst:e}, rel L2 {rel:e}",
                ["out", "lse"][o]
            );
        }
    }
}

/// The PTX holds what the model assumes: the descriptor constants and k16 offsets, the
/// stage, barrier and box offsets, the expected bytes, the parities, the release count,
/// the register split and the P packing of 4 k16 steps.
#[test]
fn the_wgmma_ptx_has_the_modelled_layout() {
    for d in w::HEAD_DIMS {
        let e = w::entry(d).unwrap();
        let src = gidd_kernels::ptx::module_of(e).unwrap().source;
        let mut want = vec![
            format!("or.b64 %dq, %dq, {:#018x};", w::DESC_K_MAJOR),
            format!("or.b64 %dk, %dk, {:#018x};", w::DESC_K_MAJOR),
            format!("or.b64 %dv, %dv, {:#018x};", w::DESC_MN_MAJOR),
            format!("mad.lo.u32 %x, %u, {}, %base;", w::q_rows_at(1)),
            format!(
                "mad.lo.u32 %kst, %stg, {}, %base; add.u32 %kst, %kst, {};",
                w::stage_bytes(d),
                w::stage_at(d, 0)
            ),
            format!("add.u32 %vst, %kst, {};", w::stage_bytes(d) / 2),
            format!(
                "mbarrier.arrive.expect_tx.shared::cta.b64 %st, [%fb], {};",
                w::stage_bytes(d)
            ),
            format!(
                "mbarrier.arrive.expect_tx.shared::cta.b64 %st, [%qb], {};",
                w::q_bytes(d)
            ),
            format!("add.u32 %qb, %base, {};", w::qbar_at(d)),
            format!("add.u32 %fb, %fb, {};", w::full_at(d, 0)),
            format!("add.u32 %eb, %eb, {};", w::empty_at(d, 0)),
            "mbarrier.init.shared::cta.b64 [%x], 8;".to_string(),
            "sub.u32 %par, %u, 1; and.b32 %par, %par, 1;".to_string(),
            format!(
                "and.b32 %stg, %n, {}; shr.u32 %par, %n, {}; and.b32 %par, %par, 1;",
                w::STAGES - 1,
                w::STAGES.trailing_zeros()
            ),
            "@%p mbarrier.arrive.shared::cta.b64 %st, [%eb];".to_string(),
            format!("setmaxnreg.dec.sync.aligned.u32 {};", w::PRODUCER_REGS),
            format!("setmaxnreg.inc.sync.aligned.u32 {};", w::CONSUMER_REGS),
            format!(
                "add.u32 %bm, %base, {}; add.u32 %ra, %base, {};",
                w::bitmap_at(d),
                w::rowany_at(d)
            ),
            "cvt.rn.bf16x2.f32 %pa15, %s31, %s30;".to_string(),
            format!(
                "wgmma.mma_async.sync.aligned.m64n{}k16.f32.bf16.bf16",
                w::KEYS
            ),
            "{%pa12, %pa13, %pa14, %pa15}, %db, %pt, 1, 1, 1;".to_string(),
        ];
        for k in 0..d / 16 {
            want.push(format!(
                "add.u64 %da, %dq, {}; add.u64 %db, %dk, {};",
                w::k_major_step(w::ROWS, k) >> 4,
                w::k_major_step(w::KEYS, k) >> 4
            ));
        }
        for u in 0..w::KEYS / 16 {
            want.push(format!("add.u64 %db, %dv, {};", w::v_step(u) >> 4));
        }
        for h in 0..d / w::BOX_COLS {
            want.push(format!(
                "add.u32 %x, %base, {}; mov.u32 %u, {};",
                h * w::ROWS * 128,
                h * 64
            ));
            want.push(format!(
                "add.u32 %x, %kst, {}; mov.u32 %u, {};",
                h * w::KEYS * 128,
                h * 64
            ));
            want.push(format!(
                "add.u32 %x, %vst, {}; mov.u32 %u, {};",
                h * w::KEYS * 128,
                h * 64
            ));
        }
        for s in want {
            assert!(src.contains(&s), "{e}: no `{s}`");
        }
        // the first k16 step of S overwrites it (scale-d false), the others accumulate
        assert_eq!(src.matches("%da, %db, %pf, 1, 1, 0, 0;").count(), 1, "{e}");
        assert_eq!(
            src.matches("%da, %db, %pt, 1, 1, 0, 0;").count(),
            d / 16 - 1,
            "{e}"
        );
        assert_eq!(
            src.matches("cp.async.bulk.tensor.3d").count(),
            3 * d / w::BOX_COLS,
            "{e}: Q, K and V boxes"
        );
    }
}
