//! The spec: plain loops, f64 accumulation, no blocking.

use super::GemmShape;

/// `C_b = op(A_b) · op(B_b)` in f64; returns `C` (`batch·m·n`, row-major).
pub fn gemm_f64(s: &GemmShape, a: &[f64], b: &[f64]) -> Vec<f64> {
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
        a.len() >= a_len && b.len() >= b_len,
        "gemm_f64: short input for {s:?}"
    );
    let mut c = vec![0.0; c_len];
    for bi in 0..batch {
        let ab = &a[bi * m * k..][..m * k];
        let bb = if b_broadcast {
            &b[..k * n]
        } else {
            &b[bi * k * n..][..k * n]
        };
        let cb = &mut c[bi * m * n..][..m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for p in 0..k {
                    // op(A)[i, p]; op(B)[p, j]
                    let x = if trans_a {
                        ab[p * m + i]
                    } else {
                        ab[i * k + p]
                    };
                    let y = if trans_b {
                        bb[j * k + p]
                    } else {
                        bb[p * n + j]
                    };
                    acc += x * y;
                }
                cb[i * n + j] = acc;
            }
        }
    }
    c
}
