//! Cache blocking chosen at run time from the cache sizes this CPU reports.
//!
//! Every kernel's `mc`/`kc`/`nc` were measured best on [`CacheSizes::REFERENCE`] (a 2-core
//! Zen 4: 1 MiB L2 per core, 16 MiB of L3 per core). On another CPU the A block (MC×KC,
//! reused from L2 by every B micro-panel) scales with the L2, and the B block (KC×NC,
//! reused from L3 by every A block) with the per-core L3 share, each keeping the fraction of
//! its cache that was best on the reference. KC, which sets how long a C tile stays in
//! registers, stays as tuned unless the two micro-panels of one tile would take more than
//! half of the L2 (a small-L2 CPU), where it halves until they fit.
//!
//! On the reference machine this reproduces the tuned blocks exactly (tested), so the
//! numbers measured there still hold; elsewhere, e.g. a Sapphire Rapids core (2 MiB L2),
//! the A block doubles instead of leaving half of the L2 unused.

use super::cpu::{gemm_blocked, COut, Convert, Kernel, Packed};
use super::GemmShape;
pub use crate::simd::cache::{cache_sizes, CacheSizes};

/// Block sizes in elements: rows of A, depth (k values), columns of B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocks {
    pub mc: usize,
    pub kc: usize,
    pub nc: usize,
}

/// Scaling is bounded to this factor either way: a VM or sysfs reporting a nonsense size
/// cannot push the blocks far from the measured ones.
const MAX_SCALE: f64 = 4.0;
/// Smallest KC the small-L2 rule goes down to (C tiles reloaded at most every 256 steps).
const MIN_KC: usize = 256;

fn scale(have: usize, reference: usize) -> f64 {
    (have as f64 / reference as f64).clamp(1.0 / MAX_SCALE, MAX_SCALE)
}

impl<P: Packed> Kernel<P> {
    /// This kernel's blocks for a CPU with caches `c`: the tuned ones on the reference.
    pub(crate) fn blocks(&self, c: &CacheSizes) -> Blocks {
        let r = CacheSizes::REFERENCE;
        let elt = std::mem::size_of::<P>();
        let mut kc = self.kc;
        while kc > MIN_KC && kc * (self.mr + self.nr) * elt > c.l2 / 2 {
            kc /= 2;
        }
        kc = kc.next_multiple_of(P::KU);
        let a_bytes = (self.mc * self.kc * elt) as f64 * scale(c.l2, r.l2);
        let mc = ((a_bytes / (kc * elt) as f64) as usize / self.mr * self.mr).max(self.mr);
        // Without an L3 the B block streams from memory either way: keep its tuned size.
        let l3 = if c.l3 == 0 { r.l3 } else { c.l3 };
        let b_bytes = (self.kc * self.nc * elt) as f64 * scale(l3, r.l3);
        let nc = ((b_bytes / (kc * elt) as f64) as usize / self.nr * self.nr).max(self.nr);
        Blocks { mc, kc, nc }
    }
}

/// The batched driver ([`gemm_blocked`]) on this CPU's blocks.
pub(crate) fn gemm_generic<S, P, C>(kern: &Kernel<P>, s: &GemmShape, a: &[S], b: &[S], c: COut<'_>)
where
    S: Copy + Sync,
    P: Packed,
    C: Convert<S, P>,
{
    gemm_blocked::<S, P, C>(kern, kern.blocks(&cache_sizes()), s, a, b, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    /// (name, tuned blocks, blocks for given caches) of one kernel.
    type Case = (&'static str, Blocks, Box<dyn Fn(&CacheSizes) -> Blocks>);

    fn kernels() -> Vec<Case> {
        let mut v: Vec<Case> = vec![];
        fn tuned<P: Packed>(k: &Kernel<P>) -> Blocks {
            Blocks {
                mc: k.mc,
                kc: k.kc,
                nc: k.nc,
            }
        }
        let s: &'static Kernel<f32> = &super::super::cpu::SCALAR_F32;
        v.push(("scalar", tuned(s), Box::new(|c| s.blocks(c))));
        #[cfg(target_arch = "x86_64")]
        {
            let f: &'static Kernel<f32> = &super::super::cpu_avx512::F32;
            let h: &'static Kernel<bf16> = &super::super::cpu_avx512::BF16;
            let a: &'static Kernel<f32> = &super::super::cpu_avx2::F32;
            v.push(("avx512 f32", tuned(f), Box::new(|c| f.blocks(c))));
            v.push(("avx512 bf16", tuned(h), Box::new(|c| h.blocks(c))));
            v.push(("avx2 f32", tuned(a), Box::new(|c| a.blocks(c))));
        }
        v
    }

    #[test]
    fn blocks_on_reference_caches_are_the_tuned_ones() {
        for (name, tuned, blocks) in kernels() {
            assert_eq!(blocks(&CacheSizes::REFERENCE), tuned, "{name}");
        }
    }

    #[test]
    fn blocks_follow_the_caches_within_bounds() {
        let spr = CacheSizes {
            l1d: 48 << 10,
            l2: 2 << 20,
            l3: 2 << 20,
        };
        let small = CacheSizes {
            l1d: 32 << 10,
            l2: 256 << 10,
            l3: 1 << 20,
        };
        let absurd = CacheSizes {
            l1d: 1,
            l2: 1,
            l3: 1 << 40,
        };
        for (name, tuned, blocks) in kernels() {
            let b = blocks(&spr);
            // A block doubles with a 2 MiB L2 (to within one register tile of rows).
            assert_eq!(b.kc, tuned.kc, "{name}");
            assert!(
                b.mc >= 2 * tuned.mc - 32 && b.mc <= 2 * tuned.mc,
                "{name}: {b:?}"
            );
            assert!(b.nc < tuned.nc, "{name}: smaller L3 share, {b:?}");
            let b = blocks(&small);
            assert!(b.kc <= tuned.kc && b.mc <= tuned.mc, "{name}: {b:?}");
            for b in [blocks(&spr), blocks(&small), blocks(&absurd)] {
                // Never degenerate, never far off the measured sizes, k-pairs kept whole.
                assert!(b.mc >= 1 && b.nc >= 1 && b.kc >= 2, "{name}: {b:?}");
                assert!(b.kc <= tuned.kc && b.kc.is_multiple_of(2), "{name}: {b:?}");
                let a_ratio = (b.mc * b.kc) as f64 / (tuned.mc * tuned.kc) as f64;
                let b_ratio = (b.kc * b.nc) as f64 / (tuned.kc * tuned.nc) as f64;
                assert!(
                    a_ratio <= MAX_SCALE && b_ratio <= MAX_SCALE,
                    "{name}: {b:?}"
                );
            }
        }
    }
}
