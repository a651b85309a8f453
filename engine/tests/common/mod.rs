//! Test support: an independent, naive f64 interpreter of primitive programs
//! (the reference every kernel is compared with), random inputs, tolerances.
#![allow(dead_code)]

pub mod refinterp;

use gidd_engine::{DType, Data, HostTensor};
use rand::{Rng, SeedableRng};

/// A fresh seed per run, printed so a failure can be replayed with GIDD_TEST_SEED.
pub fn seed(test: &str) -> u64 {
    let s = std::env::var("GIDD_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{test}: GIDD_TEST_SEED={s}");
    s
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

pub fn rand_f32(r: &mut impl Rng, shape: &[usize], lo: f32, hi: f32) -> HostTensor {
    let n = shape.iter().product();
    HostTensor::f32(
        shape.to_vec(),
        (0..n).map(|_| r.random_range(lo..hi)).collect(),
    )
    .unwrap()
}

pub fn rand_bool(r: &mut impl Rng, shape: &[usize], p_true: f64) -> HostTensor {
    let n = shape.iter().product();
    HostTensor::bool(
        shape.to_vec(),
        (0..n).map(|_| r.random_bool(p_true)).collect(),
    )
    .unwrap()
}

pub fn rand_ids(r: &mut impl Rng, shape: &[usize], hi: i32) -> HostTensor {
    let n = shape.iter().product();
    HostTensor::i32(
        shape.to_vec(),
        (0..n).map(|_| r.random_range(0..hi)).collect(),
    )
    .unwrap()
}

/// A random size that is often awkward: 1, odd, or just past a SIMD width.
pub fn odd_size(r: &mut impl Rng, max: usize) -> usize {
    match r.random_range(0..4) {
        0 => 1,
        1 => [15, 17, 31, 33, 7, 3]
            .into_iter()
            .filter(|&x| x <= max)
            .nth(r.random_range(0..3))
            .unwrap_or(1),
        _ => r.random_range(1..=max),
    }
}

/// Absolute error below which a result counts as equal (f32 rounding of values that are 0 in f64).
pub const ZERO_ABS: f64 = 1e-6;

/// Relative L2 error ||a - b|| / max(||b||, tiny) and max abs error.
pub fn errors(a: &[f64], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let mut num = 0.0;
    let mut den = 0.0;
    let mut max_abs: f64 = 0.0;
    for (x, y) in a.iter().zip(b) {
        if x.is_nan() != y.is_nan() {
            return (f64::INFINITY, f64::INFINITY);
        }
        if x.is_nan() || (x.is_infinite() && x == y) {
            continue;
        }
        num += (x - y) * (x - y);
        den += y * y;
        max_abs = max_abs.max((x - y).abs());
    }
    ((num.sqrt()) / den.sqrt().max(1e-30), max_abs)
}

/// Elementwise |a - b| <= atol + rtol |b|; panics naming the first bad element.
pub fn assert_close(what: &str, a: &[f64], b: &[f64], atol: f64, rtol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: length mismatch");
    let mut bad = 0;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let ok = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= atol + rtol * y.abs();
        if !ok {
            if bad < 5 {
                eprintln!("{what}: element {i}: got {x}, want {y}");
            }
            bad += 1;
        }
    }
    assert!(
        bad == 0,
        "{what}: {bad} of {} elements out of tolerance (atol {atol}, rtol {rtol})",
        a.len()
    );
}

pub fn as_f64(t: &HostTensor) -> Vec<f64> {
    t.to_f64_vec()
}

pub fn to_dtype(t: &HostTensor, d: DType) -> HostTensor {
    t.convert(d)
}

pub fn f32_data(t: &HostTensor) -> &[f32] {
    match &t.data {
        Data::F32(v) => v,
        _ => panic!("not f32"),
    }
}

use gidd_engine::{grad, CpuExecutor, Executor, Graph, Program, Tensor};
use std::collections::HashMap;

/// Runs `outputs` on the CPU executor with inputs in the given order.
pub fn run_cpu(outputs: &[Tensor], inputs: &[(&str, &HostTensor)]) -> Vec<HostTensor> {
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let p = Program::compile(outputs, &names).expect("compile");
    let mut lp = CpuExecutor.load(&p).expect("load");
    let vals: Vec<&HostTensor> = inputs.iter().map(|(_, t)| *t).collect();
    CpuExecutor.run(&mut lp, &vals).expect("run")
}

pub fn run_ref(outputs: &[Tensor], inputs: &[(&str, &HostTensor)]) -> Vec<Vec<f64>> {
    let m: HashMap<String, Vec<f64>> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_f64_vec()))
        .collect();
    refinterp::eval(outputs, &m)
}

/// Checks one op (built by `f` from float inputs `xs`) three ways:
/// CPU executor vs the f64 reference (forward), the autograd gradient of
/// sum(f(x) * r) on the CPU vs the same gradient in f64, and that f64 gradient
/// vs central finite differences of the f64 forward.
pub fn gradcheck(
    name: &str,
    xs: &[HostTensor],
    extra: &[(&str, HostTensor)],
    f: impl Fn(&[Tensor], &[Tensor]) -> Tensor,
    fwd_tol: f64,
    grad_tol: f64,
) {
    let name = &format!("{name} ({})", xs[0].dtype());
    let g = Graph::new();
    let ins: Vec<Tensor> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| g.input(&format!("x{i}"), &x.shape, x.dtype()))
        .collect();
    let ext: Vec<Tensor> = extra
        .iter()
        .map(|(n, t)| g.input(n, &t.shape, t.dtype()))
        .collect();
    let y = f(&ins, &ext);
    let mut r = rng(0x5eed ^ name.len() as u64);
    let rt = rand_f32(&mut r, y.shape(), -1.0, 1.0).convert(y.dtype().accum());
    let rv = g.input("r", y.shape(), rt.dtype());
    let y = y.to(rt.dtype()).unwrap();
    let loss = y.mul(&rv).unwrap().sum_all().unwrap();
    let grads = grad(&loss, &ins).unwrap();
    let names: Vec<String> = (0..xs.len()).map(|i| format!("x{i}")).collect();
    let mut inputs: Vec<(&str, &HostTensor)> =
        names.iter().map(|n| n.as_str()).zip(xs.iter()).collect();
    inputs.extend(extra.iter().map(|(n, t)| (*n, t)));
    inputs.push(("r", &rt));
    let mut outs = vec![y.clone(), loss.clone()];
    outs.extend(grads.iter().cloned());
    let cpu = run_cpu(&outs, &inputs);
    let reference = run_ref(&outs, &inputs);
    let (e, _) = errors(&cpu[0].to_f64_vec(), &reference[0]);
    assert!(e <= fwd_tol, "{name}: forward rel err {e:e} > {fwd_tol:e}");
    for i in 0..xs.len() {
        let (e, abs) = errors(&cpu[2 + i].to_f64_vec(), &reference[2 + i]);
        // A gradient that is exactly zero in f64 (e.g. a query seeing one key) is
        // f32 rounding noise on the CPU: judge it by an absolute floor.
        let e = if abs <= ZERO_ABS { 0.0 } else { e };
        if e > grad_tol {
            let (c, r) = (cpu[2 + i].to_f64_vec(), &reference[2 + i]);
            let worst = (0..c.len())
                .max_by(|&a, &b| (c[a] - r[a]).abs().total_cmp(&(c[b] - r[b]).abs()))
                .unwrap_or(0);
            eprintln!(
                "{name}: grad x{i} of shape {:?}: worst element {worst}: cpu {} vs f64 {}",
                xs[i].shape, c[worst], r[worst]
            );
        }
        assert!(
            e <= grad_tol,
            "{name}: grad x{i} cpu vs f64 rel err {e:e} > {grad_tol:e}"
        );
    }
    // Central differences of the f64 loss.
    let mut m: HashMap<String, Vec<f64>> = inputs
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_f64_vec()))
        .collect();
    for i in 0..xs.len() {
        let key = format!("x{i}");
        let base = m[&key].clone();
        let mut fd = vec![0.0; base.len()];
        for j in 0..base.len() {
            let h = 1e-6 * base[j].abs().max(1.0);
            let mut p = base.clone();
            p[j] += h;
            m.insert(key.clone(), p.clone());
            let lp = refinterp::eval(&[loss.clone()], &m)[0][0];
            p[j] -= 2.0 * h;
            m.insert(key.clone(), p);
            let lm = refinterp::eval(&[loss.clone()], &m)[0][0];
            fd[j] = (lp - lm) / (2.0 * h);
        }
        m.insert(key, base);
        let (e, a) = errors(&reference[2 + i], &fd);
        // f64 central differences with h ~ 1e-6 are accurate to ~1e-8 relative.
        assert!(
            e <= 1e-5 || a <= 1e-7,
            "{name}: grad x{i} autograd vs finite differences rel err {e:e} (max abs {a:e})"
        );
    }
}

// ---- precisions the op tests run in ----

/// f32 forward vs f64: a few ulps per op, compounded over short chains.
pub const FWD: f64 = 1e-5;
/// Gradients pass through more f32 ops (and reductions) than forwards.
pub const GRAD: f64 = 1e-4;

/// A precision the op families are checked in, with its bars against the f64 reference.
#[derive(Clone, Copy)]
pub struct Prec {
    pub dt: DType,
    pub fwd: f64,
    pub grad: f64,
}

/// f32, and f64 (the audit precision, fused ops compiled as their decompositions): both
/// sides then compute in f64 and differ only in summation order, so the bars are a few
/// hundred ulps; an op that narrowed to f32 anywhere misses them by seven orders.
pub const PRECS: [Prec; 2] = [
    Prec {
        dt: DType::F32,
        fwd: FWD,
        grad: GRAD,
    },
    Prec {
        dt: DType::F64,
        fwd: 1e-12,
        grad: 1e-10,
    },
];

/// Uniform in [lo, hi) of p's dtype; f64 values carry bits below f32's resolution.
pub fn rand_in(
    p: Prec,
    r: &mut rand::rngs::StdRng,
    shape: &[usize],
    lo: f32,
    hi: f32,
) -> HostTensor {
    let t = rand_f32(r, shape, lo, hi);
    if p.dt != DType::F64 {
        return t.convert(p.dt);
    }
    let v = t
        .to_f64_vec()
        .iter()
        .enumerate()
        .map(|(i, x)| x * (1.0 + 1e-9 * ((i % 7) as f64 - 3.0)))
        .collect();
    HostTensor::f64(shape.to_vec(), v).unwrap()
}
