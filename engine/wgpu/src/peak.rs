//! The adapter's f32 FMA peak, measured once per executor with kernels/src/matmul/peak.wgsl:
//! the MFU and roofline fractions divide by what this device can do, not a table entry.

use crate::executor::WgpuExecutor;
use crate::pipelines::Kernel;
use gidd_kernels::wgsl::Module;
use std::time::Instant;

const GROUPS: u32 = 1024;
/// FLOPs of one round of one invocation: 8 vec4 FMAs.
const FLOPS_PER_ROUND: f64 = 64.0;
/// Timed probes of the chosen size; the best is the peak.
const PROBES: usize = 5;

impl WgpuExecutor {
    pub(crate) fn measured_peak(&self) -> Option<f64> {
        *self.peak.get_or_init(|| self.measure_peak().ok())
    }

    /// Doubles the rounds until one dispatch takes 50 ms, then runs that dispatch
    /// [`PROBES`] times and reports the best rate: on a shared machine a single probe can
    /// be starved (reading far below the peak, so kernels would seem to beat it), and
    /// contention only ever slows a probe down.
    fn measure_peak(&self) -> crate::error::Result<f64> {
        let gpu = &self.gpu;
        let pipe = {
            let mut p = self
                .pipes
                .lock()
                .map_err(|_| crate::WgpuError::Unsupported("pipeline cache poisoned".into()))?;
            p.get(gpu, &Kernel::new(Module::Peak, "peak_fma", 0))?
        };
        let layout = pipe.get_bind_group_layout(0);
        let out = self.storage(GROUPS as u64 * 256 * 4, "the peak kernel's output")?;
        let mut rounds = 16u32;
        loop {
            let params = self.storage_with(
                &[rounds, 1.000_001f32.to_bits(), 1e-7f32.to_bits(), 0],
                "the peak kernel's parameters",
            )?;
            let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("peak"),
                layout: &layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: params.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: out.as_entire_binding(),
                    },
                ],
            });
            gpu.wait("measuring the peak")?;
            let t = Instant::now();
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipe);
                pass.set_bind_group(0, &group, &[]);
                pass.dispatch_workgroups(GROUPS, 1, 1);
            }
            gpu.queue.submit([enc.finish()]);
            gpu.wait("measuring the peak")?;
            let s = t.elapsed().as_secs_f64();
            if s >= 0.05 || rounds >= 1 << 20 {
                let flops = GROUPS as f64 * 256.0 * rounds as f64 * FLOPS_PER_ROUND;
                let mut best = s;
                for _ in 1..PROBES {
                    let t = Instant::now();
                    let mut enc = gpu.device.create_command_encoder(&Default::default());
                    {
                        let mut pass = enc.begin_compute_pass(&Default::default());
                        pass.set_pipeline(&pipe);
                        pass.set_bind_group(0, &group, &[]);
                        pass.dispatch_workgroups(GROUPS, 1, 1);
                    }
                    gpu.queue.submit([enc.finish()]);
                    gpu.wait("measuring the peak")?;
                    best = best.min(t.elapsed().as_secs_f64());
                }
                return Ok(flops / best);
            }
            rounds *= 2;
        }
    }
}
