//! Randomized comparisons of the CPU copies with the per-element reference, bit for bit,
//! over random ranks (0 to 4), empty and size-1 dims, odd sizes, parallel-size outputs and
//! element types of 1, 2, 4 and 8 bytes, with NaN payloads and signed zeros in the data.

use super::reference as spec;
use super::*;
use crate::testutil::{assert_same_bits, rng, seed, with_edges, Bits};
use half::bf16;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// One movement to check: the fast copy and the reference, both generic over the element.
trait Case: std::fmt::Debug {
    /// Elements of the (first) source.
    fn src_len(&self) -> usize;
    fn kernel<T: Copy + Send + Sync + Default>(&self, x: &[T]) -> Vec<T>;
    fn reference<T: Copy>(&self, x: &[T]) -> Vec<T>;
}

/// Runs `case` on f32 (with a signalling NaN, -0 and subnormals), bf16, i64 and u8 data.
fn check(seed: u64, r: &mut StdRng, case: &impl Case) {
    fn one<T: Copy + Send + Sync + Default + Bits>(seed: u64, case: &impl Case, x: &[T], ty: &str) {
        let got = case.kernel(x);
        assert_same_bits(&format!("{case:?} {ty}"), seed, &got, &case.reference(x));
    }
    let n = case.src_len();
    let mut f = with_edges(r, n, 100.0);
    if n > 0 {
        f[0] = f32::from_bits(0x7fa0_0001); // a signalling NaN: its payload must survive
    }
    one(seed, case, &f, "f32");
    let b: Vec<bf16> = f.iter().map(|&v| bf16::from_f32(v)).collect();
    one(seed, case, &b, "bf16");
    let l: Vec<i64> = (0..n).map(|_| r.random()).collect();
    one(seed, case, &l, "i64");
    let u: Vec<u8> = (0..n).map(|_| r.random()).collect();
    one(seed, case, &u, "u8");
}

fn random_shape(r: &mut StdRng, rank: usize) -> Vec<usize> {
    (0..rank)
        .map(|_| match r.random_range(0..8) {
            0 => 0,
            1 | 2 => 1,
            _ => r.random_range(2..=7),
        })
        .collect()
}

/// Random shapes of rank 0 to 4, then outputs past the parallel threshold (64K elements).
fn shapes(r: &mut StdRng) -> Vec<Vec<usize>> {
    let mut s: Vec<Vec<usize>> = (0..200)
        .map(|_| {
            let rank = r.random_range(0..=4);
            random_shape(r, rank)
        })
        .collect();
    s.extend([
        vec![300, 301],
        vec![7, 100, 97],
        vec![70_000, 1],
        vec![2, 40_000],
    ]);
    s
}

#[derive(Debug)]
struct Transpose {
    shape: Vec<usize>,
    perm: Vec<usize>,
}

impl Case for Transpose {
    fn src_len(&self) -> usize {
        self.shape.iter().product()
    }
    fn kernel<T: Copy + Send + Sync + Default>(&self, x: &[T]) -> Vec<T> {
        let mut out = vec![T::default(); x.len()];
        transpose(&mut out, x, &self.shape, &self.perm);
        out
    }
    fn reference<T: Copy>(&self, x: &[T]) -> Vec<T> {
        spec::transpose(x, &self.shape, &self.perm)
    }
}

#[test]
fn transpose_matches_reference() {
    let seed = seed();
    let mut r = rng(seed);
    for shape in shapes(&mut r) {
        let mut perm: Vec<usize> = (0..shape.len()).collect();
        perm.shuffle(&mut r);
        check(seed, &mut r, &Transpose { shape, perm });
    }
}

#[derive(Debug)]
struct Broadcast {
    src_shape: Vec<usize>,
    shape: Vec<usize>,
    dims: Vec<usize>,
}

impl Case for Broadcast {
    fn src_len(&self) -> usize {
        self.src_shape.iter().product()
    }
    fn kernel<T: Copy + Send + Sync + Default>(&self, x: &[T]) -> Vec<T> {
        let mut out = vec![T::default(); self.shape.iter().product()];
        broadcast_in_dim(&mut out, &self.shape, x, &self.src_shape, &self.dims);
        out
    }
    fn reference<T: Copy>(&self, x: &[T]) -> Vec<T> {
        spec::broadcast_in_dim(x, &self.src_shape, &self.shape, &self.dims)
    }
}

#[test]
fn broadcast_in_dim_matches_reference() {
    let seed = seed();
    let mut r = rng(seed);
    for shape in shapes(&mut r) {
        // An increasing subset of the output dims, each kept at full size or squeezed to 1.
        let dims: Vec<usize> = (0..shape.len()).filter(|_| r.random_bool(0.5)).collect();
        let src_shape = dims
            .iter()
            .map(|&d| if r.random_bool(0.3) { 1 } else { shape[d] })
            .collect();
        check(
            seed,
            &mut r,
            &Broadcast {
                src_shape,
                shape,
                dims,
            },
        );
    }
}

#[derive(Debug)]
struct Slice {
    shape: Vec<usize>,
    start: Vec<usize>,
    limit: Vec<usize>,
}

impl Case for Slice {
    fn src_len(&self) -> usize {
        self.shape.iter().product()
    }
    fn kernel<T: Copy + Send + Sync + Default>(&self, x: &[T]) -> Vec<T> {
        let n = self
            .start
            .iter()
            .zip(&self.limit)
            .map(|(a, b)| b - a)
            .product();
        let mut out = vec![T::default(); n];
        slice(&mut out, x, &self.shape, &self.start, &self.limit);
        out
    }
    fn reference<T: Copy>(&self, x: &[T]) -> Vec<T> {
        spec::slice(x, &self.shape, &self.start, &self.limit)
    }
}

#[test]
fn slice_matches_reference() {
    let seed = seed();
    let mut r = rng(seed);
    for shape in shapes(&mut r) {
        let (start, limit) = shape
            .iter()
            .map(|&s| {
                let a = r.random_range(0..=s);
                let b = r.random_range(a..=s);
                // Mostly the big slices that keep the parallel cases parallel.
                if s > 1000 && r.random_bool(0.7) {
                    (1.min(s), s)
                } else {
                    (a, b)
                }
            })
            .unzip();
        check(
            seed,
            &mut r,
            &Slice {
                shape,
                start,
                limit,
            },
        );
    }
}

#[derive(Debug)]
struct Concat {
    shapes: Vec<Vec<usize>>,
    dim: usize,
}

impl Concat {
    /// The parts as consecutive pieces of one buffer.
    fn parts<'a, T>(&'a self, x: &'a [T]) -> Vec<(&'a [T], &'a [usize])> {
        let mut at = 0;
        self.shapes
            .iter()
            .map(|s| {
                let n: usize = s.iter().product();
                at += n;
                (&x[at - n..at], &s[..])
            })
            .collect()
    }
}

impl Case for Concat {
    fn src_len(&self) -> usize {
        self.shapes
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }
    fn kernel<T: Copy + Send + Sync + Default>(&self, x: &[T]) -> Vec<T> {
        let mut out = vec![T::default(); x.len()];
        concatenate(&mut out, &self.parts(x), self.dim);
        out
    }
    fn reference<T: Copy>(&self, x: &[T]) -> Vec<T> {
        spec::concatenate(&self.parts(x), self.dim)
    }
}

#[test]
fn concatenate_matches_reference() {
    let seed = seed();
    let mut r = rng(seed);
    for shape in shapes(&mut r) {
        if shape.is_empty() {
            continue;
        }
        let dim = r.random_range(0..shape.len());
        let shapes = (0..r.random_range(1..=4))
            .map(|_| {
                let mut s = shape.clone();
                s[dim] = r.random_range(0..=shape[dim].min(9));
                s
            })
            .collect();
        check(seed, &mut r, &Concat { shapes, dim });
    }
}
