//! Shader modules and compute pipelines, compiled once per executor and shared by every
//! program it loads. A pipeline is a module's entry point with its override constants (the
//! op and dtype kind it is specialised for) over one of four layouts: binding 0 the
//! dispatch's parameters, 1 the output, 2.. up to three operands.

use crate::device::Gpu;
use crate::error::Result;
use gidd_kernels::wgsl::{source, Module};
use std::collections::HashMap;
use std::sync::Arc;

/// Which kernel: module, entry point, override constants (name, value), operand count.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub module: Module,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, u32)>,
    pub inputs: usize,
}

impl Kernel {
    pub fn new(module: Module, entry: &'static str, inputs: usize) -> Kernel {
        Kernel {
            module,
            entry,
            constants: vec![],
            inputs,
        }
    }
    pub fn with(mut self, name: &'static str, value: u32) -> Kernel {
        self.constants.push((name, value));
        self
    }
}

pub struct Pipelines {
    modules: HashMap<Module, wgpu::ShaderModule>,
    pipes: HashMap<Kernel, Arc<wgpu::ComputePipeline>>,
    /// Bind group layouts by operand count (0..=3).
    pub layouts: Vec<wgpu::BindGroupLayout>,
    pipeline_layouts: Vec<wgpu::PipelineLayout>,
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
    pub fn new(gpu: &Gpu) -> Result<Pipelines> {
        gpu.scoped("creating the pipeline layouts", || {
            let layouts: Vec<wgpu::BindGroupLayout> = (0..4u32)
                .map(|n| {
                    let mut entries = vec![storage(0, true), storage(1, false)];
                    entries.extend((0..n).map(|k| storage(2 + k, true)));
                    gpu.device
                        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                            label: Some("gidd"),
                            entries: &entries,
                        })
                })
                .collect();
            let pipeline_layouts = layouts
                .iter()
                .map(|l| {
                    gpu.device
                        .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                            label: Some("gidd"),
                            bind_group_layouts: &[Some(l)],
                            immediate_size: 0,
                        })
                })
                .collect();
            Pipelines {
                modules: HashMap::new(),
                pipes: HashMap::new(),
                layouts,
                pipeline_layouts,
            }
        })
    }

    /// The pipeline of `k`, compiled on first use.
    pub fn get(&mut self, gpu: &Gpu, k: &Kernel) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.pipes.get(k) {
            return Ok(p.clone());
        }
        let module = match self.modules.entry(k.module) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let src = source(k.module);
                let doing = format!("compiling the WGSL module {:?}", k.module);
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
        let layout = &self.pipeline_layouts[k.inputs];
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
