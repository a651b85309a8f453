//! Plans of programs whose fused ops run as PTX kernels (crate::fused), checked as
//! crate::tests checks the primitives: every launch against its kernel's declared arguments,
//! every output of the emulated plan (crate::emulate_fused models the kernels' contracts)
//! against the cpu executor, on odd shapes and edge values. The PTX itself is not run: no GPU.

#![allow(clippy::unwrap_used)]

use crate::plan::{Plan, Step};
use crate::tests::{check_lowered, rand_f32};
use gidd_engine::op::MarginalSpec;
use gidd_engine::{api, grad, AttnSpec, DType, Graph, HostTensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn launches(p: &Plan, entry: &str) -> usize {
    p.steps
        .iter()
        .filter(|s| matches!(s, Step::Launch(l) if l.entry == entry))
        .count()
}

fn ids(dt: DType, v: Vec<i64>) -> HostTensor {
    let n = v.len();
    match dt {
        DType::I32 => HostTensor::i32(vec![n], v.iter().map(|&x| x as i32).collect()),
        DType::U32 => HostTensor::u32(vec![n], v.iter().map(|&x| x as u32).collect()),
        _ => HostTensor::new(vec![n], gidd_engine::Data::I64(v)),
    }
    .unwrap()
}

/// The loss's pass over the vocabulary, forward and backward, for vocabularies below, at and
/// not a multiple of the 256-thread stride; every id kind; tokens whose x or z is the mask,
/// z = x, log-SNRs beyond the schedule's clip, and logits far apart (a softmax that
/// underflows to one-hot).
pub(crate) fn the_loss_runs_as_one_kernel_each_way() {
    let mut r = StdRng::seed_from_u64(14);
    for (vocab, rows, idt) in [
        (37, 9, DType::I32),
        (256, 6, DType::I64),
        (643, 7, DType::U32),
    ] {
        let spec = MarginalSpec {
            mask_id: (vocab - 2) as u32,
            min_log_snr: -9.0,
            max_log_snr: 9.0,
            scale: 1.3,
            shift: -0.4,
        };
        let g = Graph::new();
        let lg = g.input("lg", &[rows, vocab], DType::F32);
        let (z, x) = (g.input("z", &[rows], idt), g.input("x", &[rows], idt));
        let l = g.input("l", &[rows], DType::F32);
        let (w1, w2) = (
            g.input("w1", &[rows], DType::F32),
            g.input("w2", &[rows], DType::F32),
        );
        let (kl, lpz, lqz) = api::diffusion_kl(&lg, &z, &x, &l, spec).unwrap();
        let loss = kl
            .mul(&w1)
            .unwrap()
            .add(&lpz.mul(&w2).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        let dlg = grad(&loss, std::slice::from_ref(&lg)).unwrap();
        let mask = spec.mask_id as i64;
        let mut xs: Vec<i64> = (0..rows).map(|_| r.random_range(0..vocab as i64)).collect();
        let mut zs: Vec<i64> = (0..rows).map(|_| r.random_range(0..vocab as i64)).collect();
        xs[0] = mask; // a label at the mask
        zs[1] = mask; // a noisy token at the mask
        zs[2] = xs[2]; // kept
        let mut lv = rand_f32(&mut r, &[rows], -12.0, 12.0);
        if let gidd_engine::Data::F32(v) = &mut lv.data {
            v[3] = 30.0; // alpha 1: q one-hot
            v[4] = -30.0; // alpha 0
        }
        let mut logits = rand_f32(&mut r, &[rows, vocab], -4.0, 4.0);
        if let gidd_engine::Data::F32(v) = &mut logits.data {
            v[5 * vocab + 1] = 90.0; // row 5's softmax is one-hot to f32
        }
        let inputs = [
            ("lg", logits),
            ("z", ids(idt, zs)),
            ("x", ids(idt, xs)),
            ("l", lv),
            ("w1", rand_f32(&mut r, &[rows], -1.0, 1.0)),
            ("w2", rand_f32(&mut r, &[rows], -1.0, 1.0)),
        ];
        let case = format!("diffusion_kl V {vocab}, {rows} rows, {idt} ids");
        let keep = crate::fused::supports;
        let p = check_lowered(&case, &[kl, lpz, lqz], &inputs[..4], 1e-5, &keep);
        assert_eq!(launches(&p, "diffusion_kl"), 1, "{case}: {:?}", p.steps);
        let p = check_lowered(&format!("{case}, backward"), &dlg, &inputs, 1e-4, &keep);
        assert_eq!(launches(&p, "diffusion_kl_bwd"), 1, "{case}");
    }
}

/// Attention forward and backward as the PTX kernels' plans: head dims 64 and 128 (and a small
/// odd one), Lq not a multiple of the 8 rows a block owns and Lk not of the 32-key tile, soft
/// cap on and off, masks with fully masked rows (uniform over the keys, as on the cpu) and
/// fully open ones, and the learned bias slot (key 0, an all-true mask column).
pub(crate) fn attention_runs_as_the_flash_kernels() {
    let mut r = StdRng::seed_from_u64(15);
    let cases = [
        (2, 3, 37, 45, 64, Some(30.0), false),
        (1, 2, 9, 70, 128, None, true),
        (2, 1, 17, 33, 24, Some(5.0), true),
    ];
    for (bs, h, lq, lk, d, cap, bias) in cases {
        let spec = AttnSpec {
            scale: (d as f32).powf(-0.5),
            softcap: cap,
        };
        let g = Graph::new();
        let (q, k, v) = (
            g.input("q", &[bs, h, lq, d], DType::F32),
            g.input("k", &[bs, h, lk, d], DType::F32),
            g.input("v", &[bs, h, lk, d], DType::F32),
        );
        let mask = g.input("mask", &[bs, lq, lk], DType::Bool);
        let (kb, vb) = (
            g.input("kb", &[h, d], DType::F32),
            g.input("vb", &[h, d], DType::F32),
        );
        let w = g.input("w", &[bs, h, lq, d], DType::F32);
        let slot = bias.then_some((&kb, &vb));
        let o = api::attention_with_bias_slot(&q, &k, &v, &mask, slot, spec).unwrap();
        let loss = o.mul(&w).unwrap().sum_all().unwrap();
        let mut wrt = vec![q.clone(), k.clone(), v.clone()];
        if bias {
            wrt.extend([kb.clone(), vb.clone()]);
        }
        let grads = grad(&loss, &wrt).unwrap();
        let mut mv: Vec<bool> = (0..bs * lq * lk).map(|_| r.random_bool(0.7)).collect();
        mv[..lk].fill(false); // query 0 of batch 0 sees no key (but the bias slot)
        mv[lk..2 * lk].fill(true);
        // batch 1's even queries see only the first 20 keys, as a clean prompt's queries do:
        // whole 32-key tiles masked in rows that are not (the kernels skip those tiles)
        for i in (0..lq).step_by(2).filter(|_| bs > 1) {
            for j in 0..lk {
                mv[(lq + i) * lk + j] = j < 20;
            }
        }
        let mut inputs = vec![
            ("q", rand_f32(&mut r, &[bs, h, lq, d], -1.5, 1.5)),
            ("k", rand_f32(&mut r, &[bs, h, lk, d], -1.5, 1.5)),
            ("v", rand_f32(&mut r, &[bs, h, lk, d], -1.0, 1.0)),
            ("mask", HostTensor::bool(vec![bs, lq, lk], mv).unwrap()),
        ];
        if bias {
            inputs.push(("kb", rand_f32(&mut r, &[h, d], -1.0, 1.0)));
            inputs.push(("vb", rand_f32(&mut r, &[h, d], -1.0, 1.0)));
        }
        let fwd_inputs = inputs.clone();
        inputs.push(("w", rand_f32(&mut r, &[bs, h, lq, d], -1.0, 1.0)));
        let case = format!("attention B{bs} H{h} Lq{lq} Lk{lk} D{d} cap {cap:?} bias {bias}");
        let keep = crate::fused::supports;
        let p = check_lowered(&case, &[o], &fwd_inputs, 1e-5, &keep);
        assert_eq!(launches(&p, "attention_fwd"), 1, "{case}");
        let p = check_lowered(&format!("{case}, backward"), &grads, &inputs, 1e-4, &keep);
        for e in [
            "attention_bwd_rows",
            "attention_bwd_dkdv",
            "attention_bwd_dq",
        ] {
            assert_eq!(launches(&p, e), 1, "{case}: {e}");
        }
    }
}

/// Softmax, log-softmax, rms_norm and RoPE with their backward as the row kernels: rows
/// shorter than, equal to and longer than (not a multiple of) the 256-thread block, a row far
/// from 0 (the max subtracted), RoPE with several heads and an odd half dim.
pub(crate) fn row_ops_run_as_their_kernels() {
    let mut r = StdRng::seed_from_u64(16);
    for (rows, n) in [(7, 5), (3, 256), (6, 300)] {
        let g = Graph::new();
        let x = g.input("x", &[rows, n], DType::F32);
        let w = g.input("w", &[n], DType::F32);
        let up = g.input("up", &[rows, n], DType::F32);
        let outs = vec![
            x.softmax().unwrap(),
            x.log_softmax().unwrap(),
            x.rms_norm(&w, 1e-5).unwrap(),
        ];
        let mut loss = outs[0].mul(&up).unwrap().sum_all().unwrap();
        for o in &outs[1..] {
            let t = o.mul(&up).unwrap().sum_all().unwrap();
            loss = loss.add(&t).unwrap();
        }
        let grads = grad(&loss, &[x.clone(), w.clone()]).unwrap();
        let mut xs = rand_f32(&mut r, &[rows, n], -3.0, 3.0);
        if let gidd_engine::Data::F32(v) = &mut xs.data {
            v[..n].iter_mut().for_each(|t| *t += 60.0);
        }
        let inputs = [
            ("x", xs),
            ("w", rand_f32(&mut r, &[n], -0.5, 0.5)),
            ("up", rand_f32(&mut r, &[rows, n], -1.0, 1.0)),
        ];
        let case = format!("row ops {rows}x{n}");
        let keep = crate::fused::supports;
        let p = check_lowered(&case, &outs, &inputs[..2], 1e-5, &keep);
        assert_eq!(launches(&p, "softmax_fwd"), 2, "{case}");
        assert_eq!(launches(&p, "rms_norm_fwd"), 1, "{case}");
        let p = check_lowered(&format!("{case}, backward"), &grads, &inputs, 1e-4, &keep);
        for e in ["softmax_bwd", "rms_norm_bwd_dx", "rms_norm_dw"] {
            assert!(launches(&p, e) >= 1, "{case}: {e}");
        }
    }
    let (b, l, h, d) = (2, 5, 3, 14);
    let g = Graph::new();
    let x = g.input("x", &[b, l, h, d], DType::F32);
    let (c, s) = (
        g.input("cos", &[b, l, d / 2], DType::F32),
        g.input("sin", &[b, l, d / 2], DType::F32),
    );
    let up = g.input("up", &[b, l, h, d], DType::F32);
    let y = x.rope(&c, &s).unwrap();
    let loss = y.mul(&up).unwrap().sum_all().unwrap();
    let dx = grad(&loss, std::slice::from_ref(&x)).unwrap();
    let inputs = [
        ("x", rand_f32(&mut r, &[b, l, h, d], -2.0, 2.0)),
        ("cos", rand_f32(&mut r, &[b, l, d / 2], -1.0, 1.0)),
        ("sin", rand_f32(&mut r, &[b, l, d / 2], -1.0, 1.0)),
        ("up", rand_f32(&mut r, &[b, l, h, d], -1.0, 1.0)),
    ];
    let keep = crate::fused::supports;
    let p = check_lowered("rope", &[y], &inputs[..3], 1e-6, &keep);
    assert_eq!(launches(&p, "rope"), 1);
    // the rotation is linear: its backward reads cos, sin and the cotangent only
    let p = check_lowered("rope backward", &dx, &inputs[1..], 1e-6, &keep);
    assert_eq!(launches(&p, "rope"), 1);
}

#[test]
fn row_ops_run_as_their_kernels_test() {
    row_ops_run_as_their_kernels();
}

#[test]
fn attention_runs_as_the_flash_kernels_test() {
    attention_runs_as_the_flash_kernels();
}

#[test]
fn the_loss_runs_as_one_kernel_each_way_test() {
    the_loss_runs_as_one_kernel_each_way();
}

/// A head dim beyond the kernels' 128 is refused at load with the reason (as on wgpu), not
/// run wrongly.
#[test]
fn attention_beyond_head_dim_128_is_refused() {
    let g = Graph::new();
    let shape = [1, 1, 4, 160];
    let (q, k, v) = (
        g.input("q", &shape, DType::F32),
        g.input("k", &shape, DType::F32),
        g.input("v", &shape, DType::F32),
    );
    let mask = g.splat(1.0, &[1, 4, 4], DType::Bool);
    let spec = AttnSpec {
        scale: 0.1,
        softcap: None,
    };
    let o = api::attention(&q, &k, &v, &mask, spec).unwrap();
    let p = gidd_engine::Program::compile(&[o], &["q", "k", "v"]).unwrap();
    let low = gidd_engine::rewrite::lower_for(&p, &crate::fused::supports).unwrap();
    let e = crate::lower::plan(&low).unwrap_err().to_string();
    assert!(e.contains("head dim 160"), "{e}");
}
