//! The attention mask, transposed and bit-packed for query-in-lanes tiles.
//!
//! `words[b][w][j]` holds bit `t` = "query `16 w + t` may attend to key `j`", so a SIMD
//! vector of 16 (or 8) queries reads its lane mask for key `j` with one load and a shift.
//! Built once per call (shared by all heads); 1/8 of the byte mask's size.

use rayon::prelude::*;

/// Queries per mask word.
pub(super) const QW: usize = 16;

pub(super) struct MaskBits {
    lk: usize,
    nqw: usize,
    /// `[B, nqw, Lk]` with `nqw = 4 ceil(Lq/64)`; bits of queries past `Lq` are set.
    words: Vec<u16>,
    /// `[B, nqw]`: bit `t` set when query `16 w + t` has at least one unmasked key
    /// (or lies past `Lq`).
    any: Vec<u16>,
}

impl MaskBits {
    pub(super) fn new(batch: usize, lq: usize, lk: usize, mask: &[u8]) -> Self {
        // Padded to whole 64-query blocks so every lane vector of a query block (padding
        // vectors included) reads in bounds.
        let nqw = lq.div_ceil(4 * QW) * 4;
        let mut words = vec![0u16; batch * nqw * lk];
        let mut any = vec![0u16; batch * nqw];
        if lk > 0 {
            words
                .par_chunks_mut(lk)
                .zip(any.par_iter_mut())
                .enumerate()
                .for_each(|(bw, (w, a))| {
                    let (b, qw) = (bw / nqw, bw % nqw);
                    for t in 0..QW {
                        let i = qw * QW + t;
                        if i >= lq {
                            w.iter_mut().for_each(|x| *x |= 1 << t);
                            continue;
                        }
                        let row = &mask[(b * lq + i) * lk..(b * lq + i + 1) * lk];
                        for (x, &m) in w.iter_mut().zip(row) {
                            *x |= ((m != 0) as u16) << t;
                        }
                    }
                    *a = w.iter().fold(0, |acc, &x| acc | x);
                });
        }
        MaskBits {
            lk,
            nqw,
            words,
            any,
        }
    }

    /// The lane bits of the `lanes` queries starting at `i0` (a multiple of `lanes`) for key `j`.
    #[inline(always)]
    pub(super) fn bits(&self, b: usize, i0: usize, j: usize) -> u32 {
        (self.words[(b * self.nqw + i0 / QW) * self.lk + j] >> (i0 % QW)) as u32
    }

    /// Bits of the queries starting at `i0` that have at least one unmasked key.
    #[inline(always)]
    pub(super) fn any(&self, b: usize, i0: usize) -> u32 {
        (self.any[b * self.nqw + i0 / QW] >> (i0 % QW)) as u32
    }
}

/// How a (query block, key block) tile is masked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum TileMask {
    /// Every valid query may see every key of the tile: no masking work.
    AllOn,
    /// No valid query may see any key of the tile.
    AllOff,
    Mixed,
}

/// Classifies the tile of `nv` lane vectors (`lanes` wide, `nq` valid queries from `i0`) by
/// keys `j0..j0 + kn`.
#[allow(clippy::too_many_arguments)]
pub(super) fn classify(
    m: &MaskBits,
    b: usize,
    i0: usize,
    nq: usize,
    lanes: usize,
    nv: usize,
    j0: usize,
    kn: usize,
) -> TileMask {
    let (mut all_on, mut all_off) = (true, true);
    for v in 0..nv {
        let valid = lane_mask(nq.saturating_sub(v * lanes).min(lanes));
        let (mut and, mut or) = (valid, 0);
        for j in j0..j0 + kn {
            let w = m.bits(b, i0 + v * lanes, j) & valid;
            and &= w;
            or |= w;
        }
        all_on &= and == valid;
        all_off &= or == 0;
    }
    match (all_on, all_off) {
        (true, _) => TileMask::AllOn,
        (_, true) => TileMask::AllOff,
        _ => TileMask::Mixed,
    }
}

/// The low `n` bits set.
#[inline(always)]
pub(super) fn lane_mask(n: usize) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}
