//! `--profile` on the cuda executor: an event pair around every launch of a profiled run (so
//! profiled runs never replay a graph), read after the run; times summed by kernel entry.
//! The table is `gidd bench step --profile`'s, shared with the cpu and wgpu executors:
//! (kernel, seconds, calls), slowest first.

use std::collections::BTreeMap;

/// Seconds and calls per kernel over the profiled runs.
#[derive(Clone, Debug, Default)]
pub struct KernelTimes {
    by_kernel: BTreeMap<String, (f64, usize)>,
}

impl KernelTimes {
    /// One launch of `kernel` took `ms` milliseconds (an event pair's elapsed time).
    pub fn add(&mut self, kernel: &str, ms: f32) {
        let e = self.by_kernel.entry(kernel.to_string()).or_insert((0.0, 0));
        e.0 += f64::from(ms) / 1e3;
        e.1 += 1;
    }

    /// (kernel, seconds, calls), slowest first (ties by name, so the order is stable).
    pub fn rows(&self) -> Vec<(String, f64, usize)> {
        let mut v: Vec<(String, f64, usize)> = self
            .by_kernel
            .iter()
            .map(|(k, &(t, n))| (k.clone(), t, n))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sum_by_kernel_slowest_first() {
        let mut p = KernelTimes::default();
        for (k, ms) in [
            ("gemm_mma_bf16", 2.0),
            ("binary_float", 0.25),
            ("gemm_mma_bf16", 3.0),
            ("reduce_rows", 0.25),
            ("binary_float", 0.5),
        ] {
            p.add(k, ms);
        }
        let rows = p.rows();
        let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, ["gemm_mma_bf16", "binary_float", "reduce_rows"]);
        assert_eq!(rows[0].2, 2);
        assert!((rows[0].1 - 5e-3).abs() < 1e-12);
        assert!((rows[1].1 - 0.75e-3).abs() < 1e-12);
        assert_eq!(rows[2].2, 1);
    }
}
