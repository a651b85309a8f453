//! The `xla` executor: programs are emitted as StableHLO, compiled once by the
//! PJRT plugin, and run on device buffers that stay on the device between runs
//! (parameters and optimizer state go up once; each run returns new device buffers).

use crate::cache::{CompileCache, Origin};
use crate::emit::emit_module;
use crate::error::Result;
use crate::pjrt::{find_plugin, load_plugin, Client, CompileOptions, DeviceBuffer, Executable};
use gidd_engine::op::TensorType;
use gidd_engine::{DType, Error, Executor, HostTensor, Program};
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs programs on one device of a PJRT client.
#[derive(Clone)]
pub struct XlaExecutor {
    client: Client,
    device: usize,
    cache: Option<CompileCache>,
}

/// A compiled program and the types it was compiled for.
pub struct XlaProgram {
    exe: Executable,
    inputs: Vec<(String, TensorType)>,
    outputs: Vec<TensorType>,
    aliased: Aliased,
    module: String,
    compile_time: Duration,
    origin: Origin,
}

impl XlaProgram {
    /// The StableHLO module that was compiled.
    pub fn module(&self) -> &str {
        &self.module
    }
    /// Wall time of emission plus XLA compilation.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
    pub fn output_types(&self) -> &[TensorType] {
        &self.outputs
    }
    /// Whether the executable was compiled now or loaded from the compile cache.
    pub fn origin(&self) -> Origin {
        self.origin
    }
    /// The compiled executable (e.g. for its memory plan).
    pub fn executable(&self) -> &Executable {
        &self.exe
    }
}

impl XlaExecutor {
    /// Loads the plugin (`plugin`, else `$GIDD_PJRT_PLUGIN`, else `.xla-plugin/`) and
    /// creates a client that runs on its first addressable device.
    pub fn new(plugin: Option<&Path>) -> Result<XlaExecutor> {
        let api = load_plugin(&find_plugin(plugin)?)?;
        Ok(Self::with_client(Client::new(api)?))
    }

    /// An executor on the client's first device, with the compile cache
    /// [`CompileCache::from_env`] names.
    pub fn with_client(client: Client) -> XlaExecutor {
        XlaExecutor {
            client,
            device: 0,
            cache: CompileCache::from_env(),
        }
    }

    /// The same executor with another compile cache (None: always compile).
    pub fn with_cache(mut self, cache: Option<CompileCache>) -> XlaExecutor {
        self.cache = cache;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Executor for XlaExecutor {
    type Buffer = DeviceBuffer;
    type Loaded = XlaProgram;

    /// The XLA CPU plugin computes on this host's cores (all of its "devices" share them),
    /// so its peak is the host's; other platforms' peaks are not known here.
    fn peak_flops(&self, dtype: DType) -> Option<f64> {
        (self.client.platform() == "cpu")
            .then(|| gidd_engine::CpuExecutor.peak_flops(dtype))
            .flatten()
    }

    fn name(&self) -> String {
        let (major, minor) = self.client.api().version();
        format!(
            "xla ({} {}, PJRT C API {major}.{minor}, device {} of {})",
            self.client.platform(),
            self.client.platform_version(),
            self.device,
            self.client.device_count()
        )
    }

    fn upload(&self, t: &HostTensor) -> gidd_engine::Result<DeviceBuffer> {
        Ok(self.client.upload(t, self.device)?)
    }

    fn download(&self, b: &DeviceBuffer) -> gidd_engine::Result<HostTensor> {
        Ok(b.download()?)
    }

    fn load(&self, p: &Program) -> gidd_engine::Result<XlaProgram> {
        let t0 = Instant::now();
        let module = emit_module(p)?;
        let (exe, origin) = compile(
            &self.client,
            self.cache.as_ref(),
            &module,
            &CompileOptions::default(),
        )?;
        if exe.num_outputs() != p.outputs.len() {
            return Err(Error::Msg(format!(
                "xla: the compiled module has {} outputs, the program {}",
                exe.num_outputs(),
                p.outputs.len()
            )));
        }
        Ok(XlaProgram {
            exe,
            inputs: p
                .input_types()
                .into_iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
            outputs: p.output_types().into_iter().cloned().collect(),
            aliased: Aliased::of(p),
            module,
            compile_time: t0.elapsed(),
            origin,
        })
    }

    fn run(
        &self,
        lp: &mut XlaProgram,
        inputs: &[&DeviceBuffer],
    ) -> gidd_engine::Result<Vec<DeviceBuffer>> {
        // The caller keeps its inputs: nothing is donated.
        self.execute(lp, inputs, 0)
    }

    fn memory_plan(&self, lp: &XlaProgram) -> Option<String> {
        plan_note(&lp.exe, lp.origin, self.cache.as_ref())
    }

    fn run_donating(
        &self,
        lp: &mut XlaProgram,
        donated: Vec<DeviceBuffer>,
        rest: &[&DeviceBuffer],
    ) -> gidd_engine::Result<Vec<DeviceBuffer>> {
        let n = donated.len();
        let mut ins: Vec<&DeviceBuffer> = donated.iter().collect();
        ins.extend_from_slice(rest);
        // The donated handles are destroyed here; their memory now belongs to the outputs.
        self.execute(lp, &ins, n)
    }
}

/// The inputs a program aliases to outputs (`Program::aliases`), sorted: XLA donates
/// each one a run does not list as kept.
#[derive(Clone, Debug, Default)]
pub(crate) struct Aliased(Vec<i64>);

impl Aliased {
    pub(crate) fn of(p: &Program) -> Aliased {
        let mut v: Vec<i64> = p.aliases.iter().map(|&(i, _)| i as i64).collect();
        v.sort_unstable();
        Aliased(v)
    }

    /// The aliased inputs a run must keep when its first `donated` inputs are given up
    /// (a plain run: 0, all of them). GIDD_XLA_NO_DONATE=1 keeps every one, to measure
    /// what donation saves.
    pub(crate) fn kept(&self, donated: usize) -> &[i64] {
        static NO_DONATE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *NO_DONATE.get_or_init(|| std::env::var_os("GIDD_XLA_NO_DONATE").is_some()) {
            return &self.0;
        }
        &self.0[self.0.partition_point(|&i| i < donated as i64)..]
    }
}

/// Compiles `module`, through `cache` when there is one.
pub(crate) fn compile(
    client: &Client,
    cache: Option<&CompileCache>,
    module: &str,
    options: &CompileOptions,
) -> crate::Result<(Executable, Origin)> {
    match cache {
        Some(c) => c.compile(client, module, options),
        None => Ok((client.compile(module, options)?, Origin::Compiled)),
    }
}

/// The memory-plan line of `exe`, with where it came from.
pub(crate) fn plan_note(
    exe: &Executable,
    origin: Origin,
    cache: Option<&CompileCache>,
) -> Option<String> {
    let m = exe.memory_stats().ok()?;
    let from = match (origin, cache) {
        (Origin::Cached, Some(c)) => format!(
            " (executable loaded from the compile cache {})",
            c.dir().display()
        ),
        (Origin::CompiledAndStored, Some(c)) => format!(
            " (compiled; stored in the compile cache {})",
            c.dir().display()
        ),
        _ => String::new(),
    };
    Some(format!("{}{from}", plan_line(&m)))
}

/// XLA's memory plan of one run, in MiB.
pub(crate) fn plan_line(m: &crate::pjrt::MemoryStats) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    format!(
        "xla memory plan: arguments {:.1} MiB, outputs {:.1} MiB of which {:.1} MiB in donated arguments, temporaries {:.1} MiB: peak {:.1} MiB",
        mib(m.argument_bytes),
        mib(m.output_bytes),
        mib(m.alias_bytes),
        mib(m.temp_bytes),
        mib(m.peak_bytes())
    )
}

impl XlaExecutor {
    /// Checks the inputs and runs; the first `donated` inputs are given up.
    fn execute(
        &self,
        lp: &XlaProgram,
        inputs: &[&DeviceBuffer],
        donated: usize,
    ) -> gidd_engine::Result<Vec<DeviceBuffer>> {
        if inputs.len() != lp.inputs.len() {
            return Err(Error::InputCount {
                expected: lp.inputs.len(),
                got: inputs.len(),
            });
        }
        for (i, ((name, ty), b)) in lp.inputs.iter().zip(inputs).enumerate() {
            if b.shape() != ty.shape.as_slice() || b.dtype() != ty.dtype {
                return Err(Error::InputMismatch {
                    index: i,
                    name: name.clone(),
                    expected: ty.to_string(),
                    got: format!("{:?}{}", b.shape(), b.dtype()),
                });
            }
        }
        let mut outs = lp
            .exe
            .execute(&[inputs.to_vec()], lp.aliased.kept(donated))?;
        Ok(outs.pop().unwrap_or_default())
    }
}
