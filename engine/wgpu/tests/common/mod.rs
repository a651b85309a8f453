//! Shared test support: the wgpu executor (or a loud skip), seeded random inputs, and
//! comparison of the wgpu executor against the engine's cpu executor.

#![allow(dead_code)]

use gidd_engine::{CpuExecutor, DType, Data, Executor, HostTensor, Program, Tensor};
use gidd_wgpu::WgpuExecutor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;

/// The executor on the first adapter; None (after a loud notice) when there is none. With
/// GIDD_REQUIRE_WGPU=1 (CI) a missing adapter fails the test instead.
pub fn wgpu() -> Option<&'static WgpuExecutor> {
    static X: OnceLock<Option<WgpuExecutor>> = OnceLock::new();
    let x = X.get_or_init(|| match WgpuExecutor::new() {
        Ok(x) => {
            eprintln!("wgpu adapter: {}", x.name());
            Some(x)
        }
        Err(e) => {
            let required = std::env::var("GIDD_REQUIRE_WGPU").is_ok_and(|v| v == "1");
            assert!(!required, "GIDD_REQUIRE_WGPU=1 but no wgpu adapter: {e}");
            eprintln!(
                "\n==================================================================\n\
                 SKIPPED: {e}\n\
                 ==================================================================\n"
            );
            None
        }
    });
    x.as_ref()
}

/// The base seed of a test: `GIDD_TEST_SEED` when set (to replay a failure), else `default`;
/// printed either way.
pub fn seed(default: u64) -> u64 {
    let s = std::env::var("GIDD_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    eprintln!("seed {s} (GIDD_TEST_SEED={s} replays this test)");
    s
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Uniform floats in [lo, hi) of dtype F32, BF16 or F16.
pub fn uniform(r: &mut StdRng, shape: &[usize], d: DType, lo: f32, hi: f32) -> HostTensor {
    let v: Vec<f32> = (0..numel(shape)).map(|_| r.random_range(lo..hi)).collect();
    HostTensor::f32(shape.to_vec(), v)
        .map(|t| t.convert(d))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Integers in [lo, hi) of an integer dtype (or Bool: 0/1).
pub fn ints(r: &mut StdRng, shape: &[usize], d: DType, lo: i64, hi: i64) -> HostTensor {
    let v: Vec<i64> = (0..numel(shape)).map(|_| r.random_range(lo..hi)).collect();
    let data = match d {
        DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
        DType::U32 => Data::U32(v.iter().map(|&x| x as u32).collect()),
        DType::I64 => Data::I64(v),
        DType::Bool => Data::Bool(v.iter().map(|&x| (x & 1) as u8).collect()),
        DType::F32 | DType::BF16 | DType::F16 => {
            return ints(r, shape, DType::I32, lo, hi).convert(d)
        }
        _ => panic!("ints: {d}"),
    };
    HostTensor::new(shape.to_vec(), data).unwrap_or_else(|e| panic!("{e}"))
}

/// Full-range random bits of an integer dtype.
pub fn bits(r: &mut StdRng, shape: &[usize], d: DType) -> HostTensor {
    let n = numel(shape);
    let data = match d {
        DType::I32 => Data::I32((0..n).map(|_| r.random()).collect()),
        DType::U32 => Data::U32((0..n).map(|_| r.random()).collect()),
        DType::I64 => Data::I64((0..n).map(|_| r.random()).collect()),
        DType::Bool => Data::Bool((0..n).map(|_| r.random::<bool>() as u8).collect()),
        _ => panic!("bits: {d} is not an integer dtype"),
    };
    HostTensor::new(shape.to_vec(), data).unwrap_or_else(|e| panic!("{e}"))
}

/// Relative tolerances of float outputs: f32 1e-5 (the GPU's exp/log/tanh and summation
/// orders against libm and f64 sums), bf16 and f16 one rounding step.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub f32: f64,
    pub bf16: f64,
    pub f16: f64,
}

pub const TOL: Tol = Tol {
    f32: 1e-5,
    bf16: 1e-2,
    // bf16's bar scaled by the ratio of the epsilons (2^-11 against 2^-8)
    f16: 1.25e-3,
};

/// Integers and bools bitwise; floats with matching NaN/inf positions, relative L2 error
/// <= tol, and every element within tol * (|b| + max|b|).
pub fn assert_close(what: &str, got: &HostTensor, want: &HostTensor, tol: Tol) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    if !want.dtype().is_float() {
        if got.data != want.data {
            let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
            let bad: Vec<String> = (0..g.len())
                .filter(|&i| g[i] != w[i])
                .take(8)
                .map(|i| format!("[{i}] wgpu {} cpu {}", g[i], w[i]))
                .collect();
            panic!("{what}: integer outputs differ: {}", bad.join(", "));
        }
        return;
    }
    let t = match want.dtype() {
        DType::BF16 => tol.bf16,
        DType::F16 => tol.f16,
        _ => tol.f32,
    };
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f64, |m, x| m.max(x.abs()));
    let (mut num, mut den) = (0f64, 0f64);
    for i in 0..w.len() {
        let (a, b) = (g[i], w[i]);
        if !b.is_finite() || !a.is_finite() {
            let same = (a.is_nan() && b.is_nan()) || a == b;
            assert!(same, "{what}: [{i}] wgpu {a} cpu {b}");
            continue;
        }
        assert!(
            (a - b).abs() <= t * (b.abs() + scale) + 1e-30,
            "{what}: [{i}] wgpu {a} cpu {b} (tol {t}, scale {scale})"
        );
        num += (a - b) * (a - b);
        den += b * b;
    }
    let rel = if den > 0.0 {
        (num / den).sqrt()
    } else {
        num.sqrt()
    };
    assert!(rel <= t, "{what}: relative L2 error {rel:e} > {t:e}");
}

/// The cpu executor's outputs of `outs` on `inputs` (named in order).
pub fn cpu_run(case: &str, p: &Program, inputs: &[(&str, HostTensor)]) -> Vec<HostTensor> {
    let host: Vec<&HostTensor> = inputs.iter().map(|(_, t)| t).collect();
    let mut lp = CpuExecutor
        .load(p)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    CpuExecutor
        .run(&mut lp, &host)
        .unwrap_or_else(|e| panic!("{case}: cpu run: {e}"))
}

/// The wgpu executor's outputs of `p` on `inputs`.
pub fn wgpu_run(
    x: &WgpuExecutor,
    case: &str,
    p: &Program,
    inputs: &[(&str, HostTensor)],
) -> Vec<HostTensor> {
    let mut lp = x
        .load(p)
        .unwrap_or_else(|e| panic!("{case}: wgpu load: {e}"));
    let bufs: Vec<_> = inputs
        .iter()
        .map(|(_, t)| {
            x.upload(t)
                .unwrap_or_else(|e| panic!("{case}: upload: {e}"))
        })
        .collect();
    let refs: Vec<_> = bufs.iter().collect();
    x.run(&mut lp, &refs)
        .unwrap_or_else(|e| panic!("{case}: wgpu run: {e}"))
        .iter()
        .map(|b| {
            x.download(b)
                .unwrap_or_else(|e| panic!("{case}: download: {e}"))
        })
        .collect()
}

/// Compiles `outs`, runs it on both executors and compares every output. False when no
/// adapter is present (skipped).
pub fn check(case: &str, outs: &[Tensor], inputs: &[(&str, HostTensor)], tol: Tol) -> bool {
    let Some(x) = wgpu() else { return false };
    check_on(x, case, outs, inputs, tol);
    true
}

/// [`check`] on a given executor.
pub fn check_on(
    x: &WgpuExecutor,
    case: &str,
    outs: &[Tensor],
    inputs: &[(&str, HostTensor)],
    tol: Tol,
) {
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let p = Program::compile(outs, &names).unwrap_or_else(|e| panic!("{case}: compile: {e}"));
    let want = cpu_run(case, &p, inputs);
    let got = wgpu_run(x, case, &p, inputs);
    assert_eq!(got.len(), want.len(), "{case}: output count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(&format!("{case} output {i}"), g, w, tol);
    }
    eprintln!("ok {case}");
}

/// The largest |wgpu - cpu| over the finite elements of float outputs, divided by the
/// output's largest finite |cpu| (0 for other outputs).
pub fn scaled_err(got: &HostTensor, want: &HostTensor) -> f64 {
    if !want.dtype().is_float() {
        return 0.0;
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let scale = w
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f64, |m, x| m.max(x.abs()));
    let err = g
        .iter()
        .zip(&w)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    if scale > 0.0 {
        err / scale
    } else {
        err
    }
}

/// [`check`] for programs whose fused ops must run as WGSL kernels: every entry point in
/// `entries` is dispatched, at most `max_dispatches` dispatches in all; returns each
/// output's [`scaled_err`] (printed), or None when no adapter is present (skipped).
pub fn check_kernels(
    case: &str,
    outs: &[Tensor],
    inputs: &[(&str, HostTensor)],
    tol: Tol,
    entries: &[&str],
    max_dispatches: usize,
) -> Option<Vec<f64>> {
    let x = wgpu()?;
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let p = Program::compile(outs, &names).unwrap_or_else(|e| panic!("{case}: compile: {e}"));
    let lp = x
        .load(&p)
        .unwrap_or_else(|e| panic!("{case}: wgpu load: {e}"));
    let counts = lp.dispatch_counts();
    for e in entries {
        assert!(
            counts.iter().any(|(k, _)| k == e),
            "{case}: kernel {e} not dispatched (dispatches: {counts:?})"
        );
    }
    assert!(
        lp.dispatch_count() <= max_dispatches,
        "{case}: {} dispatches > {max_dispatches} ({counts:?})",
        lp.dispatch_count()
    );
    let want = cpu_run(case, &p, inputs);
    let got = wgpu_run(x, case, &p, inputs);
    assert_eq!(got.len(), want.len(), "{case}: output count");
    let mut errs = vec![];
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(&format!("{case} output {i}"), g, w, tol);
        errs.push(scaled_err(g, w));
    }
    eprintln!(
        "ok {case}: {} dispatches, scaled errors {:?}",
        lp.dispatch_count(),
        errs.iter().map(|e| format!("{e:.1e}")).collect::<Vec<_>>()
    );
    Some(errs)
}

/// The binding cap of the window tests: tensors of a few hundred KiB take the windowed
/// paths that a 1.5 GiB embedding takes under lavapipe's 128 MiB.
pub const CAP: u64 = 64 << 10;

/// The executor with its binding capped at [`CAP`], with and without fusion.
pub fn capped() -> Vec<(WgpuExecutor, bool)> {
    match wgpu() {
        Some(x) => [true, false]
            .map(|f| (x.clone().with_fusion(f).with_max_binding(CAP), f))
            .to_vec(),
        None => vec![],
    }
}

/// Runs on the capped executor and the cpu; asserts the windowed path ran (at least
/// `min_dispatches`) and the outputs agree.
pub fn check_windowed(
    x: &WgpuExecutor,
    case: &str,
    outs: &[Tensor],
    ins: &[(&str, HostTensor)],
    min_dispatches: usize,
) {
    check_windowed_tol(x, case, outs, ins, min_dispatches, TOL)
}

/// [`check_windowed`] at tolerances `tol`.
pub fn check_windowed_tol(
    x: &WgpuExecutor,
    case: &str,
    outs: &[Tensor],
    ins: &[(&str, HostTensor)],
    min_dispatches: usize,
    tol: Tol,
) {
    let names: Vec<&str> = ins.iter().map(|(n, _)| *n).collect();
    let p = Program::compile(outs, &names).unwrap_or_else(|e| panic!("{case}: {e}"));
    let lp = x.load(&p).unwrap_or_else(|e| panic!("{case}: load: {e}"));
    assert!(
        lp.dispatch_count() >= min_dispatches,
        "{case}: {} dispatches: not windowed ({:?})",
        lp.dispatch_count(),
        lp.dispatch_counts()
    );
    drop(lp);
    check_on(x, case, outs, ins, tol);
}

/// The tolerances of a program computed in `d`: its f32 outputs downstream of 16-bit values
/// (a loss in f32 over bf16 or f16 activations) carry that dtype's rounding too, so they get
/// its bar.
pub fn program_tol(d: DType) -> Tol {
    let f32 = match d {
        DType::BF16 => TOL.bf16,
        DType::F16 => TOL.f16,
        _ => TOL.f32,
    };
    Tol { f32, ..TOL }
}

/// Runs `outs` on `capped` (windows) and `whole` (the same executor uncapped) and asserts
/// every output is bit for bit the same: windows change which dispatch computes an element,
/// never its arithmetic.
pub fn assert_bitwise(
    capped: &WgpuExecutor,
    whole: &WgpuExecutor,
    case: &str,
    outs: &[Tensor],
    ins: &[(&str, HostTensor)],
) {
    let names: Vec<&str> = ins.iter().map(|(n, _)| *n).collect();
    let p = Program::compile(outs, &names).unwrap_or_else(|e| panic!("{case}: {e}"));
    let got = wgpu_run(capped, case, &p, ins);
    let want = wgpu_run(whole, case, &p, ins);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g.data.as_bytes(),
            w.data.as_bytes(),
            "{case}: output {i} is not bitwise the unwindowed run's"
        );
    }
}
