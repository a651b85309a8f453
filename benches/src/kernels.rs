//! `gidd bench kernels`: time, GFLOP/s and fraction of a measured FMA peak per kernel and shape.

use gidd_kernels::attention::{attention_bwd, attention_fwd, AttnParams, AttnShape};
use gidd_kernels::matmul::{gemm_bf16_to_bf16, gemm_f32, GemmShape};
use half::bf16;
use std::time::Instant;

/// Median seconds of `f` over enough repetitions to fill ~0.3 s (after one warm-up).
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    f();
    let one = t.elapsed().as_secs_f64().max(1e-6);
    let reps = ((0.3 / one) as usize).clamp(3, 50);
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Prints the kernel table (or JSON lines) with fractions of the measured FMA peak;
/// `gemm_only` skips the attention rows.
pub fn run(json: bool, gemm_only: bool) {
    let mut rows: Vec<(String, String, String, f64, f64)> = vec![];
    let fill = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    };
    let shapes = GemmShape::bench_ladder();
    for (name, s) in &shapes {
        let (a, b) = (fill(s.m * s.k), fill(s.k * s.n));
        let mut c = vec![0f32; s.m * s.n];
        let t = time(|| gemm_f32(s, &a, &b, &mut c));
        rows.push((
            "gemm".into(),
            "f32".into(),
            name.clone(),
            t * 1e3,
            s.flops() / t / 1e9,
        ));
        let (ah, bh): (Vec<bf16>, Vec<bf16>) = (
            a.iter().map(|&x| bf16::from_f32(x)).collect(),
            b.iter().map(|&x| bf16::from_f32(x)).collect(),
        );
        // bf16 out, as the engine's bf16 dot_general and torch's bf16 matmul
        let mut ch = vec![bf16::ZERO; s.m * s.n];
        let t = time(|| gemm_bf16_to_bf16(s, &ah, &bh, &mut ch));
        rows.push((
            "gemm".into(),
            "bf16".into(),
            name.clone(),
            t * 1e3,
            s.flops() / t / 1e9,
        ));
    }
    for l in [256, 512, 1024, 2048].into_iter().filter(|_| !gemm_only) {
        for d in [64, 128] {
            let sh = AttnShape {
                batch: 1,
                heads: 8,
                lq: l,
                lk: l,
                head_dim: d,
            };
            let n = 8 * l * d;
            let (q, k, v) = (fill(n), fill(n), fill(n));
            let mask = vec![1u8; l * l];
            let (mut o, mut lse) = (vec![0f32; n], vec![0f32; 8 * l]);
            let p = AttnParams {
                scale: (d as f32).powf(-0.5),
                softcap: Some(30.0),
            };
            let t = time(|| attention_fwd(&sh, &p, &q, &k, &v, Some(&mask), &mut o, &mut lse));
            // The usual convention: forward 4 B H L^2 D flops, backward 2.5x that.
            let flops = 4.0 * 8.0 * (l * l * d) as f64;
            rows.push((
                "attention_fwd".into(),
                "f32".into(),
                format!("B1 H8 L{l} D{d}"),
                t * 1e3,
                flops / t / 1e9,
            ));
            let dout = fill(n);
            let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
            let t = time(|| {
                attention_bwd(
                    &sh,
                    &p,
                    &q,
                    &k,
                    &v,
                    Some(&mask),
                    &o,
                    &lse,
                    &dout,
                    &mut dq,
                    &mut dk,
                    &mut dv,
                )
            });
            rows.push((
                "attention_bwd".into(),
                "f32".into(),
                format!("B1 H8 L{l} D{d}"),
                t * 1e3,
                2.5 * flops / t / 1e9,
            ));
        }
    }
    let loss = (!gemm_only).then(|| bench_loss(&fill));
    // f32 rows against the measured f32 FMA peak; bf16 rows against the peak of the path
    // gemm_bf16 takes (AMX tiles, vdpbf16ps or widened f32).
    let peak = gidd_kernels::simd::measure_f32_peak(0.5);
    let bf16_peak = gidd_kernels::matmul::bf16_peak_gflops(peak);
    #[cfg(target_arch = "x86_64")]
    if gidd_kernels::matmul::cpu_amx::available() {
        eprintln!("bf16 GEMM on AMX tiles; measured AMX bf16 peak {bf16_peak:.0} GFLOP/s");
    }
    let frac =
        |r: &(String, String, String, f64, f64)| r.4 / if r.1 == "bf16" { bf16_peak } else { peak };
    if json {
        for r in &rows {
            println!(
                "{}",
                serde_json::json!({"kernel": r.0, "dtype": r.1, "shape": r.2, "ms": r.3, "gflops": r.4, "frac_of_peak": frac(r),
                    "peak_reliable": crate::peak_reliable(frac(r))})
            );
        }
        for r in loss.iter().flatten() {
            println!(
                "{}",
                serde_json::json!({"kernel": r.0, "dtype": "f32", "shape": r.1, "ms": r.2, "ns_per_entry": r.3, "gbytes_s": r.4})
            );
        }
        return;
    }
    let caches = gidd_kernels::matmul::blocking::cache_sizes();
    println!(
        "cpu: {}, {} threads; measured FMA peak: f32 {peak:.1} GFLOP/s, bf16 {bf16_peak:.1} GFLOP/s; caches per core: L1d {} KiB, L2 {} KiB, L3 {} KiB",
        gidd_kernels::simd::describe(),
        rayon::current_num_threads(),
        caches.l1d >> 10,
        caches.l2 >> 10,
        caches.l3 >> 10
    );
    println!(
        "{:<14} {:<5} {:<28} {:>10} {:>10} {:>8}",
        "kernel", "dtype", "shape", "ms", "GFLOP/s", "of peak"
    );
    for r in &rows {
        println!(
            "{:<14} {:<5} {:<28} {:>10.3} {:>10.1} {:>8}",
            r.0,
            r.1,
            r.2,
            r.3,
            r.4,
            crate::of_peak(frac(r))
        );
    }
    if let Some(loss) = &loss {
        // The loss is bound by one exp and one ln per vocabulary entry, not by FMAs or bytes:
        // it gets time per entry and the rate over its minimum bytes (logits in; d logits out).
        println!(
            "{:<14} {:<5} {:<28} {:>10} {:>10} {:>8}",
            "", "", "", "ms", "ns/entry", "GB/s"
        );
        for r in loss {
            println!(
                "{:<14} {:<5} {:<28} {:>10.3} {:>10.3} {:>8.1}",
                r.0, "f32", r.1, r.2, r.3, r.4
            );
        }
    }
    if rows.iter().any(|r| !crate::peak_reliable(frac(r))) {
        println!("{}", crate::PEAK_NOTE);
    }
}

/// The fused GIDD loss over the vocabulary (forward, backward) at the main job's and the bench
/// step's shapes, masked and hybrid noise: (kernel, shape, ms, ns per entry, GB/s).
fn bench_loss(fill: &dyn Fn(usize) -> Vec<f32>) -> Vec<(String, String, f64, f64, f64)> {
    use gidd_kernels::gidd_loss::{backward, forward, Marginal};
    let mut out = vec![];
    for (rows, v, shift, noise) in [
        (1024usize, 4096usize, -1000.0f32, "masked"),
        (2048, 4096, 0.0, "hybrid"),
    ] {
        let m = Marginal {
            vocab: v,
            mask_id: 3,
            min_log_snr: -9.0,
            max_log_snr: 9.0,
            scale: 1.0,
            shift,
        };
        let lg: Vec<f32> = fill(rows * v).iter().map(|y| 8.0 * y).collect();
        let x: Vec<i64> = (0..rows).map(|i| (i * 37 % v) as i64).collect();
        let z: Vec<i64> = (0..rows)
            .map(|i| if i % 2 == 0 { 3 } else { x[i] })
            .collect();
        let l: Vec<f32> = (0..rows).map(|i| (i % 19) as f32 - 9.0).collect();
        let (mut kl, mut lpz, mut lqz) = (vec![0f32; rows], vec![0f32; rows], vec![0f32; rows]);
        let g = vec![1f32 / rows as f32; rows];
        let mut d = vec![0f32; rows * v];
        let n = (rows * v) as f64;
        let shape = format!("{rows}x{v} {noise}");
        let t = time(|| forward(&m, &lg, &z, &x, &l, &mut kl, &mut lpz, &mut lqz));
        out.push((
            "loss_fwd".into(),
            shape.clone(),
            t * 1e3,
            t / n * 1e9,
            4.0 * n / t / 1e9,
        ));
        let t = time(|| backward(&m, &lg, &z, &x, &l, &g, &g, &mut d));
        out.push((
            "loss_bwd".into(),
            shape,
            t * 1e3,
            t / n * 1e9,
            8.0 * n / t / 1e9,
        ));
    }
    out
}
