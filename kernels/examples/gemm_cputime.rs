//! GEMM GFLOP per CPU-second on ONE thread (the calling thread's CPU time,
//! CLOCK_THREAD_CPUTIME_ID), for comparisons on a machine shared with other work, where
//! wall-clock throughput measures the scheduler. Prints one JSON line per (dtype, shape),
//! plus the f32 FMA and `vdpbf16ps` peaks per CPU-second. Run:
//! cargo run --release -p gidd-kernels --example gemm_cputime [f32|bf16] [SHAPE-SUBSTRING]
//! (arguments keep only that dtype's rows, and the shapes whose name contains the substring).
use gidd_kernels::matmul::{gemm_bf16_to_bf16, gemm_f32, GemmShape};
use half::bf16;

#[cfg(target_os = "linux")]
#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}
#[cfg(target_os = "linux")]
extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// This thread's CPU seconds (CLOCK_THREAD_CPUTIME_ID = 3 on Linux; exact, unlike schedstat,
/// which only advances at scheduler ticks).
#[cfg(target_os = "linux")]
fn thread_cpu_s() -> f64 {
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; glibc's clock_gettime only writes it.
    unsafe { clock_gettime(3, &mut t) };
    t.sec as f64 + t.nsec as f64 / 1e9
}

#[cfg(target_os = "linux")]
fn proc_cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// Best CPU seconds of one call over calls filling ~`budget` CPU seconds (after a warm-up).
#[cfg(target_os = "linux")]
fn best_cpu(mut f: impl FnMut(), budget: f64) -> f64 {
    f();
    let start = thread_cpu_s();
    let mut best = f64::INFINITY;
    let mut n = 0;
    while n < 3 || thread_cpu_s() - start < budget {
        let t = thread_cpu_s();
        f();
        best = best.min(thread_cpu_s() - t);
        n += 1;
    }
    best
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("gemm_cputime: Linux only (thread CPU clock id and /proc)");
    std::process::exit(2);
}

#[cfg(target_os = "linux")]
fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("gemm_cputime: the one-thread rayon pool must be the first pool built");
    // Peak: the FMA loop runs on the pool's single worker; process CPU time (10 ms ticks)
    // over >= 2 s of it.
    let (c0, w0) = (proc_cpu_s(), std::time::Instant::now());
    let wall_peak = gidd_kernels::simd::measure_f32_peak(2.0);
    let wall = w0.elapsed().as_secs_f64();
    let peak = wall_peak * wall / (proc_cpu_s() - c0);
    println!("{{\"kernel\":\"fma_peak\",\"dtype\":\"f32\",\"gflops_per_cpu_s\":{peak:.1}}}");
    let bpeak = gidd_kernels::matmul::bf16_peak_gflops(peak);
    println!("{{\"kernel\":\"bf16_peak\",\"dtype\":\"bf16\",\"gflops_per_cpu_s\":{bpeak:.1}}}");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dtype = args.first().cloned().unwrap_or_default();
    let want = |d: &str| dtype.is_empty() || dtype == d;
    let filter = args.get(1).cloned().unwrap_or_default();
    let fill = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    };
    let shapes = GemmShape::bench_ladder();
    for (name, s) in shapes.iter().filter(|(n, _)| n.contains(&filter)) {
        let (a, b) = (fill(s.m * s.k), fill(s.k * s.n));
        let mut c = vec![0f32; s.m * s.n];
        if want("f32") {
            let t = best_cpu(|| gemm_f32(s, &a, &b, &mut c), 1.0);
            println!("{{\"kernel\":\"gemm\",\"dtype\":\"f32\",\"shape\":\"{name}\",\"gflops_per_cpu_s\":{:.1},\"frac_of_peak\":{:.3}}}", s.flops() / t / 1e9, s.flops() / t / 1e9 / peak);
        }
        if !want("bf16") {
            continue;
        }
        let (ah, bh): (Vec<bf16>, Vec<bf16>) = (
            a.iter().map(|&x| bf16::from_f32(x)).collect(),
            b.iter().map(|&x| bf16::from_f32(x)).collect(),
        );
        // bf16 out, as the engine's bf16 dot_general and torch's bf16 matmul
        let mut ch = vec![bf16::ZERO; s.m * s.n];
        let t = best_cpu(|| gemm_bf16_to_bf16(s, &ah, &bh, &mut ch), 1.0);
        println!("{{\"kernel\":\"gemm\",\"dtype\":\"bf16\",\"shape\":\"{name}\",\"gflops_per_cpu_s\":{:.1},\"frac_of_peak\":{:.3}}}", s.flops() / t / 1e9, s.flops() / t / 1e9 / bpeak);
    }
}
