//! gidd-benches: the harness behind `gidd bench`. Every benchmark prints what it achieved
//! (FLOP/s or bytes/s) beside the measured peak of the device it ran on:
//! - [`kernels`]: GEMM and attention kernels on the cpu (`gidd bench kernels`);
//! - [`kernels_device`]: the model's kernels as one-op programs on a device executor
//!   (`gidd bench kernels --backend xla|wgpu|cuda`);
//! - [`step`]: one training, forward or sampling step of a synthetic model, one JSON line
//!   for ../shared/baselines/run_bench.py to set beside PyTorch (`gidd bench step`);
//! - [`generate`]: sampling throughput and what the KV cache and logits reuse save
//!   (`gidd bench generate`);
//! - [`load`]: a released-size synthetic checkpoint loaded by mmap: load time, resident
//!   memory, time to the first block (`gidd bench load`);
//! - [`corpus`]: the embedded corpus's statistics (`gidd bench corpus`).

pub mod corpus;
pub mod generate;
pub mod kernels;
pub mod kernels_device;
pub mod load;
pub mod step;

/// Fractions of a measured peak above this say the probe that measured the peak was
/// starved (a busy or shared machine reads far below the device's peak), not that a kernel
/// beat it: such a fraction is never printed bare.
pub fn peak_reliable(frac: f64) -> bool {
    frac <= 1.0
}

/// A fraction of the measured peak as the tables print it: `81%`, or `130%!` where the
/// probe was unreliable ([`PEAK_NOTE`] says so under the table).
pub fn of_peak(frac: f64) -> String {
    match peak_reliable(frac) {
        true => format!("{:.0}%", 100.0 * frac),
        false => format!("{:.0}%!", 100.0 * frac),
    }
}

/// The line under a table with a flagged fraction.
pub const PEAK_NOTE: &str = "!: above 100% of the measured peak: the peak probe was starved \
     (a busy or shared machine), so these fractions are not meaningful; rerun on a quiet machine";

#[cfg(test)]
mod tests {
    #[test]
    fn fractions_above_the_peak_are_flagged() {
        assert_eq!(super::of_peak(0.814), "81%");
        assert_eq!(super::of_peak(1.0), "100%");
        assert_eq!(super::of_peak(1.3), "130%!");
        assert!(!super::peak_reliable(1.01));
    }
}
