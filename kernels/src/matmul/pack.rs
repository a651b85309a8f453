//! Packing of GEMM operands into the zero-padded, KU-interleaved panels the microkernels
//! read (see [`super::cpu`] for the panel layout), with the SIMD fast paths a kernel may
//! bring: a 32-bit transposing pack for depth-contiguous rows and a depth-strided copy.

use super::cpu::Packed;
use half::bf16;

/// Largest register-tile side (MR or NR) of any kernel.
pub(crate) const MAX_R: usize = 32;

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

/// One operand as a 2-D view `(r, p)`: `r` is the panel dimension (`i` of A, `j` of B),
/// `p` the depth. Element `(r, p)` is `data[r·ld + p]` if `k_contig`, else `data[p·ld + r]`.
#[derive(Clone, Copy)]
pub(crate) struct Src<'a, S> {
    pub data: &'a [S],
    pub k_contig: bool,
    pub ld: usize,
}

/// Packs rows `r0..r0+rn` × depth `p0..p0+kn` of `src` into `ceil(rn/R)` consecutive
/// panels `[ceil(kn/KU)][R][KU]`, zero-padding ragged rows and depth. `dst` must hold
/// exactly that many panels.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack<S: Copy, P: Packed, C: Convert<S, P>>(
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
    if let Some(sp) = fast.1.filter(|_| !src.k_contig && C::IDENTITY && kn > 0) {
        // Depth-strided rows, several panels: depth chunks outermost. Each depth row of the
        // block is a few cache lines shared by neighbouring panels; panel by panel over the
        // whole depth, those lines (a row stride apart, thousands of them) left L1 before the
        // next panel came back for them.
        for p in (0..kn).step_by(STRIDED_CHUNK) {
            let pn = STRIDED_CHUNK.min(kn - p);
            for (pi, out) in dst.chunks_exact_mut(panel).enumerate() {
                let rb = r0 + pi * r;
                let rows = r.min(r0 + rn - rb);
                // Bounds: the last depth row is the highest address read.
                let last = &src.data[(p0 + p + pn - 1) * src.ld + rb..][..rows];
                let first = src.data[((p0 + p) * src.ld + rb)..].as_ptr();
                debug_assert!(first <= last.as_ptr());
                // SAFETY: rows p0+p .. p0+p+pn at stride ld all lie between `first` and the
                // end of `last` (checked above); `S` is `P` (IDENTITY); steps p/ku.. of the
                // panel (pn/ku of them, p a multiple of ku) are inside `out`, and `sp` writes
                // every lane of them; `sp` is only set on kernels chosen for this CPU.
                unsafe {
                    sp(
                        out[p / ku * r * ku..].as_mut_ptr(),
                        r,
                        first.cast(),
                        src.ld,
                        rows,
                        pn,
                    )
                };
            }
        }
        return;
    }
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

/// Depth rows per chunk of the strided SIMD pack (even: k-pairs stay whole). Rows a
/// multiple of 4 KiB apart (the model's activations, 2-8 KiB rows) fall into one L1 set,
/// so a chunk holds no more rows than an L1 set has ways (8 on Zen 4 and recent Intel
/// cores). Measured on the 2-core Zen 4, bf16 dW 4096x256x2048 (A rows 8 KiB apart), one
/// thread: 8 rows 200 GFLOP/s per CPU-second, 16: 194, 32: 183, 128: 176, whole depth
/// (panel by panel): 156.
const STRIDED_CHUNK: usize = 8;

/// Depth rows ahead that `pack` prefetches when rows are strided (k not contiguous).
pub(crate) const PF_ROWS: usize = 8;

/// Hint that `p` will be read soon (never faults, any address is fine).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is only a hint; it never faults or writes.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
