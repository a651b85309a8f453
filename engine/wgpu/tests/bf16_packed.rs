//! bf16 stored packed two per word against the cpu executor's bf16: odd element counts (the
//! last word half-filled), parts that start mid-word, both halves of a word written by the
//! same kernel, with and without elementwise fusion.
//!
//! Bitwise where the cpu and the kernel compute one correctly rounded f32 result and round it
//! to bf16 the same way (add, sub, mul, max, min, neg, abs, compares, selects, converts and
//! every copy): the packing must not change a bit. GEMM at a stated tolerance (f32
//! accumulation in another order, one bf16 rounding of the output).

mod common;

use common::*;
use gidd_engine::{DType, Graph, HostTensor, Program, Result, Tensor};
use gidd_wgpu::WgpuExecutor;

/// Odd and even counts around a word, a workgroup (256 invocations = 512 bf16) and beyond.
const COUNTS: [usize; 7] = [1, 2, 3, 255, 513, 1027, 100_001];

/// Every element of every output equal, bit for bit (NaNs included).
fn bitwise(x: &WgpuExecutor, case: &str, outs: &[Tensor], ins: &[(&str, HostTensor)]) {
    let names: Vec<&str> = ins.iter().map(|(n, _)| *n).collect();
    let p = Program::compile(outs, &names).unwrap_or_else(|e| panic!("{case}: {e}"));
    let want = cpu_run(case, &p, ins);
    let got = wgpu_run(x, case, &p, ins);
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.shape, w.shape, "{case} output {k}");
        assert_eq!(g.dtype(), w.dtype(), "{case} output {k}");
        let (gb, wb) = (g.data.as_bytes(), w.data.as_bytes());
        if let Some(i) = (0..wb.len()).find(|&i| gb[i] != wb[i]) {
            let e = i / w.dtype().size();
            panic!(
                "{case} output {k}: element {e} of {} differs: wgpu {} cpu {}",
                w.numel(),
                g.data.get_f64(e),
                w.data.get_f64(e)
            );
        }
    }
    eprintln!("ok {case}");
}

/// Both fusion settings: chains as one generated kernel, and every node alone.
fn executors() -> Vec<(WgpuExecutor, bool)> {
    match wgpu() {
        Some(x) => [true, false]
            .map(|f| (x.clone().with_fusion(f), f))
            .to_vec(),
        None => vec![],
    }
}

#[test]
fn host_round_trip_keeps_every_bit() -> Result<()> {
    let Some(x) = wgpu() else { return Ok(()) };
    let mut r = rng(seed(3100));
    for n in COUNTS {
        let t = uniform(&mut r, &[n], DType::BF16, -5.0, 5.0);
        let b = gidd_engine::Executor::upload(x, &t)?;
        // half the f32 bytes: ceil(n / 2) words
        assert_eq!(b.bytes(), n.div_ceil(2) as u64 * 4, "{n} bf16 elements");
        let back = gidd_engine::Executor::download(x, &b)?;
        assert_eq!(back.data.as_bytes(), t.data.as_bytes(), "{n} elements");
    }
    Ok(())
}

#[test]
fn elementwise_at_odd_counts_is_bitwise_the_cpus() -> Result<()> {
    let s = seed(3200);
    for (x, fused) in executors() {
        for (c, n) in COUNTS.into_iter().enumerate() {
            let g = Graph::new();
            let a = g.input("a", &[n], DType::BF16);
            let b = g.input("b", &[n], DType::BF16);
            let f = g.input("f", &[n], DType::F32);
            let sum = a.add(&b)?;
            let prod = sum.mul(&a)?.sub(&b)?;
            let big = prod.maximum(&a)?.neg()?.abs()?;
            let from_f32 = f.to(DType::BF16)?;
            let back = from_f32.add(&a)?.to(DType::F32)?;
            let pick = a.lt(&b)?.select(&a, &from_f32)?;
            let half = g.splat(0.5, &[n], DType::BF16);
            let scaled = big.mul(&half)?;
            let mut r = rng(s + c as u64);
            let ins = [
                ("a", uniform(&mut r, &[n], DType::BF16, -3.0, 3.0)),
                ("b", uniform(&mut r, &[n], DType::BF16, -3.0, 3.0)),
                ("f", uniform(&mut r, &[n], DType::F32, -3.0, 3.0)),
            ];
            let case = format!("elementwise n={n} fused={fused}");
            bitwise(&x, &case, &[sum, scaled, from_f32, back, pick], &ins);
        }
    }
    Ok(())
}

#[test]
fn views_and_copies_at_odd_shapes_are_bitwise_the_cpus() -> Result<()> {
    let s = seed(3300);
    for (x, fused) in executors() {
        for (c, &[r0, r1]) in [[3usize, 5], [1, 7], [17, 33], [64, 129]]
            .iter()
            .enumerate()
        {
            let g = Graph::new();
            let a = g.input("a", &[r0, r1], DType::BF16);
            let b = g.input("b", &[r0, 2], DType::BF16);
            let t = a.transpose(&[1, 0])?;
            let sl = a.slice(&[0, 1], &[r0, r1])?;
            let row = a.slice(&[0, 0], &[1, r1])?.broadcast_to(&[r0, r1])?;
            // parts of 1, r1 and 2 columns: most start mid-word
            let first = a.slice(&[0, 0], &[r0, 1])?;
            let cat = Tensor::concat(&[&first, &a, &b], 1)?;
            let flat = t.add(&t)?.reshape(&[r0 * r1])?;
            let mut r = rng(s + c as u64);
            let ins = [
                ("a", uniform(&mut r, &[r0, r1], DType::BF16, -3.0, 3.0)),
                ("b", uniform(&mut r, &[r0, 2], DType::BF16, -3.0, 3.0)),
            ];
            let case = format!("views {r0}x{r1} fused={fused}");
            bitwise(&x, &case, &[t, sl, row, cat, flat], &ins);
        }
    }
    Ok(())
}

/// GEMM on packed operands: the output packed in place (N even) or widened and packed after
/// (N odd), operands read in place (K a multiple of 4) or through a padded copy (K odd,
/// transposed). Tolerance: the cpu accumulates in f32 in another order and both round the
/// output to bf16 once, so elements differ by at most one bf16 step (2^-8 relative) of
/// |x||y| sized sums; 1e-2 of the output's scale (common::TOL's bf16) holds that.
#[test]
fn gemm_on_packed_operands_matches_the_cpu() -> Result<()> {
    let Some(x) = wgpu() else { return Ok(()) };
    let s = seed(3400);
    let cases: [(usize, usize, usize, bool); 5] = [
        (8, 16, 12, false),
        (5, 9, 7, false),
        (33, 64, 3, true),
        (1, 1, 1, false),
        (70, 131, 129, true),
    ];
    for (c, (m, k, n, transposed)) in cases.into_iter().enumerate() {
        let g = Graph::new();
        let a = g.input("a", &[m, k], DType::BF16);
        let b_shape = if transposed { [n, k] } else { [k, n] };
        let b = g.input("b", &b_shape, DType::BF16);
        let rhs = if transposed { b.transpose(&[1, 0])? } else { b };
        let y = a.matmul(&rhs)?;
        let mut r = rng(s + c as u64);
        let ins = [
            ("a", uniform(&mut r, &[m, k], DType::BF16, -2.0, 2.0)),
            ("b", uniform(&mut r, &b_shape, DType::BF16, -2.0, 2.0)),
        ];
        let case = format!("bf16 gemm {m}x{k}x{n} transposed={transposed}");
        check_on(x, &case, &[y], &ins, TOL);
    }
    Ok(())
}
