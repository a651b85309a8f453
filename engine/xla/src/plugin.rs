//! Finding and loading a PJRT plugin: `dlopen`, `GetPjrtApi`, the version check,
//! `PJRT_Plugin_Initialize`, and calls through the function table with every
//! returned PJRT_Error turned into [`XlaError::Pjrt`] naming its call.
//!
//! # Version policy
//! PJRT C API major version 0 only appends fields and functions, so a plugin of
//! version 0.x with x >= [`MIN_MINOR`] has every function and field we use at the
//! offsets we use. Any other major version, or an older minor one, is refused
//! with [`XlaError::ApiVersion`]. Newer minors are accepted (tested: 0.115).
//!
//! Plugins are loaded once per process and never unloaded: XLA keeps static
//! state and threads that must outlive every client.

use crate::error::{code_name, Result, XlaError};
use crate::ffi::{self, Fun, Raw, NULL};
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Environment variable naming the plugin's shared library.
pub const ENV_PLUGIN: &str = "GIDD_PJRT_PLUGIN";
/// Oldest PJRT C API minor version (of major 0) whose layouts we rely on.
pub const MIN_MINOR: i32 = 94;
/// The file name of the XLA CPU plugin inside its wheel.
pub const CPU_PLUGIN_FILE: &str = "pjrt_c_api_cpu_plugin.so";

/// Whether a plugin's C API version is one we can drive; the Err is the supported range.
pub fn check_api_version(major: i32, minor: i32) -> std::result::Result<(), String> {
    if major == 0 && minor >= MIN_MINOR {
        Ok(())
    } else {
        Err(format!("0.x with x >= {MIN_MINOR}"))
    }
}

/// The function table of a loaded plugin.
pub struct Api {
    table: *const u8,
    functions: usize,
    path: PathBuf,
    major: i32,
    minor: i32,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PJRT C API {}.{} ({} functions) from {}",
            self.major,
            self.minor,
            self.functions,
            self.path.display()
        )
    }
}

// The table is immutable and PJRT functions are thread-safe.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

impl Api {
    /// Validates a `PJRT_Api` table (its size and version).
    ///
    /// # Safety
    /// `table` must be null or point to a readable `PJRT_Api` whose `struct_size`
    /// bytes stay valid for the life of the process.
    pub unsafe fn from_raw(table: *const c_void, path: PathBuf) -> Result<Api> {
        if table.is_null() {
            return Err(XlaError::SymbolMissing {
                path,
                symbol: "GetPjrtApi",
                reason: "it returned a null PJRT_Api".into(),
            });
        }
        let t = table as *const u8;
        let size = std::ptr::read_unaligned(t as *const usize);
        if size < ffi::API_FUNCTIONS_OFFSET {
            return Err(XlaError::PluginLoad {
                path,
                reason: format!("PJRT_Api struct_size {size} is too small"),
            });
        }
        let major = std::ptr::read_unaligned(t.add(ffi::API_MAJOR_OFFSET) as *const i32);
        let minor = std::ptr::read_unaligned(t.add(ffi::API_MINOR_OFFSET) as *const i32);
        if let Err(supported) = check_api_version(major, minor) {
            return Err(XlaError::ApiVersion {
                path,
                major,
                minor,
                supported,
            });
        }
        Ok(Api {
            table: t,
            functions: (size - ffi::API_FUNCTIONS_OFFSET) / 8,
            path,
            major,
            minor,
        })
    }

    pub fn version(&self) -> (i32, i32) {
        (self.major, self.minor)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn function(&self, f: Fun) -> Result<*const c_void> {
        let missing = || XlaError::FunctionMissing {
            path: self.path.clone(),
            major: self.major,
            minor: self.minor,
            name: f.name,
            index: f.slot,
            available: self.functions,
        };
        if f.slot >= self.functions {
            return Err(missing());
        }
        // SAFETY: slot < functions, so the pointer lies inside the table.
        let p = unsafe {
            std::ptr::read_unaligned(
                self.table.add(ffi::API_FUNCTIONS_OFFSET + 8 * f.slot) as *const *const c_void
            )
        };
        if p.is_null() {
            return Err(missing());
        }
        Ok(p)
    }

    /// Calls `f` with `args`; a returned PJRT_Error becomes [`XlaError::Pjrt`] naming `f`.
    ///
    /// # Safety
    /// `A` must be the Args struct of `f`, with every pointer in it valid for the call.
    pub(crate) unsafe fn call<A>(&self, f: Fun, args: &mut A) -> Result<()> {
        let p = self.function(f)?;
        let func: unsafe extern "C" fn(*mut A) -> Raw = std::mem::transmute(p);
        let err = func(args);
        if err.is_null() {
            Ok(())
        } else {
            Err(self.take_error(f.name, err))
        }
    }

    /// Reads, then frees, a PJRT_Error.
    unsafe fn take_error(&self, call: &'static str, err: Raw) -> XlaError {
        let mut message = String::from("(no message)");
        if let Ok(p) = self.function(ffi::ERROR_MESSAGE) {
            let f: unsafe extern "C" fn(*mut ffi::ErrorMessageArgs) = std::mem::transmute(p);
            let mut a = ffi::ErrorMessageArgs {
                size: std::mem::size_of::<ffi::ErrorMessageArgs>(),
                ext: NULL,
                error: err,
                message: std::ptr::null(),
                message_size: 0,
            };
            f(&mut a);
            if !a.message.is_null() {
                let bytes = std::slice::from_raw_parts(a.message, a.message_size);
                message = String::from_utf8_lossy(bytes).into_owned();
            }
        }
        let mut code = 2;
        if let Ok(p) = self.function(ffi::ERROR_GET_CODE) {
            let f: unsafe extern "C" fn(*mut ffi::ErrorGetCodeArgs) -> Raw = std::mem::transmute(p);
            let mut a = ffi::ErrorGetCodeArgs {
                size: std::mem::size_of::<ffi::ErrorGetCodeArgs>(),
                ext: NULL,
                error: err,
                code: 2,
            };
            if f(&mut a).is_null() {
                code = a.code;
            }
        }
        if let Ok(p) = self.function(ffi::ERROR_DESTROY) {
            let f: unsafe extern "C" fn(*mut ffi::ErrorArgs) = std::mem::transmute(p);
            let mut a = ffi::ErrorArgs {
                size: std::mem::size_of::<ffi::ErrorArgs>(),
                ext: NULL,
                error: err,
            };
            f(&mut a);
        }
        XlaError::Pjrt {
            call,
            code: code_name(code),
            message,
        }
    }

    /// Waits for an event (if any), then frees it.
    pub(crate) fn await_event(&self, event: Raw, call: &'static str) -> Result<()> {
        if event.is_null() {
            return Ok(());
        }
        let mut a = ffi::EventArgs {
            size: std::mem::size_of::<ffi::EventArgs>(),
            ext: NULL,
            event,
        };
        // SAFETY: `event` came from the plugin and is freed exactly once, here.
        let waited = unsafe { self.call(ffi::EVENT_AWAIT, &mut a) };
        let mut d = ffi::EventArgs {
            size: std::mem::size_of::<ffi::EventArgs>(),
            ext: NULL,
            event,
        };
        let _ = unsafe { self.call(ffi::EVENT_DESTROY, &mut d) };
        waited.map_err(|e| match e {
            XlaError::Pjrt { code, message, .. } => XlaError::Pjrt {
                call,
                code,
                message,
            },
            other => other,
        })
    }

    /// The plugin's attributes (e.g. `stablehlo_current_version`) as text.
    pub fn attributes(&self) -> Result<Vec<(String, String)>> {
        let mut a = ffi::PluginAttributesArgs {
            size: std::mem::size_of::<ffi::PluginAttributesArgs>(),
            ext: NULL,
            attributes: std::ptr::null(),
            num_attributes: 0,
        };
        // SAFETY: the attributes live as long as the process.
        unsafe {
            self.call(ffi::PLUGIN_ATTRIBUTES, &mut a)?;
            let mut out = vec![];
            for i in 0..a.num_attributes {
                let v = &*a.attributes.add(i);
                let name = String::from_utf8_lossy(std::slice::from_raw_parts(v.name, v.name_size))
                    .into_owned();
                let value = match v.kind {
                    0 => String::from_utf8_lossy(std::slice::from_raw_parts(
                        v.value as usize as *const u8,
                        v.value_size,
                    ))
                    .into_owned(),
                    1 => (v.value as i64).to_string(),
                    2 => format!(
                        "{:?}",
                        std::slice::from_raw_parts(v.value as usize as *const i64, v.value_size)
                    ),
                    3 => f32::from_bits(v.value as u32).to_string(),
                    _ => (v.value & 1 == 1).to_string(),
                };
                out.push((name, value));
            }
            Ok(out)
        }
    }
}

static PLUGINS: Mutex<Vec<(PathBuf, &'static Api)>> = Mutex::new(Vec::new());

/// Loads (once per process) and initializes the plugin at `path`.
pub fn load_plugin(path: &Path) -> Result<&'static Api> {
    let not_found = || XlaError::PluginNotFound {
        path: Some(path.to_path_buf()),
        searched: vec![path.to_path_buf()],
    };
    if !path.is_file() {
        return Err(not_found());
    }
    let canon = path.canonicalize().map_err(|_| not_found())?;
    let mut plugins = PLUGINS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, api)) = plugins.iter().find(|(p, _)| *p == canon) {
        return Ok(api);
    }
    // SAFETY: loading a shared library runs its initialisers; a PJRT plugin's are benign.
    let lib = unsafe { libloading::Library::new(&canon) }.map_err(|e| XlaError::PluginLoad {
        path: canon.clone(),
        reason: e.to_string(),
    })?;
    // SAFETY: GetPjrtApi has the signature `const PJRT_Api* GetPjrtApi(void)`.
    let table = unsafe {
        let get: libloading::Symbol<unsafe extern "C" fn() -> *const c_void> = lib
            .get(b"GetPjrtApi\0")
            .map_err(|e| XlaError::SymbolMissing {
                path: canon.clone(),
                symbol: "GetPjrtApi",
                reason: e.to_string(),
            })?;
        get()
    };
    // SAFETY: the table belongs to `lib`, which is never unloaded once accepted.
    let api = unsafe { Api::from_raw(table, canon.clone())? };
    let mut init = ffi::PluginInitializeArgs {
        size: std::mem::size_of::<ffi::PluginInitializeArgs>(),
        ext: NULL,
    };
    // SAFETY: called once per plugin, before any other function.
    unsafe { api.call(ffi::PLUGIN_INITIALIZE, &mut init)? };
    std::mem::forget(lib);
    let api: &'static Api = Box::leak(Box::new(api));
    plugins.push((canon, api));
    Ok(api)
}

/// The plugin to use: `explicit`, else `$GIDD_PJRT_PLUGIN`, else the XLA CPU plugin
/// under `.xla-plugin/` of the working directory, one of its parents, or this workspace.
pub fn find_plugin(explicit: Option<&Path>) -> Result<PathBuf> {
    let given = explicit.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(ENV_PLUGIN)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(XlaError::PluginNotFound {
                path: Some(p.clone()),
                searched: vec![p],
            })
        };
    }
    let mut roots: Vec<PathBuf> = vec![];
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    // This crate sits at <workspace>/engine/xla.
    if let Some(ws) = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2) {
        roots.push(ws.to_path_buf());
    }
    let mut searched = vec![];
    for root in roots {
        let dir = root.join(".xla-plugin");
        if searched.contains(&dir) {
            continue;
        }
        if let Some(p) = find_file(&dir, CPU_PLUGIN_FILE, 4) {
            return Ok(p);
        }
        searched.push(dir);
    }
    Err(XlaError::PluginNotFound {
        path: None,
        searched,
    })
}

fn find_file(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut subdirs = vec![];
    for e in entries.flatten() {
        let p = e.path();
        if p.is_file() && p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir() {
            subdirs.push(p);
        }
    }
    subdirs.sort();
    if depth == 0 {
        return None;
    }
    subdirs.iter().find_map(|d| find_file(d, name, depth - 1))
}
