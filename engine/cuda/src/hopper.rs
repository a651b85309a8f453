//! The host side of the Hopper GEMM (kernels/src/matmul/gemm_wgmma_sm90a.ptx): when a bf16
//! dot_general runs on it, the tile and grid geometry, and the TMA tensor maps of its operands
//! (as plain data: [`TmaSpec`]; the driver encodes them with cuTensorMapEncodeTiled at run time,
//! when the operands' addresses are known). Nothing here needs a device; crate::emulate_hopper
//! models the kernel's indexing on these values and tests check it against a plain GEMM.

/// C rows and columns per CTA, and k per pipeline stage.
pub const BM: usize = 128;
pub const BN: usize = 128;
pub const BK: usize = 64;
/// Pipeline stages (each 32 KiB: a 128 x 64 tile of A and one of B).
pub const STAGES: usize = 4;
/// A producer warpgroup and two consumer warpgroups (64 rows of C each).
pub const THREADS: u32 = 384;
pub const STAGE_BYTES: u32 = 32768;
/// Dynamic shared memory: the stages, slack to align them to 1024 bytes (the 128-byte
/// swizzle's atom), 8 mbarriers.
pub const SMEM_BYTES: u32 = STAGES as u32 * STAGE_BYTES + 1024 + 64;
const _: () = assert!(
    SMEM_BYTES <= 227 * 1024,
    "over Hopper's 227 KiB of shared memory per block"
);

/// wgmma matrix descriptor constants (all but the start address), as the PTX ors them in:
/// layout 1 (128-byte swizzle) in bits 62-63, stride byte offset 1024 >> 4 in bits 32-45,
/// leading byte offset >> 4 in bits 16-29: unused (1) for K-major tiles, 8192 (the next
/// 64-element box) for MN-major ones.
pub const DESC_K_MAJOR: u64 = (1 << 62) | ((1024 >> 4) << 32) | (1 << 16);
pub const DESC_MN_MAJOR: u64 = (1 << 62) | ((1024 >> 4) << 32) | ((8192 >> 4) << 16);
/// Bytes the descriptor's start advances per k16 step: 16 elements along a 128-byte row, or 16
/// rows of 128 bytes.
pub const KSTEP_K_MAJOR: u32 = 32;
pub const KSTEP_MN_MAJOR: u32 = 2048;

/// One operand's tensor map: bf16, rank 3 (innermost first), 128-byte swizzle, out-of-range
/// elements read as zero, element strides 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmaSpec {
    pub dims: [u64; 3],
    /// Byte strides of dims 1 and 2.
    pub strides: [u64; 2],
    pub boxes: [u32; 3],
}

impl TmaSpec {
    /// Bytes one copy of the box writes (out-of-range elements included).
    pub fn box_bytes(&self) -> u32 {
        self.boxes.iter().product::<u32>() * 2
    }
}

/// The spec of an operand whose non-k extent is `mn` (m for A, n for B): `kc` when its unit
/// stride is along k, `ld` its other (row) stride, `batch_st` its batch stride (0: shared),
/// all in elements. None when TMA cannot read it in place (a byte stride not a multiple of
/// 16, or extents past the driver's limits).
pub fn tma_spec(
    kc: bool,
    mn: usize,
    k: usize,
    ld: usize,
    batch: usize,
    batch_st: usize,
) -> Option<TmaSpec> {
    let fits = |x: usize| x.is_multiple_of(8) && (2 * x as u64) < (1 << 40);
    if !fits(ld) || !(batch_st == 0 || fits(batch_st)) || mn == 0 || k == 0 {
        return None;
    }
    let (inner, outer) = if kc { (k, mn) } else { (mn, k) };
    if inner > u32::MAX as usize || outer > u32::MAX as usize || batch > u32::MAX as usize {
        return None;
    }
    // an operand shared by every batch is read at batch 0; its (unused) batch stride is any
    // legal one, here the matrix's size rounded to 16 bytes
    let (nb, bst) = if batch_st == 0 {
        (1, (2 * ld * outer).next_multiple_of(16) as u64)
    } else {
        (batch, 2 * batch_st as u64)
    };
    let boxes = if kc {
        [BK as u32, BM as u32, 1]
    } else {
        [64, BK as u32, 1]
    };
    Some(TmaSpec {
        dims: [inner as u64, outer as u64, nb as u64],
        strides: [2 * ld as u64, bst],
        boxes,
    })
}

/// The kernel of a layout pair: `gemm_wgmma_bf16_XY`, X for A and Y for B, `k` when k is the
/// contiguous dim.
pub fn entry(a_kc: bool, b_kc: bool) -> &'static str {
    match (a_kc, b_kc) {
        (true, true) => "gemm_wgmma_bf16_kk",
        (true, false) => "gemm_wgmma_bf16_km",
        (false, true) => "gemm_wgmma_bf16_mk",
        (false, false) => "gemm_wgmma_bf16_mm",
    }
}

/// Every Hopper GEMM entry.
pub const ENTRIES: [&str; 4] = [
    "gemm_wgmma_bf16_kk",
    "gemm_wgmma_bf16_km",
    "gemm_wgmma_bf16_mk",
    "gemm_wgmma_bf16_mm",
];

/// Whether the Hopper kernel takes a GEMM with A strides (batch, m, k) and B strides
/// (batch, k, n), in elements (a size-1 group's stride is 0): both operands readable by TMA
/// in place, one of each operand's dims unit-stride. Returns each operand's spec and whether
/// its contiguous dim is k. (bf16 and k > 0 are the caller's to check: the kernel's first
/// wgmma overwrites the accumulators, so k = 0 is zeroed by the host.)
pub fn specs(
    sa: [usize; 3],
    sb: [usize; 3],
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
) -> Option<(TmaSpec, bool, TmaSpec, bool)> {
    // a single row (or column) is read once: any legal stride does
    let free = |extent: usize, st: usize| if extent == 1 { 8 } else { st };
    let op = |bst: usize, mn_st: usize, k_st: usize, mn: usize| -> Option<(TmaSpec, bool)> {
        let kc = if k_st == 1 && (mn_st != 1 || mn == 1) {
            true
        } else if mn_st == 1 {
            false
        } else {
            return None;
        };
        let ld = if kc { free(mn, mn_st) } else { free(k, k_st) };
        let bst = if batch <= 1 { 0 } else { bst };
        Some((tma_spec(kc, mn, k, ld, batch, bst)?, kc))
    };
    let (ta, akc) = op(sa[0], sa[1], sa[2], m)?;
    let (tb, bkc) = op(sb[0], sb[2], sb[1], n)?;
    Some((ta, akc, tb, bkc))
}

/// The grid: (n tiles, m tiles, batch entries).
pub fn grid(m: usize, n: usize, nb: usize) -> [u32; 3] {
    [n.div_ceil(BN) as u32, m.div_ceil(BM) as u32, nb as u32]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_constants_are_in_the_ptx() {
        let m = gidd_kernels::ptx::module_of("gemm_wgmma_bf16_kk").unwrap();
        let desc = format!(
            "// DESC kmajor {DESC_K_MAJOR:#018x} mnmajor {DESC_MN_MAJOR:#018x} kstep {KSTEP_K_MAJOR} {KSTEP_MN_MAJOR}"
        );
        assert!(
            m.source.contains(&desc),
            "the PTX's DESC line is not {desc}"
        );
        for (kc, e) in [(true, "_k"), (false, "_m")] {
            let (d, step) = if kc {
                (DESC_K_MAJOR, KSTEP_K_MAJOR)
            } else {
                (DESC_MN_MAJOR, KSTEP_MN_MAJOR)
            };
            for x in ["k", "m"] {
                let (ea, eb) = (
                    format!("gemm_wgmma_bf16{e}{x}"),
                    format!("gemm_wgmma_bf16_{x}{}", &e[1..]),
                );
                let body = |name: &str| {
                    m.source
                        .split(&format!(".entry {name}("))
                        .nth(1)
                        .unwrap()
                        .split(".visible")
                        .next()
                        .unwrap()
                        .to_string()
                };
                assert!(
                    body(&ea).contains(&format!("or.b64 %da, %da, {d:#018x};")),
                    "{ea}"
                );
                assert!(
                    body(&ea).contains(&format!("mad.lo.u32 %x, %kk, {step}, %ast;")),
                    "{ea}"
                );
                assert!(
                    body(&eb).contains(&format!("or.b64 %db, %db, {d:#018x};")),
                    "{eb}"
                );
                assert!(
                    body(&eb).contains(&format!("mad.lo.u32 %x, %kk, {step}, %sB;")),
                    "{eb}"
                );
            }
        }
        assert!(m.source.contains(&format!(
            "expect_tx.shared::cta.b64 %st, [%fb], {STAGE_BYTES};"
        )));
    }

    #[test]
    fn tensor_maps_of_each_layout() {
        // A [3][100][64] k-contiguous, batched
        let t = tma_spec(true, 100, 64, 64, 3, 6400).unwrap();
        assert_eq!(t.dims, [64, 100, 3]);
        assert_eq!(t.strides, [128, 12800]);
        assert_eq!(t.boxes, [64, 128, 1]);
        assert_eq!(t.box_bytes(), STAGE_BYTES / 2);
        // B [k=37][n=24] n-contiguous, shared by the batches: two 64 x 64 boxes per stage
        let t = tma_spec(false, 24, 37, 24, 5, 0).unwrap();
        assert_eq!(t.dims, [24, 37, 1]);
        assert_eq!(t.strides[0], 48);
        assert_eq!(t.strides[1] % 16, 0);
        assert_eq!(2 * t.box_bytes(), STAGE_BYTES / 2);
        // a row stride of 100 bf16 (200 bytes) is not a multiple of 16 bytes: refused
        assert!(tma_spec(true, 8, 100, 100, 1, 0).is_none());
        assert!(tma_spec(true, 8, 64, 64, 2, 12).is_none());
    }

    #[test]
    fn grid_covers_the_output() {
        assert_eq!(grid(1, 1, 1), [1, 1, 1]);
        assert_eq!(grid(129, 300, 7), [3, 2, 7]);
        assert_eq!(SMEM_BYTES, 132160);
    }
}
