//! Batched row-major GEMM: `C_b = op(A_b) · op(B_b)` for every batch entry `b`.
//!
//! $$C_b[i, j] = \sum_{p < k} \operatorname{op}(A_b)[i, p] \, \operatorname{op}(B_b)[p, j]$$
//!
//! # Shapes
//! * `A`: `batch × [m, k]` (`trans_a = false`) or `batch × [k, m]` (`trans_a = true`), row-major,
//!   batch entries contiguous: `batch·m·k` elements.
//! * `B`: `batch × [k, n]` or `batch × [n, k]` (`trans_b`); with `b_broadcast` a single matrix
//!   (`k·n` elements) shared by every batch entry (weights).
//! * `C`: `batch × [m, n]` row-major, overwritten (never accumulated into).
//!
//! `k = 0` writes zeros; `batch`, `m` or `n` = 0 is a no-op. Callers validate slice lengths;
//! the kernels only `debug_assert!` them (and panic on a short slice, never read out of bounds).
//!
//! # Strategy
//! [`cpu`] is a GotoBLAS/BLIS loop nest: panels of `op(A)` and `op(B)` are packed into
//! contiguous, zero-padded buffers (this absorbs the transposes and the bf16 pairing), and a
//! register-blocked microkernel runs over them. The microkernel is picked at run time from
//! [`crate::simd::level`]: AVX-512 (14×32 f32 tile; bf16 via `vdpbf16ps`), AVX2+FMA (6×16),
//! or a portable scalar tile. On AVX-512, packing itself is SIMD too (16×16 in-register
//! transposes for depth-contiguous operands, masked copies / `vpermt2w` interleaves for
//! strided ones). Work is split over rayon's pool by batch entry, by row blocks of `C`
//! (sharing one packed B block) or by column panels, and tiny problems (< 2 MFLOP) stay on
//! the calling thread. [`cpu::gemm_f32_at`] / [`cpu::gemm_bf16_at`] run a chosen level
//! (tests and benchmarks). The cache blocks (MC, KC, NC) follow the cache sizes the CPU
//! reports, read once per process ([`blocking`]); on the Zen 4 they were tuned on they are
//! the tuned ones.
//!
//! With at most [`skinny::SKINNY_M`] rows of `C` (decoding's products), f32 and bf16 skip
//! the packing and stream `B` once ([`skinny`], [`skinny_bf16`]).
//!
//! bf16 output ([`gemm_bf16_to_bf16`], the engine's bf16 `dot_general`) is rounded by the
//! microkernel from its registers when the whole depth is one cache block (every product of
//! the tiny and small models), so the f32 matrix is never written; deeper products stage
//! it in f32 and round once. Both are bit for bit the rounded f32 output.
//!
//! bf16 on CPUs with AMX (Sapphire Rapids and later) runs on tiles instead ([`cpu_amx`]):
//! there `vdpbf16ps` is no faster than f32 FMAs.
//!
//! # bf16 on the 2-core Zen 4 (AVX512_BF16, no AMX): what the numbers are measured against
//! * Peak: `vdpbf16ps` (16 f32 lanes, 2 bf16 products each = 64 flops) issues as often as a
//!   512-bit FMA, so the bf16 peak is 2.0x the FMA peak ([`bf16_peak_gflops`] measures the
//!   ratio, [`crate::simd::measure_bf16_dot_peak`] the absolute figure): 230 GFLOP per
//!   CPU-second per core (FMA 115, i.e. ~3.6 GHz x 32 flops/cycle), ~460 GFLOP/s on both
//!   cores of a quiet machine.
//! * 2048³: 17.2 GFLOP over 24 MiB of bf16 operands and output (683 flop/byte): compute
//!   bound. The tiny model's products (tokens T = 2048 = B 8 x L 256, d 256, 4d 1024,
//!   V 4096; weights `[n, k]`), each with its backward dX = dY·W (plain) and dW = dY^T·X
//!   (`trans_a`, depth T), same flops per triple: T x d x d 0.27 GFLOP / 2.1 MiB
//!   (120 flop/byte), T x 4d x d and T x d x 4d 1.07 GFLOP / 5.5 MiB (186), T x V x d
//!   4.3 GFLOP / 19 MiB (216). All are compute bound on paper; written as f32 the output
//!   doubles its bytes, which is why the bf16-output path rounds in registers.
//! * Measured one thread, GFLOP per CPU-second (kernels/examples/gemm_cputime.rs against
//!   gemm_torch_cputime.py, interleaved, 3 runs each, machine shared with other builds):
//!   ours 2048³ 208 (0.89 of peak) vs torch bf16 (oneDNN brg_matmul avx512_core_bf16) 195,
//!   1024³ 206 vs 199; the model's 12 products 0.80-0.93 of peak, 0.93-1.11x torch.
//!
//! Measured, 2 threads, quiet machine: on a 2-core Zen 4 (AVX-512, 1 MiB L2/core) f32
//! 1024³ ≈ 210 GFLOP/s (numpy/OpenBLAS ≈ 200; FMA peak ≈ 226), bf16 (`vdpbf16ps`) ≈ 420 (before the bf16-output path);
//! on a 2-core Sapphire Rapids f32 ≈ 300 (FMA peak 478), bf16 `vdpbf16ps` ≈ 210, bf16 AMX
//! 820-1440 (12-20% of the measured 7 TFLOP/s AMX peak: the 2×2-tile kernel streams its
//! tiles from L2; K-blocking is the next lever).

pub mod blocking;
pub mod cpu;
#[cfg(target_arch = "x86_64")]
pub mod cpu_amx;
#[cfg(target_arch = "x86_64")]
mod cpu_avx2;
#[cfg(target_arch = "x86_64")]
mod cpu_avx512;
pub mod f64;
mod pack;
pub mod reference;
pub mod skinny;
pub mod skinny_bf16;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bf16_out;

use half::{bf16, f16};

/// Problem description for [`gemm_f32`] / [`gemm_bf16`]; see the module docs for the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub b_broadcast: bool,
}

impl GemmShape {
    /// The shapes GEMM benchmarks report, named: the cube ladder 256..2048 (no transposes)
    /// and the tiny/small presets' products (tokens x d x d, tokens x 4d x d, tokens x V x d
    /// for the logits, tokens x d x 4d), weights stored [n, k] as the model stores them,
    /// each followed by the two products of its backward: dX = dY W (plain) and
    /// dW = dY^T X (`trans_a`, depth = tokens).
    pub fn bench_ladder() -> Vec<(String, GemmShape)> {
        let shape = |m, n, k, trans_a, trans_b| GemmShape {
            batch: 1,
            m,
            n,
            k,
            trans_a,
            trans_b,
            b_broadcast: false,
        };
        let cubes =
            [256, 512, 1024, 2048].map(|n| (format!("{n}x{n}x{n}"), shape(n, n, n, false, false)));
        let model = [(256, 256), (1024, 256), (4096, 256), (256, 1024)].map(|(n, k)| {
            let t = 2048;
            [
                (format!("{t}x{n}x{k} (model)"), shape(t, n, k, false, true)),
                (
                    format!("{t}x{k}x{n} (model dX)"),
                    shape(t, k, n, false, false),
                ),
                (
                    format!("{n}x{k}x{t} (model dW)"),
                    shape(n, k, t, true, false),
                ),
            ]
        });
        cubes
            .into_iter()
            .chain(model.into_iter().flatten())
            .collect()
    }

    /// Multiply-add count times two: `2·batch·m·n·k`.
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// Elements of A, B and C this shape reads / writes.
    pub fn lens(&self) -> (usize, usize, usize) {
        let b_mats = if self.b_broadcast { 1 } else { self.batch };
        (
            self.batch * self.m * self.k,
            b_mats * self.k * self.n,
            self.batch * self.m * self.n,
        )
    }
}

/// The bf16 peak (GFLOP/s) that [`gemm_bf16`]'s path can reach, for MFU and benchmark
/// fractions, given this machine's measured f32 FMA peak: the measured AMX peak when the
/// tile path runs; with `vdpbf16ps`, the FMA peak times the measured ratio of the two
/// instruction loops ([`crate::simd::bf16_dot_over_fma`], once per process: 2.0 on the
/// 2-core Zen 4, where a 512-bit `vdpbf16ps` issues as often as a 512-bit FMA and does
/// twice its flops); else the FMA peak (bf16 widened to f32).
pub fn bf16_peak_gflops(f32_peak: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if cpu_amx::available() {
        static AMX: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
        return *AMX.get_or_init(|| cpu_amx::measure_peak(0.3));
    }
    static RATIO: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    match RATIO.get_or_init(|| crate::simd::bf16_dot_over_fma(0.05)) {
        Some(r) => r * f32_peak,
        None => f32_peak,
    }
}

pub use self::f64::gemm_f64;

/// f16 widened to f32 (exact) as the panels are packed.
impl cpu::Convert<f16, f32> for cpu::Widen {
    const IDENTITY: bool = false;
    #[inline(always)]
    fn conv(x: f16) -> f32 {
        x.to_f32()
    }
}

/// f16 inputs, f32 accumulation, f32 output, on a chosen level: the f32 microkernels over
/// panels widened while packing (x86 has no f16 dot product short of AVX512-FP16).
pub fn gemm_f16_at(level: crate::simd::Level, s: &GemmShape, a: &[f16], b: &[f16], c: &mut [f32]) {
    blocking::gemm_generic::<f16, f32, cpu::Widen>(
        cpu::f32_kernel(level),
        s,
        a,
        b,
        cpu::COut::F32(c),
    );
}

/// [`gemm_f16_at`] on the fastest available SIMD path.
pub fn gemm_f16(s: &GemmShape, a: &[f16], b: &[f16], c: &mut [f32]) {
    gemm_f16_at(crate::simd::level(), s, a, b, c);
}

/// f32 GEMM on the fastest available SIMD path.
pub fn gemm_f32(s: &GemmShape, a: &[f32], b: &[f32], c: &mut [f32]) {
    cpu::gemm_f32_at(crate::simd::level(), s, a, b, c);
}

/// bf16 inputs, f32 accumulation, f32 output. Uses AMX tiles when [`cpu_amx::available`]
/// (problems of at least 1 MFLOP), else `vdpbf16ps` when [`crate::simd::has_avx512_bf16`],
/// otherwise widens the packed panels to f32.
pub fn gemm_bf16(s: &GemmShape, a: &[bf16], b: &[bf16], c: &mut [f32]) {
    // (few rows stay off the tiles: the skinny path streams B once)
    #[cfg(target_arch = "x86_64")]
    if s.flops() >= 1e6 && s.m > skinny::SKINNY_M && cpu_amx::available() {
        return cpu_amx::gemm_bf16_amx(s, a, b, c);
    }
    let native = crate::simd::has_avx512_bf16();
    cpu::gemm_bf16_at(crate::simd::level(), native, s, a, b, c);
}

/// [`gemm_bf16`] with the output rounded to bf16 (to nearest even, NaN quiet): bit for bit
/// [`crate::convert::f32_to_bf16`] of [`gemm_bf16`]'s f32 output, without writing and
/// re-reading that f32 matrix where the whole depth is one cache block (the microkernel
/// rounds its tile in registers).
pub fn gemm_bf16_to_bf16(s: &GemmShape, a: &[bf16], b: &[bf16], c: &mut [bf16]) {
    #[cfg(target_arch = "x86_64")]
    if s.flops() >= 1e6 && s.m > skinny::SKINNY_M && cpu_amx::available() {
        let n = s.lens().2;
        return cpu::with_f32_stage(n, |st| {
            cpu_amx::gemm_bf16_amx(s, a, b, st);
            crate::elementwise::round_to_half(st, &mut c[..n]);
        });
    }
    let native = crate::simd::has_avx512_bf16();
    cpu::gemm_bf16_to_bf16_at(crate::simd::level(), native, s, a, b, c);
}
