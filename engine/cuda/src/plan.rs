//! A program's launch plan, built once at load with no device: every node that runs becomes
//! steps (kernel launches, memsets, device copies) whose pointers name where a buffer lives
//! (a planned slot, a constant, scratch, a program input) rather than an address. `load`
//! lays the regions out in one arena and resolves them; a run only patches the inputs'
//! addresses. So everything here (geometry, argument packing, arena offsets, which kernel for
//! which op and dtype) is plain data, unit-tested without a GPU.

use crate::error::{CudaError, Result};
use gidd_engine::program::Loc;
use gidd_engine::{DType, Program};
use gidd_kernels::ptx::code;
use std::collections::HashMap;

/// Threads per block of every kernel (reduce_rows and the GEMMs depend on exactly this).
pub const BLOCK: u32 = 256;
/// At most this many blocks in a 1-D grid: kernels loop (grid-stride) over the rest.
pub const MAX_BLOCKS: usize = 1 << 16;
/// The largest grid y and z dimension.
pub const MAX_GRID_YZ: usize = 65535;
/// Buffers in the arena start at multiples of this (cp.async and vector loads want 16; the
/// driver's own allocations are 256-aligned, so every buffer looks the same to kernels).
pub const ALIGN: u64 = 256;
/// Kernels index elements with 32 bits.
pub const MAX_ELEMS: usize = i32::MAX as usize;

/// Where a device address points. Resolved at load (slots, constants, scratch: offsets in the
/// arena) or per run (program inputs: their own allocations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ptr {
    Slot(usize, u64),
    Const(u64),
    Scratch(u64),
    Input(usize, u64),
}

impl Ptr {
    /// The address `bytes` further on.
    pub fn offset(self, bytes: u64) -> Ptr {
        match self {
            Ptr::Slot(s, o) => Ptr::Slot(s, o + bytes),
            Ptr::Const(o) => Ptr::Const(o + bytes),
            Ptr::Scratch(o) => Ptr::Scratch(o + bytes),
            Ptr::Input(i, o) => Ptr::Input(i, o + bytes),
        }
    }
}

/// One 8-byte argument slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    Val(u64),
    Ptr(Ptr),
    /// A null pointer: the elementwise kernels' "this operand is a splat".
    Null,
    /// A TMA tensor map of the buffer at the pointer: 16 slots (128 bytes), encoded when the
    /// address is known (crate::hopper).
    TensorMap(Ptr, crate::hopper::TmaSpec),
}

/// Slots of an [`Arg::TensorMap`] (a CUtensorMap is 128 bytes).
pub const TENSOR_MAP_SLOTS: usize = 16;

#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub entry: &'static str,
    pub grid: [u32; 3],
    pub block: u32,
    /// Dynamic shared memory, bytes.
    pub smem: u32,
    /// The slots in order, each with the name the kernel's ARGS line gives it.
    pub args: Vec<(&'static str, Arg)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Launch(Launch),
    /// Fill with zero bytes.
    Zero {
        dst: Ptr,
        bytes: u64,
    },
    /// A device-to-device copy.
    Copy {
        dst: Ptr,
        src: Ptr,
        bytes: u64,
    },
}

/// An elementwise operand: a buffer, or a splat's bits passed in the slot after a null pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Buf(Ptr),
    Splat(u64),
}

/// The arena: planned slots, then constants, then scratch, each buffer ALIGN-aligned.
#[derive(Clone, Debug, PartialEq)]
pub struct Arena {
    pub slot_at: Vec<u64>,
    pub const_at: u64,
    pub scratch_at: u64,
    pub bytes: u64,
    /// (offset in the constant region, bytes) uploaded at load.
    pub consts: Vec<(u64, Vec<u8>)>,
    pub slot_bytes: u64,
    pub const_bytes: u64,
    pub scratch_bytes: u64,
}

impl Arena {
    /// The arena offset `p` names; None for inputs.
    pub fn offset(&self, p: Ptr) -> Option<u64> {
        match p {
            Ptr::Slot(s, o) => Some(self.slot_at[s] + o),
            Ptr::Const(o) => Some(self.const_at + o),
            Ptr::Scratch(o) => Some(self.scratch_at + o),
            Ptr::Input(..) => None,
        }
    }
}

/// The whole plan of a program.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub arena: Arena,
    /// Where each output's bytes are when the steps are done, and how many.
    pub outputs: Vec<(Ptr, u64)>,
    /// Per node, the index of the first step that computes it (crate::collective).
    pub node_start: Vec<usize>,
}

fn align(x: u64) -> u64 {
    x.next_multiple_of(ALIGN)
}

/// Bytes of `n` elements of `d`.
pub fn bytes_of(n: usize, d: DType) -> u64 {
    (n * d.size()) as u64
}

/// The kernels' dtype code; f64 has none (f64 programs are the CPU's audit precision).
pub fn dtype_code(d: DType) -> Result<u32> {
    Ok(match d {
        DType::F32 => code::F32,
        DType::BF16 => code::BF16,
        DType::I32 => code::I32,
        DType::U32 => code::U32,
        DType::I64 => code::I64,
        DType::Bool => code::BOOL,
        DType::F64 => return Err(no_f64()),
        DType::F16 => return Err(no_f16()),
    })
}

/// The refusal of f16 programs and tensors: the PTX kernels take f32 or bf16.
pub fn no_f16() -> CudaError {
    CudaError::Unsupported(
        "--dtype f16 does not run on the cuda executor (its kernels take f32 or bf16): f16 runs \
         on --backend cpu and xla; on cuda use --dtype bf16 or f32"
            .into(),
    )
}

pub fn no_f64() -> CudaError {
    CudaError::Unsupported(
        "f64 is the audit precision of the cpu executor; run --dtype f64 with --backend cpu".into(),
    )
}

/// `x` (a splat's value, already rounded to `d` by the program) as `d`'s raw bits.
pub fn raw_bits(x: f64, d: DType) -> u64 {
    match d {
        DType::F32 => (x as f32).to_bits() as u64,
        DType::F64 => x.to_bits(),
        DType::BF16 => half::bf16::from_f64(x).to_bits() as u64,
        DType::F16 => half::f16::from_f64(x).to_bits() as u64,
        DType::I32 => (x as i32) as u32 as u64,
        DType::U32 => (x as u32) as u64,
        DType::I64 => (x as i64) as u64,
        DType::Bool => u64::from(x != 0.0),
    }
}

/// `x` as an elementwise kernel's splat slot: f32 bits for the float kernels (bf16 values
/// are exact in f32), the sign- or zero-extended value for the integer kernels.
pub fn splat_bits(x: f64, d: DType) -> u64 {
    match d {
        DType::F32 | DType::BF16 | DType::F16 => (x as f32).to_bits() as u64,
        DType::F64 => x.to_bits(),
        DType::I32 | DType::I64 => (x as i64) as u64,
        DType::U32 => (x as u32) as u64,
        DType::Bool => u64::from(x != 0.0),
    }
}

/// A 1-D grid for `n` elements (grid-stride beyond MAX_BLOCKS blocks).
pub fn grid_1d(n: usize) -> [u32; 3] {
    [n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32, 1, 1]
}

/// A size or offset as a kernel's 32-bit value.
pub fn u32_of(n: usize) -> Result<u64> {
    if n > MAX_ELEMS {
        return Err(CudaError::Unsupported(format!(
            "{n} elements: the PTX kernels index with 32 bits (tensors up to 2^31 elements)"
        )));
    }
    Ok(n as u64)
}

/// Collects the steps, constants and scratch of a program.
pub struct Builder<'a> {
    pub p: &'a Program,
    /// Whether the device runs the sm_90a kernels (the Hopper GEMM).
    pub hopper: bool,
    pub steps: Vec<Step>,
    consts: Vec<(u64, Vec<u8>)>,
    const_end: u64,
    const_of: HashMap<usize, u64>,
    /// Scratch is per node (every step runs in stream order, so nodes share it): the bytes the
    /// current node has taken, and the most any node took.
    scratch_used: u64,
    scratch_max: u64,
    /// Per node, the index of the first step that computes it (the steps before it: where
    /// a collective is issued and waited for, crate::collective).
    pub node_start: Vec<usize>,
}

impl<'a> Builder<'a> {
    pub fn new(p: &'a Program) -> Builder<'a> {
        Builder {
            p,
            hopper: false,
            steps: vec![],
            consts: vec![],
            const_end: 0,
            const_of: HashMap::new(),
            scratch_used: 0,
            scratch_max: 0,
            node_start: vec![],
        }
    }

    pub fn dtype(&self, v: usize) -> DType {
        self.p.values[v].ty.dtype
    }

    pub fn shape(&self, v: usize) -> &'a [usize] {
        &self.p.values[v].ty.shape
    }

    pub fn numel(&self, v: usize) -> usize {
        self.p.values[v].ty.numel()
    }

    /// Value `v` as a buffer; a splat or literal becomes a constant uploaded at load.
    pub fn ptr(&mut self, v: usize) -> Result<Ptr> {
        Ok(match &self.p.loc[v] {
            Loc::Input(i) => Ptr::Input(*i, 0),
            Loc::Slot(s) => Ptr::Slot(*s, 0),
            Loc::Splat(x) => {
                let (x, ty) = (*x, &self.p.values[v].ty);
                let w = ty.dtype.size();
                let bits = raw_bits(x, ty.dtype).to_le_bytes();
                let bytes = bits[..w].repeat(ty.numel());
                self.constant(v, bytes)
            }
            Loc::Const(c) => {
                let bytes = c.data.as_bytes().to_vec();
                self.constant(v, bytes)
            }
        })
    }

    fn constant(&mut self, v: usize, bytes: Vec<u8>) -> Ptr {
        if let Some(&at) = self.const_of.get(&v) {
            return Ptr::Const(at);
        }
        let at = self.const_end;
        self.const_end = align(at + bytes.len() as u64);
        self.consts.push((at, bytes));
        self.const_of.insert(v, at);
        Ptr::Const(at)
    }

    /// Value `v` as an elementwise operand: a splat stays a scalar.
    pub fn operand(&mut self, v: usize) -> Result<Operand> {
        Ok(match &self.p.loc[v] {
            Loc::Splat(x) => Operand::Splat(splat_bits(*x, self.dtype(v))),
            _ => Operand::Buf(self.ptr(v)?),
        })
    }

    /// Like [`Builder::operand`] with the splat as its raw bits (select moves bits).
    pub fn raw_operand(&mut self, v: usize) -> Result<Operand> {
        Ok(match &self.p.loc[v] {
            Loc::Splat(x) => Operand::Splat(raw_bits(*x, self.dtype(v))),
            _ => Operand::Buf(self.ptr(v)?),
        })
    }

    /// Where a node writes value `v` (always a planned slot for nodes that run).
    pub fn out(&self, v: usize) -> Result<Ptr> {
        match &self.p.loc[v] {
            Loc::Slot(s) => Ok(Ptr::Slot(*s, 0)),
            l => Err(CudaError::Unsupported(format!(
                "value {v} is computed but planned as {l:?}, not a buffer"
            ))),
        }
    }

    /// `bytes` of scratch for the current node.
    pub fn scratch(&mut self, bytes: u64) -> Ptr {
        let at = self.scratch_used;
        self.scratch_used = align(at + bytes);
        self.scratch_max = self.scratch_max.max(self.scratch_used);
        Ptr::Scratch(at)
    }

    /// Ends a node: its scratch is free for the next.
    pub fn end_node(&mut self) {
        self.scratch_used = 0;
    }

    pub fn launch(&mut self, entry: &'static str, grid: [u32; 3], args: Vec<(&'static str, Arg)>) {
        if grid.contains(&0) {
            return;
        }
        self.steps.push(Step::Launch(Launch {
            entry,
            grid,
            block: BLOCK,
            smem: 0,
            args,
        }));
    }

    /// A launch with its own block size and dynamic shared memory.
    pub fn launch_with(
        &mut self,
        entry: &'static str,
        grid: [u32; 3],
        block: u32,
        smem: u32,
        args: Vec<(&'static str, Arg)>,
    ) {
        if grid.contains(&0) {
            return;
        }
        self.steps.push(Step::Launch(Launch {
            entry,
            grid,
            block,
            smem,
            args,
        }));
    }

    /// A grid-stride kernel over `n` elements (nothing when n is 0).
    pub fn launch_1d(&mut self, entry: &'static str, n: usize, args: Vec<(&'static str, Arg)>) {
        if n > 0 {
            self.launch(entry, grid_1d(n), args);
        }
    }

    pub fn copy(&mut self, dst: Ptr, src: Ptr, bytes: u64) {
        if bytes > 0 && dst != src {
            self.steps.push(Step::Copy { dst, src, bytes });
        }
    }

    pub fn zero(&mut self, dst: Ptr, bytes: u64) {
        if bytes > 0 {
            self.steps.push(Step::Zero { dst, bytes });
        }
    }

    /// Lays out the arena and says where each output is.
    pub fn finish(mut self) -> Result<Plan> {
        let p = self.p;
        // an output that is a splat or literal is copied from a constant made here
        let mut outputs = vec![];
        for &v in &p.outputs {
            let src = self.ptr(v)?;
            outputs.push((src, bytes_of(self.numel(v), self.dtype(v))));
        }
        let mut slot_at = vec![];
        let mut at = 0u64;
        for &(d, n) in &p.slots {
            slot_at.push(at);
            at = align(at + bytes_of(n, d));
        }
        let const_at = at;
        let scratch_at = const_at + self.const_end;
        Ok(Plan {
            node_start: self.node_start,
            steps: self.steps,
            arena: Arena {
                slot_at,
                const_at,
                scratch_at,
                bytes: scratch_at + self.scratch_max,
                consts: self.consts,
                slot_bytes: const_at,
                const_bytes: self.const_end,
                scratch_bytes: self.scratch_max,
            },
            outputs,
        })
    }
}

/// The argument list of an elementwise kernel: `n op dt out`, then each operand as a pointer
/// (or null) and the splat slot after it.
pub fn elementwise_args(
    n: usize,
    op: u32,
    dt: u32,
    out: Ptr,
    ops: &[(&'static str, &'static str, Operand)],
) -> Result<Vec<(&'static str, Arg)>> {
    let mut a = vec![
        ("n", Arg::Val(u32_of(n)?)),
        ("op", Arg::Val(op as u64)),
        ("dt", Arg::Val(dt as u64)),
        ("out", Arg::Ptr(out)),
    ];
    for &(name, splat_name, o) in ops {
        match o {
            Operand::Buf(p) => {
                a.push((name, Arg::Ptr(p)));
                a.push((splat_name, Arg::Val(0)));
            }
            Operand::Splat(bits) => {
                a.push((name, Arg::Null));
                a.push((splat_name, Arg::Val(bits)));
            }
        }
    }
    Ok(a)
}

/// Encodes a tensor map for a buffer at a device address (the driver's cuTensorMapEncodeTiled
/// on a GPU; a host model in tests).
pub type EncodeTensorMap<'a> =
    &'a dyn Fn(&crate::hopper::TmaSpec, u64) -> Result<[u64; TENSOR_MAP_SLOTS]>;

/// A launch's parameter: its slots resolved against the arena's base address and the inputs'
/// addresses (8 little-endian bytes each, the layout of the kernels' `args` array); a tensor
/// map takes 16 slots.
pub fn resolve(
    args: &[(&'static str, Arg)],
    arena: &Arena,
    base: u64,
    inputs: &[u64],
    encode: EncodeTensorMap,
) -> Result<Vec<u64>> {
    let addr = |p: Ptr| match p {
        Ptr::Input(i, o) => inputs.get(i).map_or(0, |b| b + o),
        p => base + arena.offset(p).unwrap_or(0),
    };
    let mut v = Vec::with_capacity(args.len());
    for &(_, a) in args {
        match a {
            Arg::Val(x) => v.push(x),
            Arg::Null => v.push(0),
            Arg::Ptr(p) => v.push(addr(p)),
            Arg::TensorMap(p, spec) => v.extend(encode(&spec, addr(p))?),
        }
    }
    Ok(v)
}
