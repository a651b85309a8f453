//! Attention and its backward run as the flash-style WGSL kernels (asserted on the loaded
//! program's dispatches, so a silent fallback to the decomposition fails) and equal the cpu
//! executor's fused kernels: odd shapes (Lq, Lk of 1 and around the 16-row tiles, head dims
//! 1..128), soft cap on and off, masks with fully masked rows and fully masked key tiles,
//! gradients through autograd, and a clean refusal of head dims above the kernels' maximum.

mod common;

use common::{assert_close, cpu_run, ints, rng, scaled_err, seed, uniform, wgpu, wgpu_run, TOL};
use gidd_engine::{api, grad, AttnSpec, DType, Data, Executor, Graph, HostTensor, Op, Program};
use gidd_engine::{Result, Tensor};
use gidd_wgpu::{AttentionStrategy, WgpuExecutor};
use rand::rngs::StdRng;
use rand::Rng;

const FWD: [&str; 1] = ["attention_fwd"];
const ALL: [&str; 4] = [
    "attention_fwd",
    "attention_rows",
    "attention_dkdv",
    "attention_dq",
];

/// How a case's mask is drawn.
#[derive(Clone, Copy, Debug)]
enum Masking {
    /// every key visible
    None,
    /// each entry visible with this probability, then rows 0 and Lq-1 fully masked and keys
    /// 16..32 (a whole tile) masked for every query
    Random(f64),
    /// every entry masked: every row uniform over the keys
    All,
}

fn mask(r: &mut StdRng, b: usize, lq: usize, lk: usize, m: Masking) -> HostTensor {
    let shape = [b, lq, lk];
    let v: Vec<u8> = match m {
        Masking::None => vec![1; b * lq * lk],
        Masking::All => vec![0; b * lq * lk],
        Masking::Random(p) => {
            let mut v: Vec<u8> = (0..b * lq * lk)
                .map(|_| u8::from(r.random_bool(p)))
                .collect();
            for bi in 0..b {
                for j in 0..lk {
                    v[(bi * lq) * lk + j] = 0;
                    v[(bi * lq + lq - 1) * lk + j] = 0;
                }
                for i in 0..lq {
                    for j in 16..lk.min(32) {
                        v[(bi * lq + i) * lk + j] = 0;
                    }
                }
            }
            v
        }
    };
    HostTensor::new(shape.to_vec(), Data::Bool(v)).unwrap_or_else(|e| panic!("{e}"))
}

/// Scaled errors of (out, lse, dq, dk, dv). lse's error leaves out the rows whose keys are
/// all masked (there both executors give f32::MIN, checked exactly): they would make its
/// scale 3e38 and every error look like 0.
fn errors(got: &[HostTensor], want: &[HostTensor]) -> Vec<f64> {
    let mut e = vec![];
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if i != 1 {
            e.push(scaled_err(g, w));
            continue;
        }
        let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
        let live: Vec<usize> = (0..w.len()).filter(|&k| w[k] > -1e30).collect();
        for k in (0..w.len()).filter(|k| !live.contains(k)) {
            assert_eq!(g[k], w[k], "lse of a fully masked row [{k}]");
        }
        let scale = live.iter().fold(0f64, |m, &k| m.max(w[k].abs())).max(1.0);
        e.push(live.iter().fold(0f64, |m, &k| m.max((g[k] - w[k]).abs())) / scale);
    }
    e
}

/// Compiles `outs`, asserts which attention kernels run and the dispatch count, runs both
/// executors, compares; returns each output's scaled error (None when skipped). Outputs
/// listed in `noise` are zero in exact arithmetic: they are held to an absolute bar instead
/// (their error is reported unscaled; the inputs are O(1)).
/// Both forward kernels run: `attention_fwd` (tiled) and `attention_fwd_row` (what a CPU
/// adapter picks); they must give the same bits, and the larger error is returned.
fn run(
    case: &str,
    outs: &[Tensor],
    ins: &[(&str, HostTensor)],
    entries: &[&str],
    max_dispatches: usize,
    noise: &[usize],
) -> Option<Vec<f64>> {
    let x = wgpu()?;
    let mut worst: Option<(Vec<f64>, Vec<HostTensor>)> = None;
    for (strategy, fwd) in [
        (AttentionStrategy::Tiled, "attention_fwd"),
        (AttentionStrategy::RowStream, "attention_fwd_row"),
    ] {
        let x = x.clone().with_attention(strategy);
        let entries: Vec<&str> = entries
            .iter()
            .map(|&e| if e == "attention_fwd" { fwd } else { e })
            .collect();
        let case = format!("{case} ({fwd})");
        let (e, got) = run_on(&x, &case, outs, ins, &entries, max_dispatches, noise);
        worst = Some(match worst {
            None => (e, got),
            Some((w, first)) => {
                for (k, (a, b)) in got.iter().zip(&first).enumerate() {
                    assert_eq!(
                        a.data.as_bytes(),
                        b.data.as_bytes(),
                        "{case} output {k}: the forward strategies differ"
                    );
                }
                (w.iter().zip(&e).map(|(a, b)| a.max(*b)).collect(), first)
            }
        });
    }
    worst.map(|w| w.0)
}

fn run_on(
    x: &WgpuExecutor,
    case: &str,
    outs: &[Tensor],
    ins: &[(&str, HostTensor)],
    entries: &[&str],
    max_dispatches: usize,
    noise: &[usize],
) -> (Vec<f64>, Vec<HostTensor>) {
    let names: Vec<&str> = ins.iter().map(|(n, _)| *n).collect();
    let p = Program::compile(outs, &names).unwrap_or_else(|e| panic!("{case}: compile: {e}"));
    let lp = x
        .load(&p)
        .unwrap_or_else(|e| panic!("{case}: wgpu load: {e}"));
    let counts = lp.dispatch_counts();
    for e in entries {
        assert!(
            counts.iter().any(|(k, _)| k == e),
            "{case}: kernel {e} not dispatched ({counts:?})"
        );
    }
    assert!(
        lp.dispatch_count() <= max_dispatches,
        "{case}: {} dispatches > {max_dispatches} ({counts:?})",
        lp.dispatch_count()
    );
    let want = cpu_run(case, &p, ins);
    let got = wgpu_run(x, case, &p, ins);
    let mut e = errors(&got, &want);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if !noise.contains(&i) {
            assert_close(&format!("{case} output {i}"), g, w, TOL);
            continue;
        }
        let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
        e[i] = g
            .iter()
            .zip(&w)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            e[i] <= TOL.f32,
            "{case} output {i}: |wgpu - cpu| {:e}",
            e[i]
        );
    }
    eprintln!(
        "ok {case}: {} dispatches, scaled errors {:?}",
        lp.dispatch_count(),
        e.iter().map(|x| format!("{x:.1e}")).collect::<Vec<_>>()
    );
    (e, got)
}

/// One (B, H, Lq, Lk, D) case of the fused forward and backward ops, applied directly.
fn case(s: u64, dims: [usize; 5], cap: Option<f32>, m: Masking) -> Result<Option<Vec<f64>>> {
    let [b, h, lq, lk, d] = dims;
    let mut r = rng(s);
    let spec = AttnSpec {
        scale: 1.0 / (d as f32).sqrt(),
        softcap: cap,
    };
    let g = Graph::new();
    let q = g.input("q", &[b, h, lq, d], DType::F32);
    let k = g.input("k", &[b, h, lk, d], DType::F32);
    let v = g.input("v", &[b, h, lk, d], DType::F32);
    let mk = g.input("mask", &[b, lq, lk], DType::Bool);
    let dout = g.input("dout", &[b, h, lq, d], DType::F32);
    let f = g.apply(Op::Attention(spec), &[&q, &k, &v, &mk])?;
    let bw = g.apply(
        Op::AttentionBwd(spec),
        &[&q, &k, &v, &mk, &f[0], &f[1], &dout],
    )?;
    let outs = [
        f[0].clone(),
        f[1].clone(),
        bw[0].clone(),
        bw[1].clone(),
        bw[2].clone(),
    ];
    let ins = [
        ("q", uniform(&mut r, &[b, h, lq, d], DType::F32, -2.0, 2.0)),
        ("k", uniform(&mut r, &[b, h, lk, d], DType::F32, -2.0, 2.0)),
        ("v", uniform(&mut r, &[b, h, lk, d], DType::F32, -2.0, 2.0)),
        ("mask", mask(&mut r, b, lq, lk, m)),
        (
            "dout",
            uniform(&mut r, &[b, h, lq, d], DType::F32, -1.0, 1.0),
        ),
    ];
    let name = format!("attention {dims:?} cap {cap:?} mask {m:?}");
    // one key: p = 1, so ds = p (do . v - do . o) is rounding noise on both executors and
    // dq, dk are 0 in exact arithmetic
    let noise: &[usize] = if lk == 1 { &[2, 3] } else { &[] };
    Ok(run(&name, &outs, &ins, &ALL, 4, noise))
}

/// Fixed edge cases (Lq or Lk of 1, one tile exactly, tiles and one, D 1 and 128), then
/// random odd shapes; each output's worst scaled error is printed.
#[test]
fn attention_forward_and_backward_match_cpu() -> Result<()> {
    let mut s = seed(9700);
    let fixed: [([usize; 5], Option<f32>, Masking); 10] = [
        ([1, 1, 1, 1, 1], None, Masking::None),
        ([1, 1, 1, 1, 8], Some(5.0), Masking::All),
        ([2, 3, 17, 33, 8], Some(5.0), Masking::Random(0.6)),
        ([1, 2, 33, 17, 16], None, Masking::Random(0.3)),
        ([2, 1, 70, 129, 24], Some(2.0), Masking::Random(0.8)),
        ([1, 1, 129, 70, 64], None, Masking::Random(0.5)),
        ([1, 2, 3, 129, 128], Some(5.0), Masking::None),
        ([2, 2, 129, 1, 8], None, Masking::Random(0.5)),
        ([1, 3, 33, 33, 128], None, Masking::All),
        ([2, 1, 16, 16, 16], Some(1.0), Masking::Random(0.9)),
    ];
    let mut cases = fixed.to_vec();
    let mut r = rng(s);
    let lens = [1, 3, 17, 33, 70, 129];
    let ds = [1, 8, 16, 24, 64, 128];
    for n in 0..8 {
        let dims = [
            r.random_range(1..=2),
            r.random_range(1..=3),
            lens[r.random_range(0..lens.len())],
            lens[r.random_range(0..lens.len())],
            ds[r.random_range(0..ds.len())],
        ];
        let cap = if n % 2 == 0 { Some(4.0) } else { None };
        let m = [Masking::None, Masking::Random(0.5), Masking::Random(0.9)][n % 3];
        cases.push((dims, cap, m));
    }
    let mut worst = [0f64; 5];
    for (dims, cap, m) in cases {
        s += 1;
        let Some(e) = case(s, dims, cap, m)? else {
            return Ok(());
        };
        for (w, x) in worst.iter_mut().zip(e) {
            *w = w.max(x);
        }
    }
    eprintln!(
        "attention: worst scaled errors out {:.1e}, lse {:.1e}, dq {:.1e}, dk {:.1e}, dv {:.1e}",
        worst[0], worst[1], worst[2], worst[3], worst[4]
    );
    Ok(())
}

/// `api::attention` (and its bias-slot form) differentiated by the engine's autograd, which
/// emits AttentionBwd from the forward's out and lse: loss, output and every gradient.
#[test]
fn gradients_through_api_attention_match_cpu() -> Result<()> {
    let mut r = rng(seed(9800));
    let (b, h, lq, lk, d) = (2, 3, 19, 37, 16);
    let g = Graph::new();
    let q = g.input("q", &[b, h, lq, d], DType::F32);
    let k = g.input("k", &[b, h, lk, d], DType::F32);
    let v = g.input("v", &[b, h, lk, d], DType::F32);
    let kb = g.input("kb", &[h, d], DType::F32);
    let vb = g.input("vb", &[h, d], DType::F32);
    let mk = g.input("mask", &[b, lq, lk], DType::Bool);
    let c = g.input("c", &[b, h, lq, d], DType::F32);
    let spec = AttnSpec {
        scale: 0.25,
        softcap: Some(5.0),
    };
    let plain = api::attention(&q, &k, &v, &mk, spec)?;
    let slot = api::attention_with_bias_slot(&q, &k, &v, &mk, Some((&kb, &vb)), spec)?;
    let loss = plain
        .mul(&c)?
        .sum_all()?
        .add(&slot.mul(&plain)?.sum_all()?)?;
    let grads = grad(
        &loss,
        &[q.clone(), k.clone(), v.clone(), kb.clone(), vb.clone()],
    )?;
    let mut outs = vec![loss, plain, slot];
    outs.extend(grads);
    let mut m = ints(&mut r, &[b, lq, lk], DType::Bool, 0, 2);
    if let Data::Bool(x) = &mut m.data {
        // row 4 of batch 1 sees no key (uniform without the slot; only the slot with it)
        x[(lq + 4) * lk..(lq + 5) * lk].fill(0);
    }
    let ins = [
        ("q", uniform(&mut r, &[b, h, lq, d], DType::F32, -2.0, 2.0)),
        ("k", uniform(&mut r, &[b, h, lk, d], DType::F32, -2.0, 2.0)),
        ("v", uniform(&mut r, &[b, h, lk, d], DType::F32, -2.0, 2.0)),
        ("kb", uniform(&mut r, &[h, d], DType::F32, -1.0, 1.0)),
        ("vb", uniform(&mut r, &[h, d], DType::F32, -1.0, 1.0)),
        ("mask", m),
        ("c", uniform(&mut r, &[b, h, lq, d], DType::F32, -1.0, 1.0)),
    ];
    let Some(x) = wgpu() else { return Ok(()) };
    for op in [
        Op::Attention(spec),
        Op::AttentionBwd(spec),
        Op::Attention(AttnSpec {
            scale: 1.0,
            softcap: None,
        }),
    ] {
        assert!(x.supports_fused(&op, DType::F32), "{}", op.name());
    }
    // two attentions forward and backward: 2 + 2 x 3 kernels, the rest small glue
    let names: Vec<&str> = ins.iter().map(|(n, _)| *n).collect();
    let p = Program::compile(&outs, &names)?;
    let lp = x.load(&p)?;
    let counts = lp.dispatch_counts();
    eprintln!(
        "autograd program: {} dispatches {counts:?}",
        lp.dispatch_count()
    );
    for e in ALL {
        // the forward kernel is whichever strategy this adapter picks
        let n = counts
            .iter()
            .filter(|(k, _)| k == e || (e == "attention_fwd" && k == "attention_fwd_row"))
            .map(|c| c.1)
            .sum::<usize>();
        assert_eq!(n, 2, "{e} dispatches ({counts:?})");
    }
    let want = cpu_run("autograd", &p, &ins);
    let got = wgpu_run(x, "autograd", &p, &ins);
    let mut errs = vec![];
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(&format!("autograd output {i}"), g, w, TOL);
        errs.push(format!("{:.1e}", scaled_err(g, w)));
    }
    eprintln!("ok autograd through api::attention: scaled errors {errs:?}");
    Ok(())
}

/// A forward-only program is one dispatch.
#[test]
fn forward_is_one_dispatch() -> Result<()> {
    let mut r = rng(seed(9900));
    let (b, h, l, d) = (1, 2, 40, 64);
    let g = Graph::new();
    let q = g.input("q", &[b, h, l, d], DType::F32);
    let k = g.input("k", &[b, h, l, d], DType::F32);
    let v = g.input("v", &[b, h, l, d], DType::F32);
    let mk = g.input("mask", &[b, l, l], DType::Bool);
    let spec = AttnSpec {
        scale: 0.125,
        softcap: None,
    };
    let f = g.apply(Op::Attention(spec), &[&q, &k, &v, &mk])?;
    let ins = [
        ("q", uniform(&mut r, &[b, h, l, d], DType::F32, -2.0, 2.0)),
        ("k", uniform(&mut r, &[b, h, l, d], DType::F32, -2.0, 2.0)),
        ("v", uniform(&mut r, &[b, h, l, d], DType::F32, -2.0, 2.0)),
        ("mask", mask(&mut r, b, l, l, Masking::Random(0.7))),
    ];
    run("attention forward only", &f, &ins, &FWD, 1, &[]);
    Ok(())
}

/// Head dims above the kernels' 128 are refused at load, naming the limit.
#[test]
fn head_dims_above_128_are_refused() -> Result<()> {
    let Some(x) = wgpu() else { return Ok(()) };
    let g = Graph::new();
    let q = g.input("q", &[1, 1, 4, 129], DType::F32);
    let mk = g.input("mask", &[1, 4, 4], DType::Bool);
    let spec = AttnSpec {
        scale: 0.1,
        softcap: None,
    };
    let f = g.apply(Op::Attention(spec), &[&q, &q, &q, &mk])?;
    let p = Program::compile(&f, &["q", "mask"])?;
    let e = x.load(&p).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("head dim 129"), "want a refusal, got {e:?}");
    Ok(())
}

/// The forward's two strategies timed on one shape in one run (B1 H8 L256 D64, `gidd bench
/// kernels`' attention case): printed, not asserted (speed is not a CI bar on lavapipe).
#[test]
fn forward_strategies_timed() -> Result<()> {
    let Some(x) = wgpu() else { return Ok(()) };
    let (b, h, l, d) = (1, 8, 256, 64);
    let g = Graph::new();
    let q = g.input("q", &[b, h, l, d], DType::F32);
    let k = g.input("k", &[b, h, l, d], DType::F32);
    let v = g.input("v", &[b, h, l, d], DType::F32);
    let m = g.input("mask", &[b, l, l], DType::Bool);
    let spec = AttnSpec {
        scale: 0.125,
        softcap: None,
    };
    let outs = g.apply(Op::Attention(spec), &[&q, &k, &v, &m])?;
    let p = Program::compile(&outs, &["q", "k", "v", "mask"])?;
    let mut r = rng(seed(5100));
    let mut ins: Vec<HostTensor> = (0..3)
        .map(|_| uniform(&mut r, &[b, h, l, d], DType::F32, -1.0, 1.0))
        .collect();
    ins.push(mask(&mut r, b, l, l, Masking::None));
    let bufs = ins
        .iter()
        .map(|t| x.upload(t))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<_> = bufs.iter().collect();
    for s in [AttentionStrategy::Tiled, AttentionStrategy::RowStream] {
        let xs = x.clone().with_attention(s);
        let mut lp = xs.load(&p)?;
        let mut times = vec![];
        for _ in 0..4 {
            let t = std::time::Instant::now();
            let o = xs.run(&mut lp, &refs)?;
            xs.synchronize()?;
            times.push(t.elapsed().as_secs_f64());
            drop(o);
        }
        // the first run pays for the pipeline's JIT: left out
        let mut times = times[1..].to_vec();
        times.sort_by(f64::total_cmp);
        eprintln!(
            "attention forward B{b} H{h} L{l} D{d} {s:?}: {:.1} ms (median of 3 after a warm-up)",
            times[1] * 1e3
        );
    }
    Ok(())
}
