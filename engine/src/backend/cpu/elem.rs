//! Typed access to `Data` for generic kernels, and kernel arguments.

use crate::dtype::DType;
use crate::host::{Data, DataRef};
use gidd_kernels::element::Element;
pub use gidd_kernels::elementwise::Src;
use half::{bf16, f16};
use std::borrow::Cow;

/// An element type the CPU executor stores: a kernel [`Element`] with its `Data` variant.
pub trait Elem: Element {
    fn slice(d: &Data) -> Option<&[Self]>;
    fn vec_mut(d: &mut Data) -> Option<&mut Vec<Self>>;
}

macro_rules! elem {
    ($t:ty, $var:ident) => {
        impl Elem for $t {
            /// Owned and mapped storage alike: a mapped weight is read in place.
            fn slice(d: &Data) -> Option<&[Self]> {
                match d.view() {
                    DataRef::$var(v) => Some(v),
                    _ => None,
                }
            }
            fn vec_mut(d: &mut Data) -> Option<&mut Vec<Self>> {
                match d {
                    Data::$var(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
elem!(f32, F32);
elem!(f64, F64);
elem!(bf16, BF16);
elem!(f16, F16);
elem!(i32, I32);
elem!(u32, U32);
elem!(i64, I64);
elem!(u8, Bool);

/// Runs `$body` with `$T` bound to the Rust element type of `$dt`.
macro_rules! with_dtype {
    ($dt:expr, $T:ident, $body:block) => {
        match $dt {
            $crate::dtype::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::dtype::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::dtype::DType::BF16 => {
                type $T = half::bf16;
                $body
            }
            $crate::dtype::DType::F16 => {
                type $T = half::f16;
                $body
            }
            $crate::dtype::DType::I32 => {
                type $T = i32;
                $body
            }
            $crate::dtype::DType::U32 => {
                type $T = u32;
                $body
            }
            $crate::dtype::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::dtype::DType::Bool => {
                type $T = u8;
                $body
            }
        }
    };
}
pub(crate) use with_dtype;

/// A kernel argument: a buffer or an unmaterialised scalar splat.
#[derive(Clone, Copy)]
pub enum Arg<'a> {
    Data(&'a Data),
    Splat(f64, DType),
}

impl<'a> Arg<'a> {
    pub fn dtype(&self) -> DType {
        match self {
            Arg::Data(d) => d.dtype(),
            Arg::Splat(_, t) => *t,
        }
    }
    /// The elements as a slice of length `n` (materialising a splat).
    pub fn slice<T: Elem>(&self, n: usize) -> Cow<'a, [T]> {
        match self {
            Arg::Data(d) => Cow::Borrowed(&T::slice(d).expect("dtype checked by infer")[..n]),
            Arg::Splat(x, _) => Cow::Owned(vec![T::from_f64(*x); n]),
        }
    }
    pub fn src<T: Elem>(&self) -> Src<'a, T> {
        match self {
            Arg::Data(d) => Src::Slice(T::slice(d).expect("dtype checked by infer")),
            Arg::Splat(x, _) => Src::Scalar(T::from_f64(*x)),
        }
    }
    /// As f32 values (bf16 and f16 widened), for kernels that compute in f32.
    pub fn f32s(&self, n: usize) -> Cow<'a, [f32]> {
        match self {
            Arg::Data(d) => match d.view() {
                DataRef::F32(v) => Cow::Borrowed(&v[..n]),
                DataRef::BF16(v) => Cow::Owned(v[..n].iter().map(|x| x.to_f32()).collect()),
                DataRef::F16(v) => Cow::Owned(v[..n].iter().map(|x| x.to_f32()).collect()),
                _ => Cow::Owned((0..n).map(|i| d.get_f64(i) as f32).collect()),
            },
            Arg::Splat(x, _) => Cow::Owned(vec![*x as f32; n]),
        }
    }
}
