//! Randomized comparisons of the CPU reduction with the row-major f64 reference over random
//! shapes and dim sets, every access pattern (contiguous tail, leading rows, strided walk,
//! one long parallel sum), every element type, edge values and empty dims.

use super::reference;
use super::*;
use crate::testutil::{assert_close_by, assert_same_bits, rng, seed, Bits, EDGE_F32};
use half::bf16;
use rand::rngs::StdRng;
use rand::Rng;

/// Sums in f64 in another order differ by at most `terms * 2^-53 * sum|x|` before the final
/// rounding; the result then rounds once to the element type (`ELEM_ULP` of it).
const F64_UNIT: f64 = 1.0 / (1u64 << 53) as f64;
const ELEM_ULP: f64 = 1.0;

/// A random shape of rank 0..=4 with dims 0..=6 (zero and one included) and a random
/// increasing subset of its dims.
fn random_case(r: &mut StdRng) -> (Vec<usize>, Vec<usize>) {
    let rank = r.random_range(0..=4);
    let shape: Vec<usize> = (0..rank)
        .map(|_| match r.random_range(0..8) {
            0 => 0,
            1 => 1,
            _ => r.random_range(2..=6),
        })
        .collect();
    let dims: Vec<usize> = (0..rank).filter(|_| r.random_bool(0.5)).collect();
    (shape, dims)
}

/// Shapes that take each fast path at a size that parallelises.
fn large_cases() -> Vec<(Vec<usize>, Vec<usize>)> {
    vec![
        (vec![70_001], vec![0]),        // one long sum: 16 fixed chunks
        (vec![3, 70_001], vec![1]),     // contiguous tail, parallel over outputs
        (vec![301, 300], vec![0]),      // leading rows into accumulators
        (vec![40, 30, 61], vec![0, 1]), // leading, two dims
        (vec![300, 301], vec![1]),      // contiguous tail, many outputs
        (vec![61, 40, 30], vec![1]),    // middle: strided walk, parallel
        (vec![5, 70_001], vec![0, 1]),  // everything into one, strided walk
        (vec![2, 3, 4], vec![]),        // nothing reduced: a copy
    ]
}

/// Uniform values in [-4, 4), with edge values sprinkled in one case of three.
fn values(r: &mut StdRng, n: usize) -> Vec<f32> {
    let edges = r.random_range(0..3) == 0;
    (0..n)
        .map(|_| {
            if edges && r.random_range(0..64) == 0 {
                EDGE_F32[r.random_range(0..EDGE_F32.len())]
            } else {
                r.random_range(-4.0..4.0)
            }
        })
        .collect()
}

fn run<T: Acc>(op: ReduceOp, dims: &[usize], x: &[T], shape: &[usize]) -> Vec<T> {
    let kept: usize = (0..shape.len())
        .filter(|d| !dims.contains(d))
        .map(|d| shape[d])
        .product();
    let mut out = vec![T::from_acc(-7.0); kept];
    reduce(op, dims, x, shape, &mut out);
    out
}

/// Float sums within the reordering bound, maxima bit for bit.
fn check_float<T: Acc + Bits + Into<f64>>(
    seed: u64,
    name: &str,
    shape: &[usize],
    dims: &[usize],
    x: &[T],
    (p, floor): (i32, f64),
) {
    let ctx = format!("{name} {shape:?} over {dims:?}");
    let terms: usize = dims.iter().map(|&d| shape[d]).product();
    let abs: Vec<f64> = x.iter().map(|&v| v.to_acc().abs()).collect();
    let scale = reference::reduce(ReduceOp::Sum, dims, &abs, shape);
    let want: Vec<f64> = reference::reduce(ReduceOp::Sum, dims, x, shape)
        .into_iter()
        .map(Into::into)
        .collect();
    let got = run(ReduceOp::Sum, dims, x, shape);
    let tol = |j: usize, w: f64| {
        ELEM_ULP * (w.abs() * 2f64.powi(1 - p) + floor) + terms as f64 * F64_UNIT * scale[j]
    };
    assert_close_by(&format!("sum {ctx}"), seed, &got, &want, tol);
    let want = reference::reduce(ReduceOp::Max, dims, x, shape);
    assert_same_bits(
        &format!("max {ctx}"),
        seed,
        &run(ReduceOp::Max, dims, x, shape),
        &want,
    );
}

/// Integers (small enough that every f64 sum is exact) bit for bit.
fn check_int<T: Acc + Bits>(seed: u64, name: &str, shape: &[usize], dims: &[usize], x: &[T]) {
    let ctx = format!("{name} {shape:?} over {dims:?}");
    for op in [ReduceOp::Sum, ReduceOp::Max] {
        let want = reference::reduce(op, dims, x, shape);
        assert_same_bits(
            &format!("{op:?} {ctx}"),
            seed,
            &run(op, dims, x, shape),
            &want,
        );
    }
}

fn check_all(seed: u64, r: &mut StdRng, shape: &[usize], dims: &[usize]) {
    let n: usize = shape.iter().product();
    let x = values(r, n);
    check_float(seed, "f32", shape, dims, &x, (24, 0.0));
    let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    check_float(seed, "bf16", shape, dims, &xb, (8, 0.0));
    // f16 with its edges: sums past 65504 (inf), subnormal terms and results (spacing 2^-24)
    let xh = crate::testutil::to_f16_with_edges(r, &x);
    check_float(seed, "f16", shape, dims, &xh, (11, 2f64.powi(-24)));
    let x64: Vec<f64> = x.iter().map(|&v| v as f64 * (1.0 + 1e-12)).collect();
    check_float(seed, "f64", shape, dims, &x64, (53, 0.0));
    let xi: Vec<i32> = (0..n).map(|_| r.random_range(-1000..1000)).collect();
    check_int(seed, "i32", shape, dims, &xi);
    let xl: Vec<i64> = xi.iter().map(|&v| v as i64 * 3_000_000).collect();
    check_int(seed, "i64", shape, dims, &xl);
    let xu: Vec<u32> = (0..n).map(|_| r.random_range(0..1000)).collect();
    check_int(seed, "u32", shape, dims, &xu);
    let xb: Vec<u8> = (0..n).map(|_| r.random_range(0..2)).collect();
    check_int(seed, "bool", shape, dims, &xb);
}

#[test]
fn reduce_matches_reference_on_random_shapes() {
    let seed = seed();
    let mut r = rng(seed);
    for _ in 0..300 {
        let (shape, dims) = random_case(&mut r);
        check_all(seed, &mut r, &shape, &dims);
    }
}

#[test]
fn reduce_matches_reference_on_parallel_paths() {
    let seed = seed();
    let mut r = rng(seed);
    for (shape, dims) in large_cases() {
        check_all(seed, &mut r, &shape, &dims);
    }
}

#[test]
fn reduce_does_not_depend_on_thread_count() {
    let seed = seed();
    let mut r = rng(seed);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .expect("a three-thread pool");
    for (shape, dims) in large_cases() {
        let n: usize = shape.iter().product();
        let x = values(&mut r, n);
        let a = one.install(|| run(ReduceOp::Sum, &dims, &x, &shape));
        let b = three.install(|| run(ReduceOp::Sum, &dims, &x, &shape));
        assert_same_bits(&format!("sum {shape:?} over {dims:?}"), seed, &a, &b);
    }
}
