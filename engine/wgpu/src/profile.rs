//! `--profile`: the time of every dispatch, summed by kernel (entry point and override
//! constants). Where the adapter has TIMESTAMP_QUERY, each dispatch runs in its own compute
//! pass with timestamps written at the pass's start and end, all in one submission: GPU time,
//! no host wait between dispatches. Without it (some drivers and browsers), each dispatch is
//! submitted alone and waited for: wall time, launch and wait included, which
//! [`WgpuExecutor::profile_clock`] says so that a table is never mistaken for GPU time.

use crate::error::{Result, WgpuError};
use crate::executor::{WgpuExecutor, WgpuProgram};
use crate::plan::Dispatch;

/// Timestamp queries per query set: wgpu allows 4096, two per dispatch.
const PER_SET: usize = 2048;

/// The profile's key of a dispatch: its entry point and override constants.
fn key(d: &Dispatch) -> String {
    let mut key = d.kernel.entry.to_string();
    for (n, v) in &d.kernel.constants {
        key.push_str(&format!(" {n}={v}"));
    }
    key
}

impl WgpuExecutor {
    /// What a profile's times are: "GPU timestamps" or the host-timed fallback, named.
    pub fn profile_clock(&self) -> &'static str {
        if self.gpu.timestamps {
            "GPU timestamps (TIMESTAMP_QUERY)"
        } else {
            "host wall time per dispatch, each submitted alone and waited for (this adapter \
             has no TIMESTAMP_QUERY)"
        }
    }

    /// Runs every dispatch of `lp` once, timed, adding the times to its profile.
    pub(crate) fn profiled_dispatches(&self, lp: &mut WgpuProgram) -> Result<()> {
        let timed: Vec<usize> = (0..lp.dispatches.len())
            .filter(|&k| lp.fixed[k].is_some() || lp.cached[k].is_some())
            .collect();
        let times = match self.gpu.timestamps {
            true => self.timestamped(lp, &timed)?,
            false => self.host_timed(lp, &timed)?,
        };
        if let Some(prof) = lp.profile.as_mut() {
            for (&k, t) in timed.iter().zip(times) {
                let e = prof.entry(key(&lp.dispatches[k])).or_insert((0.0, 0));
                e.0 += t;
                e.1 += 1;
            }
        }
        Ok(())
    }

    fn group(lp: &WgpuProgram, k: usize) -> Option<&wgpu::BindGroup> {
        lp.fixed[k].as_ref().or(lp.cached[k].as_ref().map(|c| &c.1))
    }

    /// Seconds of each dispatch, submitted alone and waited for.
    fn host_timed(&self, lp: &WgpuProgram, timed: &[usize]) -> Result<Vec<f64>> {
        let gpu = &self.gpu;
        gpu.wait("profiling")?;
        let mut out = vec![];
        for &k in timed {
            let (d, g) = (&lp.dispatches[k], Self::group(lp, k));
            let t = std::time::Instant::now();
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&d.pipe);
                pass.set_bind_group(0, g, &[]);
                pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
            }
            gpu.queue.submit([enc.finish()]);
            gpu.wait("profiling")?;
            out.push(t.elapsed().as_secs_f64());
        }
        Ok(out)
    }

    /// Seconds of each dispatch between the timestamps of its own compute pass.
    fn timestamped(&self, lp: &WgpuProgram, timed: &[usize]) -> Result<Vec<f64>> {
        let gpu = &self.gpu;
        // nanoseconds per timestamp tick
        let period = gpu.queue.get_timestamp_period() as f64;
        let mut out = vec![];
        for chunk in timed.chunks(PER_SET) {
            let n = 2 * chunk.len() as u32;
            let bytes = 8 * n as u64;
            let qs = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: n,
            });
            let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            for (q, &k) in chunk.iter().enumerate() {
                let (d, g) = (&lp.dispatches[k], Self::group(lp, k));
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(d.kernel.entry),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &qs,
                        beginning_of_pass_write_index: Some(2 * q as u32),
                        end_of_pass_write_index: Some(2 * q as u32 + 1),
                    }),
                });
                pass.set_pipeline(&d.pipe);
                pass.set_bind_group(0, g, &[]);
                pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
            }
            enc.resolve_query_set(&qs, 0..n, &resolved, 0);
            enc.copy_buffer_to_buffer(&resolved, 0, &read, 0, bytes);
            gpu.queue.submit([enc.finish()]);
            let (tx, rx) = std::sync::mpsc::channel();
            read.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            gpu.wait("reading timestamps")?;
            rx.recv()
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map_err(|msg| WgpuError::Api {
                    doing: "mapping timestamps".into(),
                    msg,
                })?;
            let ticks: Vec<u64> = {
                let view = read.get_mapped_range(..).map_err(|e| WgpuError::Api {
                    doing: "reading timestamps".into(),
                    msg: e.to_string(),
                })?;
                bytemuck::pod_collect_to_vec(&view)
            };
            read.unmap();
            for p in ticks.chunks_exact(2) {
                out.push(p[1].saturating_sub(p[0]) as f64 * period * 1e-9);
            }
        }
        Ok(out)
    }
}
