//! The measured f32 FMA peak of this machine, the denominator of every CPU roofline fraction.

#[cfg(target_arch = "x86_64")]
use super::{level, Level};

/// Measured f32 FMA peak of this machine in GFLOP/s: every thread runs a loop of
/// independent fused multiply-adds at the widest SIMD level for ~`seconds`.
/// Benchmarks report their fraction of this number.
pub fn measure_f32_peak(seconds: f64) -> f64 {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let per_thread: Vec<f64> = (0..threads)
        .into_par_iter()
        .map(|_| fma_loop(seconds))
        .collect();
    per_thread.iter().sum::<f64>() / 1e9
}

/// FLOP/s of one thread running independent FMA chains.
fn fma_loop(seconds: f64) -> f64 {
    let t = std::time::Instant::now();
    let mut flops = 0.0;
    while t.elapsed().as_secs_f64() < seconds {
        flops += fma_block();
    }
    flops / t.elapsed().as_secs_f64()
}

#[cfg(target_arch = "x86_64")]
fn fma_block() -> f64 {
    const ITERS: usize = 1 << 16;
    match level() {
        // SAFETY: level() reports AVX-512F, checked at run time.
        Level::Avx512 => unsafe { fma_avx512(ITERS) },
        // SAFETY: level() reports AVX2 and FMA, checked at run time.
        Level::Avx2Fma => unsafe { fma_avx2(ITERS) },
        Level::Scalar => {
            let mut acc = [1.0f32; 8];
            for _ in 0..ITERS {
                for a in acc.iter_mut() {
                    *a = a.mul_add(0.999_999, 1e-7);
                }
            }
            std::hint::black_box(acc);
            (ITERS * 8 * 2) as f64
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_block() -> f64 {
    const ITERS: usize = 1 << 16;
    let mut acc = [1.0f32; 8];
    for _ in 0..ITERS {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    (ITERS * 8 * 2) as f64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: usize) -> f64 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    std::hint::black_box(acc);
    (iters * 12 * 16 * 2) as f64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: usize) -> f64 {
    use std::arch::x86_64::*;
    let (m, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    std::hint::black_box(acc);
    (iters * 12 * 8 * 2) as f64
}
