//! The shared CPU SIMD layer: run-time feature detection (one decision, made once, read
//! everywhere), the generic `vector` backends every hand-vectorised kernel is written
//! against, and the measured FMA peak benchmarks divide by.

pub mod cache;
mod peak;
pub(crate) mod vector;

#[cfg(test)]
mod tests;

pub use peak::{bf16_dot_over_fma, measure_bf16_dot_peak, measure_f32_peak};
pub use vector::{exp_f32, tanh_f32};

use std::sync::OnceLock;

/// The widest SIMD level this CPU supports that our kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Scalar,
    Avx2Fma,
    Avx512,
}

fn detect() -> (Level, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        // GIDD_SIMD=scalar|avx2 lets tests and benchmarks force a lower path.
        let forced = std::env::var("GIDD_SIMD").ok();
        let avx512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq");
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let bf16 = avx512 && is_x86_feature_detected!("avx512bf16");
        let level = match forced.as_deref() {
            Some("scalar") => Level::Scalar,
            Some("avx2") if avx2 => Level::Avx2Fma,
            _ if avx512 => Level::Avx512,
            _ if avx2 => Level::Avx2Fma,
            _ => Level::Scalar,
        };
        (level, bf16 && level == Level::Avx512)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (Level::Scalar, false)
    }
}

static DETECTED: OnceLock<(Level, bool)> = OnceLock::new();

/// The SIMD level kernels dispatch on.
pub fn level() -> Level {
    DETECTED.get_or_init(detect).0
}

/// Whether AVX512-BF16 (`vdpbf16ps`) may be used.
pub fn has_avx512_bf16() -> bool {
    DETECTED.get_or_init(detect).1
}

/// Name of the active path, for benchmark tables.
pub fn describe() -> String {
    format!(
        "{:?}{}",
        level(),
        if has_avx512_bf16() { "+bf16" } else { "" }
    )
}
