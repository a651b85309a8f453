//! The one place that calls the CUDA driver (through cudarc's `result`/`sys` layers, loaded at
//! run time): the device, its context and stream, the JIT-loaded PTX modules, device memory.
//! Every `unsafe` block of the crate is here; every status is wrapped with its call site.

use crate::error::{check, CudaError, Result};
use cudarc::driver::{result, sys};
use gidd_kernels::ptx::MODULES;
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::Arc;

/// A kernel of a loaded module (valid while the `Device` that gave it lives).
#[derive(Clone, Copy, Debug)]
pub struct Function(sys::CUfunction);

// SAFETY: a function handle is immutable and usable from any thread whose current context is
// its module's; the launches that use it bind that context first.
unsafe impl Send for Function {}
unsafe impl Sync for Function {}

/// What the driver says about the device.
#[derive(Clone, Debug)]
pub struct Props {
    pub name: String,
    pub major: u32,
    pub minor: u32,
    pub sms: u32,
    /// The maximum clock, kHz.
    pub clock_khz: u32,
    pub mem_bytes: usize,
    /// Whether the device has stream-ordered memory pools (cuMemAllocAsync); else buffers
    /// come from cuMemAlloc.
    pub pools: bool,
}

/// A device with our context, stream and kernels. Shared (`Arc`) by the executor and every
/// buffer, so the context outlives the memory allocated in it.
pub struct Device {
    dev: sys::CUdevice,
    ctx: sys::CUcontext,
    pub(crate) stream: sys::CUstream,
    modules: Vec<sys::CUmodule>,
    functions: HashMap<&'static str, Function>,
    /// Generated chain modules (crate::chain), JIT-loaded on first use.
    generated: std::sync::Mutex<HashMap<&'static str, (sys::CUmodule, Function)>>,
    pub props: Props,
}

// SAFETY: the driver API is thread-safe; every entry point below makes the context current on
// the calling thread first, and the handles are only used through `&self` methods that do.
unsafe impl Send for Device {}
unsafe impl Sync for Device {}

impl Device {
    /// Opens device `ordinal`: a clean error (never a panic) without a driver or device.
    pub fn open(ordinal: usize) -> Result<Arc<Device>> {
        // SAFETY: only probes for the library with dlopen.
        if !unsafe { sys::is_culib_present() } {
            return Err(CudaError::NoDriver);
        }
        // cudarc resolves each symbol on first use and panics if one is missing (a driver
        // older than the API we call): turned into an error, not a crash.
        std::panic::catch_unwind(|| Device::open_inner(ordinal)).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(CudaError::NoDevice(format!(
                "the CUDA driver library could not be used ({msg}); a driver for CUDA 12 or later is needed"
            )))
        })
    }

    fn open_inner(ordinal: usize) -> Result<Arc<Device>> {
        check("initialising the driver (cuInit)", result::init())?;
        let count = check("counting devices", result::device::get_count())?;
        if ordinal >= count.max(0) as usize {
            return Err(CudaError::NoDevice(format!(
                "device {ordinal} requested, the driver sees {count}"
            )));
        }
        let dev = check("opening the device", result::device::get(ordinal as i32))?;
        let attr = |a: sys::CUdevice_attribute, what: &str| -> Result<u32> {
            // SAFETY: `dev` came from device::get.
            let v = check(what, unsafe { result::device::get_attribute(dev, a) })?;
            Ok(v.max(0) as u32)
        };
        use sys::CUdevice_attribute::*;
        let props = Props {
            name: check("reading the device name", result::device::get_name(dev))?,
            major: attr(
                CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                "reading the compute capability",
            )?,
            minor: attr(
                CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                "reading the compute capability",
            )?,
            sms: attr(
                CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                "reading the SM count",
            )?,
            clock_khz: attr(CU_DEVICE_ATTRIBUTE_CLOCK_RATE, "reading the clock rate")?,
            // SAFETY: `dev` came from device::get.
            mem_bytes: check("reading the memory size", unsafe {
                result::device::total_mem(dev)
            })?,
            pools: attr(
                CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED,
                "reading memory pool support",
            )? != 0,
        };
        if props.major < 8 {
            return Err(CudaError::NoDevice(format!(
                "{} has compute capability {}.{}; the PTX kernels need 8.0 (Ampere) or later",
                props.name, props.major, props.minor
            )));
        }
        // SAFETY: `dev` came from device::get; released in Drop.
        let ctx = check("retaining the primary context", unsafe {
            result::primary_ctx::retain(dev)
        })?;
        // SAFETY: a context just retained.
        check("making the context current", unsafe {
            result::ctx::set_current(ctx)
        })?;
        let stream = check(
            "creating a stream",
            result::stream::create(result::stream::StreamKind::NonBlocking),
        )?;
        let mut d = Device {
            dev,
            ctx,
            stream,
            modules: vec![],
            functions: HashMap::new(),
            generated: std::sync::Mutex::new(HashMap::new()),
            props,
        };
        d.load_modules()?;
        Ok(Arc::new(d))
    }

    /// JIT-assembles one PTX module; the error carries the JIT's log.
    fn jit(&self, name: &str, source: &str) -> Result<sys::CUmodule> {
        let text = CString::new(source)
            .map_err(|_| CudaError::Unsupported(format!("{name} holds a NUL byte")))?;
        let mut log = vec![0u8; 8192];
        let mut options = [
            sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER,
            sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
        ];
        let mut values = [
            log.as_mut_ptr() as *mut c_void,
            log.len() as usize as *mut c_void,
        ];
        let mut module = std::ptr::null_mut();
        // SAFETY: `text` is NUL-terminated PTX; the log buffer outlives the call and its
        // size is passed by value in the pointer slot, as the JIT options require.
        let status = unsafe {
            sys::cuModuleLoadDataEx(
                &mut module,
                text.as_ptr() as *const c_void,
                options.len() as u32,
                options.as_mut_ptr(),
                values.as_mut_ptr(),
            )
        };
        if let Err(err) = status.result() {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            return Err(CudaError::Driver {
                doing: format!(
                    "JIT-assembling PTX module {name} for sm_{}{} ({})",
                    self.props.major,
                    self.props.minor,
                    String::from_utf8_lossy(&log[..end]).trim()
                ),
                err,
            });
        }
        Ok(module)
    }

    /// JIT-loads every module this device runs and looks up its entries.
    fn load_modules(&mut self) -> Result<()> {
        for m in MODULES {
            if !m.arch.runs_on(self.props.major, self.props.minor) {
                continue;
            }
            let module = match self.jit(m.name, m.source) {
                Ok(module) => module,
                // A driver that cannot take the sm_90a modules leaves the executor working
                // without them: the GEMMs run on the sm_80 kernels (Device::hopper).
                Err(e) if m.arch == gidd_kernels::ptx::Arch::Sm90a => {
                    eprintln!("warning: {e}; continuing without {}", m.name);
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.modules.push(module);
            for entry in m.entries() {
                let name = CString::new(entry).map_err(|_| CudaError::Unsupported(entry.into()))?;
                // SAFETY: a module just loaded.
                let f = check(&format!("finding kernel {entry} in {}", m.name), unsafe {
                    result::module::get_function(module, name)
                })?;
                let smem = if crate::hopper::ENTRIES.contains(&entry) {
                    Some(crate::hopper::SMEM_BYTES)
                } else {
                    crate::attention_mma::wgmma_entries()
                        .find(|(e, _)| *e == entry)
                        .map(|(_, b)| b)
                };
                if let Some(bytes) = smem {
                    // SAFETY: a function just found; the attribute lets launches ask for
                    // more than the default 48 KiB of dynamic shared memory.
                    check(&format!("allowing {entry} its shared memory"), unsafe {
                        result::function::set_function_attribute(
                                f,
                                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                bytes as i32,
                            )
                    })?;
                }
                self.functions.insert(entry, Function(f));
            }
        }
        Ok(())
    }

    /// Whether the Hopper GEMM and attention forward are loaded (an sm_90 device whose driver
    /// took the sm_90a modules), unless GIDD_CUDA_NO_WGMMA=1 asks for the sm_80 kernels (for
    /// comparisons).
    pub fn hopper(&self) -> bool {
        std::env::var("GIDD_CUDA_NO_WGMMA").as_deref() != Ok("1")
            && crate::hopper::ENTRIES
                .iter()
                .copied()
                .chain(crate::attention_mma::wgmma_entries().map(|(e, _)| e))
                .all(|e| self.functions.contains_key(e))
    }

    /// The driver's encoding of a tensor map over the bf16 buffer at `addr` (16-byte aligned).
    pub fn encode_tensor_map(
        &self,
        spec: &crate::hopper::TmaSpec,
        addr: u64,
    ) -> Result<[u64; crate::plan::TENSOR_MAP_SLOTS]> {
        use sys::*;
        if !addr.is_multiple_of(16) {
            return Err(CudaError::Unsupported(format!(
                "a TMA operand at {addr:#x} is not 16-byte aligned"
            )));
        }
        let mut map = CUtensorMap { opaque: [0; 16] };
        let elem = [1u32; 3];
        // SAFETY: every array holds `rank` (3, or 2 for the strides) entries as the call reads.
        let status = unsafe {
            cuTensorMapEncodeTiled(
                &mut map,
                CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                3,
                addr as *mut c_void,
                spec.dims.as_ptr(),
                spec.strides.as_ptr(),
                spec.boxes.as_ptr(),
                elem.as_ptr(),
                CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
                CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        };
        check(&format!("encoding a tensor map {spec:?}"), status.result())?;
        Ok(map.opaque)
    }

    /// Makes our context current on this thread (every entry point calls it first).
    pub fn bind(&self) -> Result<()> {
        // SAFETY: the context lives as long as self.
        check("making the context current", unsafe {
            result::ctx::set_current(self.ctx)
        })
    }

    pub fn function(&self, entry: &str) -> Result<Function> {
        if let Some(g) = crate::chain::generated(entry) {
            return self.generated_function(g);
        }
        self.functions.get(entry).copied().ok_or_else(|| {
            CudaError::Unsupported(format!(
                "kernel {entry} is not loaded on {} (sm_{}{})",
                self.props.name, self.props.major, self.props.minor
            ))
        })
    }

    /// The entry of a generated chain module, JIT-loaded once per device.
    fn generated_function(&self, g: &crate::chain::Generated) -> Result<Function> {
        let mut loaded = self.generated.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&(_, f)) = loaded.get(g.entry) {
            return Ok(f);
        }
        self.bind()?;
        let module = self.jit(g.entry, &g.text)?;
        let name = CString::new(g.entry).map_err(|_| CudaError::Unsupported(g.entry.into()))?;
        // SAFETY: a module just loaded.
        let f = check(&format!("finding kernel {}", g.entry), unsafe {
            result::module::get_function(module, name)
        })?;
        loaded.insert(g.entry, (module, Function(f)));
        Ok(Function(f))
    }

    /// Launches `f` with its one parameter, the packed slots, and `smem` bytes of dynamic
    /// shared memory.
    pub fn launch(
        &self,
        f: Function,
        grid: [u32; 3],
        block: u32,
        smem: u32,
        slots: &mut [u64],
    ) -> Result<()> {
        let mut params = [slots.as_mut_ptr() as *mut c_void];
        // SAFETY: every kernel takes one `.param .align 8 .b8 args[8 n]`, and `slots` holds
        // the n values its ARGS line names (tested against the PTX); the driver copies the
        // parameter at launch, so `slots` may be reused when this returns.
        check("launching a kernel", unsafe {
            result::launch_kernel(
                f.0,
                (grid[0], grid[1], grid[2]),
                (block, 1, 1),
                smem,
                self.stream,
                &mut params,
            )
        })
    }

    pub fn memset_zero(&self, dst: u64, bytes: u64) -> Result<()> {
        // SAFETY: `dst..dst + bytes` lies in an allocation of this context (the plan's arena).
        check("zeroing device memory", unsafe {
            result::memset_d8_async(dst, 0, bytes as usize, self.stream)
        })
    }

    pub fn copy(&self, dst: u64, src: u64, bytes: u64) -> Result<()> {
        // SAFETY: both ranges lie in allocations of this context that are alive until the
        // stream passes this copy (buffers free themselves in stream order).
        check("copying device memory", unsafe {
            result::memcpy_dtod_async(dst, src, bytes as usize, self.stream)
        })
    }

    pub fn upload(&self, dst: u64, bytes: &[u8]) -> Result<()> {
        // SAFETY: `dst` holds at least bytes.len() bytes; from pageable memory the driver
        // stages the data before returning, so `bytes` may go when this returns.
        check("copying to the device", unsafe {
            result::memcpy_htod_async(dst, bytes, self.stream)
        })
    }

    /// Copies `bytes.len()` bytes from the device, after everything queued before.
    pub fn download(&self, bytes: &mut [u8], src: u64) -> Result<()> {
        // SAFETY: `src` holds at least bytes.len() bytes; the stream is synchronised before
        // `bytes` is read.
        check("copying from the device", unsafe {
            result::memcpy_dtoh_async(bytes, src, self.stream)
        })?;
        self.synchronize()
    }

    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: our stream, alive as long as self.
        check("synchronizing the stream", unsafe {
            result::stream::synchronize(self.stream)
        })
    }

    /// `bytes` of device memory, freed when the returned handle goes.
    pub fn alloc(self: &Arc<Self>, bytes: u64) -> Result<DeviceMem> {
        if bytes == 0 {
            return Ok(DeviceMem {
                ptr: 0,
                bytes: 0,
                dev: self.clone(),
            });
        }
        // SAFETY: stream-ordered allocation on our stream; every use is on the same stream.
        let ptr = unsafe { result::malloc_async(self.stream, bytes as usize) }.map_err(|err| {
            CudaError::Driver {
                doing: format!(
                    "allocating {:.1} MiB of device memory ({:.1} GiB on {})",
                    bytes as f64 / 1048576.0,
                    self.props.mem_bytes as f64 / 1073741824.0,
                    self.props.name
                ),
                err,
            }
        })?;
        Ok(DeviceMem {
            ptr,
            bytes,
            dev: self.clone(),
        })
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // Errors here have nowhere to go; the driver reclaims everything at exit anyway.
        // SAFETY: our own handles, not used after this.
        unsafe {
            let _ = result::ctx::set_current(self.ctx);
            let _ = result::stream::synchronize(self.stream);
            for &m in &self.modules {
                let _ = result::module::unload(m);
            }
            let generated = self.generated.get_mut().unwrap_or_else(|e| e.into_inner());
            for &(m, _) in generated.values() {
                let _ = result::module::unload(m);
            }
            let _ = result::stream::destroy(self.stream);
            let _ = result::primary_ctx::release(self.dev);
        }
    }
}

/// A device allocation, freed (in stream order) on drop.
pub struct DeviceMem {
    pub ptr: u64,
    pub bytes: u64,
    dev: Arc<Device>,
}

impl Drop for DeviceMem {
    fn drop(&mut self) {
        if self.ptr != 0 {
            // SAFETY: allocated by malloc_async on this stream; every queued use precedes
            // this free in stream order.
            unsafe {
                let _ = result::ctx::set_current(self.dev.ctx);
                if self.dev.props.pools {
                    let _ = result::free_async(self.ptr, self.dev.stream);
                } else {
                    // cuMemFree waits for the work using it (an implicit synchronisation)
                    let _ = result::free_sync(self.ptr);
                }
            }
        }
    }
}

/// An instantiated CUDA graph of a program's captured steps (crate::graph), destroyed on drop.
pub struct DeviceGraph {
    exec: sys::CUgraphExec,
    dev: Arc<Device>,
}

// SAFETY: a graph exec is used only through the executor's `&mut CudaProgram`, binding the
// context first, like every other handle here.
unsafe impl Send for DeviceGraph {}
unsafe impl Sync for DeviceGraph {}

impl DeviceGraph {
    /// Queues the whole graph on the stream.
    pub fn launch(&self) -> Result<()> {
        // SAFETY: an exec instantiated in this context; its addresses are those the
        // bookkeeping (crate::graph::GraphKey) checked to be unchanged.
        check("launching a CUDA graph", unsafe {
            result::graph::launch(self.exec, self.dev.stream)
        })
    }
}

impl Drop for DeviceGraph {
    fn drop(&mut self) {
        // SAFETY: our exec; queued launches of it keep their own reference in the driver.
        unsafe {
            let _ = result::ctx::set_current(self.dev.ctx);
            let _ = result::graph::exec_destroy(self.exec);
        }
    }
}

/// A recorded event (for `--profile`), destroyed on drop.
pub struct Event {
    ev: sys::CUevent,
}

impl Event {
    /// Milliseconds from `self` to `end` (both passed: after a synchronize).
    pub fn elapsed_ms(&self, end: &Event) -> Result<f32> {
        // SAFETY: two events recorded on our stream, completed (the caller synchronised).
        check("reading an event time", unsafe {
            result::event::elapsed(self.ev, end.ev)
        })
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: our event, not used after this.
        unsafe {
            let _ = result::event::destroy(self.ev);
        }
    }
}

impl Device {
    /// Starts recording what this thread queues on the stream into a graph.
    pub fn begin_capture(&self) -> Result<()> {
        // SAFETY: our stream; thread-local mode leaves other threads' CUDA calls alone.
        check("starting a stream capture", unsafe {
            result::stream::begin_capture(
                self.stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        })
    }

    /// Ends the capture begun by [`Device::begin_capture`] and instantiates the graph.
    pub fn end_capture(self: &Arc<Self>) -> Result<DeviceGraph> {
        // SAFETY: our stream, capturing; the graph is destroyed once instantiated.
        let graph = check("ending a stream capture", unsafe {
            result::stream::end_capture(self.stream)
        })?;
        // SAFETY: a graph just captured.
        let exec = unsafe {
            let e = result::graph::instantiate(graph, sys::CUgraphInstantiate_flags_enum(0));
            let _ = result::graph::destroy(graph);
            e
        };
        Ok(DeviceGraph {
            exec: check("instantiating a CUDA graph", exec)?,
            dev: self.clone(),
        })
    }

    /// An event recorded on the stream now.
    pub fn record_event(&self) -> Result<Event> {
        let ev = check(
            "creating an event",
            result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT),
        )?;
        let e = Event { ev };
        // SAFETY: an event just created, our stream.
        check("recording an event", unsafe {
            result::event::record(e.ev, self.stream)
        })?;
        Ok(e)
    }
}
