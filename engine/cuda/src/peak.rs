//! Peak FLOP/s from a device's properties, for MFU and roofline fractions:
//!
//! $$\text{peak} = \text{SMs} \times \text{clock} \times \text{FLOP per clock per SM}$$
//!
//! with the clock the driver reports (`CU_DEVICE_ATTRIBUTE_CLOCK_RATE`, the maximum boost
//! clock) and FLOP per clock per SM (one FMA = 2 FLOP, dense, no sparsity) by architecture and
//! by the units our kernels use: tensor cores for bf16 GEMMs (`mma.sync`, bf16 in, f32
//! accumulation), the FP32 FMA pipes for f32 (no TF32). The figures are NVIDIA's architecture
//! whitepapers' per-SM rates; checks against the datasheets:
//! * A100 SXM (sm_80, 108 SMs, 1.41 GHz): bf16 2048 -> 312 TFLOP/s; f32 128 -> 19.5.
//! * H100 SXM (sm_90, 132 SMs, 1.98 GHz max): bf16 4096 -> 1070 (the datasheet's 989 is at
//!   1.83 GHz, the sustained boost); f32 256 -> 67.
//! * RTX 4090 (sm_89, 128 SMs, 2.52 GHz): bf16 with f32 accumulation 512 -> 165 (GeForce
//!   parts accumulate f32 at half rate; the professional Ada parts at 1024: this undercounts
//!   them by 2x); f32 256 -> 82.6.
//!
//! Hopper's 4096 needs wgmma; the mma.sync kernel of this first slice reaches about 60% of it
//! at best, which the reported fraction then shows.

use gidd_engine::DType;

/// Dense FLOP per clock per SM for matrix products with `dtype` operands on compute capability
/// `major.minor`; None where our kernels do not run (f64, integers, pre-Ampere).
pub fn flops_per_clock_per_sm(major: u32, minor: u32, dtype: DType) -> Option<f64> {
    let tensor_bf16 = match (major, minor) {
        (8, 0) => 2048.0,
        // GA10x and consumer AD10x: f32-accumulating bf16 at half the f16-accumulate rate
        (8, _) => 512.0,
        (9, _) => 4096.0,
        // Blackwell (sm_100 and later): twice Hopper's rate per SM
        (m, _) if m >= 10 => 8192.0,
        _ => return None,
    };
    // FP32 lanes per SM x 2: GA100 has 64, every later SM 128
    let fma_f32 = if (major, minor) == (8, 0) {
        128.0
    } else {
        256.0
    };
    match dtype {
        DType::BF16 => Some(tensor_bf16),
        DType::F32 => Some(fma_f32),
        DType::F16 | DType::F64 | DType::I32 | DType::U32 | DType::I64 | DType::Bool => None,
    }
}

/// The peak FLOP/s of `sms` SMs at `clock_khz` (the driver's unit).
pub fn peak_flops(major: u32, minor: u32, sms: u32, clock_khz: u32, dtype: DType) -> Option<f64> {
    let per_sm = flops_per_clock_per_sm(major, minor, dtype)?;
    Some(sms as f64 * clock_khz as f64 * 1e3 * per_sm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tflops(x: Option<f64>) -> f64 {
        x.map_or(0.0, |f| (f / 1e12 * 10.0).round() / 10.0)
    }

    /// The datasheet figures the module docs list.
    #[test]
    fn peaks_match_datasheets() {
        assert_eq!(tflops(peak_flops(8, 0, 108, 1_410_000, DType::BF16)), 311.9);
        assert_eq!(tflops(peak_flops(8, 0, 108, 1_410_000, DType::F32)), 19.5);
        assert_eq!(tflops(peak_flops(9, 0, 132, 1_830_000, DType::BF16)), 989.4);
        assert_eq!(tflops(peak_flops(9, 0, 132, 1_980_000, DType::F32)), 66.9);
        assert_eq!(tflops(peak_flops(8, 9, 128, 2_520_000, DType::BF16)), 165.2);
        assert_eq!(peak_flops(7, 0, 80, 1_530_000, DType::BF16), None);
        assert_eq!(peak_flops(9, 0, 132, 1_980_000, DType::F64), None);
    }
}
