//! Elementwise kernels: unary, binary, compare, select, convert, iota.
//! Floats compute in f32 (bf16 widened and rounded back), f64 in f64; integers natively.

use super::elem::{with_dtype, Arg, Elem, Src};
use crate::dtype::{strides, DType};
use crate::host::Data;
use crate::op::{BinaryOp, CmpOp, UnaryOp};
use gidd_kernels::convert::{bf16_bits, bf16_to_f32, f32_to_bf16_slice};
use half::bf16;
use rayon::prelude::*;

/// Work below this many elements runs on one thread.
const PAR_MIN: usize = 1 << 15;
const CHUNK: usize = 1 << 14;

fn par_map(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync) {
    if out.len() < PAR_MIN {
        f(0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| f(c * CHUNK, o));
    }
}

#[inline(always)]
fn map2_bf16(
    out: &mut [bf16],
    xs: Src<bf16>,
    ys: Src<bf16>,
    f: impl Fn(f32, f32) -> f32 + Sync + Copy,
) {
    par_map_bf16(out, |s, o| match (xs, ys) {
        (Src::Slice(a), Src::Slice(c)) => o
            .iter_mut()
            .zip(&a[s..])
            .zip(&c[s..])
            .for_each(|((r, a), c)| *r = bf16::from_f32(f(a.to_f32(), c.to_f32()))),
        (Src::Slice(a), Src::Scalar(c)) => {
            let c = c.to_f32();
            o.iter_mut()
                .zip(&a[s..])
                .for_each(|(r, a)| *r = bf16::from_f32(f(a.to_f32(), c)))
        }
        (Src::Scalar(a), Src::Slice(c)) => {
            let a = a.to_f32();
            o.iter_mut()
                .zip(&c[s..])
                .for_each(|(r, c)| *r = bf16::from_f32(f(a, c.to_f32())))
        }
        (Src::Scalar(a), Src::Scalar(c)) => o
            .iter_mut()
            .for_each(|r| *r = bf16::from_f32(f(a.to_f32(), c.to_f32()))),
    });
}

fn par_map_bf16(out: &mut [bf16], f: impl Fn(usize, &mut [bf16]) + Sync) {
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

/// The float op tables, one per float type the executor computes in (f32; f64 for f64).
macro_rules! float_tables {
    ($t:ident, $unary:ident, $binary:ident) => {
        fn $unary(u: UnaryOp) -> fn($t) -> $t {
            match u {
                UnaryOp::Neg => |x| -x,
                UnaryOp::Exp => $t::exp,
                UnaryOp::Log => $t::ln,
                UnaryOp::Tanh => $t::tanh,
                UnaryOp::Logistic => |x| 1.0 / (1.0 + (-x).exp()),
                UnaryOp::Sqrt => $t::sqrt,
                UnaryOp::Rsqrt => |x| 1.0 / x.sqrt(),
                UnaryOp::Abs => $t::abs,
                UnaryOp::Sin => $t::sin,
                UnaryOp::Cos => $t::cos,
                UnaryOp::Floor => $t::floor,
                UnaryOp::Not => |x| x,
            }
        }

        fn $binary(b: BinaryOp) -> fn($t, $t) -> $t {
            match b {
                BinaryOp::Add => |x, y| x + y,
                BinaryOp::Sub => |x, y| x - y,
                BinaryOp::Mul => |x, y| x * y,
                BinaryOp::Div => |x, y| x / y,
                // NaN-propagating, as StableHLO's max/min (the std max/min drop the NaN)
                BinaryOp::Max => |x: $t, y: $t| {
                    if x.is_nan() || y.is_nan() {
                        $t::NAN
                    } else {
                        x.max(y)
                    }
                },
                BinaryOp::Min => |x: $t, y: $t| {
                    if x.is_nan() || y.is_nan() {
                        $t::NAN
                    } else {
                        x.min(y)
                    }
                },
                BinaryOp::Pow => $t::powf,
                BinaryOp::Rem => |x, y| x % y,
                _ => |_, _| $t::NAN,
            }
        }
    };
}
float_tables!(f32, unary_f32, binary_f32);
float_tables!(f64, unary_f64, binary_f64);

pub fn unary(u: UnaryOp, a: Arg, out: &mut Data, n: usize) {
    match out {
        Data::F64(o) => {
            let (f, a) = (unary_f64(u), a.src::<f64>());
            // plain loops: f64 runs check numerics, they are not tuned for speed
            par_fill(&mut o[..n], |i| f(a.at(i)));
        }
        Data::F32(o) => {
            let f = unary_f32(u);
            let a = a.f32s(n);
            par_map(&mut o[..n], |s, o| {
                o.iter_mut().enumerate().for_each(|(i, y)| *y = f(a[s + i]))
            });
        }
        Data::BF16(o) => {
            let f = unary_f32(u);
            let a = a.src::<bf16>();
            par_map_bf16(&mut o[..n], |s, o| {
                o.iter_mut()
                    .enumerate()
                    .for_each(|(i, y)| *y = bf16::from_f32(f(a.at(s + i).to_f32())))
            });
        }
        Data::I32(o) => int_unary(
            u,
            a.src::<i32>(),
            &mut o[..n],
            |x| x.wrapping_neg(),
            |x| x.wrapping_abs(),
            |x| !x,
        ),
        Data::I64(o) => int_unary(
            u,
            a.src::<i64>(),
            &mut o[..n],
            |x| x.wrapping_neg(),
            |x| x.wrapping_abs(),
            |x| !x,
        ),
        Data::U32(o) => int_unary(u, a.src::<u32>(), &mut o[..n], |x| x, |x| x, |x| !x),
        Data::Bool(o) => int_unary(u, a.src::<u8>(), &mut o[..n], |x| x, |x| x, |x| 1 - x),
    }
}

fn int_unary<T: Copy>(
    u: UnaryOp,
    a: Src<T>,
    o: &mut [T],
    neg: fn(T) -> T,
    abs: fn(T) -> T,
    not: fn(T) -> T,
) {
    let f = match u {
        UnaryOp::Neg => neg,
        UnaryOp::Abs => abs,
        _ => not,
    };
    o.iter_mut().enumerate().for_each(|(i, y)| *y = f(a.at(i)));
}

/// out = f(x, y) elementwise over slices or scalars, chunked across threads when large.
#[inline(always)]
fn map2(out: &mut [f32], xs: Src<f32>, ys: Src<f32>, f: impl Fn(f32, f32) -> f32 + Sync + Copy) {
    par_map(out, |s, o| match (xs, ys) {
        (Src::Slice(a), Src::Slice(c)) => o
            .iter_mut()
            .zip(&a[s..])
            .zip(&c[s..])
            .for_each(|((r, &a), &c)| *r = f(a, c)),
        (Src::Slice(a), Src::Scalar(c)) => {
            o.iter_mut().zip(&a[s..]).for_each(|(r, &a)| *r = f(a, c))
        }
        (Src::Scalar(a), Src::Slice(c)) => {
            o.iter_mut().zip(&c[s..]).for_each(|(r, &c)| *r = f(a, c))
        }
        (Src::Scalar(a), Src::Scalar(c)) => o.iter_mut().for_each(|r| *r = f(a, c)),
    });
}

pub fn binary(b: BinaryOp, x: Arg, y: Arg, out: &mut Data, n: usize) {
    match out {
        Data::F64(o) => {
            let (f, xs, ys) = (binary_f64(b), x.src::<f64>(), y.src::<f64>());
            par_fill(&mut o[..n], |i| f(xs.at(i), ys.at(i)));
        }
        Data::F32(o) => {
            let (xs, ys) = (x.src::<f32>(), y.src::<f32>());
            let o = &mut o[..n];
            // One monomorphised loop per op, so the compiler vectorises add/mul/sub/div/max/min.
            match b {
                BinaryOp::Add => map2(o, xs, ys, |a, c| a + c),
                BinaryOp::Sub => map2(o, xs, ys, |a, c| a - c),
                BinaryOp::Mul => map2(o, xs, ys, |a, c| a * c),
                BinaryOp::Div => map2(o, xs, ys, |a, c| a / c),
                BinaryOp::Max => map2(o, xs, ys, |a: f32, c: f32| {
                    if a.is_nan() || c.is_nan() {
                        f32::NAN
                    } else {
                        a.max(c)
                    }
                }),
                BinaryOp::Min => map2(o, xs, ys, |a: f32, c: f32| {
                    if a.is_nan() || c.is_nan() {
                        f32::NAN
                    } else {
                        a.min(c)
                    }
                }),
                _ => {
                    let f = binary_f32(b);
                    map2(o, xs, ys, f)
                }
            }
        }
        Data::BF16(o) => {
            // Computed in f32 and rounded once, chunked across threads; one loop per op.
            let (xs, ys) = (x.src::<bf16>(), y.src::<bf16>());
            let o = &mut o[..n];
            match b {
                BinaryOp::Add => map2_bf16(o, xs, ys, |a, c| a + c),
                BinaryOp::Sub => map2_bf16(o, xs, ys, |a, c| a - c),
                BinaryOp::Mul => map2_bf16(o, xs, ys, |a, c| a * c),
                BinaryOp::Div => map2_bf16(o, xs, ys, |a, c| a / c),
                _ => {
                    let f = binary_f32(b);
                    map2_bf16(o, xs, ys, f)
                }
            }
        }
        Data::I32(o) => int_binary(
            b,
            x.src(),
            y.src(),
            &mut o[..n],
            |a: i32, s| a.wrapping_shl(s as u32),
            |a, s| ((a as u32).wrapping_shr(s as u32)) as i32,
        ),
        Data::I64(o) => int_binary(
            b,
            x.src(),
            y.src(),
            &mut o[..n],
            |a: i64, s| a.wrapping_shl(s as u32),
            |a, s| ((a as u64).wrapping_shr(s as u32)) as i64,
        ),
        Data::U32(o) => int_binary(
            b,
            x.src(),
            y.src(),
            &mut o[..n],
            |a: u32, s| a.wrapping_shl(s),
            |a, s| a.wrapping_shr(s),
        ),
        Data::Bool(o) => int_binary(b, x.src(), y.src(), &mut o[..n], |a: u8, _| a, |a, _| a),
    }
}

/// Integer arithmetic wraps (as StableHLO's does); shifts by >= the bit width give 0.
trait IntOps:
    Copy
    + Default
    + PartialOrd
    + std::ops::BitAnd<Output = Self>
    + std::ops::BitOr<Output = Self>
    + std::ops::BitXor<Output = Self>
{
    const BITS: u32;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    fn rem(self, o: Self) -> Self;
    fn as_shift(self) -> u64;
}
macro_rules! int_ops {
    ($t:ty) => {
        impl IntOps for $t {
            const BITS: u32 = <$t>::BITS;
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            fn div(self, o: Self) -> Self {
                if o == 0 {
                    0
                } else {
                    self.wrapping_div(o)
                }
            }
            fn rem(self, o: Self) -> Self {
                if o == 0 {
                    0
                } else {
                    self.wrapping_rem(o)
                }
            }
            fn as_shift(self) -> u64 {
                self as u64
            }
        }
    };
}
int_ops!(i32);
int_ops!(i64);
int_ops!(u32);
int_ops!(u8);

fn int_binary<T: IntOps>(
    b: BinaryOp,
    x: Src<T>,
    y: Src<T>,
    o: &mut [T],
    shl: fn(T, T) -> T,
    shr: fn(T, T) -> T,
) {
    let f = |a: T, c: T| -> T {
        match b {
            BinaryOp::Add => a.add(c),
            BinaryOp::Sub => a.sub(c),
            BinaryOp::Mul => a.mul(c),
            BinaryOp::Div => a.div(c),
            BinaryOp::Rem => a.rem(c),
            BinaryOp::Max => {
                if a >= c {
                    a
                } else {
                    c
                }
            }
            BinaryOp::Min => {
                if a <= c {
                    a
                } else {
                    c
                }
            }
            BinaryOp::And => a & c,
            BinaryOp::Or => a | c,
            BinaryOp::Xor => a ^ c,
            BinaryOp::ShiftLeft | BinaryOp::ShiftRightLogical if c.as_shift() >= T::BITS as u64 => {
                T::default()
            }
            BinaryOp::ShiftLeft => shl(a, c),
            BinaryOp::ShiftRightLogical => shr(a, c),
            BinaryOp::Pow => T::default(),
        }
    };
    o.iter_mut()
        .enumerate()
        .for_each(|(i, r)| *r = f(x.at(i), y.at(i)));
}

/// Float operands as f32 (bf16 widens exactly, so comparisons are unchanged), one
/// dispatch outside the loop: relu's mask and friends on bf16 activations.
fn compare_float(c: CmpOp, x: Arg, y: Arg, out: &mut [u8]) -> bool {
    fn go(
        c: CmpOp,
        fx: impl Fn(usize) -> f32 + Sync,
        fy: impl Fn(usize) -> f32 + Sync,
        out: &mut [u8],
    ) {
        match c {
            CmpOp::Eq => par_fill(out, |i| u8::from(fx(i) == fy(i))),
            CmpOp::Ne => par_fill(out, |i| u8::from(fx(i) != fy(i))),
            CmpOp::Lt => par_fill(out, |i| u8::from(fx(i) < fy(i))),
            CmpOp::Le => par_fill(out, |i| u8::from(fx(i) <= fy(i))),
            CmpOp::Gt => par_fill(out, |i| u8::from(fx(i) > fy(i))),
            CmpOp::Ge => par_fill(out, |i| u8::from(fx(i) >= fy(i))),
        }
    }
    macro_rules! with_y {
        ($fx:expr) => {
            match y {
                Arg::Data(Data::F32(v)) => go(c, $fx, |i| v[i], out),
                Arg::Data(Data::BF16(v)) => go(c, $fx, |i| bf16_to_f32(v[i]), out),
                Arg::Splat(s, DType::F32) => {
                    let s = s as f32;
                    go(c, $fx, |_| s, out)
                }
                Arg::Splat(s, DType::BF16) => {
                    let s = bf16::from_f64(s).to_f32();
                    go(c, $fx, |_| s, out)
                }
                _ => return false,
            }
        };
    }
    match x {
        Arg::Data(Data::F32(v)) => with_y!(|i| v[i]),
        Arg::Data(Data::BF16(v)) => with_y!(|i| bf16_to_f32(v[i])),
        _ => return false,
    }
    true
}

pub fn compare(c: CmpOp, x: Arg, y: Arg, out: &mut [u8]) {
    if compare_float(c, x, y, out) {
        return;
    }
    fn go<T: Elem + PartialOrd>(c: CmpOp, x: Src<T>, y: Src<T>, out: &mut [u8]) {
        let f = |a: T, b: T| match c {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        };
        par_fill(out, |i| u8::from(f(x.at(i), y.at(i))));
    }
    with_dtype!(x.dtype(), T, { go::<T>(c, x.src(), y.src(), out) })
}

pub fn select(p: Arg, a: Arg, b: Arg, out: &mut Data, n: usize) {
    // bf16 between two arrays or an array and a splat (relu's backward, masks): one
    // dispatch outside the loop, moving bits
    if let (Arg::Data(Data::Bool(pv)), Data::BF16(o)) = (&p, &mut *out) {
        fn bits<'a>(x: &Arg<'a>) -> Option<Src<'a, u16>> {
            match *x {
                Arg::Data(Data::BF16(v)) => Some(Src::Slice(bf16_bits(v))),
                Arg::Splat(s, DType::BF16) => Some(Src::Scalar(bf16::from_f64(s).to_bits())),
                _ => None,
            }
        }
        if let (Some(av), Some(bv)) = (bits(&a), bits(&b)) {
            let o = &mut o[..n];
            match (av, bv) {
                (Src::Slice(x), Src::Slice(y)) => {
                    par_fill(o, |i| bf16::from_bits(if pv[i] != 0 { x[i] } else { y[i] }))
                }
                (Src::Slice(x), Src::Scalar(y)) => {
                    par_fill(o, |i| bf16::from_bits(if pv[i] != 0 { x[i] } else { y }))
                }
                (Src::Scalar(x), Src::Slice(y)) => {
                    par_fill(o, |i| bf16::from_bits(if pv[i] != 0 { x } else { y[i] }))
                }
                (Src::Scalar(x), Src::Scalar(y)) => {
                    par_fill(o, |i| bf16::from_bits(if pv[i] != 0 { x } else { y }))
                }
            }
            return;
        }
    }
    let p = p.src::<u8>();
    with_dtype!(out.dtype(), T, {
        let (a, b) = (a.src::<T>(), b.src::<T>());
        let o = &mut T::vec_mut(out).expect("slot dtype")[..n];
        par_fill(o, |i| if p.at(i) != 0 { a.at(i) } else { b.at(i) });
    })
}

pub fn convert(a: Arg, out: &mut Data, n: usize) {
    match (a, &mut *out) {
        (Arg::Data(Data::F32(x)), Data::BF16(o)) => {
            par_map_bf16(&mut o[..n], |s, o| f32_to_bf16_slice(&x[s..s + o.len()], o))
        }
        (Arg::Data(Data::BF16(x)), Data::F32(o)) => par_fill(&mut o[..n], |i| bf16_to_f32(x[i])),
        // Integer <-> integer conversions wrap (truncate), as XLA's do.
        (Arg::Data(Data::I64(x)), Data::U32(o)) => o[..n]
            .iter_mut()
            .zip(&x[..n])
            .for_each(|(r, &v)| *r = v as u32),
        (Arg::Data(Data::U32(x)), Data::I64(o)) => o[..n]
            .iter_mut()
            .zip(&x[..n])
            .for_each(|(r, &v)| *r = v as i64),
        (Arg::Data(Data::I64(x)), Data::I32(o)) => o[..n]
            .iter_mut()
            .zip(&x[..n])
            .for_each(|(r, &v)| *r = v as i32),
        (Arg::Data(Data::U32(x)), Data::I32(o)) => o[..n]
            .iter_mut()
            .zip(&x[..n])
            .for_each(|(r, &v)| *r = v as i32),
        (Arg::Data(Data::I32(x)), Data::U32(o)) => o[..n]
            .iter_mut()
            .zip(&x[..n])
            .for_each(|(r, &v)| *r = v as u32),
        (a, o) => {
            // Through f64: exact for every remaining pair (floats, bools, small ints).
            with_dtype!(o.dtype(), T, {
                let o = &mut T::vec_mut(o).expect("slot dtype")[..n];
                match a {
                    Arg::Data(d) => par_fill(o, |i| T::from_f64(to_f64_for(d, i))),
                    Arg::Splat(x, _) => o.iter_mut().for_each(|r| *r = T::from_f64(x)),
                }
            })
        }
    }
}

fn to_f64_for(d: &Data, i: usize) -> f64 {
    d.get_f64(i)
}

pub fn iota(shape: &[usize], dim: usize, out: &mut Data) {
    let st = strides(shape);
    let n: usize = shape.iter().product();
    with_dtype!(out.dtype(), T, {
        let o = &mut T::vec_mut(out).expect("slot dtype")[..n];
        o.iter_mut()
            .enumerate()
            .for_each(|(i, r)| *r = T::from_f64(((i / st[dim]) % shape[dim]) as f64));
    })
}

pub fn fill(x: f64, out: &mut Data, n: usize) {
    with_dtype!(out.dtype(), T, {
        T::vec_mut(out).expect("slot dtype")[..n].fill(T::from_f64(x));
    })
}
