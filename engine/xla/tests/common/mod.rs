//! Shared test support: the XLA executor (or a loud skip), seeded random
//! inputs, and comparison of the XLA CPU plugin against the engine's CPU executor.

#![allow(dead_code)]

use gidd_engine::{CpuExecutor, DType, Data, Executor, HostTensor, Program, Tensor};
use gidd_xla::XlaExecutor;
use half::bf16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;
use std::time::Instant;

/// The executor over the XLA CPU plugin; None (after a loud notice) when no plugin
/// is installed. With GIDD_REQUIRE_XLA=1 (CI) a missing plugin fails the test instead.
pub fn xla() -> Option<&'static XlaExecutor> {
    static X: OnceLock<Option<XlaExecutor>> = OnceLock::new();
    let x = X.get_or_init(|| match XlaExecutor::new(None) {
        Ok(x) => Some(x),
        Err(e) => {
            let required = std::env::var("GIDD_REQUIRE_XLA").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "GIDD_REQUIRE_XLA=1 but the XLA executor is unavailable: {e}"
            );
            None
        }
    });
    if x.is_none() {
        eprintln!(
            "\n==================================================================\n\
             SKIPPED: no PJRT plugin (run engine/xla/install-plugin.sh, or set GIDD_PJRT_PLUGIN)\n\
             ==================================================================\n"
        );
    }
    x.as_ref()
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Uniform floats in [lo, hi) of dtype F32, F64 or BF16 (f64: full 53-bit mantissas).
pub fn uniform(r: &mut StdRng, shape: &[usize], d: DType, lo: f32, hi: f32) -> HostTensor {
    if d == DType::F64 {
        let v: Vec<f64> = (0..numel(shape))
            .map(|_| r.random_range(lo as f64..hi as f64))
            .collect();
        return HostTensor::f64(shape.to_vec(), v).unwrap_or_else(|e| panic!("{e}"));
    }
    let v: Vec<f32> = (0..numel(shape)).map(|_| r.random_range(lo..hi)).collect();
    HostTensor::f32(shape.to_vec(), v)
        .map(|t| t.convert(d))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Integers in [lo, hi) of an integer dtype (or Bool: 0/1).
pub fn ints(r: &mut StdRng, shape: &[usize], d: DType, lo: i64, hi: i64) -> HostTensor {
    let n = numel(shape);
    let v: Vec<i64> = (0..n).map(|_| r.random_range(lo..hi)).collect();
    let data = match d {
        DType::I32 => Data::I32(v.iter().map(|&x| x as i32).collect()),
        DType::U32 => Data::U32(v.iter().map(|&x| x as u32).collect()),
        DType::I64 => Data::I64(v),
        DType::Bool => Data::Bool(v.iter().map(|&x| (x & 1) as u8).collect()),
        _ => panic!("ints: {d} is not an integer dtype"),
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

/// Relative tolerance of float outputs (f32: 1e-5; bf16 outputs: one bf16 rounding step;
/// f64: XLA's and libm's transcendentals and summation orders, far below any f32 error).
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub f32: f64,
    pub bf16: f64,
    pub f64: f64,
}

pub const TOL: Tol = Tol {
    f32: 1e-5,
    bf16: 1e-2,
    f64: 1e-12,
};

/// Compares one output: integers and bools bitwise; floats with matching NaN/inf
/// positions, relative L2 error <= tol, and every element within tol * (|b| + max|b|).
pub fn assert_close(what: &str, got: &HostTensor, want: &HostTensor, tol: Tol) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    if !want.dtype().is_float() {
        if got.data != want.data {
            let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
            let bad: Vec<String> = (0..g.len())
                .filter(|&i| g[i] != w[i])
                .take(8)
                .map(|i| format!("[{i}] xla {} cpu {}", g[i], w[i]))
                .collect();
            panic!("{what}: integer outputs differ: {}", bad.join(", "));
        }
        return;
    }
    let t = match want.dtype() {
        DType::BF16 => tol.bf16,
        DType::F64 => tol.f64,
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
            assert!(same, "{what}: [{i}] xla {a} cpu {b}");
            continue;
        }
        assert!(
            (a - b).abs() <= t * (b.abs() + scale) + 1e-30,
            "{what}: [{i}] xla {a} cpu {b} (tol {t}, scale {scale})"
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

/// Compiles `outs` (inputs named in order), runs it on the CPU executor and on XLA,
/// and compares every output. Returns false when XLA is unavailable (skipped).
pub fn check(case: &str, outs: &[Tensor], inputs: &[(&str, HostTensor)], tol: Tol) -> bool {
    let Some(x) = xla() else { return false };
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let p = Program::compile(outs, &names).unwrap_or_else(|e| panic!("{case}: compile: {e}"));
    let host: Vec<&HostTensor> = inputs.iter().map(|(_, t)| t).collect();
    let mut lp = CpuExecutor
        .load(&p)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let want = CpuExecutor
        .run(&mut lp, &host)
        .unwrap_or_else(|e| panic!("{case}: cpu run: {e}"));
    let t0 = Instant::now();
    let mut xp = x.load(&p).unwrap_or_else(|e| {
        panic!(
            "{case}: xla load: {e}\n{}",
            gidd_xla::emit_module(&p).unwrap_or_default()
        )
    });
    let compile = t0.elapsed();
    let bufs: Vec<_> = host
        .iter()
        .map(|t| {
            x.upload(t)
                .unwrap_or_else(|e| panic!("{case}: upload: {e}"))
        })
        .collect();
    let refs: Vec<_> = bufs.iter().collect();
    let got = x
        .run(&mut xp, &refs)
        .unwrap_or_else(|e| panic!("{case}: xla run: {e}"));
    assert_eq!(got.len(), want.len(), "{case}: output count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let g = x
            .download(g)
            .unwrap_or_else(|e| panic!("{case}: download: {e}"));
        assert_close(&format!("{case} output {i}"), &g, w, tol);
    }
    eprintln!(
        "ok {case} (xla compile {:.0} ms)",
        compile.as_secs_f64() * 1e3
    );
    true
}

pub fn bf(x: f32) -> bf16 {
    bf16::from_f32(x)
}
