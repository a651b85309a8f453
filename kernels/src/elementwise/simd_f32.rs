//! The f32 elementwise loops compiled once per instruction set. The crate's baseline is
//! SSE2, so a plain loop runs 4 lanes; the same source under `avx2` or `avx512f` runs 8 or 16.
//! Only correctly rounded IEEE operations (+, -, *, /, sqrt, floor, compares, selects and
//! NaN-aware max/min) vectorise, and Rust never contracts a*b+c into an FMA, so every level
//! gives the same bits (tested below). Exp, ln, tanh and the rest stay the standard library's
//! scalar calls on every level.

use super::{Binary, Cmp, Src, Unary};
use crate::simd::vector::{simd_entry, Simd};

#[inline(always)]
fn nan_max(a: f32, c: f32) -> f32 {
    if a.is_nan() || c.is_nan() {
        f32::NAN
    } else {
        a.max(c)
    }
}

#[inline(always)]
fn nan_min(a: f32, c: f32) -> f32 {
    if a.is_nan() || c.is_nan() {
        f32::NAN
    } else {
        a.min(c)
    }
}

/// out = f(x, y) over the four operand forms.
#[inline(always)]
fn map2<T: Copy, R>(o: &mut [R], xs: Src<T>, ys: Src<T>, f: impl Fn(T, T) -> R + Copy) {
    match (xs, ys) {
        (Src::Slice(a), Src::Slice(c)) => o
            .iter_mut()
            .zip(a)
            .zip(c)
            .for_each(|((r, &a), &c)| *r = f(a, c)),
        (Src::Slice(a), Src::Scalar(c)) => o.iter_mut().zip(a).for_each(|(r, &a)| *r = f(a, c)),
        (Src::Scalar(a), Src::Slice(c)) => o.iter_mut().zip(c).for_each(|(r, &c)| *r = f(a, c)),
        (Src::Scalar(a), Src::Scalar(c)) => o.iter_mut().for_each(|r| *r = f(a, c)),
    }
}

/// Generic over the ISA only so that `simd_entry!` compiles it once per instruction set.
#[inline(always)]
unsafe fn binary<S: Simd>(op: Binary, xs: Src<f32>, ys: Src<f32>, o: &mut [f32]) {
    match op {
        Binary::Add => map2(o, xs, ys, |a, c| a + c),
        Binary::Sub => map2(o, xs, ys, |a, c| a - c),
        Binary::Mul => map2(o, xs, ys, |a, c| a * c),
        Binary::Div => map2(o, xs, ys, |a, c| a / c),
        Binary::Max => map2(o, xs, ys, nan_max),
        Binary::Min => map2(o, xs, ys, nan_min),
        _ => map2(o, xs, ys, super::cpu::binary_fn_f32(op)),
    }
}

#[inline(always)]
unsafe fn compare<S: Simd>(op: Cmp, xs: Src<f32>, ys: Src<f32>, o: &mut [u8]) {
    match op {
        Cmp::Eq => map2(o, xs, ys, |a, c| u8::from(a == c)),
        Cmp::Ne => map2(o, xs, ys, |a, c| u8::from(a != c)),
        Cmp::Lt => map2(o, xs, ys, |a, c| u8::from(a < c)),
        Cmp::Le => map2(o, xs, ys, |a, c| u8::from(a <= c)),
        Cmp::Gt => map2(o, xs, ys, |a, c| u8::from(a > c)),
        Cmp::Ge => map2(o, xs, ys, |a, c| u8::from(a >= c)),
    }
}

#[inline(always)]
unsafe fn unary<S: Simd>(op: Unary, x: &[f32], o: &mut [f32]) {
    let mut map = |f: fn(f32) -> f32| o.iter_mut().zip(x).for_each(|(r, &a)| *r = f(a));
    match op {
        Unary::Neg => map(|a| -a),
        Unary::Abs => map(f32::abs),
        Unary::Sqrt => map(f32::sqrt),
        Unary::Rsqrt => map(|a| 1.0 / a.sqrt()),
        Unary::Floor => map(f32::floor),
        _ => {
            let f = super::cpu::unary_fn_f32(op);
            o.iter_mut().zip(x).for_each(|(r, &a)| *r = f(a))
        }
    }
}

#[inline(always)]
unsafe fn select<S: Simd>(p: Src<u8>, a: Src<f32>, b: Src<f32>, o: &mut [f32]) {
    let pick = |c: u8, x: f32, y: f32| if c != 0 { x } else { y };
    // zipped slices (no index bounds checks), so the loops vectorise to masked moves
    match (p, a, b) {
        (Src::Slice(p), Src::Slice(x), Src::Slice(y)) => o
            .iter_mut()
            .zip(p)
            .zip(x)
            .zip(y)
            .for_each(|(((r, &c), &x), &y)| *r = pick(c, x, y)),
        (Src::Slice(p), Src::Slice(x), Src::Scalar(y)) => o
            .iter_mut()
            .zip(p)
            .zip(x)
            .for_each(|((r, &c), &x)| *r = pick(c, x, y)),
        (Src::Slice(p), Src::Scalar(x), Src::Slice(y)) => o
            .iter_mut()
            .zip(p)
            .zip(y)
            .for_each(|((r, &c), &y)| *r = pick(c, x, y)),
        (Src::Slice(p), Src::Scalar(x), Src::Scalar(y)) => {
            o.iter_mut().zip(p).for_each(|(r, &c)| *r = pick(c, x, y))
        }
        (Src::Scalar(c), a, b) => map2(o, a, b, |x, y| pick(c, x, y)),
    }
}

simd_entry!(pub fn binary_at<'a>(op: Binary, xs: Src<'a, f32>, ys: Src<'a, f32>, o: &mut [f32]) => binary);
simd_entry!(pub fn compare_at<'a>(op: Cmp, xs: Src<'a, f32>, ys: Src<'a, f32>, o: &mut [u8]) => compare);
simd_entry!(pub fn unary_at(op: Unary, x: &[f32], o: &mut [f32]) => unary);
simd_entry!(pub fn select_at<'a>(p: Src<'a, u8>, a: Src<'a, f32>, b: Src<'a, f32>, o: &mut [f32]) => select);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Level;
    use crate::testutil::{assert_same_bits, levels, rng, seed, with_edges};
    use rand::Rng;

    const UNARY: [Unary; 7] = [
        Unary::Neg,
        Unary::Abs,
        Unary::Sqrt,
        Unary::Rsqrt,
        Unary::Floor,
        Unary::Exp,
        Unary::Tanh,
    ];
    const BINARY: [Binary; 7] = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Max,
        Binary::Min,
        Binary::Pow,
    ];
    const CMP: [Cmp; 6] = [Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge];

    /// A slice, or its first element as a scalar one time in four.
    fn src<'a>(r: &mut impl Rng, v: &'a [f32]) -> Src<'a, f32> {
        if r.random_range(0..4) == 0 && !v.is_empty() {
            Src::Scalar(v[0])
        } else {
            Src::Slice(v)
        }
    }

    /// Every level gives the portable loop's bits, NaN payloads and signed zeros included
    /// (a planted ties-away rounding or an FMA contraction would fail it).
    #[test]
    fn every_level_gives_the_portable_bits() {
        let seed = seed();
        let mut r = rng(seed);
        for n in [0, 1, 7, 8, 15, 16, 17, 63, 1023, 1025, 4099] {
            let x = with_edges(&mut r, n, 4.0);
            let y = with_edges(&mut r, n, 4.0);
            let p: Vec<u8> = (0..n).map(|_| r.random_range(0..2)).collect();
            for level in levels() {
                let ctx = |what: String| format!("{what} n {n} level {level:?}");
                for op in UNARY {
                    let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                    unary_at(Level::Scalar, op, &x, &mut a);
                    unary_at(level, op, &x, &mut b);
                    assert_same_bits(&ctx(format!("{op:?}")), seed, &b, &a);
                }
                for op in BINARY {
                    let (xs, ys) = (src(&mut r, &x), src(&mut r, &y));
                    let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                    binary_at(Level::Scalar, op, xs, ys, &mut a);
                    binary_at(level, op, xs, ys, &mut b);
                    assert_same_bits(&ctx(format!("{op:?}")), seed, &b, &a);
                }
                for op in CMP {
                    let (xs, ys) = (src(&mut r, &x), src(&mut r, &y));
                    let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
                    compare_at(Level::Scalar, op, xs, ys, &mut a);
                    compare_at(level, op, xs, ys, &mut b);
                    assert_eq!(a, b, "{} (seed {seed})", ctx(format!("{op:?}")));
                }
                let ps = if r.random_range(0..4) == 0 && n > 0 {
                    Src::Scalar(p[0])
                } else {
                    Src::Slice(&p[..])
                };
                let (xs, ys) = (src(&mut r, &x), src(&mut r, &y));
                let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                select_at(Level::Scalar, ps, xs, ys, &mut a);
                select_at(level, ps, xs, ys, &mut b);
                assert_same_bits(&ctx("select".into()), seed, &b, &a);
            }
        }
    }
}
