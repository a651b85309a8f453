//! bf16 and f16 stored packed two per word against the cpu executor's: odd element counts
//! (the last word half-filled), parts that start mid-word, both halves of a word written by
//! the same kernel, with and without elementwise fusion; f16's conversions at its edges
//! (subnormals, ties, overflow, NaN) and every one of its 65536 bit patterns.
//!
//! Bitwise where the cpu and the kernel compute one correctly rounded f32 result and round it
//! to the 16-bit float the same way (add, sub, mul, max, min, neg, abs, compares, selects,
//! converts and every copy): the packing must not change a bit. GEMM at a stated tolerance
//! (f32 accumulation in another order, one rounding of the output).

mod common;

use common::*;
use gidd_engine::{DType, Graph, HostTensor, Program, Result, Tensor};
use gidd_wgpu::WgpuExecutor;

/// The 16-bit floats, both stored packed.
const HALVES: [DType; 2] = [DType::BF16, DType::F16];

/// Odd and even counts around a word, a workgroup (256 invocations = 512 halves) and beyond.
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
    for d in HALVES {
        for n in COUNTS {
            let t = uniform(&mut r, &[n], d, -5.0, 5.0);
            let b = gidd_engine::Executor::upload(x, &t)?;
            // half the f32 bytes: ceil(n / 2) words
            assert_eq!(b.bytes(), n.div_ceil(2) as u64 * 4, "{n} {d} elements");
            let back = gidd_engine::Executor::download(x, &b)?;
            assert_eq!(back.data.as_bytes(), t.data.as_bytes(), "{n} {d} elements");
        }
    }
    Ok(())
}

#[test]
fn elementwise_at_odd_counts_is_bitwise_the_cpus() -> Result<()> {
    let s = seed(3200);
    for (x, fused) in executors() {
        for d in HALVES {
            for (c, n) in COUNTS.into_iter().enumerate() {
                let g = Graph::new();
                let a = g.input("a", &[n], d);
                let b = g.input("b", &[n], d);
                let f = g.input("f", &[n], DType::F32);
                let sum = a.add(&b)?;
                let prod = sum.mul(&a)?.sub(&b)?;
                let big = prod.maximum(&a)?.neg()?.abs()?;
                let from_f32 = f.to(d)?;
                let back = from_f32.add(&a)?.to(DType::F32)?;
                let pick = a.lt(&b)?.select(&a, &from_f32)?;
                let half = g.splat(0.5, &[n], d);
                let scaled = big.mul(&half)?;
                let mut r = rng(s + c as u64);
                let ins = [
                    ("a", uniform(&mut r, &[n], d, -3.0, 3.0)),
                    ("b", uniform(&mut r, &[n], d, -3.0, 3.0)),
                    ("f", uniform(&mut r, &[n], DType::F32, -3.0, 3.0)),
                ];
                let case = format!("{d} elementwise n={n} fused={fused}");
                bitwise(&x, &case, &[sum, scaled, from_f32, back, pick], &ins);
            }
        }
    }
    Ok(())
}

#[test]
fn views_and_copies_at_odd_shapes_are_bitwise_the_cpus() -> Result<()> {
    let s = seed(3300);
    for (x, fused) in executors() {
        for (c, (d, &[r0, r1])) in HALVES
            .into_iter()
            .flat_map(|d| {
                [[3usize, 5], [1, 7], [17, 33], [64, 129]]
                    .iter()
                    .map(move |s| (d, s))
            })
            .enumerate()
        {
            let g = Graph::new();
            let a = g.input("a", &[r0, r1], d);
            let b = g.input("b", &[r0, 2], d);
            let t = a.transpose(&[1, 0])?;
            let sl = a.slice(&[0, 1], &[r0, r1])?;
            let row = a.slice(&[0, 0], &[1, r1])?.broadcast_to(&[r0, r1])?;
            // parts of 1, r1 and 2 columns: most start mid-word
            let first = a.slice(&[0, 0], &[r0, 1])?;
            let cat = Tensor::concat(&[&first, &a, &b], 1)?;
            let flat = t.add(&t)?.reshape(&[r0 * r1])?;
            let mut r = rng(s + c as u64);
            let ins = [
                ("a", uniform(&mut r, &[r0, r1], d, -3.0, 3.0)),
                ("b", uniform(&mut r, &[r0, 2], d, -3.0, 3.0)),
            ];
            let case = format!("{d} views {r0}x{r1} fused={fused}");
            bitwise(&x, &case, &[t, sl, row, cat, flat], &ins);
        }
    }
    Ok(())
}

/// GEMM on packed operands: the output packed in place (N even) or widened and packed after
/// (N odd), operands read in place (K a multiple of 4) or through a padded copy (K odd,
/// transposed). Tolerance: the cpu accumulates in f32 in another order and both round the
/// output once, so elements differ by at most one step (bf16 2^-8, f16 2^-11 relative) of
/// |x||y| sized sums; common::TOL's bf16 (1e-2) and f16 (1.25e-3) of the output's scale hold
/// that.
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
    let all = HALVES.into_iter().flat_map(|d| cases.map(|c| (d, c)));
    for (c, (d, (m, k, n, transposed))) in all.enumerate() {
        let g = Graph::new();
        let a = g.input("a", &[m, k], d);
        let b_shape = if transposed { [n, k] } else { [k, n] };
        let b = g.input("b", &b_shape, d);
        let rhs = if transposed { b.transpose(&[1, 0])? } else { b };
        let y = a.matmul(&rhs)?;
        let mut r = rng(s + c as u64);
        let ins = [
            ("a", uniform(&mut r, &[m, k], d, -2.0, 2.0)),
            ("b", uniform(&mut r, &b_shape, d, -2.0, 2.0)),
        ];
        let case = format!("{d} gemm {m}x{k}x{n} transposed={transposed}");
        check_on(x, &case, &[y], &ins, TOL);
    }
    Ok(())
}

/// f32 values at f16's edges: signed zeros, f32 subnormals, f16's subnormal range with its
/// ties (2^-25 rounds to 0, 3 x 2^-25 to 2^-23: ties to even), the normal boundary 2^-14,
/// ties of the normal range, the largest finite (65504), the overflow midpoint (65520 rounds
/// to inf, just below it to 65504), infinities and NaNs; then random bit patterns over
/// every exponent.
fn f16_edges(r: &mut rand::rngs::StdRng) -> Vec<f32> {
    use rand::Rng;
    let p = |e: i32| 2f32.powi(e);
    let mut v = vec![
        0.0,
        -0.0,
        f32::from_bits(1),
        -f32::MIN_POSITIVE,
        p(-25),
        -p(-25),
        p(-25) * 1.0001,
        3.0 * p(-25),
        5.0 * p(-25),
        p(-24),
        p(-14) - p(-25),
        p(-14) - p(-26),
        p(-14),
        1.0 + p(-11),
        1.0 + 3.0 * p(-11),
        -(1.0 + p(-11) + p(-20)),
        2049.0,
        2051.0,
        65504.0,
        65519.99,
        65520.0,
        -65520.0,
        65536.0,
        1e10,
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::from_bits(0x7f80_0001),
        f32::from_bits(0xffc0_1234),
    ];
    v.extend((0..4000).map(|_| {
        // exponents 2^-30 .. 2^20 with any fraction and sign
        let e: u32 = r.random_range(97..148);
        f32::from_bits(r.random::<u32>() & 0x8000_0000 | e << 23 | r.random::<u32>() & 0x7f_ffff)
    }));
    v
}

/// f32 to f16 (ties to even, overflow to inf, subnormals kept, NaN quiet) and back, and every
/// f16 bit pattern to f32, bit for bit the cpu's (half's conversions), fused and not.
#[test]
fn f16_conversions_at_every_edge_are_bitwise_the_cpus() -> Result<()> {
    let mut r = rng(seed(3500));
    let edges = f16_edges(&mut r);
    let n = edges.len();
    let all: Vec<half::f16> = (0..=u16::MAX).map(half::f16::from_bits).collect();
    for (x, fused) in executors() {
        let g = Graph::new();
        let f = g.input("f", &[n], DType::F32);
        let h = g.input("h", &[all.len()], DType::F16);
        let to_h = f.to(DType::F16)?;
        let round_trip = to_h.to(DType::F32)?;
        let widened = h.to(DType::F32)?;
        let ins = [
            ("f", HostTensor::f32(vec![n], edges.clone())?),
            (
                "h",
                HostTensor::new(vec![all.len()], gidd_engine::Data::F16(all.clone()))?,
            ),
        ];
        let case = format!("f16 conversions fused={fused}");
        bitwise(&x, &case, &[to_h, round_trip, widened], &ins);
    }
    Ok(())
}
