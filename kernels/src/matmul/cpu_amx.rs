//! bf16 GEMM on Intel AMX tiles (`tdpbf16ps`): f32 accumulation, f32 output.
//!
//! Why: on CPUs with AMX (Sapphire Rapids and later) `vdpbf16ps` issues on one port
//! and runs no faster than f32 FMAs, while one `tdpbf16ps` does 16·16·32 multiply-adds.
//! The instructions are emitted with inline `asm!` (the AMX intrinsics are not stable
//! Rust); the tile registers are touched by nothing else in the process.
//!
//! Layout: op(A) is packed per block of 32 rows into k-chunks of two 16×32 bf16 tiles
//! (rows contiguous in k); op(B) into tiles of 16 k-pairs × 16 columns × 2 ("VNNI":
//! the two bf16 of a pair side by side), zero-padded to 32 rows / 32 columns / 32 k.
//! The microkernel keeps a 32×32 block of C in tiles 0-3, A in 4-5 and B in 6-7.
//!
//! Linux only: the process must ask the kernel for the tile state (arch_prctl
//! ARCH_REQ_XCOMP_PERM); `available()` does that once and says whether it was granted.

use super::GemmShape;
use crate::convert::bf16_bits;
use crate::simd::vector::SendPtr;
use half::bf16;
use rayon::prelude::*;
use std::arch::asm;
use std::sync::OnceLock;

/// Elements of one 16×32 bf16 tile (1 KiB).
const TILE: usize = 16 * 32;

/// Whether AMX-BF16 can run here: the CPU has it, the OS granted the tile state, and
/// `GIDD_NO_AMX` is not set (to measure or test the other paths).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        if std::env::var_os("GIDD_NO_AMX").is_some() {
            return false;
        }
        let l7 = core::arch::x86_64::__cpuid_count(7, 0);
        let cpu = (l7.edx >> 22) & 1 == 1 && (l7.edx >> 24) & 1 == 1; // amx-bf16, amx-tile
        cpu && request_tile_state()
    })
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let r: i64;
    // SAFETY: arch_prctl (158) with this request only changes this process's permitted
    // XSAVE features; it reads and writes no memory of ours.
    unsafe {
        asm!("syscall", inlateout("rax") 158i64 => r, in("rdi") ARCH_REQ_XCOMP_PERM,
             in("rsi") XFEATURE_XTILEDATA, lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    r == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// Palette 1, every tile 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

fn config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1;
    for t in 0..8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
    }
    TileConfig(c)
}

/// Strides of op(X)[row, col] in a row-major matrix stored [rows, cols] or, transposed, [cols, rows].
#[derive(Clone, Copy)]
struct View {
    row: usize,
    col: usize,
}

impl View {
    fn of(trans: bool, rows: usize, cols: usize) -> View {
        if trans {
            View { row: 1, col: rows }
        } else {
            View { row: cols, col: 1 }
        }
    }
}

/// Packs rows [r0, r0 + 32) of op(A) (m×k) into `kt` chunks of two tiles, zero-padded.
/// Reads run along whichever dimension is contiguous in memory.
fn pack_a(dst: &mut [u16], a: &[u16], v: View, m: usize, k: usize, r0: usize, kt: usize) {
    dst[..kt * 2 * TILE].fill(0);
    let rows = 32.min(m - r0);
    if v.col == 1 {
        // row-major op(A): each row is contiguous in k, copied in 32-element runs
        for i in 0..rows {
            let (t, r) = (i / 16, i % 16);
            let src = &a[(r0 + i) * v.row..(r0 + i) * v.row + k];
            for (c, chunk) in src.chunks(32).enumerate() {
                let o = (c * 2 + t) * TILE + r * 32;
                dst[o..o + chunk.len()].copy_from_slice(chunk);
            }
        }
    } else {
        // transposed: for each p the block's rows are contiguous. Full 32×32 chunks go
        // through registers (pairs of k rows interleaved, then a 16×16 transpose of the
        // 32-bit pairs); the ragged rest element by element.
        let mut p_start = 0;
        if rows == 32 && std::arch::is_x86_feature_detected!("avx512bw") {
            for kc in 0..k / 32 {
                // SAFETY: avx512f/bw detected; rows r0..r0+32 and k rows kc*32..kc*32+32
                // lie inside `a` (stored [k, m]); the chunk's two tiles lie inside `dst`.
                unsafe { pack_a_t_chunk(dst.as_mut_ptr(), a, m, r0, kc) };
            }
            p_start = k / 32 * 32;
        }
        for p in p_start..k {
            let src = &a[p * v.col + r0..p * v.col + r0 + rows];
            let base = (p / 32) * 2 * TILE + p % 32;
            for (i, &x) in src.iter().enumerate() {
                dst[base + (i / 16) * TILE + (i % 16) * 32] = x;
            }
        }
    }
}

/// One full 32×32 chunk of a transposed A (stored [k, m]) into its two tiles.
///
/// # Safety
/// AVX-512F/BW; `r0 + 32 <= m`, `(kc + 1) * 32 <= k`, `a` holds k·m elements and `dst`
/// at least (kc + 1)·2 tiles.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_a_t_chunk(dst: *mut u16, a: &[u16], m: usize, r0: usize, kc: usize) {
    use std::arch::x86_64::*;
    debug_assert!(a.len() >= (kc * 32 + 32) * m && r0 + 32 <= m);
    for t in 0..2 {
        let i0 = r0 + 16 * t;
        let mut v = [_mm512_setzero_si512(); 16];
        for (j, vj) in v.iter_mut().enumerate() {
            let p = kc * 32 + 2 * j;
            let lo = _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                a.as_ptr().add(p * m + i0) as *const __m256i
            ));
            let hi = _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                a.as_ptr().add((p + 1) * m + i0) as *const __m256i
            ));
            // lane i: (a[p][i0 + i], a[p + 1][i0 + i]), k even in the low half
            *vj = _mm512_or_si512(lo, _mm512_slli_epi32::<16>(hi));
        }
        super::cpu_avx512::transpose16(&mut v);
        for (i, vi) in v.iter().enumerate() {
            _mm512_storeu_si512(dst.add((kc * 2 + t) * TILE + i * 32) as *mut __m512i, *vi);
        }
    }
}

/// Packs columns [16 g, 16 g + 16) of op(B) (k×n) into the group's `kt` tiles
/// [k chunk][16 pairs][16 columns][2], zero-padded.
fn pack_b_group(dst: &mut [u16], b: &[u16], v: View, k: usize, n: usize, g: usize) {
    dst.fill(0);
    let (j0, cols) = (g * 16, 16.min(n.saturating_sub(g * 16)));
    if cols == 0 {
        return; // a padding group
    }
    let at = |p: usize, jj: usize| (p / 32) * TILE + ((p % 32) / 2) * 32 + jj * 2 + p % 2;
    if v.col == 1 {
        // row-major op(B): each k row's 16 columns are contiguous
        for p in 0..k {
            let src = &b[p * v.row + j0..p * v.row + j0 + cols];
            for (jj, &x) in src.iter().enumerate() {
                dst[at(p, jj)] = x;
            }
        }
    } else {
        // transposed: each column is contiguous in k
        for jj in 0..cols {
            let src = &b[(j0 + jj) * v.col..(j0 + jj) * v.col + k];
            for (p, &x) in src.iter().enumerate() {
                dst[at(p, jj)] = x;
            }
        }
    }
}

/// C[32×32 block] = A block · B column pair, over `kt` k-chunks; writes the valid
/// `rows`×`cols` part at `c` (row stride `ldc`).
///
/// # Safety
/// AMX available and this thread's tile configuration loaded; `ap` holds kt·2 tiles,
/// `bp0`/`bp1` kt tiles each; `c` valid for `rows` rows of `cols` f32 at stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    ap: *const u16,
    bp0: *const u16,
    bp1: *const u16,
    kt: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack)
    );
    let s = 64usize;
    for kc in 0..kt {
        let a0 = ap.add(kc * 2 * TILE);
        let a1 = a0.add(TILE);
        let b0 = bp0.add(kc * TILE);
        let b1 = bp1.add(kc * TILE);
        asm!(
            "tileloadd tmm4, [{a0} + {s}*1]",
            "tileloadd tmm5, [{a1} + {s}*1]",
            "tileloadd tmm6, [{b0} + {s}*1]",
            "tileloadd tmm7, [{b1} + {s}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a0, a1 = in(reg) a1, b0 = in(reg) b0, b1 = in(reg) b1, s = in(reg) s,
            options(nostack, readonly),
        );
    }
    // Full tiles go straight to C; edge tiles through a buffer.
    let mut tmp = [0f32; 256];
    macro_rules! store {
        ($t:literal, $r0:expr, $c0:expr) => {{
            let (r0, c0): (usize, usize) = ($r0, $c0);
            if r0 < rows && c0 < cols {
                let (nr, nc) = ((rows - r0).min(16), (cols - c0).min(16));
                let dst = c.add(r0 * ldc + c0);
                if nr == 16 && nc == 16 {
                    asm!(concat!("tilestored [{d} + {s}*1], tmm", $t),
                         d = in(reg) dst, s = in(reg) ldc * 4, options(nostack));
                } else {
                    asm!(concat!("tilestored [{d} + {s}*1], tmm", $t),
                         d = in(reg) tmp.as_mut_ptr(), s = in(reg) 64usize, options(nostack));
                    for r in 0..nr {
                        std::ptr::copy_nonoverlapping(tmp.as_ptr().add(r * 16), dst.add(r * ldc), nc);
                    }
                }
            }
        }};
    }
    store!("0", 0, 0);
    store!("1", 0, 16);
    store!("2", 16, 0);
    store!("3", 16, 16);
}

/// `C_b = op(A_b) · op(B_b)` on AMX tiles (see `super` for the shapes). Callers check
/// `available()`.
pub fn gemm_bf16_amx(s: &GemmShape, a: &[bf16], b: &[bf16], c: &mut [f32]) {
    let (m, n, k) = (s.m, s.n, s.k);
    if s.batch == 0 || m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..s.batch * m * n].fill(0.0);
        return;
    }
    assert!(available(), "gemm_bf16_amx without AMX");
    let (a, b) = (bf16_bits(a), bf16_bits(b));
    let kt = k.div_ceil(32);
    let ng = n.div_ceil(32) * 2; // 16-column groups, even
    let (va, vb) = (View::of(s.trans_a, m, k), View::of(s.trans_b, k, n));
    let b_mats = if s.b_broadcast { 1 } else { s.batch };
    // The packed B is kept per thread: a fresh multi-MiB allocation every call is mostly
    // page faults. (Every packed element is written before it is read.)
    let mut bp_buf = take_scratch(b_mats * ng * kt * TILE);
    let bp = &mut bp_buf[..b_mats * ng * kt * TILE];
    bp.par_chunks_mut(kt * TILE)
        .enumerate()
        .for_each(|(t, dst)| {
            let (bi, g) = (t / ng, t % ng);
            pack_b_group(dst, &b[bi * k * n..(bi + 1) * k * n], vb, k, n, g)
        });
    let blocks = m.div_ceil(32);
    let cp = SendPtr(c.as_mut_ptr());
    assert!(c.len() >= s.batch * m * n);
    let bp = &*bp;
    (0..s.batch * blocks).into_par_iter().for_each_init(
        || vec![0u16; kt * 2 * TILE],
        |ap, task| {
            let (bi, rb) = (task / blocks, task % blocks);
            let r0 = rb * 32;
            pack_a(ap, &a[bi * m * k..(bi + 1) * m * k], va, m, k, r0, kt);
            let bpm = &bp[if s.b_broadcast { 0 } else { bi } * ng * kt * TILE..];
            let cfg = config();
            let rows = 32.min(m - r0);
            // SAFETY: AMX is available (asserted); the tile config is loaded on this
            // thread before use and released after; the packed buffers hold the tiles
            // `block` reads; this task's C rows [r0, r0 + rows) of batch entry bi are
            // inside `c` and written by no other task.
            unsafe {
                asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
                let cb = cp.get().add(bi * m * n + r0 * n);
                for g in (0..ng).step_by(2) {
                    let c0 = g * 16;
                    block(
                        ap.as_ptr(),
                        bpm.as_ptr().add(g * kt * TILE),
                        bpm.as_ptr().add((g + 1) * kt * TILE),
                        kt,
                        cb.add(c0),
                        n,
                        rows,
                        n.saturating_sub(c0).min(32),
                    );
                }
                asm!("tilerelease", options(nostack));
            }
        },
    );
    give_scratch(bp_buf);
}

/// Measured AMX bf16 peak of this machine in GFLOP/s (the denominator of the bf16
/// benchmark rows when this path runs): every thread issues independent `tdpbf16ps`
/// into four accumulators for ~`seconds`. 0 when AMX is not available.
pub fn measure_peak(seconds: f64) -> f64 {
    if !available() {
        return 0.0;
    }
    let threads = rayon::current_num_threads();
    let per: Vec<f64> = (0..threads)
        .into_par_iter()
        .map(|_| {
            let zeros = vec![0u16; 4 * TILE];
            let cfg = config();
            let reps = 4096usize;
            let t = std::time::Instant::now();
            let mut ops = 0usize;
            // SAFETY: AMX available; the config is loaded before and released after; the
            // loads read `zeros` (4 tiles).
            unsafe {
                asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
                let z = zeros.as_ptr();
                asm!(
                    "tileloadd tmm4, [{z} + {s}*1]",
                    "tileloadd tmm5, [{z} + {s}*1]",
                    "tileloadd tmm6, [{z} + {s}*1]",
                    "tileloadd tmm7, [{z} + {s}*1]",
                    z = in(reg) z, s = in(reg) 64usize, options(nostack, readonly),
                );
                while t.elapsed().as_secs_f64() < seconds {
                    for _ in 0..reps {
                        asm!(
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            options(nostack, nomem),
                        );
                    }
                    ops += 4 * reps;
                }
                asm!("tilerelease", options(nostack));
            }
            ops as f64 * (16 * 16 * 32 * 2) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    per.iter().sum()
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<Vec<u16>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer of at least `n` elements from this thread's pool (contents arbitrary).
fn take_scratch(n: usize) -> Vec<u16> {
    let mut v = SCRATCH.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    if v.len() < n {
        v.resize(n, 0);
    }
    v
}

fn give_scratch(v: Vec<u16>) {
    SCRATCH.with(|s| s.borrow_mut().push(v));
}
