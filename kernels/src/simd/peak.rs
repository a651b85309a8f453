//! The measured f32 FMA peak of this machine, the denominator of every CPU roofline fraction,
//! and the measured `vdpbf16ps` peak (bf16 pairs into f32 lanes) where AVX512_BF16 exists.

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
    run_loop(seconds, fma_block)
}

/// FLOP/s of one thread running `block` (which returns its flops) for ~`seconds`.
fn run_loop(seconds: f64, block: fn() -> f64) -> f64 {
    let t = std::time::Instant::now();
    let mut flops = 0.0;
    while t.elapsed().as_secs_f64() < seconds {
        flops += block();
    }
    flops / t.elapsed().as_secs_f64()
}

/// Measured `vdpbf16ps` peak of this machine in GFLOP/s (each instruction: 16 f32 lanes,
/// two bf16 products and two adds per lane = 64 flops), every thread for ~`seconds`;
/// `None` without AVX512_BF16 at the active level.
pub fn measure_bf16_dot_peak(seconds: f64) -> Option<f64> {
    use rayon::prelude::*;
    let block = bf16_dot_block()?;
    let threads = rayon::current_num_threads();
    let per_thread: Vec<f64> = (0..threads)
        .into_par_iter()
        .map(|_| run_loop(seconds, block))
        .collect();
    Some(per_thread.iter().sum::<f64>() / 1e9)
}

/// The `vdpbf16ps` peak over the f32 FMA peak, measured on the calling thread: blocks of
/// the two loops (~0.2 ms each) alternate for ~`seconds`, and each loop's fastest block
/// counts (a block the scheduler interrupted only runs slower, so on a shared machine the
/// best block is still the instruction's rate); `None` without AVX512_BF16. A ratio, unlike
/// an absolute peak, carries over to a caller's f32 peak measured in other units (per
/// CPU-second, say). 2.0 on the 2-core Zen 4: a 512-bit `vdpbf16ps` issues as often as a
/// 512-bit FMA and does twice its flops.
pub fn bf16_dot_over_fma(seconds: f64) -> Option<f64> {
    let block = bf16_dot_block()?;
    let best = |f: fn() -> f64, best: &mut f64| {
        let t = std::time::Instant::now();
        let flops = f();
        *best = best.max(flops / t.elapsed().as_secs_f64().max(1e-9));
    };
    let (mut dot, mut fma) = (0.0f64, 0.0f64);
    let t = std::time::Instant::now();
    while t.elapsed().as_secs_f64() < seconds {
        best(block, &mut dot);
        best(fma_block, &mut fma);
    }
    Some(dot / fma)
}

#[cfg(target_arch = "x86_64")]
fn bf16_dot_block() -> Option<fn() -> f64> {
    fn block() -> f64 {
        // SAFETY: only returned when has_avx512_bf16() (AVX-512F and AVX512_BF16 at run time).
        unsafe { dot_bf16_avx512(1 << 16) }
    }
    super::has_avx512_bf16().then_some(block as fn() -> f64)
}

#[cfg(not(target_arch = "x86_64"))]
fn bf16_dot_block() -> Option<fn() -> f64> {
    None
}

/// Independent `vdpbf16ps` chains: 12 accumulators cover the latency (6 cycles on Zen 4)
/// at up to two issues per cycle.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dot_bf16_avx512(iters: usize) -> f64 {
    use std::arch::x86_64::*;
    // bf16 pairs (1.0, ~0) and (~1, ~0): the accumulators grow slowly, never overflow.
    // SAFETY: both are plain 512-bit vectors; every bit pattern is a valid value of either.
    let (x, y) = unsafe {
        (
            std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x0000_3f80)),
            std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x0001_3f7f)),
        )
    };
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_dpbf16_ps(*a, x, y);
        }
    }
    std::hint::black_box(acc);
    (iters * 12 * 16 * 4) as f64
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
