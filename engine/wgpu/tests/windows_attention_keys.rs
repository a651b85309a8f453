//! Flash attention whose one head's keys and values (or 16 rows of its mask) are larger than
//! one storage binding (capped at 64 KiB: common::CAP): blocks of queries (as many mask rows
//! as fit) times blocks of keys (whole 16-key tiles), the forward's online softmax and dq's
//! sums carried from one key block to the next, dk and dv's from one query block to the next.
//! Against the cpu executor (gradients through autograd, soft cap on and off, fully masked
//! rows, the bias key/value slot, f32 and bf16 programs), and bit for bit against the
//! uncapped run with both forward kernels (all but the loss, a sum over windows). What still
//! cannot run (a mask row larger than a binding) is refused: tests/windows.rs.

mod common;

use common::*;
use gidd_engine::Result;
use gidd_engine::{api, grad, AttnSpec, DType, Data, Executor, Graph, HostTensor, Program};
use gidd_wgpu::AttentionStrategy;
use rand::Rng;

/// (B, H, Lq, Lk, D, soft cap, bias slot, dtype, what the windows are)
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    Option<f32>,
    bool,
    DType,
    &'static str,
);

const CASES: [Case; 4] = [
    // one head's k [450, 40] 70 KiB; mask rows of 1.8 KiB: 2 query blocks (32 + 5 rows) x 2
    // key blocks (400 + 50 keys)
    (
        2,
        2,
        37,
        450,
        40,
        None,
        false,
        DType::F32,
        "keys of one head",
    ),
    // k [2100, 8] 66 KiB, a mask row 8.2 KiB: query blocks of 7 rows (fewer than a tile) x 2
    // key blocks
    (
        1,
        2,
        19,
        2100,
        8,
        Some(4.0),
        false,
        DType::F32,
        "7-row query blocks",
    ),
    // d odd; Lq > a block, Lk = 530 keys + the bias slot (531): 10 query blocks x 2 key blocks
    (
        2,
        1,
        150,
        530,
        33,
        None,
        true,
        DType::F32,
        "bias slot, many blocks",
    ),
    // a bf16 program (the api computes attention in f32 around it)
    (
        1,
        3,
        41,
        700,
        24,
        Some(6.0),
        true,
        DType::BF16,
        "bf16 program",
    ),
];

#[test]
fn attention_over_key_windows_matches_the_cpu_and_the_unwindowed_run() -> Result<()> {
    let s = seed(5500);
    let Some(base) = wgpu() else {
        return Ok(());
    };
    for (ci, &(b, h, lq, lk, d, cap, bias, dt, what)) in CASES.iter().enumerate() {
        let mut r = rng(s + ci as u64);
        let spec = AttnSpec {
            scale: 1.0 / (d as f32).sqrt(),
            softcap: cap,
        };
        let g = Graph::new();
        let q = g.input("q", &[b, h, lq, d], dt);
        let k = g.input("k", &[b, h, lk, d], dt);
        let v = g.input("v", &[b, h, lk, d], dt);
        let m = g.input("m", &[b, lq, lk], DType::Bool);
        let c = g.input("c", &[b, h, lq, d], DType::F32);
        let kb = g.input("kb", &[h, d], dt);
        let vb = g.input("vb", &[h, d], dt);
        let slot = bias.then_some((&kb, &vb));
        let o = api::attention_with_bias_slot(&q, &k, &v, &m, slot, spec)?;
        let loss = o.to(DType::F32)?.mul(&c)?.sum_all()?;
        let wrt = [q.clone(), k.clone(), v.clone(), kb.clone(), vb.clone()];
        let gr = grad(&loss, &wrt[..if bias { 5 } else { 3 }])?;
        let mut outs = vec![o, loss];
        outs.extend(gr);
        // a random mask (two in three keys visible) with query row 0 of each batch fully
        // masked (uniform over the keys, or all on the bias slot)
        let mut mv: Vec<u8> = (0..b * lq * lk)
            .map(|_| u8::from(r.random_bool(0.67)))
            .collect();
        for bi in 0..b {
            mv[bi * lq * lk..bi * lq * lk + lk].fill(0);
        }
        let mut ins = vec![
            ("q", uniform(&mut r, &[b, h, lq, d], dt, -1.0, 1.0)),
            ("k", uniform(&mut r, &[b, h, lk, d], dt, -1.0, 1.0)),
            ("v", uniform(&mut r, &[b, h, lk, d], dt, -1.0, 1.0)),
            ("m", HostTensor::new(vec![b, lq, lk], Data::Bool(mv))?),
            ("c", uniform(&mut r, &[b, h, lq, d], DType::F32, -1.0, 1.0)),
        ];
        if bias {
            ins.push(("kb", uniform(&mut r, &[h, d], dt, -1.0, 1.0)));
            ins.push(("vb", uniform(&mut r, &[h, d], dt, -1.0, 1.0)));
        }
        let names: Vec<&str> = ins.iter().map(|(n, _)| *n).collect();
        for strategy in [AttentionStrategy::Tiled, AttentionStrategy::RowStream] {
            for (x, fused) in capped() {
                let x = x.with_attention(strategy);
                let case =
                    format!("attention over key windows ({what}), {strategy:?}, fused={fused}");
                let p = Program::compile(&outs, &names)?;
                let lp = x.load(&p)?;
                let runs = |e: &str| {
                    lp.dispatch_counts()
                        .iter()
                        .find(|(k, _)| k == e)
                        .map_or(0, |c| c.1)
                };
                let fwd = runs("attention_fwd") + runs("attention_fwd_row");
                let (rows, dq) = (runs("attention_rows"), runs("attention_dq"));
                // keys in blocks: more forwards than query blocks (one per attention_rows),
                // dq once per (query block, key block)
                assert!(
                    fwd > rows && dq > rows && rows > 1 && runs("attention_dkdv") == dq,
                    "{case}: keys not windowed ({:?})",
                    lp.dispatch_counts()
                );
                eprintln!("{case}: {:?}", lp.dispatch_counts());
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
