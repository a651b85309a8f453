//! Randomized comparisons of gather and scatter-add with the element-by-element reference:
//! random ranks and axes, empty and size-1 dims, repeated, negative and out-of-range ids
//! (clamped), edge values in the data, f32/bf16/f64/integer element types.

use super::reference as spec;
use super::*;
use crate::element::Element;
use crate::testutil::{assert_close_by, assert_same_bits, rng, seed, with_edges, Bits};
use half::bf16;
use rand::rngs::StdRng;
use rand::Rng;

/// f32 unit roundoff. A sum of `k` f32 updates into zero rounds at most `k` times, each
/// by at most this times the running sum of magnitudes.
const EPS32: f64 = f32::EPSILON as f64 / 2.0;

/// `(shape, axis, ids)`: rank 1 to 4, the indexed dim at least 1 long, 0 to 12 ids with
/// repeats, negatives, ids past the end and the i64 extremes.
fn random_case(r: &mut StdRng) -> (Vec<usize>, usize, Vec<i64>) {
    let rank = r.random_range(1..=4);
    let mut shape: Vec<usize> = (0..rank)
        .map(|_| match r.random_range(0..8) {
            0 => 0,
            1 | 2 => 1,
            _ => r.random_range(2..=7),
        })
        .collect();
    let axis = r.random_range(0..rank);
    shape[axis] = shape[axis].max(1);
    let len = shape[axis] as i64;
    let ids = (0..r.random_range(0..=12))
        .map(|_| match r.random_range(0..10) {
            0 => [i64::MIN, i64::MAX, -1, len][r.random_range(0..4)],
            1 => r.random_range(-3..len + 3),
            _ => r.random_range(0..len),
        })
        .collect();
    (shape, axis, ids)
}

fn cases(r: &mut StdRng) -> Vec<(Vec<usize>, usize, Vec<i64>)> {
    let mut c: Vec<_> = (0..300).map(|_| random_case(r)).collect();
    // An empty indexed dim is fine when nothing is gathered or nothing surrounds it.
    c.push((vec![3, 0, 2], 1, vec![]));
    c.push((vec![0, 0, 2], 1, vec![0, 5]));
    // Embedding-sized: many ids into a long table with wide rows.
    let ids = (0..500).map(|_| r.random_range(0..1000)).collect();
    c.push((vec![1000, 67], 0, ids));
    c
}

fn other_shape(shape: &[usize], axis: usize, m: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s[axis] = m;
    s
}

fn check_gather<T: Copy + Default + Bits>(
    seed: u64,
    what: &str,
    x: &[T],
    shape: &[usize],
    axis: usize,
    ids: &[i64],
) {
    let want = spec::gather(x, shape, axis, ids);
    let mut got = vec![T::default(); want.len()];
    gather(x, shape, axis, ids, &mut got);
    assert_same_bits(
        &format!("gather {what} {shape:?} axis {axis} ids {ids:?}"),
        seed,
        &got,
        &want,
    );
}

#[test]
fn gather_matches_reference() {
    let seed = seed();
    let mut r = rng(seed);
    for (shape, axis, ids) in cases(&mut r) {
        let n: usize = shape.iter().product();
        let x = with_edges(&mut r, n, 10.0);
        check_gather(seed, "f32", &x, &shape, axis, &ids);
        let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        check_gather(seed, "bf16", &xb, &shape, axis, &ids);
        let xi: Vec<i64> = (0..n).map(|_| r.random()).collect();
        check_gather(seed, "i64", &xi, &shape, axis, &ids);
    }
}

/// Updates with edge values, but none so large that two of them overflow f32 when they
/// land on the same row (the f64 reference would not).
fn updates(r: &mut StdRng, n: usize) -> Vec<f32> {
    with_edges(r, n, 10.0)
        .into_iter()
        .map(|v| {
            if v.is_finite() && v.abs() > 1e37 {
                1e30
            } else {
                v
            }
        })
        .collect()
}

#[test]
fn scatter_add_f32_matches_reference() {
    let seed = seed();
    let mut r = rng(seed);
    for (shape, axis, ids) in cases(&mut r) {
        let us = other_shape(&shape, axis, ids.len());
        let u = updates(&mut r, us.iter().product());
        let u64s: Vec<f64> = u.iter().map(|&v| v as f64).collect();
        let want = spec::scatter_add(&u64s, &shape, axis, &ids);
        let abs: Vec<f64> = u64s.iter().map(|v| v.abs()).collect();
        let scale = spec::scatter_add(&abs, &shape, axis, &ids);
        let mut got = vec![f32::NAN; want.len()];
        scatter_add_f32(&u, &shape, axis, &ids, &mut got);
        let k = ids.len() as f64 + 1.0;
        assert_close_by(
            &format!("scatter_add_f32 {shape:?} axis {axis} ids {ids:?}"),
            seed,
            &got,
            &want,
            |i, _| k * EPS32 * scale[i],
        );
    }
}

/// The f64 path sums in the reference's order, so after the one rounding it is exact.
fn check_wide<T: Element + Bits>(
    seed: u64,
    what: &str,
    u: &[T],
    shape: &[usize],
    axis: usize,
    ids: &[i64],
) {
    let u64s: Vec<f64> = u.iter().map(|&v| v.to_f64()).collect();
    let want: Vec<T> = spec::scatter_add(&u64s, shape, axis, ids)
        .into_iter()
        .map(T::from_f64)
        .collect();
    let mut got = vec![T::default(); want.len()];
    scatter_add_wide(u, shape, axis, ids, &mut got);
    // Which NaN a sum of two NaNs keeps depends on operand order, which the compiler may
    // swap: compare NaNs as NaNs.
    let canon = |v: &T| {
        if v.to_f64().is_nan() {
            T::from_f64(f64::NAN)
        } else {
            *v
        }
    };
    let (got, want): (Vec<T>, Vec<T>) = (
        got.iter().map(canon).collect(),
        want.iter().map(canon).collect(),
    );
    assert_same_bits(
        &format!("scatter_add_wide {what} {shape:?} axis {axis} ids {ids:?}"),
        seed,
        &got,
        &want,
    );
}

#[test]
fn scatter_add_wide_matches_reference() {
    let seed = seed();
    let mut r = rng(seed);
    for (shape, axis, ids) in cases(&mut r) {
        let n: usize = other_shape(&shape, axis, ids.len()).iter().product();
        let u = updates(&mut r, n);
        let ub: Vec<bf16> = u.iter().map(|&v| bf16::from_f32(v)).collect();
        check_wide(seed, "bf16", &ub, &shape, axis, &ids);
        let u64s: Vec<f64> = u.iter().map(|&v| v as f64 * (1.0 + 1e-12)).collect();
        check_wide(seed, "f64", &u64s, &shape, axis, &ids);
        let ui: Vec<i32> = (0..n).map(|_| r.random_range(-1000..1000)).collect();
        check_wide(seed, "i32", &ui, &shape, axis, &ids);
    }
}
