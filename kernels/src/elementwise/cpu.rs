//! The CPU elementwise loops: monomorphised per op and operand form (slice or scalar) so
//! the compiler vectorises them, split across rayon's pool when the output is large.

use super::{simd_f32, Binary, Cmp, Int, Src, Unary};
use crate::element::{Element, Half};
use crate::layout::strides;
use rayon::prelude::*;

/// Work below this many elements runs on one thread.
const PAR_MIN: usize = 1 << 15;
const CHUNK: usize = 1 << 14;

/// `f(start, chunk)` over consecutive chunks of `out`, in parallel when it is large.
fn par_map<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    if out.len() < PAR_MIN {
        f(0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| f(c * CHUNK, o));
    }
}

/// out[i] = f(i), split over rayon's pool when the output is large.
fn par_fill<T: Send>(out: &mut [T], f: impl Fn(usize) -> T + Sync) {
    if out.len() < PAR_MIN {
        out.iter_mut().enumerate().for_each(|(i, r)| *r = f(i));
    } else {
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
            o.iter_mut()
                .enumerate()
                .for_each(|(i, r)| *r = f(c * CHUNK + i))
        });
    }
}

/// The float op tables, one per float type we compute in (f32, also for bf16; f64).
macro_rules! float_tables {
    ($t:ident, $unary:ident, $binary:ident) => {
        pub(super) fn $unary(u: Unary) -> fn($t) -> $t {
            match u {
                Unary::Neg => |x| -x,
                Unary::Exp => $t::exp,
                Unary::Log => $t::ln,
                Unary::Tanh => $t::tanh,
                Unary::Logistic => |x| 1.0 / (1.0 + (-x).exp()),
                Unary::Sqrt => $t::sqrt,
                Unary::Rsqrt => |x| 1.0 / x.sqrt(),
                Unary::Abs => $t::abs,
                Unary::Sin => $t::sin,
                Unary::Cos => $t::cos,
                Unary::Floor => $t::floor,
                Unary::Not => |x| x,
            }
        }

        pub(super) fn $binary(b: Binary) -> fn($t, $t) -> $t {
            match b {
                Binary::Add => |x, y| x + y,
                Binary::Sub => |x, y| x - y,
                Binary::Mul => |x, y| x * y,
                Binary::Div => |x, y| x / y,
                // NaN-propagating, as StableHLO's max/min (the std max/min drop the NaN)
                Binary::Max => |x: $t, y: $t| {
                    if x.is_nan() || y.is_nan() {
                        $t::NAN
                    } else {
                        x.max(y)
                    }
                },
                Binary::Min => |x: $t, y: $t| {
                    if x.is_nan() || y.is_nan() {
                        $t::NAN
                    } else {
                        x.min(y)
                    }
                },
                Binary::Pow => $t::powf,
                Binary::Rem => |x, y| x % y,
                Binary::And
                | Binary::Or
                | Binary::Xor
                | Binary::ShiftLeft
                | Binary::ShiftRightLogical => |_, _| $t::NAN,
            }
        }
    };
}
float_tables!(f32, unary_fn_f32, binary_fn_f32);
float_tables!(f64, unary_fn_f64, binary_fn_f64);

/// `out[i] = op(x[i])` in f32.
pub fn unary_f32(op: Unary, x: &[f32], out: &mut [f32]) {
    let level = crate::simd::level();
    par_map(out, |s, o| {
        simd_f32::unary_at(level, op, &x[s..s + o.len()], o)
    });
}

/// `out[i] = op(x[i])` in f64.
pub fn unary_f64(op: Unary, x: Src<f64>, out: &mut [f64]) {
    let f = unary_fn_f64(op);
    // plain loops: f64 runs check numerics, they are not tuned for speed
    par_fill(out, |i| f(x.at(i)));
}

/// `out[i] = op(x[i])` computed in f32, rounded to the half type (bf16, f16) once.
pub fn unary_half<H: Half>(op: Unary, x: Src<H>, out: &mut [H]) {
    let f = unary_fn_f32(op);
    par_map(out, |s, o| {
        o.iter_mut()
            .enumerate()
            .for_each(|(i, y)| *y = H::from_f32(f(x.at(s + i).to_f32())))
    });
}

/// `out[i] = op(x[i])` for integers (and booleans): `neg`, `abs`, else `not`.
pub fn unary_int<T: Int>(op: Unary, x: Src<T>, out: &mut [T]) {
    let f = match op {
        Unary::Neg => T::neg,
        Unary::Abs => T::abs,
        _ => T::not,
    };
    out.iter_mut()
        .enumerate()
        .for_each(|(i, y)| *y = f(x.at(i)));
}

/// out = f(x, y) on half operands (bf16, f16), computing `f` in f32 and rounding once.
#[inline(always)]
fn map2_half<H: Half>(
    out: &mut [H],
    xs: Src<H>,
    ys: Src<H>,
    f: impl Fn(f32, f32) -> f32 + Sync + Copy,
) {
    par_map(out, |s, o| match (xs, ys) {
        (Src::Slice(a), Src::Slice(c)) => o
            .iter_mut()
            .zip(&a[s..])
            .zip(&c[s..])
            .for_each(|((r, a), c)| *r = H::from_f32(f(a.to_f32(), c.to_f32()))),
        (Src::Slice(a), Src::Scalar(c)) => {
            let c = c.to_f32();
            o.iter_mut()
                .zip(&a[s..])
                .for_each(|(r, a)| *r = H::from_f32(f(a.to_f32(), c)))
        }
        (Src::Scalar(a), Src::Slice(c)) => {
            let a = a.to_f32();
            o.iter_mut()
                .zip(&c[s..])
                .for_each(|(r, c)| *r = H::from_f32(f(a, c.to_f32())))
        }
        (Src::Scalar(a), Src::Scalar(c)) => o
            .iter_mut()
            .for_each(|r| *r = H::from_f32(f(a.to_f32(), c.to_f32()))),
    });
}

/// `out[i] = op(x[i], y[i])` in f32.
pub fn binary_f32(op: Binary, xs: Src<f32>, ys: Src<f32>, o: &mut [f32]) {
    let level = crate::simd::level();
    par_map(o, |s, oc| {
        simd_f32::binary_at(level, op, xs.from(s), ys.from(s), oc)
    });
}

/// `out[i] = op(x[i], y[i])` in f64.
pub fn binary_f64(op: Binary, xs: Src<f64>, ys: Src<f64>, o: &mut [f64]) {
    let f = binary_fn_f64(op);
    par_fill(o, |i| f(xs.at(i), ys.at(i)));
}

/// `out[i] = op(x[i], y[i])` computed in f32, rounded to the half type once.
pub fn binary_half<H: Half>(op: Binary, xs: Src<H>, ys: Src<H>, o: &mut [H]) {
    match op {
        Binary::Add => map2_half(o, xs, ys, |a, c| a + c),
        Binary::Sub => map2_half(o, xs, ys, |a, c| a - c),
        Binary::Mul => map2_half(o, xs, ys, |a, c| a * c),
        Binary::Div => map2_half(o, xs, ys, |a, c| a / c),
        _ => map2_half(o, xs, ys, binary_fn_f32(op)),
    }
}

/// `out[i] = op(x[i], y[i])` for integers (and booleans), wrapping.
pub fn binary_int<T: Int>(op: Binary, x: Src<T>, y: Src<T>, o: &mut [T]) {
    let f = |a: T, c: T| -> T {
        match op {
            Binary::Add => a.add(c),
            Binary::Sub => a.sub(c),
            Binary::Mul => a.mul(c),
            Binary::Div => a.div(c),
            Binary::Rem => a.rem(c),
            Binary::Max => {
                if a >= c {
                    a
                } else {
                    c
                }
            }
            Binary::Min => {
                if a <= c {
                    a
                } else {
                    c
                }
            }
            Binary::And => a & c,
            Binary::Or => a | c,
            Binary::Xor => a ^ c,
            Binary::ShiftLeft | Binary::ShiftRightLogical if c.as_shift() >= T::BITS as u64 => {
                T::default()
            }
            Binary::ShiftLeft => a.shl(c),
            Binary::ShiftRightLogical => a.shr(c),
            Binary::Pow => T::default(),
        }
    };
    o.iter_mut()
        .enumerate()
        .for_each(|(i, r)| *r = f(x.at(i), y.at(i)));
}

/// `out[i] = op(fx(i), fy(i))` as 0/1, one loop per op.
#[inline(always)]
fn compare_with<T: PartialOrd>(
    op: Cmp,
    fx: impl Fn(usize) -> T + Sync,
    fy: impl Fn(usize) -> T + Sync,
    out: &mut [u8],
) {
    match op {
        Cmp::Eq => par_fill(out, |i| u8::from(fx(i) == fy(i))),
        Cmp::Ne => par_fill(out, |i| u8::from(fx(i) != fy(i))),
        Cmp::Lt => par_fill(out, |i| u8::from(fx(i) < fy(i))),
        Cmp::Le => par_fill(out, |i| u8::from(fx(i) <= fy(i))),
        Cmp::Gt => par_fill(out, |i| u8::from(fx(i) > fy(i))),
        Cmp::Ge => par_fill(out, |i| u8::from(fx(i) >= fy(i))),
    }
}

/// `out[i] = x[i] op y[i]` (1 or 0) for f32.
pub fn compare_f32(op: Cmp, x: Src<f32>, y: Src<f32>, out: &mut [u8]) {
    let level = crate::simd::level();
    par_map(out, |s, o| {
        simd_f32::compare_at(level, op, x.from(s), y.from(s), o)
    });
}

/// `out[i] = p[i] != 0 ? a[i] : b[i]` in f32.
pub fn select_f32(p: Src<u8>, a: Src<f32>, b: Src<f32>, out: &mut [f32]) {
    let level = crate::simd::level();
    par_map(out, |s, o| {
        simd_f32::select_at(level, p.from(s), a.from(s), b.from(s), o)
    });
}

/// `out[i] = x[i] op y[i]` (1 or 0) for bf16 or f16, compared as f32 (both widen exactly, so
/// the result is unchanged): relu's mask and friends on half activations.
pub fn compare_half<H: Half>(op: Cmp, x: Src<H>, y: Src<H>, out: &mut [u8]) {
    macro_rules! with_y {
        ($fx:expr) => {
            match y {
                Src::Slice(v) => compare_with(op, $fx, |i| v[i].to_f32(), out),
                Src::Scalar(s) => {
                    let s = s.to_f32();
                    compare_with(op, $fx, |_| s, out)
                }
            }
        };
    }
    match x {
        Src::Slice(v) => with_y!(|i| v[i].to_f32()),
        Src::Scalar(s) => {
            let s = s.to_f32();
            with_y!(|_| s)
        }
    }
}

/// `out[i] = x[i] op y[i]` (1 or 0) for any ordered type.
pub fn compare<T: Copy + PartialOrd + Sync>(op: Cmp, x: Src<T>, y: Src<T>, out: &mut [u8]) {
    compare_with(op, |i| x.at(i), |i| y.at(i), out)
}

/// `out[i] = if p[i] != 0 { a[i] } else { b[i] }`, moving bits (NaN payloads survive).
pub fn select<T: Copy + Send + Sync>(p: Src<u8>, a: Src<T>, b: Src<T>, out: &mut [T]) {
    // One dispatch outside the loop (relu's backward and masks select between an array
    // and a splat).
    // Zipped slices (no index bounds checks), so the loops vectorise to masked moves.
    let pick = |c: u8, x: T, y: T| if c != 0 { x } else { y };
    match (p, a, b) {
        (Src::Slice(p), Src::Slice(x), Src::Slice(y)) => par_map(out, |s, o| {
            o.iter_mut()
                .zip(&p[s..])
                .zip(&x[s..])
                .zip(&y[s..])
                .for_each(|(((r, &c), &x), &y)| *r = pick(c, x, y))
        }),
        (Src::Slice(p), Src::Slice(x), Src::Scalar(y)) => par_map(out, |s, o| {
            o.iter_mut()
                .zip(&p[s..])
                .zip(&x[s..])
                .for_each(|((r, &c), &x)| *r = pick(c, x, y))
        }),
        (Src::Slice(p), Src::Scalar(x), Src::Slice(y)) => par_map(out, |s, o| {
            o.iter_mut()
                .zip(&p[s..])
                .zip(&y[s..])
                .for_each(|((r, &c), &y)| *r = pick(c, x, y))
        }),
        (Src::Slice(p), Src::Scalar(x), Src::Scalar(y)) => par_map(out, |s, o| {
            o.iter_mut()
                .zip(&p[s..])
                .for_each(|(r, &c)| *r = pick(c, x, y))
        }),
        (Src::Scalar(p), a, b) => par_fill(out, |i| if p != 0 { a.at(i) } else { b.at(i) }),
    }
}

/// `out[i] = x[i]` rounded to the nearest bf16 or f16 (ties to even).
pub fn round_to_half<H: Half>(x: &[f32], out: &mut [H]) {
    par_map(out, |s, o| H::round_slice(&x[s..s + o.len()], o))
}

/// `out[i] = x[i]` widened to f32 (exact).
pub fn widen_half<H: Half>(x: &[H], out: &mut [f32]) {
    par_fill(out, |i| x[i].to_f32())
}

/// `out[i] = x[i] as T`: integer conversions keep the low bits, as XLA's do.
pub fn wrap_int<S: Int, T: Int>(x: &[S], out: &mut [T]) {
    out.iter_mut()
        .zip(x)
        .for_each(|(r, &v)| *r = T::from_i64(v.to_i64()));
}

/// `out[i] = T::from_f64(x[i].to_f64())`: exact for every pair of floats, bools and
/// small integers (the pairs [`round_to_half`] and [`wrap_int`] do not cover).
pub fn convert<S: Element, T: Element>(x: &[S], out: &mut [T]) {
    par_fill(out, |i| T::from_f64(x[i].to_f64()))
}

/// `out[i]` = the index along `dim` of row-major position `i` in `shape`.
pub fn iota<T: Element>(shape: &[usize], dim: usize, out: &mut [T]) {
    let st = strides(shape);
    out.iter_mut()
        .enumerate()
        .for_each(|(i, r)| *r = T::from_f64(((i / st[dim]) % shape[dim]) as f64));
}
