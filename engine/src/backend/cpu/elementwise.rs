//! Elementwise ops: graph values and dtypes matched to typed slices for
//! `gidd_kernels::elementwise`, which holds the loops and their numerics.

use super::elem::{with_dtype, Arg, Elem};
use crate::dtype::DType;
use crate::host::{Data, DataRef};
use crate::op::{BinaryOp, CmpOp, UnaryOp};
use gidd_kernels::element::Element;
use gidd_kernels::elementwise as ew;

pub fn unary(u: UnaryOp, a: Arg, out: &mut Data, n: usize) {
    match out {
        Data::F64(o) => ew::unary_f64(u, a.src(), &mut o[..n]),
        Data::F32(o) => ew::unary_f32(u, &a.f32s(n), &mut o[..n]),
        Data::BF16(o) => ew::unary_half(u, a.src(), &mut o[..n]),
        Data::F16(o) => ew::unary_half(u, a.src(), &mut o[..n]),
        Data::I32(o) => ew::unary_int(u, a.src(), &mut o[..n]),
        Data::I64(o) => ew::unary_int(u, a.src(), &mut o[..n]),
        Data::U32(o) => ew::unary_int(u, a.src(), &mut o[..n]),
        Data::Bool(o) => ew::unary_int(u, a.src(), &mut o[..n]),
        Data::Mapped(_) => unreachable!("outputs are owned slots"),
    }
}

pub fn binary(b: BinaryOp, x: Arg, y: Arg, out: &mut Data, n: usize) {
    match out {
        Data::F64(o) => ew::binary_f64(b, x.src(), y.src(), &mut o[..n]),
        Data::F32(o) => ew::binary_f32(b, x.src(), y.src(), &mut o[..n]),
        Data::BF16(o) => ew::binary_half(b, x.src(), y.src(), &mut o[..n]),
        Data::F16(o) => ew::binary_half(b, x.src(), y.src(), &mut o[..n]),
        Data::I32(o) => ew::binary_int(b, x.src(), y.src(), &mut o[..n]),
        Data::I64(o) => ew::binary_int(b, x.src(), y.src(), &mut o[..n]),
        Data::U32(o) => ew::binary_int(b, x.src(), y.src(), &mut o[..n]),
        Data::Bool(o) => ew::binary_int(b, x.src(), y.src(), &mut o[..n]),
        Data::Mapped(_) => unreachable!("outputs are owned slots"),
    }
}

pub fn compare(c: CmpOp, x: Arg, y: Arg, out: &mut [u8]) {
    match x.dtype() {
        // f32 and the halves (relu's mask on activations) resolve the operand forms outside
        // the loop
        DType::F32 => ew::compare_f32(c, x.src(), y.src(), out),
        DType::BF16 => ew::compare_half::<half::bf16>(c, x.src(), y.src(), out),
        DType::F16 => ew::compare_half::<half::f16>(c, x.src(), y.src(), out),
        dt => with_dtype!(dt, T, { ew::compare::<T>(c, x.src(), y.src(), out) }),
    }
}

pub fn select(p: Arg, a: Arg, b: Arg, out: &mut Data, n: usize) {
    let p = p.src::<u8>();
    if let Data::F32(o) = out {
        return ew::select_f32(p, a.src(), b.src(), &mut o[..n]);
    }
    with_dtype!(out.dtype(), T, {
        let o = &mut T::vec_mut(out).expect("slot dtype")[..n];
        ew::select(p, a.src::<T>(), b.src::<T>(), o)
    })
}

pub fn convert(a: Arg, out: &mut Data, n: usize) {
    let x = match a {
        Arg::Data(d) => d,
        Arg::Splat(x, _) => return fill(x, out, n),
    };
    match (x.view(), &mut *out) {
        (DataRef::F32(x), Data::BF16(o)) => ew::round_to_half(&x[..n], &mut o[..n]),
        (DataRef::BF16(x), Data::F32(o)) => ew::widen_half(&x[..n], &mut o[..n]),
        (DataRef::F32(x), Data::F16(o)) => ew::round_to_half(&x[..n], &mut o[..n]),
        (DataRef::F16(x), Data::F32(o)) => ew::widen_half(&x[..n], &mut o[..n]),
        // Integer <-> integer conversions wrap (truncate), as XLA's do.
        (DataRef::I64(x), Data::U32(o)) => ew::wrap_int(&x[..n], &mut o[..n]),
        (DataRef::U32(x), Data::I64(o)) => ew::wrap_int(&x[..n], &mut o[..n]),
        (DataRef::I64(x), Data::I32(o)) => ew::wrap_int(&x[..n], &mut o[..n]),
        (DataRef::U32(x), Data::I32(o)) => ew::wrap_int(&x[..n], &mut o[..n]),
        (DataRef::I32(x), Data::U32(o)) => ew::wrap_int(&x[..n], &mut o[..n]),
        (_, o) => with_dtype!(o.dtype(), T, {
            let o = &mut T::vec_mut(o).expect("slot dtype")[..n];
            with_dtype!(x.dtype(), S, {
                ew::convert(&S::slice(x).expect("matched dtype")[..n], o)
            })
        }),
    }
}

pub fn iota(shape: &[usize], dim: usize, out: &mut Data) {
    let n: usize = shape.iter().product();
    with_dtype!(out.dtype(), T, {
        ew::iota(shape, dim, &mut T::vec_mut(out).expect("slot dtype")[..n])
    })
}

pub fn fill(x: f64, out: &mut Data, n: usize) {
    with_dtype!(out.dtype(), T, {
        T::vec_mut(out).expect("slot dtype")[..n].fill(T::from_f64(x));
    })
}
