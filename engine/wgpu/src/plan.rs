//! A program's dispatch plan, built once at load: every node that runs becomes one or more
//! dispatches of a cached pipeline, each with its parameter block (one buffer holds them all)
//! and the buffers it binds, named by where they live: a planned slot (`Program::slots`), a
//! program input (bound per run), a constant uploaded at load, or a scratch buffer.

use crate::buffer::{half, is_half, scalar_words, splat_words, words};
use crate::device::Gpu;
use crate::error::{Result, WgpuError};
use crate::executor::GemmStrategy;
use crate::pipelines::{Kernel, Pipelines};
use gidd_engine::program::Loc;
use gidd_engine::{DType, Program};
use std::collections::HashMap;
use std::sync::Arc;

/// Where a bound buffer lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    Slot(usize),
    Input(usize),
    Const(usize),
    Scratch(usize),
    /// An unused operand binding (a splat passed as a scalar parameter).
    Dummy,
}

pub struct Dispatch {
    pub kernel: Kernel,
    pub pipe: Arc<wgpu::ComputePipeline>,
    /// [outputs..., operands...]
    pub binds: Vec<Bind>,
    /// Byte range of the parameter block in the parameter buffer.
    pub param_off: u64,
    pub param_len: u64,
    pub groups: [u32; 3],
    /// Per binding of `binds`, the byte window bound (offset, size) instead of the whole
    /// buffer: how a tensor larger than one storage binding is reached ([`Builder::push_chunked`]).
    /// Empty: every buffer bound whole (or, when it is larger than a binding, its first
    /// `max_binding` bytes, which hold the value: [`Builder::buf`] checked it).
    pub windows: Vec<Option<(u64, u64)>>,
}

/// An elementwise operand: a buffer, or a splat's words passed as parameters.
#[derive(Clone, Copy, Debug)]
pub enum Operand {
    Buf(Bind),
    Scalar([u32; 2]),
}

/// The most workgroups one grid dimension may have (WebGPU's guaranteed limit).
pub const MAX_GROUPS: usize = 65535;
pub const WG: usize = 256;

/// Collects the dispatches, parameters, constants and scratch sizes of a program.
pub struct Builder<'a> {
    pub p: &'a Program,
    gpu: &'a Gpu,
    gemm: GemmStrategy,
    pipes: &'a mut Pipelines,
    /// Parameter blocks start at multiples of this many words.
    align: usize,
    pub dispatches: Vec<Dispatch>,
    pub params: Vec<u32>,
    pub consts: Vec<Vec<u32>>,
    /// Bytes of each scratch buffer (shared by all dispatches that use it, one at a time).
    pub scratch: Vec<u64>,
    /// Bytes of scratch buffers that are bound only in windows (may outgrow a binding).
    pub windowed_scratch: Vec<u64>,
    /// [`Builder::widened`] gives the outputs scratch bound in windows (the lowering windows
    /// any larger than a binding).
    pub wide_in_windows: bool,
    /// The constant made of a value (a literal, or a splat that a kernel needs as a buffer),
    /// by (value, widened).
    const_of: HashMap<(usize, bool), usize>,
    /// Bindings that stand in for bf16 and f16 values while a lowering reads them widened
    /// ([`Builder::widened`]).
    wide: HashMap<usize, Bind>,
    /// The most bytes one storage binding may cover (the adapter's limit, or a lower cap).
    pub max_binding: u64,
    /// The op being lowered (named in the error of a value too large to bind whole).
    pub doing: &'static str,
    /// Set by the lowerings that bind large values in windows themselves.
    pub windowed: bool,
    /// The attention forward runs attention_fwd_row (crate::AttentionStrategy).
    pub attention_rows: bool,
    /// Per node, the dispatches recorded before it (where a collective is issued and
    /// waited for: crate::collective).
    pub node_start: Vec<usize>,
}

/// The first scratch buffer [`Builder::widened`] uses (lowerings use 0..WIDE themselves).
const WIDE: usize = 5;

impl<'a> Builder<'a> {
    pub fn new(
        p: &'a Program,
        gpu: &'a Gpu,
        gemm: GemmStrategy,
        pipes: &'a mut Pipelines,
        max_binding: u64,
    ) -> Builder<'a> {
        let align = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        Builder {
            p,
            gpu,
            gemm,
            pipes,
            align,
            dispatches: vec![],
            params: vec![],
            consts: vec![],
            scratch: vec![],
            windowed_scratch: vec![],
            wide_in_windows: false,
            const_of: HashMap::new(),
            wide: HashMap::new(),
            max_binding,
            doing: "",
            windowed: false,
            attention_rows: false,
            node_start: vec![],
        }
    }

    /// Whether dot_general runs gemm_blocked.wgsl (CPU adapters, unless told otherwise).
    pub fn blocked_gemm(&self) -> bool {
        match self.gemm {
            GemmStrategy::Auto => self.gpu.info.device_type == wgpu::DeviceType::Cpu,
            GemmStrategy::TiledSmem => false,
            GemmStrategy::RegisterBlocked => true,
        }
    }

    /// Storage buffers one kernel may bind: the adapter's limit, at most 16 (a generated
    /// kernel with more would rarely pay for its compile).
    pub fn max_bindings(&self) -> usize {
        (self.gpu.limits.max_storage_buffers_per_shader_stage as usize).min(16)
    }

    pub fn dtype(&self, v: usize) -> DType {
        self.p.values[v].ty.dtype
    }

    pub fn shape(&self, v: usize) -> &'a [usize] {
        &self.p.values[v].ty.shape
    }

    /// Whether value `v` is larger than one storage binding.
    pub fn too_big(&self, v: usize) -> bool {
        let ty = &self.p.values[v].ty;
        crate::buffer::value_bytes(&ty.shape, ty.dtype) > self.max_binding
    }

    /// The refusal of a value too large to bind whole in a lowering without windows.
    fn check_fits(&self, v: usize) -> Result<()> {
        if self.windowed || !self.too_big(v) {
            return Ok(());
        }
        let ty = &self.p.values[v].ty;
        let mib = |b: u64| b as f64 / 1048576.0;
        Err(WgpuError::Unsupported(format!(
            "{} over {ty} ({:.1} MiB): more than one storage binding ({:.1} MiB, \
             max_storage_buffer_binding_size); elementwise ops and their chains, gather, \
             scatter-add, reductions, GEMM and the row ops bind such tensors in windows, \
             this op does not yet",
            self.doing,
            mib(crate::buffer::value_bytes(&ty.shape, ty.dtype)),
            mib(self.max_binding)
        )))
    }

    /// Value `v` as a buffer binding; a splat is made a constant buffer.
    pub fn buf(&mut self, v: usize) -> Result<Bind> {
        if let Some(&w) = self.wide.get(&v) {
            return Ok(w);
        }
        self.check_fits(v)?;
        Ok(match &self.p.loc[v] {
            Loc::Input(i) => Bind::Input(*i),
            Loc::Slot(s) => Bind::Slot(*s),
            Loc::Splat(x) => {
                let (x, ty) = (*x, &self.p.values[v].ty);
                self.constant(v, || Ok(splat_words(x, ty.dtype, ty.numel())))?
            }
            Loc::Const(c) => {
                let c = c.clone();
                self.constant(v, || crate::buffer::encode(&c))?
            }
        })
    }

    fn constant(&mut self, v: usize, words: impl FnOnce() -> Result<Vec<u32>>) -> Result<Bind> {
        self.constant_as(v, false, words)
    }

    fn constant_as(
        &mut self,
        v: usize,
        widened: bool,
        words: impl FnOnce() -> Result<Vec<u32>>,
    ) -> Result<Bind> {
        if let Some(&c) = self.const_of.get(&(v, widened)) {
            return Ok(Bind::Const(c));
        }
        self.consts.push(words()?);
        self.const_of.insert((v, widened), self.consts.len() - 1);
        Ok(Bind::Const(self.consts.len() - 1))
    }

    /// Runs `lower`, a lowering written for 16-bit floats stored widened (one word per
    /// element, its results rounded through HALF constants), with the bf16 and f16 values
    /// among `ins` unpacked into scratch buffers and those among `outs` written to scratch and
    /// packed after. The kernels that pay for reading packed values themselves (GEMM, the
    /// generated elementwise kernels) do; the rarer ones (reductions, gather, scatter-add) go
    /// through here, at a dispatch and a pass over the value per 16-bit operand.
    pub fn widened(
        &mut self,
        ins: &[usize],
        outs: &[usize],
        lower: impl FnOnce(&mut Builder) -> Result<()>,
    ) -> Result<()> {
        let mut k = WIDE;
        let mut set = vec![];
        for &v in ins {
            let h = half(self.dtype(v));
            if h == 0 || self.wide.contains_key(&v) {
                continue;
            }
            let n = self.p.values[v].ty.numel();
            let w = match &self.p.loc[v] {
                // a splat operand stays a scalar parameter (its words are widened already)
                Loc::Splat(x) => {
                    let x = *x;
                    let w = scalar_words(x, self.dtype(v))[0];
                    self.constant_as(v, true, || Ok(vec![w; n]))?
                }
                Loc::Const(c) => {
                    let c = c.clone();
                    self.constant_as(v, true, || crate::buffer::widened_words(&c))?
                }
                Loc::Input(_) | Loc::Slot(_) => {
                    let src = self.buf(v)?;
                    let dst = self.scratch(k, (n * 4) as u64);
                    k += 1;
                    self.unpack(src, dst, n, h)?;
                    dst
                }
            };
            self.wide.insert(v, w);
            set.push(v);
        }
        let mut packs = vec![];
        for &v in outs {
            if !is_half(self.dtype(v)) {
                continue;
            }
            let n = self.p.values[v].ty.numel();
            let w = match self.wide_in_windows {
                true => self.scratch_in_windows(k, (n * 4) as u64),
                false => self.scratch(k, (n * 4) as u64),
            };
            k += 1;
            self.wide.insert(v, w);
            set.push(v);
            packs.push((v, w, n));
        }
        let r = lower(self);
        for v in set {
            self.wide.remove(&v);
        }
        r?;
        for (v, w, n) in packs {
            let o = self.out(v)?;
            self.pack(w, o, n, half(self.dtype(v)))?;
        }
        Ok(())
    }

    /// Widens `n` packed elements of 16-bit kind `h` (crate::buffer::half) of `src` into
    /// `dst`, one word each.
    pub fn unpack(&mut self, src: Bind, dst: Bind, n: usize, h: u32) -> Result<()> {
        crate::movement::copy_from_packed(self, src, dst, &[n], &[1], &[1], 0, 0, h)
    }

    /// Packs `n` widened (or f32, rounded) values of `src` two per word into `dst` as 16-bit
    /// kind `h` (crate::buffer::half).
    pub fn pack(&mut self, src: Bind, dst: Bind, n: usize, h: u32) -> Result<()> {
        let k = Kernel::new(gidd_kernels::wgsl::Module::Convert, "pack_half", 1).with("HALF", h);
        // in windows when the f32 source (a 16-bit value's widened scratch) outgrows a binding
        self.push_chunked(k, vec![dst, src], &[2, 4], n, 2, |len| {
            let mut p = vec![0u32; 8];
            p[0] = u32_of(len)?;
            Ok(p)
        })
    }

    /// Value `v` as an elementwise operand (a splat stays a scalar).
    pub fn operand(&mut self, v: usize) -> Result<Operand> {
        if let Some(&w) = self.wide.get(&v) {
            if !matches!(self.p.loc[v], Loc::Splat(_)) {
                return Ok(Operand::Buf(w));
            }
        }
        Ok(match &self.p.loc[v] {
            Loc::Splat(x) => Operand::Scalar(scalar_words(*x, self.dtype(v))),
            _ => Operand::Buf(self.buf(v)?),
        })
    }

    /// The output binding of a node's value `v` (always a planned slot for nodes that run).
    pub fn out(&self, v: usize) -> Result<Bind> {
        if let Some(&w) = self.wide.get(&v) {
            return Ok(w);
        }
        self.check_fits(v)?;
        match &self.p.loc[v] {
            Loc::Slot(s) => Ok(Bind::Slot(*s)),
            l => Err(WgpuError::Unsupported(format!(
                "value {v} is computed but planned as {l:?}, not a buffer"
            ))),
        }
    }

    /// A scratch buffer of at least `bytes`; `k` names which (two operands may need one each).
    pub fn scratch(&mut self, k: usize, bytes: u64) -> Bind {
        if self.scratch.len() <= k {
            self.scratch.resize(k + 1, 0);
        }
        self.scratch[k] = self.scratch[k].max(bytes);
        Bind::Scratch(k)
    }

    /// [`Builder::scratch`] that every dispatch binds in windows: it may be larger than one
    /// binding (the load refuses only those bound whole).
    pub fn scratch_in_windows(&mut self, k: usize, bytes: u64) -> Bind {
        if self.windowed_scratch.len() <= k {
            self.windowed_scratch.resize(k + 1, 0);
        }
        self.windowed_scratch[k] = self.windowed_scratch[k].max(bytes);
        Bind::Scratch(k)
    }

    /// Adds a dispatch of `kernel` over `groups` workgroups.
    pub fn push(
        &mut self,
        kernel: Kernel,
        binds: Vec<Bind>,
        params: &[u32],
        groups: [u32; 3],
    ) -> Result<()> {
        self.push_windows(kernel, binds, vec![], params, groups)
    }

    /// [`Builder::push`] with byte windows of the bound buffers (see [`Dispatch::windows`]).
    pub fn push_windows(
        &mut self,
        kernel: Kernel,
        binds: Vec<Bind>,
        windows: Vec<Option<(u64, u64)>>,
        params: &[u32],
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        let pipe = self.pipes.get(self.gpu, &kernel)?;
        let start = self.params.len().next_multiple_of(self.align);
        self.params.resize(start, 0);
        self.params.extend_from_slice(params);
        // at least 4 words bound, so a kernel may read a parameter it does not need
        let len = params.len().max(4);
        self.params.resize(start + len, 0);
        self.dispatches.push(Dispatch {
            kernel,
            pipe,
            binds,
            param_off: start as u64 * 4,
            param_len: len as u64 * 4,
            groups,
            windows,
        });
        Ok(())
    }

    /// Elements per window of a tensor bound in windows whose elements take up to `eb` bytes:
    /// as many as one binding holds, a multiple of the offset alignment (so every window of
    /// every operand starts aligned, and a packed 16-bit window on a whole word).
    pub fn window_elems(&self, eb: u64) -> Result<usize> {
        let align = self.gpu.limits.min_storage_buffer_offset_alignment.max(4) as u64;
        let l = (self.max_binding / eb) / align * align;
        if l == 0 {
            return Err(WgpuError::Unsupported(format!(
                "a storage binding of {} bytes holds no aligned window",
                self.max_binding
            )));
        }
        Ok(l as usize)
    }

    /// The byte window of a binding that covers elements [start, start + span) of `eb` bytes
    /// each (bf16, f16: 2), starting at the aligned offset at or before `start`: the window and
    /// the elements between its start and `start` (what the kernel adds to its indices).
    pub fn span_window(&self, start: usize, span: usize, eb: u64) -> ((u64, u64), usize) {
        let align = self.gpu.limits.min_storage_buffer_offset_alignment.max(4) as u64;
        let first = start as u64 * eb;
        let off = first / align * align;
        let end = (start + span) as u64 * eb;
        let size = (end - off).next_multiple_of(4);
        ((off, size), ((first - off) / eb) as usize)
    }

    /// Value `v` as a binding that the lowering windows itself (no whole-binding check).
    pub fn wbuf(&mut self, v: usize) -> Result<Bind> {
        self.windowed = true;
        let r = self.buf(v);
        self.windowed = false;
        r
    }

    /// [`Builder::out`] for a value the lowering windows itself.
    pub fn wout(&mut self, v: usize) -> Result<Bind> {
        self.windowed = true;
        let r = self.out(v);
        self.windowed = false;
        r
    }

    /// Adds `kernel` over `rows` independent rows, binding k holding `row_bytes[k]` bytes of
    /// each (0: not indexed by row, bound whole): one dispatch, or, when a row-indexed value
    /// is larger than one binding, one per window of rows, each binding its values' windows
    /// of those rows (aligned: a window starts at a multiple of the offset alignment in every
    /// binding), the kernel seeing rows 0..len. `params(len)` and `groups(len)` give a
    /// window's parameters and grid.
    pub fn push_rows(
        &mut self,
        kernel: Kernel,
        binds: Vec<Bind>,
        row_bytes: &[u64],
        rows: usize,
        params: impl Fn(usize) -> Result<Vec<u32>>,
        groups: impl Fn(usize) -> Result<[u32; 3]>,
    ) -> Result<()> {
        let widest = row_bytes.iter().copied().max().unwrap_or(0);
        if widest == 0 || rows as u64 * widest <= self.max_binding {
            return self.push(kernel, binds, &params(rows)?, groups(rows)?);
        }
        let per = self.rows_per_window(row_bytes)?;
        for start in (0..rows).step_by(per) {
            let len = per.min(rows - start);
            let windows = row_bytes
                .iter()
                .map(|&rb| {
                    (rb > 0).then(|| (start as u64 * rb, (len as u64 * rb).next_multiple_of(4)))
                })
                .collect();
            self.push_windows(
                kernel.clone(),
                binds.clone(),
                windows,
                &params(len)?,
                groups(len)?,
            )?;
        }
        Ok(())
    }

    /// The 16-bit kind `v` is stored in where a kernel binds it (crate::buffer::half): 0 for
    /// f32 and other dtypes, and for a 16-bit value bound widened ([`Builder::widened`]).
    pub fn packed_kind(&self, v: usize) -> u32 {
        match self.is_wide(v) {
            true => 0,
            false => half(self.dtype(v)),
        }
    }

    /// Whether 16-bit value `v` is bound widened ([`Builder::widened`]).
    pub fn is_wide(&self, v: usize) -> bool {
        self.wide.contains_key(&v)
    }

    /// Rows per window of [`Builder::push_rows`]: as many as one binding holds of the widest,
    /// a multiple of [`Builder::row_step`].
    pub fn rows_per_window(&self, row_bytes: &[u64]) -> Result<usize> {
        let widest = row_bytes.iter().copied().max().unwrap_or(0).max(1);
        let step = self.row_step(row_bytes);
        let per = (self.max_binding / widest) / step * step;
        if per == 0 {
            return Err(WgpuError::Unsupported(format!(
                "{}: {step} rows of {widest} bytes (the fewest whose windows start aligned) are \
                 more than one storage binding ({:.1} MiB, max_storage_buffer_binding_size)",
                self.doing,
                self.max_binding as f64 / 1048576.0
            )));
        }
        Ok(per as usize)
    }

    /// The fewest rows whose windows start aligned in every binding (rows of `row_bytes`).
    pub fn row_step(&self, row_bytes: &[u64]) -> u64 {
        let align = self.offset_align();
        row_bytes
            .iter()
            .filter(|&&rb| rb > 0)
            .fold(1u64, |l, &rb| lcm(l, align / gcd(rb, align)))
    }

    /// The storage offset alignment, in bytes.
    pub fn offset_align(&self) -> u64 {
        self.gpu.limits.min_storage_buffer_offset_alignment.max(4) as u64
    }

    /// Adds `kernel` over elements [0, n), `per` per invocation, where every binding is indexed
    /// by element like the output (elementwise kernels, fused chains without views or iota):
    /// when a bound value is larger than one binding, as several dispatches over chunks of
    /// elements, each binding its operands' windows of the chunk, the kernel none the wiser.
    /// `bytes[k]`: bytes per element of binding k (0: a placeholder, bound whole; bf16, f16: 2);
    /// `params(len)`: the parameters of a chunk of `len` elements.
    pub fn push_chunked(
        &mut self,
        kernel: Kernel,
        binds: Vec<Bind>,
        bytes: &[u64],
        n: usize,
        per: usize,
        params: impl Fn(usize) -> Result<Vec<u32>>,
    ) -> Result<()> {
        let eb = bytes.iter().copied().max().unwrap_or(4).max(1);
        if n as u64 * eb <= self.max_binding {
            let g = grid(n.div_ceil(per).div_ceil(WG))?;
            return self.push(kernel, binds, &params(n)?, g);
        }
        let l = self.window_elems(eb)?;
        for start in (0..n).step_by(l) {
            let len = l.min(n - start);
            let windows = bytes
                .iter()
                .map(|&b| {
                    (b > 0).then(|| {
                        let size = (len as u64 * b).next_multiple_of(4);
                        (start as u64 * b, size)
                    })
                })
                .collect();
            let g = grid(len.div_ceil(per).div_ceil(WG))?;
            self.push_windows(kernel.clone(), binds.clone(), windows, &params(len)?, g)?;
        }
        Ok(())
    }

    /// Adds a dispatch of `threads` invocations in 256-wide workgroups.
    pub fn push_1d(
        &mut self,
        kernel: Kernel,
        binds: Vec<Bind>,
        params: &[u32],
        threads: usize,
    ) -> Result<()> {
        let g = grid(threads.div_ceil(WG))?;
        self.push(kernel, binds, params, g)
    }

    /// An elementwise dispatch of `n` elements: P[0] = n, P[1] = the scalar mask, P[2..8] the
    /// scalar operands' words, P[8..] = `extra`.
    pub fn push_elementwise(
        &mut self,
        kernel: Kernel,
        out: Bind,
        ops: &[Operand],
        n: usize,
        extra: &[u32],
    ) -> Result<()> {
        let (binds, p) = elementwise_params(out, ops, n, extra)?;
        self.push_1d(kernel, binds, &p, n)
    }

    /// [`Builder::push_elementwise`] for a kernel whose every operand is read at the output's
    /// index, in windows when a value is larger than a binding ([`Builder::push_chunked`]);
    /// `bytes`: bytes per element of the output, then of each operand.
    pub fn push_elementwise_chunked(
        &mut self,
        kernel: Kernel,
        out: Bind,
        ops: &[Operand],
        bytes: &[u64],
        n: usize,
    ) -> Result<()> {
        let (binds, _) = elementwise_params(out, ops, n, &[])?;
        let bytes: Vec<u64> = bytes
            .iter()
            .zip(std::iter::once(&Operand::Buf(out)).chain(ops))
            .map(|(&b, op)| match op {
                Operand::Buf(_) => b,
                Operand::Scalar(_) => 0,
            })
            .collect();
        self.push_chunked(kernel, binds, &bytes, n, 1, |len| {
            Ok(elementwise_params(out, ops, len, &[])?.1)
        })
    }
}

/// The bindings and parameters of an elementwise dispatch of `n` elements: P[0] = n, P[1] = the
/// scalar mask, P[2..8] the scalar operands' words, P[8..] = `extra`.
fn elementwise_params(
    out: Bind,
    ops: &[Operand],
    n: usize,
    extra: &[u32],
) -> Result<(Vec<Bind>, Vec<u32>)> {
    {
        let mut p = vec![0u32; 8];
        p[0] = u32_of(n)?;
        let mut binds = vec![out];
        for (k, op) in ops.iter().enumerate() {
            match op {
                Operand::Buf(b) => binds.push(*b),
                Operand::Scalar(w) => {
                    p[1] |= 1 << k;
                    p[2 + 2 * k] = w[0];
                    p[3 + 2 * k] = w[1];
                    binds.push(Bind::Dummy);
                }
            }
        }
        p.extend_from_slice(extra);
        Ok((binds, p))
    }
}

/// A 2-D grid of `groups` workgroups (x at most 65535; kernels fold y back into one index).
pub fn grid(groups: usize) -> Result<[u32; 3]> {
    if groups == 0 {
        return Ok([0, 0, 0]);
    }
    let x = groups.min(MAX_GROUPS);
    let y = groups.div_ceil(x);
    if y > MAX_GROUPS {
        return Err(WgpuError::Unsupported(format!(
            "{groups} workgroups exceed a 65535 x 65535 grid"
        )));
    }
    Ok([x as u32, y as u32, 1])
}

/// A size or offset as a kernel parameter (kernels index with u32).
pub fn u32_of(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        WgpuError::Unsupported(format!(
            "{n} elements: the WGSL kernels index with 32 bits (tensors up to 4G elements)"
        ))
    })
}

/// Row-major strides, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The words per element of `d`, as a parameter.
pub fn width(d: DType) -> u32 {
    words(d) as u32
}

pub fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

pub fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}
