//! Scalar f64 RMSNorm: the specification the SIMD kernels are tested against.

/// Returns `(y [rows, n], rstd [rows])`.
pub fn rms_norm_fwd_f64(
    rows: usize,
    n: usize,
    eps: f64,
    x: &[f64],
    w: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; rows * n];
    let mut rstd = vec![0.0; rows];
    for i in 0..rows {
        let xr = &x[i * n..(i + 1) * n];
        let r = 1.0 / (xr.iter().map(|v| v * v).sum::<f64>() / n as f64 + eps).sqrt();
        rstd[i] = r;
        for j in 0..n {
            y[i * n + j] = xr[j] * r * (1.0 + w[j]);
        }
    }
    (y, rstd)
}

/// Returns `(dx [rows, n], dw [n])` for upstream gradient `dy` (recomputes `rstd` from `x`).
pub fn rms_norm_bwd_f64(
    rows: usize,
    n: usize,
    eps: f64,
    x: &[f64],
    w: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (_, rstd) = rms_norm_fwd_f64(rows, n, eps, x, w);
    let mut dx = vec![0.0; rows * n];
    let mut dw = vec![0.0; n];
    for i in 0..rows {
        let r = rstd[i];
        let (xr, dyr) = (&x[i * n..(i + 1) * n], &dy[i * n..(i + 1) * n]);
        let a: f64 = (0..n).map(|j| dyr[j] * (1.0 + w[j]) * xr[j]).sum();
        for j in 0..n {
            dx[i * n + j] = r * (1.0 + w[j]) * dyr[j] - xr[j] * r * r * r * a / n as f64;
            dw[j] += dyr[j] * xr[j] * r;
        }
    }
    (dx, dw)
}
