//! f64 GEMM: the audit precision, where a run exists to take rounding out of a
//! comparison rather than to be fast. A row-by-row `ikj` loop over `op(B)` packed to
//! `[k, n]` (so the inner loop is a contiguous axpy the compiler vectorises), rows split
//! over rayon's pool. Every output element sums its k products in order p = 0..k, so
//! the result does not depend on the thread count.

use super::GemmShape;
use rayon::prelude::*;
use std::borrow::Cow;

/// Columns of C kept hot while the k products stream past (16 KiB of f64).
const NB: usize = 2048;

/// `op(B)` of batch entry `bi` as a contiguous row-major `[k, n]` matrix (B itself when
/// it is stored that way).
fn packed_b<'a>(s: &GemmShape, b: &'a [f64], bi: usize) -> Cow<'a, [f64]> {
    let (k, n) = (s.k, s.n);
    let src = if s.b_broadcast {
        &b[..k * n]
    } else {
        &b[bi * k * n..][..k * n]
    };
    if !s.trans_b {
        return Cow::Borrowed(src);
    }
    let mut out = vec![0.0; k * n];
    for j in 0..n {
        for p in 0..k {
            out[p * n + j] = src[j * k + p];
        }
    }
    Cow::Owned(out)
}

/// `C_b = op(A_b) · op(B_b)`; see the module docs of [`super`] for the layout.
pub fn gemm_f64(s: &GemmShape, a: &[f64], b: &[f64], c: &mut [f64]) {
    let GemmShape { batch, m, n, k, .. } = *s;
    let (a_len, b_len, c_len) = s.lens();
    debug_assert!(
        a.len() >= a_len && b.len() >= b_len && c.len() >= c_len,
        "gemm_f64: short slice for {s:?}"
    );
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    let shared = s.b_broadcast.then(|| packed_b(s, b, 0));
    for bi in 0..batch {
        let bp = match &shared {
            Some(p) => Cow::Borrowed(&p[..]),
            None => packed_b(s, b, bi),
        };
        let ab = &a[bi * m * k..][..m * k];
        let cb = &mut c[bi * m * n..][..m * n];
        let row = |i: usize, out: &mut [f64]| {
            out.fill(0.0);
            for j0 in (0..n).step_by(NB) {
                let j1 = (j0 + NB).min(n);
                let o = &mut out[j0..j1];
                for p in 0..k {
                    let x = if s.trans_a {
                        ab[p * m + i]
                    } else {
                        ab[i * k + p]
                    };
                    let br = &bp[p * n + j0..p * n + j1];
                    o.iter_mut().zip(br).for_each(|(y, &w)| *y += x * w);
                }
            }
        };
        if (m * n * k) < (1 << 16) {
            cb.chunks_mut(n).enumerate().for_each(|(i, o)| row(i, o));
        } else {
            cb.par_chunks_mut(n)
                .enumerate()
                .for_each(|(i, o)| row(i, o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::reference;
    use super::*;
    use crate::testutil::seed;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The same products summed in the same order as the reference: equal bit for bit,
    /// so any misplaced, missing or doubled product shows, however small.
    #[test]
    fn matmul_f64_equals_reference_bitwise() {
        let seed = seed();
        let mut rng = StdRng::seed_from_u64(seed);
        const ODD: [usize; 8] = [1, 2, 3, 7, 13, 31, 33, 257];
        let dim = |rng: &mut StdRng| {
            if rng.random_bool(0.5) {
                ODD[rng.random_range(0..ODD.len())]
            } else {
                rng.random_range(1..=90)
            }
        };
        for case in 0..60 {
            let s = GemmShape {
                batch: rng.random_range(1..=3),
                m: dim(&mut rng),
                n: if case % 10 == 0 {
                    NB + 5
                } else {
                    dim(&mut rng)
                },
                k: if case % 7 == 0 { 0 } else { dim(&mut rng) },
                trans_a: rng.random_bool(0.5),
                trans_b: rng.random_bool(0.5),
                b_broadcast: rng.random_bool(0.3),
            };
            let (al, bl, cl) = s.lens();
            // edge values among ordinary ones: zeros, tiny and huge magnitudes, -0
            let val = |rng: &mut StdRng| match rng.random_range(0..20) {
                0 => 0.0,
                1 => -0.0,
                2 => 1e-300,
                3 => -1e150,
                _ => rng.random_range(-1.0..1.0),
            };
            let a: Vec<f64> = (0..al).map(|_| val(&mut rng)).collect();
            let b: Vec<f64> = (0..bl).map(|_| val(&mut rng)).collect();
            let want = reference::gemm_f64(&s, &a, &b);
            // C starts as garbage: the kernel overwrites, never accumulates
            let mut got = vec![f64::NAN; cl];
            gemm_f64(&s, &a, &b, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                    "seed {seed} case {case} {s:?}: c[{i}] = {g:e}, reference {w:e}"
                );
            }
        }
    }

    #[test]
    fn matmul_f64_empty_is_noop() {
        let s = GemmShape {
            batch: 2,
            m: 0,
            n: 3,
            k: 4,
            trans_a: false,
            trans_b: false,
            b_broadcast: false,
        };
        let mut c = vec![7.0; 1];
        gemm_f64(&s, &[], &[0.0; 24], &mut c);
        assert_eq!(c, [7.0]);
    }
}
