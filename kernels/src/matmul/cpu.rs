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

/// Transposing pack of 32-bit units: `out[g·r + rr] = rows[rr][g]` for `g < groups`,
/// `rr < r` (rows past `rows.len()` are written as zeros), `rows.len() <= r <= 32`.
///
/// # Safety
/// Every `rows[rr]` is readable for `groups` (unaligned) units, `out` writable for
/// `groups·r`; the CPU supports the function's target features.
pub(crate) type Transpose32 =
    unsafe fn(out: *mut u32, r: usize, rows: &[*const u32], groups: usize);

/// Depth-strided pack of unconverted elements: for each depth step `p < kn`, the `rows`
/// elements at `src + p·ld` become step `p` of the panel (`r` wide, KU-interleaved; lanes
/// `rows..r` written as zeros).
///
/// # Safety
/// `src + p·ld .. + rows` is readable for every `p < kn`, `out` writable for a whole panel
/// (`ceil(kn/KU)·r·KU` elements); `rows <= r <= 32`; the CPU supports the target features.
pub(crate) type StridedPack<P> =
    unsafe fn(out: *mut P, r: usize, src: *const P, ld: usize, rows: usize, kn: usize);

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
    pub transpose: Option<Transpose32>,
    pub strided: Option<StridedPack<P>>,
}

/// How source elements become packed elements.
pub(crate) trait Convert<S, P>: Copy + Send + Sync {
    /// `P` is `S` bit for bit (allows the SIMD transposing pack).
    const IDENTITY: bool;
    fn conv(x: S) -> P;
}

/// No conversion.
#[derive(Clone, Copy)]
pub(crate) struct Same;
impl<T: Copy> Convert<T, T> for Same {
    const IDENTITY: bool = true;
    #[inline(always)]
    fn conv(x: T) -> T {
        x
    }
}

/// bf16 widened to f32 (exact).
#[derive(Clone, Copy)]
pub(crate) struct Widen;
impl Convert<bf16, f32> for Widen {
    const IDENTITY: bool = false;
    #[inline(always)]
    fn conv(x: bf16) -> f32 {
        x.to_f32()
    }
}

/// Below this many flops the whole call runs on the calling thread: a rayon fork/join costs
/// microseconds, and on the 2-core Zen 4 host 96³ (1.8 MFLOP) ran no faster on two threads
/// while 112³ (2.8 MFLOP) gained ~13%.
const PAR_MIN_FLOPS: f64 = 2.0e6;
/// A single matrix below this many flops is not split across threads when the batch can be.
const SPLIT_MATRIX_FLOPS: f64 = 32.0e6;
/// Largest register-tile side (MR or NR) of any kernel.
const MAX_R: usize = 32;
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

/// One operand as a 2-D view `(r, p)`: `r` is the panel dimension (`i` of A, `j` of B),
/// `p` the depth. Element `(r, p)` is `data[r·ld + p]` if `k_contig`, else `data[p·ld + r]`.
#[derive(Clone, Copy)]
struct Src<'a, S> {
    data: &'a [S],
    k_contig: bool,
    ld: usize,
}

/// Packs rows `r0..r0+rn` × depth `p0..p0+kn` of `src` into `ceil(rn/R)` consecutive
/// panels `[ceil(kn/KU)][R][KU]`, zero-padding ragged rows and depth. `dst` must hold
/// exactly that many panels.
#[allow(clippy::too_many_arguments)]
fn pack<S: Copy, P: Packed, C: Convert<S, P>>(
    dst: &mut [P],
    src: Src<'_, S>,
    r0: usize,
    rn: usize,
    p0: usize,
    kn: usize,
    r: usize,
    fast: (Option<Transpose32>, Option<StridedPack<P>>),
) {
    let conv = C::conv;
    let ku = P::KU;
    let steps = kn.div_ceil(ku);
    let panel = steps * r * ku;
    debug_assert!(dst.len() == rn.div_ceil(r) * panel && r <= MAX_R);
    // Offset of element (row rr, depth p) inside a panel.
    let at = |rr: usize, p: usize| (p / ku) * r * ku + rr * ku + p % ku;
    for (pi, out) in dst.chunks_exact_mut(panel).enumerate() {
        let rb = r0 + pi * r;
        let rows = r.min(r0 + rn - rb);
        if rows < r || !kn.is_multiple_of(ku) {
            out.fill(P::default());
        }
        if src.k_contig {
            // Pull the next panel's rows toward the cache while this one is packed: packing
            // is otherwise bound by the latency of its many concurrent row streams.
            let next = rb + r..(rb + 2 * r).min(r0 + rn);
            let per_line = (64 / std::mem::size_of::<S>()).max(1);
            for rr in next {
                let line = src.data[rr * src.ld + p0..][..kn].as_ptr();
                for p in (0..kn).step_by(per_line) {
                    prefetch(line.wrapping_add(p));
                }
            }
            // Each row is contiguous along depth: walk the k-groups, gathering from the rows.
            let mut lines: [&[S]; MAX_R] = [&[]; MAX_R];
            for (rr, line) in lines.iter_mut().enumerate().take(rows) {
                *line = &src.data[(rb + rr) * src.ld + p0..][..kn];
            }
            let lines = &lines[..rows];
            let full = kn / ku;
            let mut done = 0;
            if let Some(tp) = fast
                .0
                .filter(|_| C::IDENTITY && std::mem::size_of::<P>() * ku == 4)
            {
                // Whole k-groups are 32-bit units of unconverted data: SIMD transpose.
                let mut ptrs = [std::ptr::null::<u32>(); MAX_R];
                for (p, line) in ptrs.iter_mut().zip(lines) {
                    *p = line.as_ptr().cast();
                }
                // SAFETY: each row holds kn >= full·ku elements of S (= P, size 4/ku): `full`
                // 32-bit units; `out` holds steps·r·ku >= full·r units; `fast` is only set
                // on kernels chosen for this CPU.
                unsafe { tp(out.as_mut_ptr().cast(), r, &ptrs[..rows], full) };
                done = full;
            }
            // Blocks of 16 depth values: one cache line per f32 row, so rows whose stride is
            // a multiple of 4 KiB (same L1 set) are each read in a single pass.
            let gb = (16 / ku).max(1);
            for g0 in (done..full).step_by(gb) {
                let g1 = (g0 + gb).min(full);
                for (rr, line) in lines.iter().enumerate() {
                    prefetch(line.as_ptr().wrapping_add((g0 + 4 * gb) * ku));
                    for g in g0..g1 {
                        for u in 0..ku {
                            out[(g * r + rr) * ku + u] = conv(line[g * ku + u]);
                        }
                    }
                }
            }
            for p in full * ku..kn {
                for (rr, line) in lines.iter().enumerate() {
                    out[at(rr, p)] = conv(line[p]);
                }
            }
        } else if let Some(sp) = fast.1.filter(|_| C::IDENTITY && kn > 0) {
            // Bounds: the last depth row is the highest address read.
            let last = &src.data[(p0 + kn - 1) * src.ld + rb..][..rows];
            let first = src.data[(p0 * src.ld + rb)..].as_ptr();
            debug_assert!(first <= last.as_ptr());
            // SAFETY: rows p0..p0+kn at stride ld all lie between `first` and the end of
            // `last` (checked above); `S` is `P` (IDENTITY); `out` is one whole panel; `sp` is
            // only set on kernels chosen for this CPU.
            unsafe { sp(out.as_mut_ptr(), r, first.cast(), src.ld, rows, kn) };
        } else if ku == 1 {
            for (p, dp) in out.chunks_exact_mut(r).enumerate().take(kn) {
                let line = &src.data[(p0 + p) * src.ld + rb..][..rows];
                prefetch(line.as_ptr().wrapping_add(PF_ROWS * src.ld));
                for (d, &x) in dp.iter_mut().zip(line) {
                    *d = conv(x);
                }
            }
        } else {
            // KU = 2: interleave two consecutive depth rows (a ragged last one pairs with the
            // zeros already in `out`).
            debug_assert_eq!(ku, 2);
            for (st, grp) in out.chunks_exact_mut(r * 2).enumerate() {
                let p = p0 + 2 * st;
                let line0 = &src.data[p * src.ld + rb..][..rows];
                prefetch(line0.as_ptr().wrapping_add(PF_ROWS * src.ld));
                prefetch(line0.as_ptr().wrapping_add((PF_ROWS + 1) * src.ld));
                if 2 * st + 1 < kn {
                    let line1 = &src.data[(p + 1) * src.ld + rb..][..rows];
                    for (d, (&x, &y)) in grp.chunks_exact_mut(2).zip(line0.iter().zip(line1)) {
                        d[0] = conv(x);
                        d[1] = conv(y);
                    }
                } else {
                    for (d, &x) in grp.chunks_exact_mut(2).zip(line0) {
                        d[0] = conv(x);
                    }
                }
            }
        }
    }
}

/// Depth rows ahead that `pack` prefetches when rows are strided (k not contiguous).
const PF_ROWS: usize = 8;

/// Hint that `p` will be read soon (never faults, any address is fine).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint; it never faults or writes.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Raw pointer to the output matrix, shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct CPtr(*mut f32);
// SAFETY: tasks only write through the pointer to disjoint tiles of a `&mut [f32]` held
// (and not otherwise touched) for the whole parallel region.
unsafe impl Send for CPtr {}
unsafe impl Sync for CPtr {}

impl CPtr {
    /// The pointer `off` elements further (a method, so closures capture the whole `CPtr`).
    fn at(self, off: usize) -> CPtr {
        CPtr(self.0.wrapping_add(off))
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
            let ct = c.at(ir * kern.mr * ldc + q * kern.nr).0;
            // SAFETY: `ap`/`bp` are whole packed panels (slices, bounds-checked above); the
            // tile rows ic+ir·MR.. (< m) and columns jc+q·NR.. (< n) lie inside C, and the
            // caller's task owns them exclusively; the kernel was chosen for this CPU.
            unsafe { (kern.micro)(steps, ap.as_ptr(), bp.as_ptr(), ct, ldc, mrb, nrb, acc) };
        }
    }
}

/// `C (m×n, row stride n) = op(A) · op(B)` for one matrix; `par` allows rayon.
#[allow(clippy::too_many_arguments)]
fn gemm_one<S, P, C>(
    kern: &Kernel<P>,
    bl: Blocks,
    a: Src<'_, S>,
    b: Src<'_, S>,
    c: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    par: bool,
) where
    S: Copy + Sync,
    P: Packed,
    C: Convert<S, P>,
{
    debug_assert!(c.len() >= m * n);
    let (mr, nr) = (kern.mr, kern.nr);
    let threads = if par { rayon::current_num_threads() } else { 1 };
    let ldc = n;
    let cp = CPtr(c.as_mut_ptr());
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
    c: &mut [f32],
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
    debug_assert!(
        a.len() >= a_len && b.len() >= b_len && c.len() >= c_len,
        "gemm: short slice for {s:?}"
    );
    if c_len == 0 {
        return;
    }
    let c = &mut c[..c_len];
    if k == 0 {
        c.fill(0.0);
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
    if batch_par {
        c.par_chunks_mut(m * n).enumerate().for_each(|(bi, cb)| {
            gemm_one::<S, P, C>(kern, bl, a_src(bi), b_src(bi), cb, m, n, k, false)
        });
    } else {
        let par = threads > 1 && per >= PAR_MIN_FLOPS;
        for (bi, cb) in c.chunks_mut(m * n).enumerate() {
            gemm_one::<S, P, C>(kern, bl, a_src(bi), b_src(bi), cb, m, n, k, par);
        }
    }
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
    gemm_generic::<f32, f32, Same>(f32_kernel(level), s, a, b, c);
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
    #[cfg(target_arch = "x86_64")]
    if native && usable(level) == Level::Avx512 && usable_bf16() {
        return gemm_generic::<bf16, bf16, Same>(&super::cpu_avx512::BF16, s, a, b, c);
    }
    let _ = native;
    gemm_generic::<bf16, f32, Widen>(f32_kernel(level), s, a, b, c);
}
