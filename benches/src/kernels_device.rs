//! `gidd bench kernels --backend xla|wgpu|cuda`: the model's kernels as one-op engine
//! programs on a device executor, timed to completion (`Executor::synchronize`), as
//! GFLOP/s against the executor's `peak_flops` (compute-bound ops) or GB/s of the minimum
//! traffic (memory-bound ops: every input read once, every output written once).
//!
//! The cpu table (`kernels::run`) times gidd-kernels' functions directly; this one goes
//! through `Executor::load`/`run`, so it also times what a device adds around a kernel
//! (dispatch, binding, the generated elementwise glue of a fused op's dtype casts).

use anyhow::Result;
use gidd_engine::api as nn;
use gidd_engine::op::MarginalSpec;
use gidd_engine::{grad, AttnSpec, DType, Executor, Graph, HostTensor, Program, Tensor};
use std::time::Instant;

/// Which shapes run: the GEMM ladder stops at `max_gemm` (4096^3 is the GPU bar;
/// lavapipe wants 1024) and attention at `max_seq`.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub max_gemm: usize,
    pub max_seq: usize,
}

/// One timed program: what it computes and how much work that is.
struct Case {
    kernel: &'static str,
    dtype: DType,
    shape: String,
    prog: Program,
    inputs: Vec<HostTensor>,
    /// FLOPs of one run (compute-bound cases) or None (memory-bound: bytes decide).
    flops: Option<f64>,
    bytes: f64,
}

/// Deterministic inputs in [-0.5, 0.5) (no RNG: every backend and run sees the same data).
fn fill(shape: &[usize], dtype: DType) -> HostTensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let t = HostTensor::f32(shape.to_vec(), v).expect("shape matches its data");
    if dtype == DType::F32 {
        t
    } else {
        t.convert(dtype)
    }
}

fn program(outs: &[Tensor], names: &[&str]) -> Result<Program> {
    Ok(Program::compile(outs, names)?)
}

fn gemm(m: usize, n: usize, k: usize, trans_b: bool, dt: DType, label: String) -> Result<Case> {
    let g = Graph::new();
    let a = g.input("a", &[m, k], dt);
    let bshape = if trans_b { [n, k] } else { [k, n] };
    let b = g.input("b", &bshape, dt);
    let bm = if trans_b { b.transpose(&[1, 0])? } else { b };
    let c = a.matmul(&bm)?;
    let w = dt.size() as f64;
    Ok(Case {
        kernel: "gemm",
        dtype: dt,
        shape: label,
        prog: program(&[c], &["a", "b"])?,
        inputs: vec![fill(&[m, k], dt), fill(&bshape, dt)],
        flops: Some(2.0 * (m * n * k) as f64),
        bytes: w * (m * k + k * n + m * n) as f64,
    })
}

/// Attention forward, or forward plus backward (the gradients of sum(out * dout) with
/// respect to q, k and v), soft-cap 30, a full mask, B 1, H 8; q, k, v (and dout) of `dt`
/// (bf16: the cuda executor's tensor-core kernels, f32: its SIMT ones).
fn attention(l: usize, d: usize, backward: bool, dt: DType) -> Result<Case> {
    let (b, h) = (1, 8);
    let g = Graph::new();
    let shape = [b, h, l, d];
    let (q, k, v) = (
        g.input("q", &shape, dt),
        g.input("k", &shape, dt),
        g.input("v", &shape, dt),
    );
    let mask = g.splat(1.0, &[b, l, l], DType::Bool);
    let spec = AttnSpec {
        scale: (d as f32).powf(-0.5),
        softcap: Some(30.0),
    };
    let o = nn::attention(&q, &k, &v, &mask, spec)?;
    let fwd = 4.0 * (b * h * l * l * d) as f64;
    let n = (b * h * l * d) as f64;
    let mut inputs = vec![fill(&shape, dt), fill(&shape, dt), fill(&shape, dt)];
    let (prog, flops, kernel, bytes) = if backward {
        let dout = g.input("dout", &shape, dt);
        let loss = o.mul(&dout)?.to(DType::F32)?.sum_all()?;
        let gr = grad(&loss, &[q, k, v])?;
        inputs.push(fill(&shape, dt));
        // the convention: the backward is 2.5x the forward; the timed program runs both
        (
            program(&gr, &["q", "k", "v", "dout"])?,
            3.5 * fwd,
            "attention_fwd+bwd",
            4.0 * 7.0 * n,
        )
    } else {
        (
            program(&[o], &["q", "k", "v"])?,
            fwd,
            "attention_fwd",
            4.0 * 4.0 * n,
        )
    };
    Ok(Case {
        kernel,
        dtype: dt,
        shape: format!("B{b} H{h} L{l} D{d}"),
        prog,
        inputs,
        flops: Some(flops),
        bytes,
    })
}

/// Row-wise memory-bound ops over [rows, n] f32: softmax, rms_norm, the diffusion KL.
fn rowwise(kernel: &'static str, rows: usize, n: usize) -> Result<Case> {
    let g = Graph::new();
    let x = g.input("x", &[rows, n], DType::F32);
    let mut inputs = vec![fill(&[rows, n], DType::F32)];
    let elems = (rows * n) as f64;
    let (outs, names, bytes): (Vec<Tensor>, Vec<&str>, f64) = match kernel {
        "softmax" => (vec![x.softmax()?], vec!["x"], 8.0 * elems),
        "rms_norm" => {
            let w = g.input("w", &[n], DType::F32);
            inputs.push(fill(&[n], DType::F32));
            (vec![x.rms_norm(&w, 1e-6)?], vec!["x", "w"], 8.0 * elems)
        }
        _ => {
            // the GIDD loss's pass over the vocabulary: logits read once, three per-token terms
            let spec = MarginalSpec {
                mask_id: (n - 1) as u32,
                min_log_snr: -9.0,
                max_log_snr: 9.0,
                scale: 1.0,
                shift: 0.0,
            };
            let z = g.input("z", &[rows], DType::I32);
            let xt = g.input("x0", &[rows], DType::I32);
            let l = g.input("l", &[rows], DType::F32);
            let ids: Vec<i32> = (0..rows).map(|i| ((i * 131) % n) as i32).collect();
            let z_ids: Vec<i32> = ids
                .iter()
                .map(|&i| if i % 2 == 0 { i } else { n as i32 - 1 })
                .collect();
            inputs.push(HostTensor::i32(vec![rows], z_ids)?);
            inputs.push(HostTensor::i32(vec![rows], ids)?);
            inputs.push(fill(&[rows], DType::F32));
            let (kl, lp, lq) = nn::diffusion_kl(&x, &z, &xt, &l, spec)?;
            (vec![kl, lp, lq], vec!["x", "z", "x0", "l"], 4.0 * elems)
        }
    };
    Ok(Case {
        kernel,
        dtype: DType::F32,
        shape: format!("{rows}x{n}"),
        prog: program(&outs, &names)?,
        inputs,
        flops: None,
        bytes,
    })
}

fn cases(s: Sizes) -> Result<Vec<Case>> {
    let mut v = vec![];
    for n in [256, 512, 1024, 2048, 4096]
        .into_iter()
        .filter(|&n| n <= s.max_gemm)
    {
        for dt in [DType::F32, DType::BF16] {
            v.push(gemm(n, n, n, false, dt, format!("{n}x{n}x{n}"))?);
        }
    }
    // the tiny/small presets' shapes: tokens x d x d, tokens x 4d x d, tokens x V x d
    for (m, n, k) in [
        (2048, 256, 256),
        (2048, 1024, 256),
        (2048, 4096, 256),
        (2048, 256, 1024),
    ] {
        if m.max(n).max(k) <= s.max_gemm.max(2048) {
            v.push(gemm(
                m,
                n,
                k,
                true,
                DType::F32,
                format!("{m}x{n}x{k} (model, B^T)"),
            )?);
        }
    }
    for l in [256, 512, 1024, 2048]
        .into_iter()
        .filter(|&l| l <= s.max_seq)
    {
        for d in [64, 128] {
            for dt in [DType::F32, DType::BF16] {
                v.push(attention(l, d, false, dt)?);
                v.push(attention(l, d, true, dt)?);
            }
        }
    }
    for k in ["softmax", "rms_norm", "diffusion_kl"] {
        v.push(rowwise(k, 2048, 4096)?);
    }
    if s.max_seq >= 2048 {
        // the loss over a production vocabulary: the fused kernel streams 131072 logits a token
        v.push(rowwise("diffusion_kl", 64, 131072)?);
    }
    Ok(v)
}

/// Median seconds of one run of `lp` over enough repetitions to fill ~0.3 s, each
/// waited for to the end; the first (compiling, allocating) run is not timed.
fn time<E: Executor>(exec: &E, lp: &mut E::Loaded, ins: &[&E::Buffer]) -> Result<f64> {
    let mut once = || -> Result<f64> {
        let t = Instant::now();
        let out = exec.run(lp, ins)?;
        exec.synchronize()?;
        drop(out);
        Ok(t.elapsed().as_secs_f64())
    };
    once()?;
    let one = once()?.max(1e-6);
    let reps = ((0.3 / one) as usize).clamp(3, 50);
    let mut v = (0..reps).map(|_| once()).collect::<Result<Vec<f64>>>()?;
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// Prints the table (or JSON lines) of every case on `exec`.
pub fn run_on<E: Executor>(exec: &E, sizes: Sizes, json: bool) -> Result<()> {
    let peak = |dt: DType| exec.peak_flops(dt);
    if !json {
        let p = |dt| peak(dt).map_or("unknown".into(), |p| format!("{:.1}", p / 1e9));
        println!(
            "{}: peak f32 {} GFLOP/s, bf16 {} GFLOP/s (memory-bound rows: GB/s of the minimum traffic)",
            exec.name(),
            p(DType::F32),
            p(DType::BF16)
        );
        println!(
            "{:<18} {:<5} {:<26} {:>10} {:>10} {:>8} {:>8}",
            "kernel", "dtype", "shape", "ms", "GFLOP/s", "of peak", "GB/s"
        );
    }
    let mut flagged = false;
    for c in cases(sizes)? {
        let mut lp = exec.load(&c.prog)?;
        let bufs = c
            .inputs
            .iter()
            .map(|t| exec.upload(t))
            .collect::<gidd_engine::Result<Vec<_>>>()?;
        let refs: Vec<&E::Buffer> = bufs.iter().collect();
        let t = time(exec, &mut lp, &refs)?;
        let gflops = c.flops.map(|f| f / t / 1e9);
        let frac = c.flops.zip(peak(c.dtype)).map(|(f, p)| f / t / p);
        let gbs = c.bytes / t / 1e9;
        flagged |= frac.is_some_and(|f| !crate::peak_reliable(f));
        if json {
            println!(
                "{}",
                serde_json::json!({"backend": exec.name(), "kernel": c.kernel, "dtype": c.dtype.to_string(),
                    "shape": c.shape, "ms": t * 1e3, "gflops": gflops, "frac_of_peak": frac, "gb_s": gbs,
                    "peak_reliable": frac.map(crate::peak_reliable)})
            );
        } else {
            println!(
                "{:<18} {:<5} {:<26} {:>10.3} {:>10} {:>8} {:>8.1}",
                c.kernel,
                c.dtype.to_string(),
                c.shape,
                t * 1e3,
                gflops.map_or("-".into(), |g| format!("{g:.1}")),
                frac.map_or("-".into(), crate::of_peak),
                gbs
            );
        }
    }
    if flagged && !json {
        println!("{}", crate::PEAK_NOTE);
    }
    Ok(())
}
