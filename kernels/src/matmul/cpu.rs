//! Packed GEMM driver shared by every SIMD level (GotoBLAS/BLIS loop nest), the portable
//! scalar microkernel, and the per-level entry points.
//!
//! Loop nest for one matrix (`C = op(A)·op(B)`, `m×n`, depth `k`):
//! ```text
//! for jc in 0..n step NC                      B block: KC×NC packed into NR-wide panels (L3)
//!   for pc in 0..k step KC                    first pc stores, later ones accumulate
//!     pack B[pc.., jc..]                      (parallel over panels)
//!     for ic in 0..m step MC                  A block: MC×KC packed into MR-tall panels (L2)
//!       pack A[ic.., pc..]                    (parallel over row blocks, each thread its own)
//!       for jr in B panels                    B micro-panel stays in L1
//!         for ir in A panels
//!           microkernel: C[MR×NR] (+)= Apanel · Bpanel
//! ```
//! A panel holds `[ceil(kc/KU)][MR][KU]` elements and a B panel `[ceil(kc/KU)][NR][KU]`,
//! zero-padded in every direction, where `KU` is 1 for f32 and 2 for bf16 (`vdpbf16ps`
//! multiplies adjacent pairs along k). Microkernels therefore never see ragged data;
//! they only mask the rows/columns they store.

use super::blocking::{gemm_generic, Blocks};
use super::pack::{pack, Src, MAX_R};
pub(crate) use super::pack::{Convert, Same, StridedPack, Transpose32, Widen};
use super::GemmShape;
use crate::simd::Level;
use half::bf16;
use rayon::prelude::*;
use std::cell::RefCell;

/// Microkernel: `C[0..mr, 0..nr] (+)= Apanel · Bpanel` over `steps` packed k-groups
/// (stores when `acc` is false, adds when true).
///
/// # Safety
/// `a` points to a whole A panel (`steps·MR·KU` elements), `b` to a whole B panel
/// (`steps·NR·KU`), `c` to a tile whose rows `0..mr` and columns `0..nr` (row stride `ldc`)
/// are valid for reads and writes and not accessed concurrently; `1 <= mr <= MR`,
/// `1 <= nr <= NR`; the CPU supports the kernel's target features.
pub(crate) type MicroFn<P> = unsafe fn(
    steps: usize,
    a: *const P,
    b: *const P,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    acc: bool,
);

/// Microkernel storing its tile rounded to bf16 (to nearest even, NaN quiet: bit for bit
/// [`crate::convert::f32_to_bf16`] of the f32 tile [`MicroFn`] would store with
/// `acc = false`): the one-pass-over-depth GEMM with bf16 output.
///
/// # Safety
/// As [`MicroFn`], with `c` a bf16 tile (only written).
pub(crate) type MicroBf16Fn<P> = unsafe fn(
    steps: usize,
    a: *const P,
    b: *const P,
    c: *mut bf16,
    ldc: usize,
    mr: usize,
    nr: usize,
);

/// A microkernel with its register tile (MR×NR), cache blocking as tuned on the reference
/// machine (MC×KC×NC elements; [`Kernel::blocks`] scales them to this CPU's caches, and MC
/// and NC grow when k < KC, keeping the A and B block sizes) and an optional SIMD packer
/// for depth-contiguous operands.
pub(crate) struct Kernel<P: 'static> {
    pub mr: usize,
    pub nr: usize,
    pub mc: usize,
    pub kc: usize,
    pub nc: usize,
    pub micro: MicroFn<P>,
    /// Stores a bf16 tile from registers; without it the driver rounds an f32 tile that
    /// `micro` wrote to the stack.
    pub micro_bf16: Option<MicroBf16Fn<P>>,
    pub transpose: Option<Transpose32>,
    pub strided: Option<StridedPack<P>>,
}

/// Below this many flops the whole call runs on the calling thread: a rayon fork/join costs
/// microseconds, and on the 2-core Zen 4 host 96³ (1.8 MFLOP) ran no faster on two threads
/// while 112³ (2.8 MFLOP) gained ~13%.
const PAR_MIN_FLOPS: f64 = 2.0e6;
/// A single matrix below this many flops is not split across threads when the batch can be.
const SPLIT_MATRIX_FLOPS: f64 = 32.0e6;
/// Packed buffers start on a cache line.
const ALIGN: usize = 64;

/// Which per-thread packing buffer.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    A,
    B,
}

/// Element type of packed panels; `KU` consecutive k values are interleaved per row/column.
pub(crate) trait Packed: Copy + Default + Send + Sync + 'static {
    const KU: usize;
    /// Runs `f` on a 64-byte aligned, per-thread scratch slice of `len` elements
    /// (contents unspecified).
    fn with_buf<R>(slot: Slot, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

fn aligned<P: Copy + Default>(v: &mut Vec<P>, len: usize) -> &mut [P] {
    let pad = ALIGN / std::mem::size_of::<P>();
    if v.len() < len + pad {
        *v = vec![P::default(); len + pad];
    }
    let off = v.as_ptr().align_offset(ALIGN).min(pad);
    &mut v[off..off + len]
}

macro_rules! packed_buffers {
    ($t:ty, $ku:expr, $a:ident, $b:ident) => {
        thread_local! {
            static $a: RefCell<Vec<$t>> = const { RefCell::new(Vec::new()) };
            static $b: RefCell<Vec<$t>> = const { RefCell::new(Vec::new()) };
        }
        impl Packed for $t {
            const KU: usize = $ku;
            fn with_buf<R>(slot: Slot, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                let key = match slot {
                    Slot::A => &$a,
                    Slot::B => &$b,
                };
                key.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut v) => f(aligned(&mut v, len)),
                    // Re-entered on this thread (a rayon steal inside a caller's GEMM):
                    // use a fresh buffer.
                    Err(_) => f(aligned(&mut Vec::new(), len)),
                })
            }
        }
    };
}
packed_buffers!(f32, 1, PACK_A_F32, PACK_B_F32);
packed_buffers!(bf16, 2, PACK_A_BF16, PACK_B_BF16);

/// Raw pointer to the output matrix (f32, or bf16 when the whole depth is one block),
/// shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
pub(crate) enum CPtr {
    F32(*mut f32),
    Bf16(*mut bf16),
}
// SAFETY: tasks only write through the pointer to disjoint tiles of a `&mut` slice held
// (and not otherwise touched) for the whole parallel region.
unsafe impl Send for CPtr {}
unsafe impl Sync for CPtr {}

impl CPtr {
    /// The pointer `off` elements further (a method, so closures capture the whole `CPtr`).
    fn at(self, off: usize) -> CPtr {
        match self {
            CPtr::F32(p) => CPtr::F32(p.wrapping_add(off)),
            CPtr::Bf16(p) => CPtr::Bf16(p.wrapping_add(off)),
        }
    }
}

/// Output of [`gemm_blocked`]: `batch·m·n` elements.
pub(crate) enum COut<'a> {
    F32(&'a mut [f32]),
    /// Rounded to bf16 as [`crate::convert::f32_to_bf16`] rounds the f32 output.
    Bf16(&'a mut [bf16]),
}

/// One tile of the microkernel into `c` (`acc` only with f32 output).
///
/// # Safety
/// [`MicroFn`]'s contract for `a`, `b`, the tile at `c` and `mr`, `nr`.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn tile<P: Packed>(
    kern: &Kernel<P>,
    steps: usize,
    a: *const P,
    b: *const P,
    c: CPtr,
    ldc: usize,
    mr: usize,
    nr: usize,
    acc: bool,
) {
    // SAFETY (all three arms): forwarded from the caller; the stack tile holds
    // MAX_R × MAX_R >= mr × nr values at row stride nr.
    unsafe {
        match (c, kern.micro_bf16) {
            (CPtr::F32(p), _) => (kern.micro)(steps, a, b, p, ldc, mr, nr, acc),
            (CPtr::Bf16(p), Some(f)) => f(steps, a, b, p, ldc, mr, nr),
            (CPtr::Bf16(p), None) => {
                let mut t = [0.0f32; MAX_R * MAX_R];
                (kern.micro)(steps, a, b, t.as_mut_ptr(), nr, mr, nr, false);
                for (i, row) in t.chunks_exact(nr).take(mr).enumerate() {
                    let out = std::slice::from_raw_parts_mut(p.add(i * ldc), nr);
                    crate::convert::f32_to_bf16_slice(row, out);
                }
            }
        }
    }
}

/// Runs the microkernel over every (B panel in `panels`) × (A panel) pair of one packed block.
/// `c` is the output origin of the block (row `ic`, column `jc`).
#[allow(clippy::too_many_arguments)]
fn macro_kernel<P: Packed>(
    kern: &Kernel<P>,
    steps: usize,
    abuf: &[P],
    mcb: usize,
    bbuf: &[P],
    panels: std::ops::Range<usize>,
    ncb: usize,
    c: CPtr,
    ldc: usize,
    acc: bool,
) {
    let apanel = steps * kern.mr * P::KU;
    let bpanel = steps * kern.nr * P::KU;
    for q in panels {
        let nrb = kern.nr.min(ncb - q * kern.nr);
        let bp = &bbuf[q * bpanel..][..bpanel];
        for (ir, ap) in abuf.chunks_exact(apanel).enumerate() {
            let mrb = kern.mr.min(mcb - ir * kern.mr);
            let ct = c.at(ir * kern.mr * ldc + q * kern.nr);
            // SAFETY: `ap`/`bp` are whole packed panels (slices, bounds-checked above); the
            // tile rows ic+ir·MR.. (< m) and columns jc+q·NR.. (< n) lie inside C, and the
            // caller's task owns them exclusively; the kernel was chosen for this CPU.
            unsafe {
                tile(
                    kern,
                    steps,
                    ap.as_ptr(),
                    bp.as_ptr(),
                    ct,
                    ldc,
                    mrb,
                    nrb,
                    acc,
                )
            };
        }
    }
}

/// `C (m×n, row stride n) = op(A) · op(B)` for one matrix at `cp` (valid for `m·n`
/// elements, this call's alone; bf16 only when `k <= bl.kc`); `par` allows rayon.
#[allow(clippy::too_many_arguments)]
fn gemm_one<S, P, C>(
    kern: &Kernel<P>,
    bl: Blocks,
    a: Src<'_, S>,
    b: Src<'_, S>,
    cp: CPtr,
    m: usize,
    n: usize,
    k: usize,
    par: bool,
) where
    S: Copy + Sync,
    P: Packed,
    C: Convert<S, P>,
{
    debug_assert!(matches!(cp, CPtr::F32(_)) || k <= bl.kc);
    let (mr, nr) = (kern.mr, kern.nr);
    let threads = if par { rayon::current_num_threads() } else { 1 };
    let ldc = n;
    let tp = (kern.transpose, kern.strided);
    let mpan = m.div_ceil(mr);
    // Shallow problems widen the blocks, keeping their footprint (MC·KC, KC·NC elements).
    let kc_eff = bl.kc.min(k).next_multiple_of(P::KU);
    let mc = ((bl.mc * bl.kc / kc_eff) / mr * mr).max(mr);
    let nc = (bl.nc * bl.kc / kc_eff).next_multiple_of(nr);
    for jc in (0..n).step_by(nc) {
        let ncb = nc.min(n - jc);
        let npan = ncb.div_ceil(nr);
        // Split rows unless there are too few row panels to balance the threads.
        let split_rows =
            threads > 1 && (mpan % threads == 0 || mpan >= 8 * threads || npan < 2 * threads);
        let split_rows = split_rows && mpan >= threads;
        for pc in (0..k).step_by(bl.kc) {
            let kcb = bl.kc.min(k - pc);
            let steps = kcb.div_ceil(P::KU);
            let (apanel, bpanel) = (steps * mr * P::KU, steps * nr * P::KU);
            let acc = pc > 0;
            P::with_buf(Slot::B, npan * bpanel, |bbuf| {
                if threads > 1 {
                    bbuf.par_chunks_mut(bpanel)
                        .with_min_len(4)
                        .enumerate()
                        .for_each(|(q, out)| {
                            pack::<S, P, C>(
                                out,
                                b,
                                jc + q * nr,
                                nr.min(ncb - q * nr),
                                pc,
                                kcb,
                                nr,
                                tp,
                            )
                        });
                } else {
                    pack::<S, P, C>(bbuf, b, jc, ncb, pc, kcb, nr, tp);
                }
                let bbuf = &*bbuf;
                if split_rows {
                    // Row blocks of at most MC rows, a multiple of `threads` of them,
                    // each packing its own A block.
                    let per_block = (mc / mr).max(1);
                    let nch = mpan.div_ceil(per_block).next_multiple_of(threads).min(mpan);
                    (0..nch).into_par_iter().for_each(|ch| {
                        let (p0, p1) = (ch * mpan / nch, (ch + 1) * mpan / nch);
                        let (i0, i1) = (p0 * mr, (p1 * mr).min(m));
                        P::with_buf(Slot::A, (p1 - p0) * apanel, |abuf| {
                            pack::<S, P, C>(abuf, a, i0, i1 - i0, pc, kcb, mr, tp);
                            let co = cp.at(i0 * ldc + jc);
                            macro_kernel(
                                kern,
                                steps,
                                abuf,
                                i1 - i0,
                                bbuf,
                                0..npan,
                                ncb,
                                co,
                                ldc,
                                acc,
                            );
                        });
                    });
                    return;
                }
                for ic in (0..m).step_by(mc) {
                    let mcb = mc.min(m - ic);
                    P::with_buf(Slot::A, mcb.div_ceil(mr) * apanel, |abuf| {
                        pack::<S, P, C>(abuf, a, ic, mcb, pc, kcb, mr, tp);
                        let abuf = &*abuf;
                        let co = cp.at(ic * ldc + jc);
                        if threads > 1 && npan >= 2 {
                            // Few rows: share the packed A block, split the column panels.
                            let parts = threads.min(npan);
                            (0..parts).into_par_iter().for_each(|t| {
                                let qs = t * npan / parts..(t + 1) * npan / parts;
                                macro_kernel(kern, steps, abuf, mcb, bbuf, qs, ncb, co, ldc, acc);
                            });
                        } else {
                            macro_kernel(kern, steps, abuf, mcb, bbuf, 0..npan, ncb, co, ldc, acc);
                        }
                    });
                }
            });
        }
    }
}

/// Batched driver with given blocks: validates nothing beyond `debug_assert!`, splits work
/// over rayon.
pub(crate) fn gemm_blocked<S, P, C>(
    kern: &Kernel<P>,
    bl: Blocks,
    s: &GemmShape,
    a: &[S],
    b: &[S],
    c: COut<'_>,
) where
    S: Copy + Sync,
    P: Packed,
    C: Convert<S, P>,
{
    let GemmShape {
        batch,
        m,
        n,
        k,
        trans_a,
        trans_b,
        b_broadcast,
    } = *s;
    let (a_len, b_len, c_len) = s.lens();
    let c = match c {
        COut::F32(c) => {
            debug_assert!(c.len() >= c_len, "gemm: short C for {s:?}");
            if k == 0 {
                c[..c_len].fill(0.0);
            }
            CPtr::F32(c.as_mut_ptr())
        }
        // Several depth blocks accumulate in f32: stage, then round once.
        COut::Bf16(c) if k > bl.kc => {
            return with_f32_stage(c_len, |st| {
                gemm_blocked::<S, P, C>(kern, bl, s, a, b, COut::F32(st));
                crate::elementwise::round_to_half(st, &mut c[..c_len]);
            })
        }
        COut::Bf16(c) => {
            debug_assert!(c.len() >= c_len, "gemm: short C for {s:?}");
            if k == 0 {
                c[..c_len].fill(bf16::ZERO);
            }
            CPtr::Bf16(c.as_mut_ptr())
        }
    };
    debug_assert!(
        a.len() >= a_len && b.len() >= b_len,
        "gemm: short slice for {s:?}"
    );
    if c_len == 0 || k == 0 {
        return;
    }
    // Shared row-major weights: the batch is just more rows of one GEMM.
    let (batch, m) = if b_broadcast && !trans_a {
        (1, batch * m)
    } else {
        (batch, m)
    };
    let a_src = |bi: usize| Src {
        data: &a[bi * m * k..][..m * k],
        k_contig: !trans_a,
        ld: if trans_a { m } else { k },
    };
    let b_src = |bi: usize| {
        let off = if b_broadcast { 0 } else { bi * k * n };
        Src {
            data: &b[off..][..k * n],
            k_contig: trans_b,
            ld: if trans_b { k } else { n },
        }
    };
    let per = 2.0 * (m * n) as f64 * k as f64;
    let threads = rayon::current_num_threads();
    let batch_par = threads > 1
        && batch >= threads
        && batch as f64 * per >= PAR_MIN_FLOPS
        && (batch % threads == 0 || batch >= 4 * threads || per < SPLIT_MATRIX_FLOPS);
    // Batch entry bi writes C[bi·m·n ..][..m·n] only: disjoint for distinct bi.
    let one = |bi: usize, par: bool| {
        let cb = c.at(bi * m * n);
        gemm_one::<S, P, C>(kern, bl, a_src(bi), b_src(bi), cb, m, n, k, par)
    };
    if batch_par {
        (0..batch).into_par_iter().for_each(|bi| one(bi, false));
    } else {
        let par = threads > 1 && per >= PAR_MIN_FLOPS;
        (0..batch).for_each(|bi| one(bi, par));
    }
}

/// Runs `f` on a per-thread f32 scratch slice of `len` elements (contents unspecified):
/// a fresh multi-MiB allocation every call would be mostly page faults.
pub(crate) fn with_f32_stage<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static STAGE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }
    // Taken out while in use: a nested call (a rayon steal) allocates its own.
    let mut v = STAGE.with(|st| std::mem::take(&mut *st.borrow_mut()));
    if v.len() < len {
        v.resize(len, 0.0);
    }
    let r = f(&mut v[..len]);
    STAGE.with(|st| *st.borrow_mut() = v);
    r
}

// ---------------------------------------------------------------------------------------
// Portable scalar microkernel (also the reference the SIMD levels are compared against).

const SMR: usize = 4;
const SNR: usize = 16;

/// Scalar f32 tile, 4×16, plain loops (LLVM may vectorize for the baseline target).
pub(super) static SCALAR_F32: Kernel<f32> = Kernel {
    mr: SMR,
    nr: SNR,
    mc: 64,
    kc: 256,
    nc: 1024,
    micro: micro_scalar,
    micro_bf16: None,
    transpose: None,
    strided: None,
};

/// # Safety
/// See [`MicroFn`] (no target features needed).
#[allow(clippy::too_many_arguments)]
unsafe fn micro_scalar(
    steps: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    acc: bool,
) {
    // SAFETY: the contract gives whole panels of steps·SMR and steps·SNR elements.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, steps * SMR),
            std::slice::from_raw_parts(b, steps * SNR),
        )
    };
    let mut t = [[0.0f32; SNR]; SMR];
    for (ak, bk) in a.chunks_exact(SMR).zip(b.chunks_exact(SNR)) {
        for (ti, &x) in t.iter_mut().zip(ak) {
            for (tij, &y) in ti.iter_mut().zip(bk) {
                *tij += x * y;
            }
        }
    }
    for (i, ti) in t.iter().enumerate().take(mr) {
        // SAFETY: row i < mr, columns 0..nr of the tile are ours (contract).
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), nr) };
        for (d, &v) in row.iter_mut().zip(ti) {
            *d = if acc { *d + v } else { v };
        }
    }
}

// ---------------------------------------------------------------------------------------
// Entry points per SIMD level.

/// The highest level at or below `want` this CPU can run (ignores `GIDD_SIMD`).
pub fn usable(want: Level) -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq");
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        match want {
            Level::Avx512 if avx512 => Level::Avx512,
            Level::Avx512 | Level::Avx2Fma if avx2 => Level::Avx2Fma,
            _ => Level::Scalar,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = want;
        Level::Scalar
    }
}

/// Whether the native bf16 kernel (`vdpbf16ps`) can run here (ignores `GIDD_SIMD`).
pub fn usable_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        usable(Level::Avx512) == Level::Avx512 && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The largest KC of any kernel (tests use it to cross block boundaries).
#[cfg(test)]
pub(crate) fn max_kc() -> usize {
    let mut kc = SCALAR_F32.kc;
    #[cfg(target_arch = "x86_64")]
    for k in [
        super::cpu_avx2::F32.kc,
        super::cpu_avx512::F32.kc,
        super::cpu_avx512::BF16.kc,
    ] {
        kc = kc.max(k);
    }
    kc
}

pub(crate) fn f32_kernel(level: Level) -> &'static Kernel<f32> {
    match usable(level) {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => &super::cpu_avx512::F32,
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => &super::cpu_avx2::F32,
        _ => &SCALAR_F32,
    }
}

/// [`super::gemm_f32`] on a chosen level (clamped to what the CPU supports).
pub fn gemm_f32_at(level: Level, s: &GemmShape, a: &[f32], b: &[f32], c: &mut [f32]) {
    // A few rows of C: stream B unpacked (packing it would cost as much as the product).
    if s.m <= super::skinny::SKINNY_M {
        return super::skinny::gemm_skinny_f32(level, s, a, b, c);
    }
    gemm_generic::<f32, f32, Same>(f32_kernel(level), s, a, b, COut::F32(c));
}

/// [`super::gemm_bf16`] on a chosen level; `native` asks for `vdpbf16ps` (used only if the
/// CPU has it and `level` is AVX-512), otherwise packed panels are widened to f32.
pub fn gemm_bf16_at(
    level: Level,
    native: bool,
    s: &GemmShape,
    a: &[bf16],
    b: &[bf16],
    c: &mut [f32],
) {
    bf16_at(level, native, s, a, b, COut::F32(c))
}

/// [`super::gemm_bf16_to_bf16`] on a chosen level (as [`gemm_bf16_at`]): bit for bit
/// [`gemm_bf16_at`]'s output rounded by [`crate::convert::f32_to_bf16`].
pub fn gemm_bf16_to_bf16_at(
    level: Level,
    native: bool,
    s: &GemmShape,
    a: &[bf16],
    b: &[bf16],
    c: &mut [bf16],
) {
    bf16_at(level, native, s, a, b, COut::Bf16(c))
}

fn bf16_at(level: Level, native: bool, s: &GemmShape, a: &[bf16], b: &[bf16], c: COut<'_>) {
    // A few rows of C: stream B unpacked (packing it would cost as much as the product).
    if s.m <= super::skinny::SKINNY_M {
        use super::skinny_bf16::gemm_skinny_bf16;
        return match c {
            COut::F32(c) => gemm_skinny_bf16(level, native, s, a, b, c),
            COut::Bf16(c) => {
                let n = s.lens().2;
                let mut st = vec![0.0f32; n];
                gemm_skinny_bf16(level, native, s, a, b, &mut st);
                crate::convert::f32_to_bf16_slice(&st, &mut c[..n]);
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if native && usable(level) == Level::Avx512 && usable_bf16() {
        return gemm_generic::<bf16, bf16, Same>(&super::cpu_avx512::BF16, s, a, b, c);
    }
    let _ = native;
    gemm_generic::<bf16, f32, Widen>(f32_kernel(level), s, a, b, c);
}
