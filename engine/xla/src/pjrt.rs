//! A PJRT C-API client: creates a client on a loaded plugin ([`crate::plugin`]),
//! compiles StableHLO text, moves buffers between host and device, and executes.
//! The same code drives libtpu, the XLA GPU plugin and the XLA CPU plugin.

use crate::error::{Result, XlaError};
use crate::ffi::{self, Fun, Raw, NULL};
pub use crate::plugin::{
    check_api_version, find_plugin, load_plugin, Api, CPU_PLUGIN_FILE, ENV_PLUGIN, MIN_MINOR,
};
use gidd_engine::{DType, Data, HostTensor};
use std::ffi::c_void;
use std::sync::Arc;

/// Options of one compilation, serialized as an `xla.CompileOptionsProto`.
/// Both replica and partition counts are always sent: an empty proto aborts the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// SPMD partitions (devices) the program is split over; 1 = one device.
    pub num_partitions: usize,
    /// Partition with Shardy (the module carries `sdy` shardings) instead of GSPMD.
    pub shardy: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            num_partitions: 1,
            shardy: false,
        }
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

impl CompileOptions {
    /// `CompileOptionsProto{ executable_build_options(3) { num_replicas(4) = 1,
    /// num_partitions(5) = n, use_spmd_partitioning(6) = n > 1,
    /// use_shardy_partitioner(19) = shardy } }`;
    /// for one device exactly the 6 bytes `1a 04 20 01 28 01`.
    pub fn to_proto(&self) -> Vec<u8> {
        let n = self.num_partitions.max(1) as u64;
        let mut build = vec![0x20, 0x01, 0x28];
        varint(&mut build, n);
        if n > 1 {
            build.extend([0x30, 0x01]);
        }
        if self.shardy {
            // field 19, varint: tag (19 << 3) = 152 = 0x98 0x01
            build.extend([0x98, 0x01, 0x01]);
        }
        let mut out = vec![0x1a];
        varint(&mut out, build.len() as u64);
        out.extend(build);
        out
    }
}

pub(crate) fn buffer_type(d: DType) -> i32 {
    match d {
        DType::F32 => ffi::TYPE_F32,
        DType::F64 => ffi::TYPE_F64,
        DType::BF16 => ffi::TYPE_BF16,
        DType::F16 => ffi::TYPE_F16,
        DType::I32 => ffi::TYPE_S32,
        DType::U32 => ffi::TYPE_U32,
        DType::I64 => ffi::TYPE_S64,
        DType::Bool => ffi::TYPE_PRED,
    }
}

fn dtype_of(t: i32) -> Option<DType> {
    Some(match t {
        ffi::TYPE_F32 => DType::F32,
        ffi::TYPE_F64 => DType::F64,
        ffi::TYPE_BF16 => DType::BF16,
        ffi::TYPE_F16 => DType::F16,
        ffi::TYPE_S32 => DType::I32,
        ffi::TYPE_U32 => DType::U32,
        ffi::TYPE_S64 => DType::I64,
        ffi::TYPE_PRED => DType::Bool,
        _ => return None,
    })
}

pub(crate) struct ClientInner {
    pub(crate) api: &'static Api,
    raw: Raw,
    devices: Vec<Raw>,
    platform: String,
    platform_version: String,
}

unsafe impl Send for ClientInner {}
unsafe impl Sync for ClientInner {}

impl Drop for ClientInner {
    fn drop(&mut self) {
        let mut a = ffi::ClientArgs {
            size: std::mem::size_of::<ffi::ClientArgs>(),
            ext: NULL,
            client: self.raw,
        };
        // SAFETY: buffers and executables hold an Arc to this client, so none is left.
        let _ = unsafe { self.api.call(ffi::CLIENT_DESTROY, &mut a) };
    }
}

/// A PJRT client over the addressable devices of one plugin.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl Client {
    /// A client with the plugin's default options.
    pub fn new(api: &'static Api) -> Result<Client> {
        Self::with_options(api, &[])
    }

    /// A client with integer create options (plugin-specific names).
    pub fn with_options(api: &'static Api, options: &[(&str, i64)]) -> Result<Client> {
        let named: Vec<ffi::NamedValue> = options
            .iter()
            .map(|(n, v)| ffi::NamedValue {
                size: std::mem::size_of::<ffi::NamedValue>(),
                ext: NULL,
                name: n.as_ptr(),
                name_size: n.len(),
                kind: ffi::NAMED_INT64,
                value: *v as u64,
                value_size: 1,
            })
            .collect();
        let mut a = ffi::ClientCreateArgs {
            size: std::mem::size_of::<ffi::ClientCreateArgs>(),
            ext: NULL,
            create_options: named.as_ptr(),
            num_options: named.len(),
            kv_get: NULL,
            kv_get_user: NULL,
            kv_put: NULL,
            kv_put_user: NULL,
            client: NULL,
            kv_try_get: NULL,
            kv_try_get_user: NULL,
        };
        // SAFETY: `named` outlives the call; every callback is null.
        unsafe { api.call(ffi::CLIENT_CREATE, &mut a)? };
        let mut inner = ClientInner {
            api,
            raw: a.client,
            devices: vec![],
            platform: String::new(),
            platform_version: String::new(),
        };
        inner.platform = client_str(api, a.client, ffi::CLIENT_PLATFORM_NAME)?;
        inner.platform_version =
            client_str(api, a.client, ffi::CLIENT_PLATFORM_VERSION).unwrap_or_default();
        let mut d = ffi::ClientDevicesArgs {
            size: std::mem::size_of::<ffi::ClientDevicesArgs>(),
            ext: NULL,
            client: a.client,
            devices: std::ptr::null(),
            num_devices: 0,
        };
        // SAFETY: the device list is owned by the client and lives as long as it.
        unsafe {
            api.call(ffi::CLIENT_ADDRESSABLE_DEVICES, &mut d)?;
            inner.devices = std::slice::from_raw_parts(d.devices, d.num_devices).to_vec();
        }
        if inner.devices.is_empty() {
            return Err(XlaError::Invalid(format!(
                "PJRT client for {} has no addressable devices",
                inner.platform
            )));
        }
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    pub fn api(&self) -> &'static Api {
        self.inner.api
    }
    /// "cpu", "tpu", "cuda", ...
    pub fn platform(&self) -> &str {
        &self.inner.platform
    }
    pub fn platform_version(&self) -> &str {
        &self.inner.platform_version
    }
    pub fn device_count(&self) -> usize {
        self.inner.devices.len()
    }

    /// Compiles StableHLO MLIR text.
    pub fn compile(&self, mlir: &str, options: &CompileOptions) -> Result<Executable> {
        let api = self.inner.api;
        let opts = options.to_proto();
        let program = ffi::Program {
            size: std::mem::size_of::<ffi::Program>(),
            ext: NULL,
            code: mlir.as_ptr(),
            code_size: mlir.len(),
            format: b"mlir".as_ptr(),
            format_size: 4,
        };
        let mut a = ffi::ClientCompileArgs {
            size: std::mem::size_of::<ffi::ClientCompileArgs>(),
            ext: NULL,
            client: self.inner.raw,
            program: &program,
            compile_options: opts.as_ptr(),
            compile_options_size: opts.len(),
            executable: NULL,
        };
        // SAFETY: the program text and options outlive the call.
        unsafe { api.call(ffi::CLIENT_COMPILE, &mut a)? };
        self.wrap(a.executable)
    }

    /// Owns a loaded executable and reads its output and partition counts.
    fn wrap(&self, raw: Raw) -> Result<Executable> {
        let api = self.inner.api;
        let mut exe = Executable {
            client: self.inner.clone(),
            raw,
            num_outputs: 0,
            num_partitions: 1,
        };
        let (outs, parts) = exe.query(|x| {
            let count = |f: Fun| -> Result<usize> {
                let mut c = ffi::ExecutableCountArgs {
                    size: std::mem::size_of::<ffi::ExecutableCountArgs>(),
                    ext: NULL,
                    executable: x,
                    count: 0,
                };
                // SAFETY: `x` is live for the query.
                unsafe { api.call(f, &mut c)? };
                Ok(c.count)
            };
            Ok((
                count(ffi::EXECUTABLE_NUM_OUTPUTS)?,
                count(ffi::EXECUTABLE_NUM_PARTITIONS)?,
            ))
        })?;
        exe.num_outputs = outs;
        exe.num_partitions = parts.max(1);
        Ok(exe)
    }

    /// Loads an executable that [`Executable::serialize`] wrote, with the same plugin.
    pub fn deserialize(&self, bytes: &[u8]) -> Result<Executable> {
        let api = self.inner.api;
        // SAFETY: plain data; all-zero means no overriding options.
        let mut a: ffi::DeserializeArgs = unsafe { std::mem::zeroed() };
        a.size = std::mem::size_of::<ffi::DeserializeArgs>();
        a.client = self.inner.raw;
        a.bytes = bytes.as_ptr();
        a.bytes_size = bytes.len();
        // SAFETY: `bytes` outlives the call.
        unsafe { api.call(ffi::EXECUTABLE_DESERIALIZE_AND_LOAD, &mut a)? };
        self.wrap(a.loaded)
    }

    /// Copies a host tensor to device `device` (an index into the addressable devices).
    pub fn upload(&self, t: &HostTensor, device: usize) -> Result<DeviceBuffer> {
        let api = self.inner.api;
        let dev = *self.inner.devices.get(device).ok_or_else(|| {
            XlaError::Invalid(format!(
                "device {device} out of range ({} addressable)",
                self.device_count()
            ))
        })?;
        let dims: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        let bytes = t.data.as_bytes();
        let mut a = ffi::BufferFromHostArgs {
            size: std::mem::size_of::<ffi::BufferFromHostArgs>(),
            ext: NULL,
            client: self.inner.raw,
            data: bytes.as_ptr() as *const c_void,
            kind: buffer_type(t.dtype()),
            dims: dims.as_ptr(),
            num_dims: dims.len(),
            byte_strides: std::ptr::null(),
            num_byte_strides: 0,
            semantics: ffi::IMMUTABLE_ONLY_DURING_CALL,
            device: dev,
            memory: NULL,
            device_layout: NULL,
            done_with_host_buffer: NULL,
            buffer: NULL,
        };
        // SAFETY: `bytes` and `dims` outlive the call and the host-buffer event.
        unsafe { api.call(ffi::CLIENT_BUFFER_FROM_HOST, &mut a)? };
        let buf = DeviceBuffer {
            client: self.inner.clone(),
            raw: a.buffer,
            shape: t.shape.clone(),
            dtype: t.dtype(),
        };
        api.await_event(a.done_with_host_buffer, ffi::CLIENT_BUFFER_FROM_HOST.name)?;
        Ok(buf)
    }
}

fn client_str(api: &Api, client: Raw, f: Fun) -> Result<String> {
    let mut a = ffi::ClientStrArgs {
        size: std::mem::size_of::<ffi::ClientStrArgs>(),
        ext: NULL,
        client,
        s: std::ptr::null(),
        len: 0,
    };
    // SAFETY: the string is owned by the client.
    unsafe {
        api.call(f, &mut a)?;
        if a.s.is_null() {
            return Ok(String::new());
        }
        Ok(String::from_utf8_lossy(std::slice::from_raw_parts(a.s, a.len)).into_owned())
    }
}

/// A compiled, loaded program.
pub struct Executable {
    client: Arc<ClientInner>,
    raw: Raw,
    num_outputs: usize,
    num_partitions: usize,
}

unsafe impl Send for Executable {}
unsafe impl Sync for Executable {}

impl Drop for Executable {
    fn drop(&mut self) {
        let mut a = ffi::ExecutableArgs {
            size: std::mem::size_of::<ffi::ExecutableArgs>(),
            ext: NULL,
            executable: self.raw,
        };
        // SAFETY: freed once; running executions hold their own references.
        let _ = unsafe { self.client.api.call(ffi::LOADED_DESTROY, &mut a) };
    }
}

impl Executable {
    pub fn num_outputs(&self) -> usize {
        self.num_outputs
    }
    pub fn num_partitions(&self) -> usize {
        self.num_partitions
    }

    /// What XLA planned for one run on one device: argument, output, aliased
    /// (argument memory reused by outputs) and temporary bytes.
    pub fn memory_stats(&self) -> Result<MemoryStats> {
        let api = self.client.api;
        self.query(|x| {
            // SAFETY: plain data; all-zero is a valid start.
            let mut m: ffi::MemoryStatsArgs = unsafe { std::mem::zeroed() };
            m.size = std::mem::size_of::<ffi::MemoryStatsArgs>();
            m.executable = x;
            // SAFETY: `x` is live for the query.
            unsafe { api.call(ffi::EXECUTABLE_MEMORY_STATS, &mut m)? };
            Ok(MemoryStats {
                argument_bytes: m.argument_size as u64,
                output_bytes: m.output_size as u64,
                alias_bytes: m.alias_size as u64,
                temp_bytes: m.temp_size as u64,
            })
        })
    }

    /// The plugin's serialization of the compiled executable (valid for the same plugin
    /// build only), for [`Client::deserialize`].
    pub fn serialize(&self) -> Result<Vec<u8>> {
        let api = self.client.api;
        self.query(|x| {
            // SAFETY: plain data; the plugin fills the outputs.
            let mut a: ffi::SerializeArgs = unsafe { std::mem::zeroed() };
            a.size = std::mem::size_of::<ffi::SerializeArgs>();
            a.executable = x;
            // SAFETY: `x` is live; the bytes live until the deleter runs, after the copy.
            unsafe {
                api.call(ffi::EXECUTABLE_SERIALIZE, &mut a)?;
                let out = if a.bytes.is_null() {
                    vec![]
                } else {
                    std::slice::from_raw_parts(a.bytes, a.bytes_size).to_vec()
                };
                if let Some(d) = a.deleter {
                    d(a.serialized);
                }
                Ok(out)
            }
        })
    }

    /// Runs `f` on the (unloaded) PJRT_Executable behind this loaded one, then frees it.
    fn query<T>(&self, f: impl FnOnce(Raw) -> Result<T>) -> Result<T> {
        let api = self.client.api;
        let mut g = ffi::LoadedGetExecutableArgs {
            size: std::mem::size_of::<ffi::LoadedGetExecutableArgs>(),
            ext: NULL,
            loaded: self.raw,
            executable: NULL,
        };
        // SAFETY: the unloaded executable is ours to free, once, after `f`.
        unsafe { api.call(ffi::LOADED_GET_EXECUTABLE, &mut g)? };
        let r = f(g.executable);
        let mut d = ffi::ExecutableArgs {
            size: std::mem::size_of::<ffi::ExecutableArgs>(),
            ext: NULL,
            executable: g.executable,
        };
        // SAFETY: see above.
        let _ = unsafe { api.call(ffi::EXECUTABLE_DESTROY, &mut d) };
        r
    }

    /// Runs on every device of the executable: `args[d]` are device d's arguments;
    /// returns each device's outputs, after the execution has finished.
    ///
    /// Arguments the module aliases to outputs (`tf.aliasing_output`) are donated: the
    /// outputs take their memory and the argument buffers are deleted. `keep` lists the
    /// argument indices that must not be donated (XLA then copies); a caller that still
    /// needs an aliased argument afterwards lists it here.
    pub fn execute(
        &self,
        args: &[Vec<&DeviceBuffer>],
        keep: &[i64],
    ) -> Result<Vec<Vec<DeviceBuffer>>> {
        let api = self.client.api;
        let nd = args.len();
        if nd != self.num_partitions {
            return Err(XlaError::Invalid(format!(
                "executable runs on {} devices, got arguments for {nd}",
                self.num_partitions
            )));
        }
        let nargs = args.first().map_or(0, Vec::len);
        if args.iter().any(|a| a.len() != nargs) {
            return Err(XlaError::Invalid(
                "every device needs the same number of arguments".into(),
            ));
        }
        let lists: Vec<Vec<Raw>> = args
            .iter()
            .map(|a| a.iter().map(|b| b.raw).collect())
            .collect();
        let list_ptrs: Vec<*const Raw> = lists.iter().map(|l| l.as_ptr()).collect();
        let mut outs: Vec<Vec<Raw>> = vec![vec![NULL; self.num_outputs]; nd];
        let out_ptrs: Vec<*mut Raw> = outs.iter_mut().map(|o| o.as_mut_ptr()).collect();
        let mut events: Vec<Raw> = vec![NULL; nd];
        // SAFETY: ExecuteOptions is plain data; all-zero is "no callbacks, no context".
        let mut opts: ffi::ExecuteOptions = unsafe { std::mem::zeroed() };
        opts.size = std::mem::size_of::<ffi::ExecuteOptions>();
        opts.non_donatable_input_indices = keep.as_ptr();
        opts.num_non_donatable_input_indices = keep.len();
        let mut a = ffi::ExecuteArgs {
            size: std::mem::size_of::<ffi::ExecuteArgs>(),
            ext: NULL,
            executable: self.raw,
            options: &opts,
            argument_lists: list_ptrs.as_ptr(),
            num_devices: nd,
            num_args: nargs,
            output_lists: out_ptrs.as_ptr(),
            device_complete_events: events.as_mut_ptr(),
            execute_device: NULL,
        };
        // SAFETY: argument and output lists are [nd][nargs] / [nd][num_outputs] as required.
        unsafe { api.call(ffi::LOADED_EXECUTE, &mut a)? };
        // Take ownership of every output before anything can fail.
        let mut result = Vec::with_capacity(nd);
        for o in &outs {
            let mut bufs = Vec::with_capacity(o.len());
            for &raw in o {
                bufs.push(DeviceBuffer {
                    client: self.client.clone(),
                    raw,
                    shape: vec![],
                    dtype: DType::F32,
                });
            }
            result.push(bufs);
        }
        let mut waited = Ok(());
        for &e in &events {
            let r = api.await_event(e, ffi::LOADED_EXECUTE.name);
            if waited.is_ok() {
                waited = r;
            }
        }
        waited?;
        for bufs in &mut result {
            for b in bufs.iter_mut() {
                b.query_type()?;
            }
        }
        Ok(result)
    }
}

/// Device memory one run of an executable takes, as XLA planned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryStats {
    pub argument_bytes: u64,
    pub output_bytes: u64,
    /// argument bytes the outputs reuse (donated state)
    pub alias_bytes: u64,
    pub temp_bytes: u64,
}

impl MemoryStats {
    /// Peak bytes live during a run: arguments, new outputs, temporaries.
    pub fn peak_bytes(&self) -> u64 {
        self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
    }
}

/// A tensor in device memory. Dropping it frees the device memory.
pub struct DeviceBuffer {
    client: Arc<ClientInner>,
    raw: Raw,
    shape: Vec<usize>,
    dtype: DType,
}

unsafe impl Send for DeviceBuffer {}
unsafe impl Sync for DeviceBuffer {}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.raw.is_null() {
            return;
        }
        let mut a = ffi::BufferArgs {
            size: std::mem::size_of::<ffi::BufferArgs>(),
            ext: NULL,
            buffer: self.raw,
        };
        // SAFETY: each buffer is destroyed once.
        let _ = unsafe { self.client.api.call(ffi::BUFFER_DESTROY, &mut a) };
    }
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceBuffer({:?}{} on {})",
            self.shape, self.dtype, self.client.platform
        )
    }
}

impl DeviceBuffer {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn query_type(&mut self) -> Result<()> {
        let api = self.client.api;
        let mut t = ffi::BufferElementTypeArgs {
            size: std::mem::size_of::<ffi::BufferElementTypeArgs>(),
            ext: NULL,
            buffer: self.raw,
            kind: 0,
        };
        let mut d = ffi::BufferDimensionsArgs {
            size: std::mem::size_of::<ffi::BufferDimensionsArgs>(),
            ext: NULL,
            buffer: self.raw,
            dims: std::ptr::null(),
            num_dims: 0,
        };
        // SAFETY: the dims array lives as long as the buffer.
        unsafe {
            api.call(ffi::BUFFER_ELEMENT_TYPE, &mut t)?;
            api.call(ffi::BUFFER_DIMENSIONS, &mut d)?;
            self.shape = if d.num_dims == 0 {
                vec![]
            } else {
                std::slice::from_raw_parts(d.dims, d.num_dims)
                    .iter()
                    .map(|&x| x as usize)
                    .collect()
            };
        }
        self.dtype = dtype_of(t.kind).ok_or_else(|| {
            XlaError::Invalid(format!(
                "device buffer has PJRT element type {}, which gidd does not use",
                t.kind
            ))
        })?;
        Ok(())
    }

    /// Whether the buffer's memory is gone (it was donated to a run).
    pub fn is_deleted(&self) -> Result<bool> {
        let mut a = ffi::BufferIsDeletedArgs {
            size: std::mem::size_of::<ffi::BufferIsDeletedArgs>(),
            ext: NULL,
            buffer: self.raw,
            deleted: false,
        };
        // SAFETY: plain query on a live handle.
        unsafe { self.client.api.call(ffi::BUFFER_IS_DELETED, &mut a)? };
        Ok(a.deleted)
    }

    /// Copies the buffer to host memory.
    pub fn download(&self) -> Result<HostTensor> {
        let api = self.client.api;
        let n: usize = self.shape.iter().product();
        let mut data = Data::zeros(self.dtype, n);
        let dst: &mut [u8] = match &mut data {
            Data::F32(v) => bytes_mut(v),
            Data::F64(v) => bytes_mut(v),
            Data::BF16(v) => bytes_mut(v),
            Data::F16(v) => bytes_mut(v),
            Data::I32(v) => bytes_mut(v),
            Data::U32(v) => bytes_mut(v),
            Data::I64(v) => bytes_mut(v),
            Data::Bool(v) => v.as_mut_slice(),
            // Data::zeros is owned storage
            Data::Mapped(_) => &mut [],
        };
        let mut a = ffi::BufferToHostArgs {
            size: std::mem::size_of::<ffi::BufferToHostArgs>(),
            ext: NULL,
            src: self.raw,
            host_layout: NULL,
            dst: dst.as_mut_ptr() as *mut c_void,
            dst_size: dst.len(),
            event: NULL,
        };
        // SAFETY: `dst` has exactly the buffer's dense byte size and outlives the event.
        unsafe { api.call(ffi::BUFFER_TO_HOST, &mut a)? };
        api.await_event(a.event, ffi::BUFFER_TO_HOST.name)?;
        Ok(HostTensor::new(self.shape.clone(), data)?)
    }
}

fn bytes_mut<T: bytemuck::Pod>(v: &mut [T]) -> &mut [u8] {
    bytemuck::cast_slice_mut(v)
}
