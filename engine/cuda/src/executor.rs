//! The `cuda` executor: programs run as launches of the hand-written PTX kernels on one stream.
//!
//! `load` decomposes the fused ops it has no kernel for, plans every node as steps (crate::plan, no device involved), allocates one arena for the
//! program's planned buffers, constants and scratch, and uploads the constants. A run patches
//! the inputs' addresses into the launches, queues them, and copies each output out of the
//! arena: into a fresh buffer, or into the storage of the donated input the program aliases
//! it to (so a training step keeps one copy of its state). Once a program's addresses repeat,
//! its steps are captured as a CUDA graph and replayed (crate::graph); profiled runs time each
//! launch with events instead (crate::profile). Nothing waits for the device until a download
//! or `synchronize` (or the end of a profiled run).

use crate::driver::{Device, DeviceGraph, DeviceMem, Event};
use crate::error::{CudaError, Result};
use crate::graph::{Action, GraphBook, GraphKey};
use crate::plan::{bytes_of, resolve, Plan, Ptr, Step};
use crate::profile::KernelTimes;
use gidd_engine::{DType, Data, Executor, HostTensor, Op, Program};
use std::sync::Arc;

#[derive(Clone)]
pub struct CudaExecutor {
    pub(crate) dev: Arc<Device>,
}

/// A tensor in device memory. Cheap to clone (the storage is shared and immutable to its
/// holders: only a donation that hands over the last handle lets a run write into it).
#[derive(Clone)]
pub struct CudaBuffer {
    pub(crate) mem: Arc<DeviceMem>,
    shape: Vec<usize>,
    dtype: DType,
}

impl CudaBuffer {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
}

/// A loaded program: its plan and the arena it runs in, kept across runs.
pub struct CudaProgram {
    pub(crate) program: Program,
    pub(crate) plan: Plan,
    pub(crate) arena: DeviceMem,
    /// Each launch's function, resolved at load.
    functions: Vec<Option<crate::driver::Function>>,
    /// The captured graph of the steps and its bookkeeping (crate::graph).
    graph: Option<DeviceGraph>,
    book: GraphBook,
    /// Inputs that move every run, copied to fixed addresses (crate::staging).
    staging: crate::staging::Staging,
    stage_mem: Option<DeviceMem>,
    /// Per-kernel times while profiling (crate::profile).
    pub(crate) profile: Option<KernelTimes>,
}

impl CudaProgram {
    /// The program as run (fused ops decomposed).
    pub fn program(&self) -> &Program {
        &self.program
    }
    /// Kernel launches per run.
    pub fn launch_count(&self) -> usize {
        self.functions.iter().flatten().count()
    }
    /// Times every launch of the following runs with an event pair (they run without graphs).
    pub fn enable_profile(&mut self) {
        self.profile = Some(KernelTimes::default());
    }
    /// (kernel, seconds, launches) over the profiled runs, slowest first.
    pub fn profile(&self) -> Vec<(String, f64, usize)> {
        self.profile
            .as_ref()
            .map(KernelTimes::rows)
            .unwrap_or_default()
    }
    /// (graph captures, replays, direct runs) so far.
    pub fn graph_counts(&self) -> (usize, usize, usize) {
        (self.book.captures, self.book.replays, self.book.direct)
    }
}

impl CudaExecutor {
    /// Opens GPU `ordinal`; an error (never a panic) says what is missing when there is no
    /// driver, no device, or one older than Ampere.
    pub fn new(ordinal: usize) -> Result<CudaExecutor> {
        Ok(CudaExecutor {
            dev: Device::open(ordinal)?,
        })
    }

    pub fn device_name(&self) -> &str {
        &self.dev.props.name
    }

    fn load_program(&self, p: &Program) -> Result<CudaProgram> {
        if p.values.iter().any(|v| v.ty.dtype == DType::F16) {
            return Err(crate::plan::no_f16());
        }
        let p = gidd_engine::rewrite::lower_for(p, &|op, d| self.supports_fused(op, d))
            .map_err(|e| CudaError::Unsupported(format!("decomposing fused ops: {e}")))?;
        let plan = crate::lower::plan_for(&p, self.dev.hopper())?;
        self.dev.bind()?;
        let arena = self.dev.alloc(plan.arena.bytes)?;
        for (at, bytes) in &plan.arena.consts {
            self.dev
                .upload(arena.ptr + plan.arena.const_at + at, bytes)?;
        }
        let functions = plan
            .steps
            .iter()
            .map(|s| match s {
                Step::Launch(l) => self.dev.function(l.entry).map(Some),
                Step::Zero { .. } | Step::Copy { .. } => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CudaProgram {
            program: p,
            plan,
            arena,
            functions,
            graph: None,
            book: GraphBook::default(),
            staging: crate::staging::Staging::default(),
            stage_mem: None,
            profile: None,
        })
    }

    pub(crate) fn check_inputs(
        &self,
        lp: &CudaProgram,
        inputs: &[&CudaBuffer],
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
            if b.shape != ty.shape || b.dtype != ty.dtype {
                return Err(gidd_engine::Error::InputMismatch {
                    index: i,
                    name: name.clone(),
                    expected: ty.to_string(),
                    got: format!("{:?}{}", b.shape, b.dtype),
                });
            }
        }
        Ok(())
    }

    /// Runs `lp` on `inputs`, of which the first `donated` were given up by the caller: its
    /// steps queued directly, captured into a graph, or the graph replayed (crate::graph).
    fn execute(
        &self,
        lp: &mut CudaProgram,
        inputs: &[&CudaBuffer],
        donated: usize,
    ) -> Result<Vec<CudaBuffer>> {
        self.dev.bind()?;
        let enabled = lp.profile.is_none() && crate::graph::graphs_enabled();
        let addr = self.stage_inputs(lp, inputs, donated, enabled)?;
        let key = GraphKey {
            arena: lp.arena.ptr,
            inputs: addr.clone(),
        };
        let action = lp.book.decide(&key, enabled);
        if !lp.book.has_graph() {
            lp.graph = None;
        }
        match action {
            Action::Replay => match &lp.graph {
                Some(g) => g.launch()?,
                None => self.queue_steps(lp, &addr)?,
            },
            Action::Direct => self.queue_steps(lp, &addr)?,
            Action::Capture => {
                self.dev.begin_capture()?;
                let queued = self.queue_steps(lp, &addr);
                let graph = self.dev.end_capture();
                match (queued, graph) {
                    (Ok(()), Ok(g)) => {
                        g.launch()?;
                        lp.graph = Some(g);
                        lp.book.captured(key);
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        lp.book.invalidate();
                        return Err(e);
                    }
                }
            }
        }
        let base = lp.arena.ptr;
        let at = |p: Ptr| match p {
            Ptr::Input(i, o) => addr.get(i).map_or(0, |a| a + o),
            p => base + lp.plan.arena.offset(p).unwrap_or(0),
        };
        self.collect_outputs(lp, inputs, donated, &at)
    }

    /// The addresses the steps read the inputs at: where they are, or (with graphs on) for
    /// inputs that move between runs a copy queued into the staging buffer (crate::staging).
    fn stage_inputs(
        &self,
        lp: &mut CudaProgram,
        inputs: &[&CudaBuffer],
        donated: usize,
        enabled: bool,
    ) -> Result<Vec<u64>> {
        let addr: Vec<u64> = inputs.iter().map(|b| b.mem.ptr).collect();
        if !enabled {
            return Ok(addr);
        }
        let bytes: Vec<u64> = inputs
            .iter()
            .map(|b| bytes_of(b.shape.iter().product(), b.dtype))
            .collect();
        let staged = lp.staging.plan(&addr, &bytes, donated);
        if staged.copies.is_empty() {
            return Ok(addr);
        }
        if lp
            .stage_mem
            .as_ref()
            .is_none_or(|m| m.bytes < lp.staging.bytes)
        {
            lp.stage_mem = Some(self.dev.alloc(lp.staging.bytes)?);
        }
        let base = lp.stage_mem.as_ref().map_or(0, |m| m.ptr);
        for &(o, i, b) in &staged.copies {
            self.dev.copy(base + o, addr[i], b)?;
        }
        Ok(lp.staging.addresses(&addr, &staged, base))
    }

    /// Queues every step of `lp` on the stream (with an event pair around each launch while
    /// profiling, read once the steps are done).
    fn queue_steps(&self, lp: &mut CudaProgram, addr: &[u64]) -> Result<()> {
        let n = lp.plan.steps.len();
        self.queue_range(lp, addr, 0..n)
    }

    /// Queues steps `range` of `lp` ([`CudaExecutor::queue_steps`] of a part of the plan).
    pub(crate) fn queue_range(
        &self,
        lp: &mut CudaProgram,
        addr: &[u64],
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        let base = lp.arena.ptr;
        let at = |p: Ptr| match p {
            Ptr::Input(i, o) => addr.get(i).map_or(0, |a| a + o),
            p => base + lp.plan.arena.offset(p).unwrap_or(0),
        };
        let mut events: Vec<(&'static str, Event, Event)> = vec![];
        let profiling = lp.profile.is_some();
        let len = range.len();
        for (step, f) in lp
            .plan
            .steps
            .iter()
            .zip(&lp.functions)
            .skip(range.start)
            .take(len)
        {
            match (step, f) {
                (Step::Launch(l), Some(f)) => {
                    let enc = |s: &crate::hopper::TmaSpec, a: u64| self.dev.encode_tensor_map(s, a);
                    let mut slots = resolve(&l.args, &lp.plan.arena, base, addr, &enc)?;
                    let start = if profiling {
                        Some(self.dev.record_event()?)
                    } else {
                        None
                    };
                    self.dev.launch(*f, l.grid, l.block, l.smem, &mut slots)?;
                    if let Some(start) = start {
                        events.push((l.entry, start, self.dev.record_event()?));
                    }
                }
                (Step::Zero { dst, bytes }, _) => self.dev.memset_zero(at(*dst), *bytes)?,
                (Step::Copy { dst, src, bytes }, _) => self.dev.copy(at(*dst), at(*src), *bytes)?,
                (Step::Launch(l), None) => {
                    return Err(CudaError::Unsupported(format!(
                        "kernel {} was not resolved",
                        l.entry
                    )))
                }
            }
        }
        if let Some(prof) = lp.profile.as_mut() {
            self.dev.synchronize()?;
            for (entry, start, end) in &events {
                prof.add(entry, start.elapsed_ms(end)?);
            }
        }
        Ok(())
    }

    /// The output buffers: fresh ones first (a donated input some output copies is read before
    /// its storage takes another output), then those written into donated storage.
    pub(crate) fn collect_outputs(
        &self,
        lp: &CudaProgram,
        inputs: &[&CudaBuffer],
        donated: usize,
        at: &dyn Fn(Ptr) -> u64,
    ) -> Result<Vec<CudaBuffer>> {
        let p = &lp.program;
        let reuse = reuse_plan(p, &lp.plan, donated, &|i| {
            Arc::strong_count(&inputs[i].mem) == 1
        });
        let mut outs: Vec<Option<CudaBuffer>> = vec![None; p.outputs.len()];
        for pass in [false, true] {
            for (o, &v) in p.outputs.iter().enumerate() {
                if reuse[o].is_some() != pass {
                    continue;
                }
                let ty = &p.values[v].ty;
                let (src, bytes) = lp.plan.outputs[o];
                let mem = match reuse[o] {
                    Some(i) => inputs[i].mem.clone(),
                    None => Arc::new(self.dev.alloc(bytes)?),
                };
                if mem.ptr != at(src) {
                    self.dev.copy(mem.ptr, at(src), bytes)?;
                }
                outs[o] = Some(CudaBuffer {
                    mem,
                    shape: ty.shape.clone(),
                    dtype: ty.dtype,
                });
            }
        }
        outs.into_iter()
            .map(|b| b.ok_or_else(|| CudaError::Unsupported("an output was not produced".into())))
            .collect()
    }
}

/// For each output, the donated input whose storage it takes, if any: the program aliases the
/// pair, the input is among the first `donated`, the caller held its last handle (`sole`), and
/// no other output is copied from that input's storage.
pub fn reuse_plan(
    p: &Program,
    plan: &Plan,
    donated: usize,
    sole: &dyn Fn(usize) -> bool,
) -> Vec<Option<usize>> {
    let read_by_other = |i: usize, o: usize| {
        plan.outputs
            .iter()
            .enumerate()
            .any(|(oo, (src, _))| oo != o && matches!(src, Ptr::Input(j, _) if *j == i))
    };
    (0..p.outputs.len())
        .map(|o| {
            p.aliases
                .iter()
                .find(|&&(i, oo)| oo == o && i < donated)
                .map(|&(i, _)| i)
                .filter(|&i| sole(i) && !read_by_other(i, o))
        })
        .collect()
}

/// Little-endian bytes as elements (copied: a byte vector need not be aligned for them).
fn elems<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    let mut v = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(bytes);
    v
}

pub(crate) fn decode(bytes: &[u8], shape: Vec<usize>, d: DType) -> gidd_engine::Result<HostTensor> {
    let data = match d {
        DType::F32 => Data::F32(elems(bytes)),
        DType::F64 => Data::F64(elems(bytes)),
        DType::BF16 => Data::BF16(elems(bytes)),
        DType::F16 => Data::F16(elems(bytes)),
        DType::I32 => Data::I32(elems(bytes)),
        DType::U32 => Data::U32(elems(bytes)),
        DType::I64 => Data::I64(elems(bytes)),
        DType::Bool => Data::Bool(bytes.to_vec()),
    };
    HostTensor::new(shape, data)
}

impl Executor for CudaExecutor {
    type Buffer = CudaBuffer;
    type Loaded = CudaProgram;

    fn name(&self) -> String {
        let p = &self.dev.props;
        format!(
            "cuda ({}, sm_{}{}, {} SMs, {:.0} GiB)",
            p.name,
            p.major,
            p.minor,
            p.sms,
            p.mem_bytes as f64 / 1073741824.0
        )
    }

    /// The fused ops with a PTX kernel (`crate::fused::supports`); the rest decompose.
    fn supports_fused(&self, op: &Op, dtype: DType) -> bool {
        crate::fused::supports(op, dtype)
    }

    /// SMs x clock x FLOP per clock per SM of the units our kernels use (crate::peak).
    fn peak_flops(&self, dtype: DType) -> Option<f64> {
        let p = &self.dev.props;
        crate::peak::peak_flops(p.major, p.minor, p.sms, p.clock_khz, dtype)
    }

    fn synchronize(&self) -> gidd_engine::Result<()> {
        self.dev.bind()?;
        Ok(self.dev.synchronize()?)
    }

    fn upload(&self, t: &HostTensor) -> gidd_engine::Result<CudaBuffer> {
        if t.dtype() == DType::F16 {
            return Err(crate::plan::no_f16().into());
        }
        self.dev.bind()?;
        let bytes = t.data.as_bytes();
        let mem = self.dev.alloc(bytes.len() as u64)?;
        if !bytes.is_empty() {
            self.dev.upload(mem.ptr, bytes)?;
        }
        Ok(CudaBuffer {
            mem: Arc::new(mem),
            shape: t.shape.clone(),
            dtype: t.dtype(),
        })
    }

    fn download(&self, b: &CudaBuffer) -> gidd_engine::Result<HostTensor> {
        self.dev.bind()?;
        let n = bytes_of(b.shape.iter().product(), b.dtype) as usize;
        let mut bytes = vec![0u8; n];
        if n > 0 {
            self.dev.download(&mut bytes, b.mem.ptr)?;
        }
        decode(&bytes, b.shape.clone(), b.dtype)
    }

    fn load(&self, p: &Program) -> gidd_engine::Result<CudaProgram> {
        Ok(self.load_program(p)?)
    }

    fn run(
        &self,
        lp: &mut CudaProgram,
        inputs: &[&CudaBuffer],
    ) -> gidd_engine::Result<Vec<CudaBuffer>> {
        self.check_inputs(lp, inputs)?;
        Ok(self.execute(lp, inputs, 0)?)
    }

    /// Outputs aliased to donated inputs are written into their storage (when the caller held
    /// the last handle), so a training step keeps one copy of its state.
    fn run_donating(
        &self,
        lp: &mut CudaProgram,
        donated: Vec<CudaBuffer>,
        rest: &[&CudaBuffer],
    ) -> gidd_engine::Result<Vec<CudaBuffer>> {
        let mut ins: Vec<&CudaBuffer> = donated.iter().collect();
        ins.extend_from_slice(rest);
        self.check_inputs(lp, &ins)?;
        Ok(self.execute(lp, &ins, donated.len())?)
    }

    fn memory_plan(&self, lp: &CudaProgram) -> Option<String> {
        let a = &lp.plan.arena;
        let mib = |b: u64| b as f64 / 1048576.0;
        Some(format!(
            "cuda memory plan: one arena of {:.1} MiB ({} planned buffers {:.1} MiB, constants {:.1} MiB, scratch {:.1} MiB); {} kernel launches per run, replayed as one CUDA graph while the addresses hold",
            mib(a.bytes),
            a.slot_at.len(),
            mib(a.slot_bytes),
            mib(a.const_bytes),
            mib(a.scratch_bytes),
            lp.launch_count()
        ))
    }
}
