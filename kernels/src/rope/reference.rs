//! Scalar f64 RoPE (NeoX halves): the specification the SIMD kernel is tested against.

fn rotate(
    rows: usize,
    heads: usize,
    d: usize,
    x: &[f64],
    cos: &[f64],
    sin: &[f64],
    sign: f64,
) -> Vec<f64> {
    let half = d / 2;
    let mut o = vec![0.0; rows * heads * d];
    for r in 0..rows {
        for h in 0..heads {
            let base = (r * heads + h) * d;
            for j in 0..half {
                let (c, s) = (cos[r * half + j], sign * sin[r * half + j]);
                let (x1, x2) = (x[base + j], x[base + half + j]);
                o[base + j] = x1 * c - x2 * s;
                o[base + half + j] = x2 * c + x1 * s;
            }
        }
    }
    o
}

/// `o1 = x1 cos - x2 sin`, `o2 = x2 cos + x1 sin` for `x [rows, heads, d]`, tables `[rows, d/2]`.
pub fn rope_fwd_f64(
    rows: usize,
    heads: usize,
    d: usize,
    x: &[f64],
    cos: &[f64],
    sin: &[f64],
) -> Vec<f64> {
    rotate(rows, heads, d, x, cos, sin, 1.0)
}

/// `dx1 = do1 cos + do2 sin`, `dx2 = do2 cos - do1 sin`.
pub fn rope_bwd_f64(
    rows: usize,
    heads: usize,
    d: usize,
    dout: &[f64],
    cos: &[f64],
    sin: &[f64],
) -> Vec<f64> {
    rotate(rows, heads, d, dout, cos, sin, -1.0)
}
