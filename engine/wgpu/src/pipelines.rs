//! Shader modules and compute pipelines, compiled once per executor and shared by every
//! program it loads. A pipeline is a module's entry point with its override constants (the
//! op and dtype kind it is specialised for) over a layout of its binding counts: binding 0
//! the dispatch's parameters, then its outputs (read-write), then its operands (read-only).

use crate::device::Gpu;
use crate::error::Result;
use gidd_kernels::wgsl::{source, Module};
use std::collections::HashMap;
use std::sync::Arc;

/// Where a kernel's WGSL comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A hand-written kernel file of gidd-kernels.
    File(Module),
    /// A kernel generated at load for a chain of elementwise ops (its complete text).
    Generated(Arc<str>),
}

/// Which kernel: its source, entry point, override constants (name, value), output and
/// operand counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub module: Source,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, u32)>,
    pub outputs: usize,
    pub inputs: usize,
}

impl Kernel {
    /// A kernel with one output and `inputs` operands.
    pub fn new(module: Module, entry: &'static str, inputs: usize) -> Kernel {
        Kernel {
            module: Source::File(module),
            entry,
            constants: vec![],
            outputs: 1,
            inputs,
        }
    }
    /// A generated kernel: `text` is its complete WGSL.
    pub fn generated(text: String, entry: &'static str, outputs: usize, inputs: usize) -> Kernel {
        Kernel {
            module: Source::Generated(text.into()),
            entry,
            constants: vec![],
            outputs,
            inputs,
        }
    }
    /// The kernel writes `n` outputs (bindings 1..=n; its operands follow).
    pub fn outputs(mut self, n: usize) -> Kernel {
        self.outputs = n;
        self
    }
    pub fn with(mut self, name: &'static str, value: u32) -> Kernel {
        self.constants.push((name, value));
        self
    }
}

pub struct Pipelines {
    modules: HashMap<Source, wgpu::ShaderModule>,
    pipes: HashMap<Kernel, Arc<wgpu::ComputePipeline>>,
    /// Pipeline layouts by (outputs, operands).
    layouts: HashMap<(usize, usize), wgpu::PipelineLayout>,
}

fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Pipelines {
    pub fn new() -> Pipelines {
        Pipelines {
            modules: HashMap::new(),
            pipes: HashMap::new(),
            layouts: HashMap::new(),
        }
    }

    fn layout(&mut self, gpu: &Gpu, outputs: usize, inputs: usize) -> Result<wgpu::PipelineLayout> {
        if let Some(l) = self.layouts.get(&(outputs, inputs)) {
            return Ok(l.clone());
        }
        let n = 1 + outputs + inputs;
        let max = gpu.limits.max_storage_buffers_per_shader_stage as usize;
        if n > max {
            return Err(crate::error::WgpuError::Unsupported(format!(
                "a kernel binds {n} storage buffers; this adapter allows {max} per shader stage"
            )));
        }
        let l = gpu.scoped("creating a pipeline layout", || {
            let entries: Vec<_> = (0..n as u32)
                .map(|b| storage(b, b == 0 || b as usize > outputs))
                .collect();
            let bind = gpu
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("gidd"),
                    entries: &entries,
                });
            gpu.device
                .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some("gidd"),
                    bind_group_layouts: &[Some(&bind)],
                    immediate_size: 0,
                })
        })?;
        self.layouts.insert((outputs, inputs), l.clone());
        Ok(l)
    }

    /// The pipeline of `k`, compiled on first use.
    pub fn get(&mut self, gpu: &Gpu, k: &Kernel) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.pipes.get(k) {
            return Ok(p.clone());
        }
        let layout = &self.layout(gpu, k.outputs, k.inputs)?;
        let module = match self.modules.entry(k.module.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let (src, doing) = match &k.module {
                    Source::File(m) => (source(*m), format!("compiling the WGSL module {m:?}")),
                    Source::Generated(t) => (
                        t.to_string(),
                        "compiling a generated elementwise kernel (GIDD_WGPU_FUSE=0 runs the \
                         ops one dispatch each)"
                            .to_string(),
                    ),
                };
                e.insert(gpu.scoped(&doing, || {
                    gpu.device
                        .create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(k.entry),
                            source: wgpu::ShaderSource::Wgsl(src.into()),
                        })
                })?)
            }
        };
        let constants: Vec<(&str, f64)> = k.constants.iter().map(|&(n, v)| (n, v as f64)).collect();
        let p = gpu.scoped(
            &format!("creating the pipeline {} {:?}", k.entry, k.constants),
            || {
                gpu.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(k.entry),
                        layout: Some(layout),
                        module,
                        entry_point: Some(k.entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants: &constants,
                            // every kernel writes its workgroup memory before reading it
                            zero_initialize_workgroup_memory: false,
                        },
                        cache: None,
                    })
            },
        )?;
        let p = Arc::new(p);
        self.pipes.insert(k.clone(), p.clone());
        Ok(p)
    }
}
