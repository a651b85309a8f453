//! The `wgpu` executor: programs run as WGSL compute dispatches on any Vulkan, Metal or DX12
//! adapter (lavapipe, Mesa's software Vulkan, in CI).
//!
//! `load` decomposes the fused ops without a WGSL kernel (`crate::fused`), lowers every node
//! to dispatches of cached pipelines, and allocates one device buffer per planned slot
//! (`Program::slots`), the constants, the parameter blocks and the bind groups that do not
//! involve the program's inputs. A run records every dispatch into one compute pass of one
//! command encoder, copies the outputs out of their slots (into a donated input's storage
//! where the program aliases them), and submits once; nothing waits for the device until a
//! download.

use crate::buffer::{alloc_bytes, encode, next_id, value_bytes, WgpuBuffer};
use crate::device::Gpu;
use crate::error::{Result, WgpuError};
use crate::pipelines::Pipelines;
use crate::plan::{Bind, Dispatch};
use gidd_engine::program::Loc;
use gidd_engine::Program;
use std::sync::{Arc, Mutex, OnceLock};
use wgpu::util::DeviceExt;

/// Runs programs on one wgpu device. Clones share the device, the pipeline cache and the
/// measured peak.
#[derive(Clone)]
pub struct WgpuExecutor {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) gemm: GemmStrategy,
    pub(crate) pipes: Arc<Mutex<Pipelines>>,
    pub(crate) peak: Arc<OnceLock<Option<f64>>>,
    /// Runs of elementwise ops become one generated kernel each (crate::fuse).
    pub(crate) fuse: bool,
    /// A cap below the adapter's max_storage_buffer_binding_size ([`WgpuExecutor::with_max_binding`]).
    pub(crate) binding_cap: Option<u64>,
    pub(crate) attention: AttentionStrategy,
}

/// Which GEMM kernel dot_general runs (kernels/src/matmul/).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmStrategy {
    /// `register_blocked` on CPU adapters (lavapipe), `tiled_smem` on GPUs.
    #[default]
    Auto,
    /// gemm.wgsl: 64 x 64 tiles through workgroup memory.
    TiledSmem,
    /// gemm_blocked.wgsl: 8 x 4 register blocks, vec4 loads, no workgroup memory.
    RegisterBlocked,
}

/// Which attention forward kernel runs (kernels/src/attention/attention.wgsl); both give the
/// same bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttentionStrategy {
    /// `row_stream` on CPU adapters (lavapipe), `tiled` on GPUs.
    #[default]
    Auto,
    /// attention_fwd: 16 x 16 query-key tiles through workgroup memory.
    Tiled,
    /// attention_fwd_row: a query row per invocation, keys streamed, no barriers.
    RowStream,
}

/// A loaded program: its dispatches and the device memory they use, kept across runs.
pub struct WgpuProgram {
    pub(crate) program: Program,
    pub(crate) dispatches: Vec<Dispatch>,
    /// Bind groups made at load (dispatches that bind no program input).
    pub(crate) fixed: Vec<Option<wgpu::BindGroup>>,
    /// The last bind group made per run for the others, with the input ids it binds: a
    /// training step's donated state comes back as the same buffers, so they are reused.
    pub(crate) cached: Vec<Option<(Vec<u64>, wgpu::BindGroup)>>,
    pub(crate) params: wgpu::Buffer,
    pub(crate) slots: Vec<wgpu::Buffer>,
    pub(crate) consts: Vec<wgpu::Buffer>,
    pub(crate) scratch: Vec<wgpu::Buffer>,
    pub(crate) dummy: wgpu::Buffer,
    /// Bytes of the planned buffers, constants and scratch buffers.
    pub(crate) bytes: [u64; 3],
    /// Seconds and calls per kernel, when profiling is on (crate::profile: GPU timestamps
    /// where the adapter has them, else each dispatch's wall time, waited for alone).
    pub(crate) profile: Option<std::collections::BTreeMap<String, (f64, usize)>>,
    /// Per node, the dispatches before it (crate::collective).
    pub(crate) node_start: Vec<usize>,
}

impl WgpuProgram {
    /// The program as run (fused ops decomposed).
    pub fn program(&self) -> &Program {
        &self.program
    }
    pub fn slots_len(&self) -> usize {
        self.slots.len()
    }
    /// Starts timing every dispatch of the following runs (each dispatch in its own compute
    /// pass, so a profiled run is slower than a plain one).
    pub fn enable_profile(&mut self) {
        self.profile = Some(Default::default());
    }
    /// (kernel, seconds, dispatches) over the profiled runs, slowest first.
    pub fn profile(&self) -> Vec<(String, f64, usize)> {
        let mut v: Vec<(String, f64, usize)> = self
            .profile
            .iter()
            .flatten()
            .map(|(k, &(t, n))| (k.clone(), t, n))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }
    /// Compute dispatches per run.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }
    /// (kernel entry point, dispatches per run), most first.
    pub fn dispatch_counts(&self) -> Vec<(String, usize)> {
        let mut m = std::collections::BTreeMap::new();
        for d in &self.dispatches {
            *m.entry(d.kernel.entry.to_string()).or_insert(0) += 1;
        }
        let mut v: Vec<(String, usize)> = m.into_iter().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        v
    }
}

impl WgpuExecutor {
    /// Opens the first Vulkan/Metal/DX12 adapter; an error (never a panic) says what is
    /// missing when there is none.
    pub fn new() -> Result<WgpuExecutor> {
        let gpu = Gpu::open()?;
        let pipes = Pipelines::new();
        Ok(WgpuExecutor {
            gpu: Arc::new(gpu),
            gemm: GemmStrategy::Auto,
            pipes: Arc::new(Mutex::new(pipes)),
            peak: Arc::new(OnceLock::new()),
            // GIDD_WGPU_FUSE=0: one dispatch per op (to compare, or to rule fusion out)
            fuse: std::env::var("GIDD_WGPU_FUSE").map_or(true, |v| v != "0"),
            binding_cap: None,
            attention: AttentionStrategy::Auto,
        })
    }

    /// Whether the device runs f64 in shaders (what the fused sampling step needs).
    pub fn has_f64_shaders(&self) -> bool {
        self.gpu.f64_shaders
    }

    /// The same executor with the attention forward on `s` (programs loaded from now on).
    pub fn with_attention(mut self, s: AttentionStrategy) -> WgpuExecutor {
        self.attention = s;
        self
    }

    /// The same executor with storage bindings capped at `bytes` (for programs loaded from now
    /// on): tensors above it are bound in windows as those above the adapter's limit are, so a
    /// test reaches the windowed paths with small tensors.
    pub fn with_max_binding(mut self, bytes: u64) -> WgpuExecutor {
        self.binding_cap = Some(bytes);
        self
    }

    /// The same executor with elementwise chains fused (the default) or one dispatch per op,
    /// for programs loaded from now on.
    pub fn with_fusion(mut self, on: bool) -> WgpuExecutor {
        self.fuse = on;
        self
    }

    /// The same executor with dot_general on `s` (programs loaded from now on).
    pub fn with_gemm(mut self, s: GemmStrategy) -> WgpuExecutor {
        self.gemm = s;
        self
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.gpu.info
    }

    /// The most bytes one storage binding covers (on this adapter, or under the cap).
    pub fn max_binding_bytes(&self) -> u64 {
        let max = self.gpu.max_binding();
        self.binding_cap.map_or(max, |c| c.min(max))
    }

    pub(crate) fn storage(&self, bytes: u64, what: &str) -> Result<wgpu::Buffer> {
        self.check_size(bytes, what)?;
        Ok(self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: alloc_bytes(bytes),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    pub(crate) fn storage_with(&self, words: &[u32], what: &str) -> Result<wgpu::Buffer> {
        self.check_size(words.len() as u64 * 4, what)?;
        let mut padded = words.to_vec();
        padded.resize((alloc_bytes(words.len() as u64 * 4) / 4) as usize, 0);
        Ok(self
            .gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents: bytemuck::cast_slice(&padded),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            }))
    }

    /// Every buffer must fit the adapter's largest buffer (what a kernel binds of it must fit
    /// one binding: the lowering binds larger values in windows or refuses them).
    fn check_size(&self, bytes: u64, what: &str) -> Result<()> {
        let max = self.gpu.limits.max_buffer_size;
        if alloc_bytes(bytes) > max {
            return Err(WgpuError::Unsupported(format!(
                "{what} takes {:.1} MiB, more than the adapter's largest buffer ({:.1} MiB, max_buffer_size)",
                bytes as f64 / 1048576.0,
                max as f64 / 1048576.0
            )));
        }
        Ok(())
    }

    pub(crate) fn bind_group(
        &self,
        lp: &WgpuProgram,
        d: &Dispatch,
        inputs: &[&WgpuBuffer],
    ) -> wgpu::BindGroup {
        let buf = |b: Bind| -> &wgpu::Buffer {
            match b {
                Bind::Slot(s) => &lp.slots[s],
                Bind::Input(i) => &inputs[i].buf,
                Bind::Const(c) => &lp.consts[c],
                Bind::Scratch(k) => &lp.scratch[k],
                Bind::Dummy => &lp.dummy,
            }
        };
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &lp.params,
                offset: d.param_off,
                size: wgpu::BufferSize::new(d.param_len),
            }),
        }];
        let max = self.max_binding_bytes() / 4 * 4;
        for (k, &b) in d.binds.iter().enumerate() {
            let buffer = buf(b);
            // unwindowed: the whole buffer, or the first `max` bytes of one larger than a
            // binding (a slot that also holds a larger value; this value fits: Builder::buf)
            let (offset, size) = d
                .windows
                .get(k)
                .copied()
                .flatten()
                .unwrap_or((0, buffer.size().min(max)));
            entries.push(wgpu::BindGroupEntry {
                binding: 1 + k as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset,
                    size: wgpu::BufferSize::new(size),
                }),
            });
        }
        let layout = d.pipe.get_bind_group_layout(0);
        self.gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(d.kernel.entry),
                layout: &layout,
                entries: &entries,
            })
    }

    pub(crate) fn check_inputs(
        &self,
        lp: &WgpuProgram,
        inputs: &[&WgpuBuffer],
    ) -> gidd_engine::Result<()> {
        let p = &lp.program;
        if inputs.len() != p.inputs.len() {
            return Err(gidd_engine::Error::InputCount {
                expected: p.inputs.len(),
                got: inputs.len(),
            });
        }
        for (i, ((name, v), b)) in p.inputs.iter().zip(inputs).enumerate() {
            let ty = &p.values[*v].ty;
            if b.shape() != ty.shape.as_slice() || b.dtype() != ty.dtype {
                return Err(gidd_engine::Error::InputMismatch {
                    index: i,
                    name: name.clone(),
                    expected: ty.to_string(),
                    got: format!("{:?}{}", b.shape(), b.dtype()),
                });
            }
        }
        Ok(())
    }

    /// Makes (or reuses) the bind groups of the dispatches that bind program inputs.
    pub(crate) fn bind_inputs(&self, lp: &mut WgpuProgram, inputs: &[&WgpuBuffer]) {
        let ids: Vec<u64> = inputs.iter().map(|b| b.id).collect();
        for k in 0..lp.dispatches.len() {
            if lp.fixed[k].is_some() {
                continue;
            }
            let key: Vec<u64> = lp.dispatches[k]
                .binds
                .iter()
                .filter_map(|b| match b {
                    Bind::Input(i) => Some(ids[*i]),
                    _ => None,
                })
                .collect();
            if lp.cached[k].as_ref().is_some_and(|(c, _)| *c == key) {
                continue;
            }
            let g = self.bind_group(lp, &lp.dispatches[k], inputs);
            lp.cached[k] = Some((key, g));
        }
    }

    /// Runs `lp` on `inputs`, of which the first `donated` may be written over (the caller
    /// gave them up and holds no other handle).
    pub(crate) fn execute(
        &self,
        lp: &mut WgpuProgram,
        inputs: &[&WgpuBuffer],
        donated: usize,
    ) -> gidd_engine::Result<Vec<WgpuBuffer>> {
        self.check_inputs(lp, inputs)?;
        let gpu = &self.gpu;
        if let Some(n) = lp.program.nodes.iter().find(|n| n.op.is_collective()) {
            return Err(gidd_engine::Error::Msg(format!(
                "the program has collectives ({} first): run it with the rank's collective (CollectiveExecutor::run_donating_with)",
                n.op.name()
            )));
        }
        let outs = gpu.scoped("running a program", || -> Result<Vec<WgpuBuffer>> {
            self.bind_inputs(lp, inputs);
            if lp.profile.is_some() {
                self.profiled_dispatches(lp)?;
            }
            let mut enc = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run") });
            if lp.profile.is_none() {
                record(lp, &mut enc, 0..lp.dispatches.len());
            }
            let outs = self.collect_outputs(lp, inputs, donated, &mut enc)?;
            gpu.queue.submit([enc.finish()]);
            Ok(outs)
        })??;
        gpu.take_uncaptured("running a program")?;
        Ok(outs)
    }

    /// The output buffers, with the copies that fill them recorded on `enc` (after every
    /// dispatch, so a donated input is read before its storage takes an output).
    pub(crate) fn collect_outputs(
        &self,
        lp: &WgpuProgram,
        inputs: &[&WgpuBuffer],
        donated: usize,
        enc: &mut wgpu::CommandEncoder,
    ) -> Result<Vec<WgpuBuffer>> {
        let p = &lp.program;
        // a donated input that some output copies keeps its contents until that copy
        let copied: Vec<usize> = p
            .outputs
            .iter()
            .filter_map(|&v| match p.loc[v] {
                Loc::Input(i) => Some(i),
                _ => None,
            })
            .collect();
        let mut outs = vec![];
        for (o, &v) in p.outputs.iter().enumerate() {
            let ty = &p.values[v].ty;
            let fresh = |w: Vec<u32>| -> Result<WgpuBuffer> {
                let b = self.storage_with(&w, "a literal output")?;
                Ok(WgpuBuffer::new(
                    Arc::new(b),
                    next_id(),
                    ty.shape.clone(),
                    ty.dtype,
                ))
            };
            let src = match &p.loc[v] {
                Loc::Splat(x) => {
                    outs.push(fresh(crate::buffer::splat_words(*x, ty.dtype, ty.numel()))?);
                    continue;
                }
                Loc::Const(c) => {
                    outs.push(fresh(encode(c)?)?);
                    continue;
                }
                Loc::Slot(s) => &lp.slots[*s],
                Loc::Input(i) => &*inputs[*i].buf,
            };
            // the donated input this output is aliased to, if its storage is free to take it
            let reuse = p
                .aliases
                .iter()
                .find(|&&(i, oo)| oo == o && i < donated)
                .map(|&(i, _)| i)
                .filter(|&i| {
                    Arc::strong_count(&inputs[i].buf) == 1
                        && (!copied.contains(&i) || matches!(p.loc[v], Loc::Input(j) if j == i))
                });
            let bytes = value_bytes(&ty.shape, ty.dtype);
            let (buf, id) = match reuse {
                Some(i) => (inputs[i].buf.clone(), inputs[i].id),
                None => (Arc::new(self.storage(bytes, "an output")?), next_id()),
            };
            if bytes > 0 && !std::ptr::eq(src, &*buf) {
                enc.copy_buffer_to_buffer(src, 0, &buf, 0, bytes);
            }
            outs.push(WgpuBuffer::new(buf, id, ty.shape.clone(), ty.dtype));
        }
        Ok(outs)
    }
}

/// Records dispatches `range` of `lp` into one compute pass of `enc` (their bind groups
/// made: [`WgpuExecutor::bind_inputs`]).
pub(crate) fn record(
    lp: &WgpuProgram,
    enc: &mut wgpu::CommandEncoder,
    range: std::ops::Range<usize>,
) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("run"),
        timestamp_writes: None,
    });
    for k in range {
        let d = &lp.dispatches[k];
        let g = match (&lp.fixed[k], &lp.cached[k]) {
            (Some(g), _) | (None, Some((_, g))) => g,
            (None, None) => continue,
        };
        pass.set_pipeline(&d.pipe);
        pass.set_bind_group(0, g, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
}
