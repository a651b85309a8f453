//! The small numerical tools of the analysis: Levenberg–Marquardt on a handful of
//! parameters (dense normal equations, central-difference Jacobian), a quadratic
//! polyfit, OLS with its slope standard error, the bias-corrected EMA and percentiles.
//! Every problem here has at most five parameters, so nothing needs a linear-algebra crate.

/// The result of a least-squares fit.
#[derive(Clone, Debug)]
pub struct LmFit {
    pub params: Vec<f64>,
    /// Sum of squared residuals at `params`.
    pub cost: f64,
    pub iterations: usize,
    /// False when the iteration limit was hit or the cost became non-finite.
    pub converged: bool,
}

/// Minimizes the sum of squares of `resid(p, out)` (writes `n` residuals) from `p0`.
/// Unbounded; bounds are the caller's reparametrization (e.g. fitting log-parameters).
/// Damping is Marquardt's (λ·diag(JᵀJ)), so the step is invariant to parameter scale,
/// which matters because A·s^(−b) mixes parameters of very different magnitudes.
pub fn levenberg_marquardt(p0: &[f64], n: usize, resid: impl Fn(&[f64], &mut [f64])) -> LmFit {
    let k = p0.len();
    let mut p = p0.to_vec();
    let mut r = vec![0.0; n];
    resid(&p, &mut r);
    let mut cost = sumsq(&r);
    let mut lambda = 1e-3;
    let mut jac = vec![0.0; n * k];
    let (mut rp, mut rm) = (vec![0.0; n], vec![0.0; n]);
    let mut converged = false;
    let mut it = 0;
    while it < 2000 && cost.is_finite() {
        it += 1;
        if cost == 0.0 {
            converged = true;
            break;
        }
        // Central differences: Jacobian error O(h²) ≈ 1e-12 relative, far below what the
        // fits need, and the zero-residual fixed point is exact whatever the error.
        for j in 0..k {
            let h = 1e-6 * p[j].abs().max(1e-6);
            let mut q = p.clone();
            q[j] = p[j] + h;
            resid(&q, &mut rp);
            q[j] = p[j] - h;
            resid(&q, &mut rm);
            for i in 0..n {
                jac[i * k + j] = (rp[i] - rm[i]) / (2.0 * h);
            }
        }
        let mut jtj = vec![0.0; k * k];
        let mut jtr = vec![0.0; k];
        for i in 0..n {
            let row = &jac[i * k..(i + 1) * k];
            for a in 0..k {
                jtr[a] += row[a] * r[i];
                for b in 0..k {
                    jtj[a * k + b] += row[a] * row[b];
                }
            }
        }
        let mut accepted = false;
        while lambda < 1e20 {
            let mut m = jtj.clone();
            for a in 0..k {
                m[a * k + a] += lambda * jtj[a * k + a].max(1e-300);
            }
            let rhs: Vec<f64> = jtr.iter().map(|v| -v).collect();
            if let Some(step) = solve(&m, &rhs) {
                let q: Vec<f64> = p.iter().zip(&step).map(|(a, b)| a + b).collect();
                resid(&q, &mut rp);
                let c = sumsq(&rp);
                if c.is_finite() && c < cost {
                    let small = step
                        .iter()
                        .zip(&p)
                        .all(|(s, v)| s.abs() <= 1e-13 * v.abs().max(1e-10));
                    let flat = cost - c <= 1e-16 * cost;
                    p = q;
                    std::mem::swap(&mut r, &mut rp);
                    cost = c;
                    lambda = (lambda / 10.0).max(1e-12);
                    accepted = true;
                    if small || flat {
                        converged = true;
                    }
                    break;
                }
            }
            lambda *= 10.0;
        }
        if !accepted {
            // No damping makes progress: a (local) minimum to working precision.
            converged = true;
        }
        if converged {
            break;
        }
    }
    LmFit {
        params: p,
        cost,
        iterations: it,
        converged: converged && cost.is_finite(),
    }
}

fn sumsq(r: &[f64]) -> f64 {
    r.iter().map(|v| v * v).sum()
}

/// Solves the dense k×k system `a x = b` by Gaussian elimination with partial pivoting;
/// None when singular.
pub fn solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let k = b.len();
    let mut m = a.to_vec();
    let mut x = b.to_vec();
    for c in 0..k {
        let piv = (c..k).max_by(|&i, &j| m[i * k + c].abs().total_cmp(&m[j * k + c].abs()))?;
        if m[piv * k + c].abs() < 1e-300 || !m[piv * k + c].is_finite() {
            return None;
        }
        if piv != c {
            for j in 0..k {
                m.swap(c * k + j, piv * k + j);
            }
            x.swap(c, piv);
        }
        for i in c + 1..k {
            let f = m[i * k + c] / m[c * k + c];
            for j in c..k {
                m[i * k + j] -= f * m[c * k + j];
            }
            x[i] -= f * x[c];
        }
    }
    for c in (0..k).rev() {
        let s: f64 = (c + 1..k).map(|j| m[c * k + j] * x[j]).sum();
        x[c] = (x[c] - s) / m[c * k + c];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Least-squares quadratic y ≈ c₀ + c₁x + c₂x², returned as [c₀, c₁, c₂]. Solved on
/// centred and scaled x (ln FLOPs spans ~40 around 40: raw powers would be ill-conditioned)
/// and mapped back. None with fewer than 3 distinct x.
pub fn polyfit2(x: &[f64], y: &[f64]) -> Option<[f64; 3]> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    if x.len() < 3 || sd <= 0.0 || !sd.is_finite() {
        return None;
    }
    let mut ata = [0.0; 9];
    let mut aty = [0.0; 3];
    for (&xi, &yi) in x.iter().zip(y) {
        let u = (xi - mean) / sd;
        let row = [1.0, u, u * u];
        for a in 0..3 {
            aty[a] += row[a] * yi;
            for b in 0..3 {
                ata[a * 3 + b] += row[a] * row[b];
            }
        }
    }
    let c = solve(&ata, &aty)?;
    // y = c0 + c1 (x−m)/s + c2 (x−m)²/s²
    let (c1, c2) = (c[1] / sd, c[2] / (sd * sd));
    Some([
        c[0] - c1 * mean + c2 * mean * mean,
        c1 - 2.0 * c2 * mean,
        c2,
    ])
}

/// Ordinary least squares y = intercept + slope·x.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Ols {
    pub intercept: f64,
    pub slope: f64,
    pub r2: f64,
    /// Standard error of the slope (NaN with two points).
    pub slope_se: f64,
    pub n: usize,
}

/// OLS of y on x; None with fewer than 2 points or no spread in x.
pub fn ols(x: &[f64], y: &[f64]) -> Option<Ols> {
    let n = x.len();
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mx = x.iter().sum::<f64>() / nf;
    let my = y.iter().sum::<f64>() / nf;
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let syy: f64 = y.iter().map(|v| (v - my).powi(2)).sum();
    if sxx <= 1e-300 * nf || !sxx.is_finite() {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let sse: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| (b - intercept - slope * a).powi(2))
        .sum();
    let r2 = if syy > 0.0 { 1.0 - sse / syy } else { 1.0 };
    let slope_se = if n > 2 {
        (sse / (nf - 2.0) / sxx).sqrt()
    } else {
        f64::NAN
    };
    Some(Ols {
        intercept,
        slope,
        r2,
        slope_se,
        n,
    })
}

/// The last value of the bias-corrected EMA m ← γm + (1−γ)x over the finite values
/// (the reference's smoothing of the training ELBO, γ = 0.96); NaN if there are none.
pub fn ema_last(values: impl IntoIterator<Item = f64>, gamma: f64) -> f64 {
    let (mut m, mut w) = (0.0, 0.0);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        m = gamma * m + (1.0 - gamma) * v;
        w = gamma * w + (1.0 - gamma);
    }
    if w > 0.0 {
        m / w
    } else {
        f64::NAN
    }
}

/// The q-quantile (0..=1) of sorted values, linearly interpolated (numpy's default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    let j = (i + 1).min(sorted.len() - 1);
    sorted[i] + f * (sorted[j] - sorted[i])
}

/// `count` log-spaced values from `lo` to `hi` inclusive (one value when count is 1).
pub fn log_grid(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    match count {
        0 => Vec::new(),
        1 => vec![(lo * hi).sqrt()],
        _ => (0..count)
            .map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (count - 1) as f64).exp())
            .collect(),
    }
}

/// Weighted least squares y = intercept + slope·x with weights w ≥ 0; None without two
/// points of positive weight at distinct x. `r2` and `slope_se` are the unweighted
/// quantities of the returned line (what the log-space R² of a law reports).
pub fn wls(x: &[f64], y: &[f64], w: &[f64]) -> Option<Ols> {
    let sw: f64 = w.iter().sum();
    if !(sw > 0.0) || x.len() < 2 {
        return None;
    }
    let mx = x.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() / sw;
    let my = y.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() / sw;
    let sxx: f64 = x.iter().zip(w).map(|(a, b)| b * (a - mx).powi(2)).sum();
    let sxy: f64 = (0..x.len()).map(|i| w[i] * (x[i] - mx) * (y[i] - my)).sum();
    if sxx <= 1e-300 * sw || !sxx.is_finite() {
        return None;
    }
    let slope = sxy / sxx;
    line_stats(x, y, my - slope * mx, slope)
}

/// R² and the slope's standard error of a given line over (x, y).
fn line_stats(x: &[f64], y: &[f64], intercept: f64, slope: f64) -> Option<Ols> {
    let n = x.len();
    let nf = n as f64;
    let mx = x.iter().sum::<f64>() / nf;
    let my = y.iter().sum::<f64>() / nf;
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let syy: f64 = y.iter().map(|v| (v - my).powi(2)).sum();
    let sse: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| (b - intercept - slope * a).powi(2))
        .sum();
    (sxx > 0.0).then(|| Ols {
        intercept,
        slope,
        r2: if syy > 0.0 { 1.0 - sse / syy } else { 1.0 },
        slope_se: if n > 2 {
            (sse / (nf - 2.0) / sxx).sqrt()
        } else {
            f64::NAN
        },
        n,
    })
}

/// The IRLS weights of the Huber loss with threshold `delta`: 1 inside |r| ≤ δ, δ/|r|
/// outside (where the loss grows linearly).
pub fn huber_weights(r: &[f64], delta: f64) -> Vec<f64> {
    r.iter()
        .map(|v| {
            if v.abs() <= delta {
                1.0
            } else {
                delta / v.abs()
            }
        })
        .collect()
}

/// The Huber loss Σ ρ(r): r² inside |r| ≤ δ, 2δ|r| − δ² outside (scipy's "huber" with
/// f_scale = δ, times 2, so that it equals the sum of squares where no residual is large).
pub fn huber_cost(r: &[f64], delta: f64) -> f64 {
    r.iter()
        .map(|v| {
            let a = v.abs();
            if a <= delta {
                a * a
            } else {
                2.0 * delta * a - delta * delta
            }
        })
        .sum()
}

/// The line y = intercept + slope·x that minimizes the Huber loss of its residuals (the
/// reference's robust fit of a power law in log space, SCALING.md §5), by iteratively
/// reweighted least squares from the OLS line: the loss is convex, so IRLS converges to
/// its minimum. `delta` = ∞ is plain OLS.
pub fn huber_line(x: &[f64], y: &[f64], delta: f64) -> Option<Ols> {
    let mut f = ols(x, y)?;
    if !delta.is_finite() {
        return Some(f);
    }
    for _ in 0..200 {
        let r: Vec<f64> = x
            .iter()
            .zip(y)
            .map(|(a, b)| b - f.intercept - f.slope * a)
            .collect();
        let g = wls(x, y, &huber_weights(&r, delta))?;
        let moved = (g.slope - f.slope).abs() + (g.intercept - f.intercept).abs();
        f = g;
        if moved <= 1e-13 * (1.0 + f.intercept.abs() + f.slope.abs()) {
            break;
        }
    }
    Some(f)
}

/// Levenberg–Marquardt on the Huber loss of the residuals (threshold `delta`): each
/// residual r is replaced by sign(r)·√ρ(r), ρ the Huber loss of [`huber_cost`] (r itself
/// inside |r| ≤ δ, continuous with a continuous derivative at δ), so the sum of squares
/// LM minimizes is the Huber loss itself, from `p0`, as scipy's robust `least_squares`
/// does. `cost` is that loss; with every |r| ≤ δ this is the plain least-squares fit.
pub fn huber_lm(p0: &[f64], n: usize, delta: f64, resid: impl Fn(&[f64], &mut [f64])) -> LmFit {
    if !delta.is_finite() {
        return levenberg_marquardt(p0, n, resid);
    }
    levenberg_marquardt(p0, n, |p, out| {
        resid(p, out);
        for o in out.iter_mut() {
            let a = o.abs();
            if a > delta {
                *o = o.signum() * (2.0 * delta * a - delta * delta).sqrt();
            }
        }
    })
}
