//! Scalar f64 softmax: the specification the SIMD kernels are tested against.

/// Softmax of each row of `x` (`[rows, n]`), in f64.
pub fn softmax_f64(rows: usize, n: usize, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; rows * n];
    for r in 0..rows {
        let xr = &x[r * n..(r + 1) * n];
        let m = xr.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let m = if xr.iter().any(|v| v.is_nan()) {
            f64::NAN
        } else {
            m
        };
        let s: f64 = xr.iter().map(|&v| (v - m).exp()).sum();
        for (o, &v) in y[r * n..(r + 1) * n].iter_mut().zip(xr) {
            *o = (v - m).exp() / s;
        }
    }
    y
}

/// Log-softmax of each row, in f64.
pub fn log_softmax_f64(rows: usize, n: usize, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; rows * n];
    for r in 0..rows {
        let xr = &x[r * n..(r + 1) * n];
        let m = xr.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let m = if xr.iter().any(|v| v.is_nan()) {
            f64::NAN
        } else {
            m
        };
        let ls = xr.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
        for (o, &v) in y[r * n..(r + 1) * n].iter_mut().zip(xr) {
            *o = v - m - ls;
        }
    }
    y
}

/// Softmax backward `dx = y (dy - sum(dy y))`, in f64.
pub fn softmax_bwd_f64(rows: usize, n: usize, y: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; rows * n];
    for r in 0..rows {
        let (yr, dyr) = (&y[r * n..(r + 1) * n], &dy[r * n..(r + 1) * n]);
        let d: f64 = yr.iter().zip(dyr).map(|(a, b)| a * b).sum();
        for j in 0..n {
            dx[r * n + j] = yr[j] * (dyr[j] - d);
        }
    }
    dx
}
