//! Opening the adapter and device, and catching wgpu's errors as values: wgpu reports
//! validation errors to a handler whose default panics, so every call that can fail runs
//! inside an error scope (or is checked against the uncaptured-error slot) and comes back
//! as a [`WgpuError`].

use crate::error::{Result, WgpuError};
use std::sync::{Arc, Mutex};

/// An open device and what we know about its adapter.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The first error wgpu reported outside an error scope (from a submission, a mapping).
    uncaptured: Arc<Mutex<Option<String>>>,
    /// The device was opened with TIMESTAMP_QUERY: profiled runs time each dispatch on the
    /// GPU's own clock (timestamps written at the start and end of a compute pass).
    pub timestamps: bool,
    /// The device was opened with SHADER_F64 (f64 arithmetic in shaders; the fused
    /// sampling step's kernel needs it).
    pub f64_shaders: bool,
}

impl Gpu {
    /// The first adapter wgpu offers on the native backends (Vulkan, Metal, DX12), asked
    /// for all of its limits (storage bindings up to its maximum, not WebGPU's defaults).
    /// `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and the Vulkan loader's variables are honoured.
    pub fn open() -> Result<Gpu> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if std::env::var_os("WGPU_BACKEND").is_none() {
            desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| WgpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let name = format!("{} ({:?})", info.name, info.backend);
        // asked for where offered: only `--profile` uses timestamps and only the fused
        // sampling step f64 shaders, and an adapter without them still runs
        let features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F64);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gidd"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| WgpuError::Device {
            adapter: name,
            msg: e.to_string(),
        })?;
        let uncaptured = Arc::new(Mutex::new(None));
        let slot = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut s) = slot.lock() {
                s.get_or_insert_with(|| e.to_string());
            }
        }));
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            uncaptured,
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            f64_shaders: features.contains(wgpu::Features::SHADER_F64),
        })
    }

    /// Runs `f` inside a validation and an out-of-memory error scope; an error either
    /// catches is returned, naming `doing`.
    pub fn scoped<T>(&self, doing: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let valid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let t = f();
        let e1 = pollster::block_on(valid.pop());
        let e2 = pollster::block_on(oom.pop());
        match e1.or(e2) {
            Some(e) => Err(WgpuError::Api {
                doing: doing.to_string(),
                msg: e.to_string(),
            }),
            None => Ok(t),
        }
    }

    /// The first error reported outside a scope since the last check, if any.
    pub fn take_uncaptured(&self, doing: &str) -> Result<()> {
        let e = self.uncaptured.lock().ok().and_then(|mut s| s.take());
        match e {
            Some(msg) => Err(WgpuError::Api {
                doing: doing.to_string(),
                msg,
            }),
            None => Ok(()),
        }
    }

    /// Blocks until the queue is idle.
    pub fn wait(&self, doing: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| WgpuError::Api {
                doing: doing.to_string(),
                msg: e.to_string(),
            })?;
        self.take_uncaptured(doing)
    }

    /// The largest buffer one storage binding may cover.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }
}
