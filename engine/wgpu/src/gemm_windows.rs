//! dot_general whose operand or output is larger than one storage binding (a 131072 x 3072
//! embedding used as the lm_head is 1.5 GiB in f32, the binding limit 128 MiB on lavapipe):
//! the product is cut into blocks along batch, M, N and K, each small enough that every byte
//! range it touches fits one binding. Per block, the operands' blocks are copied through
//! windows of their buffers into scratch in gemm_blocked's layout, and gemm_blocked writes
//! the output's block through a window of the output (its row and batch strides those of the
//! whole output). Blocks along K accumulate: the kernel's sums start from the earlier
//! blocks' (ACC), so the fma chain is the unsplit one, bit for bit; a bf16 output split along
//! K (or of odd N) sums in an f32 scratch, rounded and packed once after the last block.
//!
//! When no such blocking exists (a row of an operand or of the output larger than a binding:
//! K so large that 8 rows of A do not fit, an output row of N elements that does not), the
//! blocks are chosen again without the operands' spans: M may go down to one row, and each
//! operand block is staged in slices (along its most spread dim, recursively), each slice
//! read through its own window; a bf16 output may then split N with K, its f32 sums packed
//! row by row. The fma chains are the same, so the results are too, bit for bit.

use crate::error::{Result, WgpuError};
use crate::movement::copy_from_window;
use crate::ops::group_stride;
use crate::pipelines::Kernel;
use crate::plan::{strides, u32_of, Bind, Builder, MAX_GROUPS};
use gidd_engine::op::DotDims;
use gidd_engine::DType;
use gidd_kernels::wgsl::Module;

/// Scratch buffers: A's block (and packed, A_BLK + 2), B's (B_BLK + 2), the f32 sums.
const A_BLK: usize = 0;
const B_BLK: usize = 1;
const ACC: usize = 4;

/// Block sizes along (batch, M, N, K).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Block {
    b: usize,
    m: usize,
    n: usize,
    k: usize,
}

/// The GEMM's sizes, operand strides (elements, per group: batch, rows, cols) and element
/// bytes, for choosing blocks.
struct Shape {
    full: Block,
    sa: [usize; 3],
    sb: [usize; 3],
    ea: u64,
    eb: u64,
    eo: u64,
    /// The output's 16-bit kind (crate::buffer::half), 0 for f32.
    half: u32,
}

impl Shape {
    /// Elements from the first to one past the last that a block touches.
    fn span(st: [usize; 3], w: [usize; 3]) -> usize {
        1 + (0..3).map(|i| (w[i] - 1) * st[i]).sum::<usize>()
    }
    fn o_strides(&self) -> [usize; 3] {
        [self.full.m * self.full.n, self.full.n, 1]
    }
    /// Whether the f32 sums go through scratch (16-bit output split along K, or of odd N).
    fn acc(&self, w: Block) -> bool {
        self.half != 0 && (w.k < self.full.k || self.full.n % 2 == 1)
    }
    /// The bytes each binding of a block `w` needs, against the limit (`sliced`: the operands
    /// are staged in slices that fit, whatever the block).
    fn needs(&self, w: Block, align: u64, sliced: bool) -> [u64; 6] {
        let r4 = |x: usize| x.next_multiple_of(4) as u64;
        let (b, m, n, k) = (w.b as u64, w.m as u64, w.n as u64, w.k);
        let slack = align + 4;
        let operand = |e: u64, st, dims| match sliced {
            true => 0,
            false => e * Self::span(st, dims) as u64 + slack,
        };
        [
            operand(self.ea, self.sa, [w.b, w.m, w.k]),
            operand(self.eb, self.sb, [w.b, w.k, w.n]),
            self.eo * Self::span(self.o_strides(), [w.b, w.m, w.n]) as u64 + slack,
            4 * b * m * r4(k),
            4 * b * r4(k) * r4(w.n),
            if self.acc(w) { 4 * b * m * n } else { 0 },
        ]
    }
}

/// Block sizes whose every binding fits `max` bytes: from the whole product, halving the
/// dim that weighs most in a binding that does not fit. `sliced`: the operands are staged in
/// slices (their spans do not count), M may go below the kernel's 8-row tiles and a bf16
/// output may split N with K (its sums packed row by row).
fn choose(s: &Shape, max: u64, align: u64, sliced: bool) -> Result<Block> {
    let f = s.full;
    // block starts: M in the kernel's row tiles, N and K in fours (so ACC chains are exact)
    let (gn, gm) = (4, if sliced { 1 } else { 8 });
    let gb = 1;
    let mut w = f;
    for _ in 0..256 {
        let need = s.needs(w, align, sliced);
        let Some(bad) = need.iter().position(|&x| x > max) else {
            return Ok(w);
        };
        // the dims each binding spans, heaviest first
        let o = s.o_strides();
        let weigh = |st: [usize; 3], dims: [usize; 3], sizes: [usize; 3]| {
            let mut v: Vec<(usize, usize)> = (0..3)
                .map(|i| (dims[i], sizes[i].saturating_sub(1) * st[i]))
                .collect();
            v.sort_by_key(|x| std::cmp::Reverse(x.1));
            v.into_iter().map(|x| x.0).collect::<Vec<_>>()
        };
        // dims: 0 = batch, 1 = m, 2 = n, 3 = k
        let order = match bad {
            0 | 3 => weigh(s.sa, [0, 1, 3], [w.b, w.m, w.k]),
            1 | 4 => weigh(s.sb, [0, 3, 2], [w.b, w.k, w.n]),
            _ => weigh(o, [0, 1, 2], [w.b, w.m, w.n]),
        };
        let halve = |x: usize, g: usize| x.div_ceil(2).next_multiple_of(g);
        let mut moved = false;
        // the batch first: a block of whole matrices keeps every window contiguous
        for d in std::iter::once(0).chain(order) {
            let next = match d {
                0 => (w.b > gb).then(|| Block {
                    b: halve(w.b, gb),
                    ..w
                }),
                1 => (w.m > gm).then(|| Block {
                    m: halve(w.m, gm),
                    ..w
                }),
                // a 16-bit output split along N is written packed: never with K split
                2 => (w.n > gn && (sliced || s.half == 0 || (f.n.is_multiple_of(2) && w.k == f.k)))
                    .then(|| Block {
                        n: halve(w.n, gn),
                        ..w
                    }),
                _ => (w.k > 4 && (sliced || s.half == 0 || w.n == f.n)).then(|| Block {
                    k: halve(w.k, 4),
                    ..w
                }),
            };
            if let Some(nw) = next.filter(|nw| *nw != w) {
                w = nw;
                moved = true;
                break;
            }
        }
        if !moved {
            break;
        }
    }
    Err(WgpuError::Unsupported(format!(
        "dot_general [{} x {} x {}, batch {}]: no blocking fits one storage binding of {:.1} \
         MiB (max_storage_buffer_binding_size): not even a block of one row, 4 columns and 4 \
         terms of K (with its scratch)",
        f.m,
        f.n,
        f.k,
        f.b,
        max as f64 / 1048576.0
    )))
}

/// The element bytes of a float operand (bf16, f16: 2).
fn ebytes(d: DType) -> u64 {
    crate::buffer::elem_bytes(d)
}

/// The [batch, rows, cols] single-run strides of operand `v` (row-major values: every group
/// of adjacent dims is one).
fn runs(b: &Builder, v: usize, groups: [&[usize]; 3]) -> Result<[usize; 3]> {
    let shape = b.shape(v);
    let st = strides(shape);
    let mut out = [0; 3];
    for (i, g) in groups.iter().enumerate() {
        out[i] = group_stride(shape, &st, g).ok_or_else(|| {
            WgpuError::Unsupported(format!(
                "dot_general over {shape:?} larger than one storage binding with dims {g:?} that \
                 are not one run: blocks of it are not windows of its buffer"
            ))
        })?;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub fn dot(
    b: &mut Builder,
    dd: &DotDims,
    l: usize,
    r: usize,
    out: usize,
    free: [&[usize]; 2],
    [batch, m, n, k]: [usize; 4],
    half: u32,
) -> Result<()> {
    let s = Shape {
        full: Block { b: batch, m, n, k },
        sa: runs(b, l, [&dd.lhs_batch, free[0], &dd.lhs_contract])?,
        sb: runs(b, r, [&dd.rhs_batch, &dd.rhs_contract, free[1]])?,
        ea: ebytes(b.dtype(l)),
        eb: ebytes(b.dtype(r)),
        eo: ebytes(b.dtype(out)),
        half,
    };
    let align = b.offset_align();
    let w = choose(&s, b.max_binding, align, false)
        .or_else(|_| choose(&s, b.max_binding, align, true))?;
    if w.b > MAX_GROUPS
        || w.m.div_ceil(8) > MAX_GROUPS
        || (w.n.div_ceil(4)).div_ceil(64) > MAX_GROUPS
    {
        return Err(WgpuError::Unsupported(format!(
            "dot_general block {w:?}: more than 65535 workgroups along a side"
        )));
    }
    b.windowed = true;
    let binds: Result<(Bind, Bind, Bind)> = (|| Ok((b.buf(l)?, b.buf(r)?, b.out(out)?)))();
    b.windowed = false;
    let (la, rb, o) = binds?;
    let o_st = s.o_strides();
    for b0 in (0..batch).step_by(w.b) {
        let wb = w.b.min(batch - b0);
        for m0 in (0..m).step_by(w.m) {
            let wm = w.m.min(m - m0);
            for n0 in (0..n).step_by(w.n) {
                let wn = w.n.min(n - n0);
                let ostart = b0 * o_st[0] + m0 * o_st[1] + n0;
                let (owin, resid) = b.span_window(ostart, Shape::span(o_st, [wb, wm, wn]), s.eo);
                let acc = s.acc(w);
                let accb = match acc {
                    true => b.scratch(ACC, (4 * wb * wm * wn) as u64),
                    false => Bind::Dummy,
                };
                for k0 in (0..k).step_by(w.k) {
                    let wk = w.k.min(k - k0);
                    let (kp, np) = (wk.next_multiple_of(4), wn.next_multiple_of(4));
                    let ablk = stage(b, la, l, s.sa, [b0, m0, k0], [wb, wm, wk], [wm, kp], A_BLK)?;
                    let bblk = stage(b, rb, r, s.sb, [b0, k0, n0], [wb, wk, wn], [kp, np], B_BLK)?;
                    let first = k0 == 0;
                    let packed = || {
                        Kernel::new(Module::GemmBlockedBf16, "gemm_blocked", 2).with("HALF", half)
                    };
                    let (kern, dst, win, ost, obst) = match (half != 0, acc) {
                        (false, _) => (
                            Kernel::new(Module::GemmBlocked, "gemm_blocked", 2),
                            o,
                            Some(owin),
                            n,
                            m * n,
                        ),
                        (true, false) => (packed().with("PACKED_OUT", 1), o, Some(owin), n, m * n),
                        (true, true) => (
                            packed().with("PACKED_OUT", 0).with("ROUND", 0),
                            accb,
                            None,
                            wn,
                            wm * wn,
                        ),
                    };
                    let kern = kern.with("ACC", u32::from(!first));
                    let p = [
                        wm,
                        wn,
                        kp / 4,
                        wm * kp / 4,
                        kp / 4,
                        kp * np / 4,
                        np / 4,
                        ost,
                        obst,
                        0,
                        if acc { 0 } else { resid },
                    ];
                    let p = p.into_iter().map(u32_of).collect::<Result<Vec<u32>>>()?;
                    let groups = [
                        (np / 4).div_ceil(64) as u32,
                        wm.div_ceil(8) as u32,
                        wb as u32,
                    ];
                    b.push_windows(
                        kern,
                        vec![dst, ablk, bblk],
                        vec![win, None, None],
                        &p,
                        groups,
                    )?;
                }
                if acc {
                    // a block of whole rows of the output: one run, or one per matrix when M
                    // is split; else (sliced blocks) one per row
                    let (runs, len) = match (wn == n, wm == m) {
                        (true, true) => (1, wb * wm * n),
                        (true, false) => (wb, wm * n),
                        (false, _) => (wb * wm, wn),
                    };
                    for i in 0..runs {
                        let start = match wn == n {
                            true => ostart + i * m * n,
                            false => ostart + i / wm * m * n + i % wm * n,
                        };
                        let (win, first) = b.span_window(start, len, 2);
                        let kp =
                            Kernel::new(Module::Convert, "pack_half_run", 1).with("HALF", half);
                        let mut p = vec![0u32; 8];
                        p[0] = u32_of(len)?;
                        p[1] = u32_of(first)?;
                        p[2] = u32_of(i * len)?;
                        let words = (first + len).div_ceil(2) - first / 2;
                        let g = crate::plan::grid(words.div_ceil(crate::plan::WG))?;
                        b.push_windows(kp, vec![o, accb], vec![Some(win), None], &p, g)?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Copies the [w0, w1, w2] block at `at` of operand `v` (bound as `src`, single-run strides
/// `st`) into scratch buffer `k` as a contiguous [w0, padded] stack, zero-padded, read
/// through the window of `src` that the block spans; a bf16 or f16 block comes out packed
/// (scratch `k + 2`), as gemm_blocked_bf16 reads it.
#[allow(clippy::too_many_arguments)]
fn stage(
    b: &mut Builder,
    src: Bind,
    v: usize,
    st: [usize; 3],
    at: [usize; 3],
    w: [usize; 3],
    padded: [usize; 2],
    k: usize,
) -> Result<Bind> {
    let h = crate::buffer::half(b.dtype(v));
    let eb = ebytes(b.dtype(v));
    let total = w[0] * padded[0] * padded[1];
    let dst = b.scratch(k, (total * 4) as u64);
    if [w[1], w[2]] != padded {
        let fill = Kernel::new(Module::Convert, "fill", 0);
        b.push_elementwise(fill, dst, &[], total, &[1])?;
    }
    let dst_st = [padded[0] * padded[1], padded[1], 1];
    let slack = b.offset_align() + 4;
    let max = b.max_binding;
    let mut parts = vec![];
    slices(
        st,
        [0; 3],
        w,
        &|sp| eb * sp as u64 + slack <= max,
        &mut parts,
    );
    for (d, sw) in parts {
        let at: [usize; 3] = std::array::from_fn(|i| at[i] + d[i]);
        let start: usize = (0..3).map(|i| at[i] * st[i]).sum();
        let (win, resid) = b.span_window(start, Shape::span(st, sw), eb);
        let to: usize = (0..3).map(|i| d[i] * dst_st[i]).sum();
        copy_from_window(b, src, win, dst, &sw, &st, &dst_st, [resid, to], 1, h)?;
    }
    if h == 0 {
        return Ok(dst);
    }
    let packed = b.scratch(k + 2, (total.div_ceil(2) * 4) as u64);
    b.pack(dst, packed, total, h)?;
    Ok(packed)
}

/// The slices (offset in the block, sizes) of a block `w` at `at` over strides `st` whose
/// spans fit (`fits(elements)`): the whole block when it fits; else runs along its most spread
/// dim, as many indices each as fit, or (none fitting) one index each, sliced further.
fn slices(
    st: [usize; 3],
    at: [usize; 3],
    w: [usize; 3],
    fits: &dyn Fn(usize) -> bool,
    out: &mut Vec<([usize; 3], [usize; 3])>,
) {
    let Some(d) = (0..3)
        .filter(|&i| w[i] > 1)
        .max_by_key(|&i| (w[i] - 1) * st[i])
        .filter(|_| !fits(Shape::span(st, w)))
    else {
        out.push((at, w));
        return;
    };
    let with = |c: usize| {
        let mut sw = w;
        sw[d] = c;
        sw
    };
    // the most indices along d whose slice fits (0: not even one)
    let (mut lo, mut hi) = (0, w[d] - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        match fits(Shape::span(st, with(mid))) {
            true => lo = mid,
            false => hi = mid - 1,
        }
    }
    for i in (0..w[d]).step_by(lo.max(1)) {
        let mut a = at;
        a[d] += i;
        match lo {
            0 => slices(st, a, with(1), fits, out),
            _ => out.push((a, with(lo.min(w[d] - i)))),
        }
    }
}
