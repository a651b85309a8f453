//! Host-side tensors: what goes into and comes out of programs.

use crate::dtype::{numel, DType};
use crate::error::{Error, Result};
pub use crate::mapped::{Backing, Mapped, MappedElem};
use half::{bf16, f16};
use std::borrow::Cow;

/// Typed element storage. Bool is stored as bytes 0/1.
///
/// `Mapped` elements are read-only and live outside the heap (a memory-mapped checkpoint):
/// program inputs only, read in place by the CPU executor; everything that writes builds
/// owned storage.
#[derive(Clone, Debug)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    BF16(Vec<bf16>),
    F16(Vec<f16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    Bool(Vec<u8>),
    Mapped(Mapped),
}

/// The elements of a [`Data`] as a typed slice, owned and mapped storage alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DataRef<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    BF16(&'a [bf16]),
    F16(&'a [f16]),
    I32(&'a [i32]),
    U32(&'a [u32]),
    I64(&'a [i64]),
    Bool(&'a [u8]),
}

/// Equal when of one dtype with equal elements, whether owned or mapped.
impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.view() == other.view()
    }
}

impl Data {
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            Data::BF16(_) => DType::BF16,
            Data::F16(_) => DType::F16,
            Data::I32(_) => DType::I32,
            Data::U32(_) => DType::U32,
            Data::I64(_) => DType::I64,
            Data::Bool(_) => DType::Bool,
            Data::Mapped(m) => m.dtype(),
        }
    }
    /// The elements in place, as a typed slice.
    pub fn view(&self) -> DataRef<'_> {
        fn typed<T: MappedElem>(m: &Mapped) -> &[T] {
            // Mapped::new admits no bool and `typed` is asked for the run's own type.
            m.typed::<T>().unwrap_or_default()
        }
        match self {
            Data::F32(v) => DataRef::F32(v),
            Data::F64(v) => DataRef::F64(v),
            Data::BF16(v) => DataRef::BF16(v),
            Data::F16(v) => DataRef::F16(v),
            Data::I32(v) => DataRef::I32(v),
            Data::U32(v) => DataRef::U32(v),
            Data::I64(v) => DataRef::I64(v),
            Data::Bool(v) => DataRef::Bool(v),
            Data::Mapped(m) => match m.dtype() {
                DType::F32 => DataRef::F32(typed(m)),
                DType::F64 => DataRef::F64(typed(m)),
                DType::BF16 => DataRef::BF16(typed(m)),
                DType::F16 => DataRef::F16(typed(m)),
                DType::I32 => DataRef::I32(typed(m)),
                DType::U32 => DataRef::U32(typed(m)),
                DType::I64 => DataRef::I64(typed(m)),
                DType::Bool => DataRef::Bool(m.bytes()),
            },
        }
    }
    /// Owned storage: borrowed when it already is, a copy of mapped elements otherwise
    /// (for code that needs a `Vec`, such as a device upload or a collective).
    pub fn materialize(&self) -> Cow<'_, Data> {
        if !matches!(self, Data::Mapped(_)) {
            return Cow::Borrowed(self);
        }
        Cow::Owned(match self.view() {
            DataRef::F32(v) => Data::F32(v.to_vec()),
            DataRef::F64(v) => Data::F64(v.to_vec()),
            DataRef::BF16(v) => Data::BF16(v.to_vec()),
            DataRef::F16(v) => Data::F16(v.to_vec()),
            DataRef::I32(v) => Data::I32(v.to_vec()),
            DataRef::U32(v) => Data::U32(v.to_vec()),
            DataRef::I64(v) => Data::I64(v.to_vec()),
            DataRef::Bool(v) => Data::Bool(v.to_vec()),
        })
    }
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::BF16(v) => v.len(),
            Data::F16(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::U32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Bool(v) => v.len(),
            Data::Mapped(m) => m.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Zero-filled storage of a dtype.
    pub fn zeros(dtype: DType, n: usize) -> Data {
        match dtype {
            DType::F32 => Data::F32(vec![0.0; n]),
            DType::F64 => Data::F64(vec![0.0; n]),
            DType::BF16 => Data::BF16(vec![bf16::ZERO; n]),
            DType::F16 => Data::F16(vec![f16::ZERO; n]),
            DType::I32 => Data::I32(vec![0; n]),
            DType::U32 => Data::U32(vec![0; n]),
            DType::I64 => Data::I64(vec![0; n]),
            DType::Bool => Data::Bool(vec![0; n]),
        }
    }
    /// Element `i` widened to f64 (exact for every dtype but large i64).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self.view() {
            DataRef::F32(v) => v[i] as f64,
            DataRef::F64(v) => v[i],
            DataRef::BF16(v) => v[i].to_f64(),
            DataRef::F16(v) => v[i].to_f64(),
            DataRef::I32(v) => v[i] as f64,
            DataRef::U32(v) => v[i] as f64,
            DataRef::I64(v) => v[i] as f64,
            DataRef::Bool(v) => v[i] as f64,
        }
    }
    /// Raw little-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::F32(v) => bytemuck::cast_slice(v),
            Data::F64(v) => bytemuck::cast_slice(v),
            Data::BF16(v) => bytemuck::cast_slice(v),
            Data::F16(v) => bytemuck::cast_slice(v),
            Data::I32(v) => bytemuck::cast_slice(v),
            Data::U32(v) => bytemuck::cast_slice(v),
            Data::I64(v) => bytemuck::cast_slice(v),
            Data::Bool(v) => v,
            Data::Mapped(m) => m.bytes(),
        }
    }
}

/// A dense row-major tensor in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Self> {
        if numel(&shape) != data.len() {
            return Err(Error::shape(
                "HostTensor::new",
                format!("{} elements do not fill shape", data.len()),
                &[&shape],
            ));
        }
        Ok(HostTensor { shape, data })
    }
    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Result<Self> {
        Self::new(shape, Data::F32(v))
    }
    pub fn f64(shape: Vec<usize>, v: Vec<f64>) -> Result<Self> {
        Self::new(shape, Data::F64(v))
    }
    pub fn i32(shape: Vec<usize>, v: Vec<i32>) -> Result<Self> {
        Self::new(shape, Data::I32(v))
    }
    pub fn u32(shape: Vec<usize>, v: Vec<u32>) -> Result<Self> {
        Self::new(shape, Data::U32(v))
    }
    pub fn bool(shape: Vec<usize>, v: Vec<bool>) -> Result<Self> {
        Self::new(shape, Data::Bool(v.into_iter().map(u8::from).collect()))
    }
    pub fn scalar_f32(x: f32) -> Self {
        HostTensor {
            shape: vec![],
            data: Data::F32(vec![x]),
        }
    }
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Self {
        let n = numel(&shape);
        HostTensor {
            shape,
            data: Data::zeros(dtype, n),
        }
    }
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }
    /// The same elements under another shape of equal size.
    pub fn reshape_to(&self, shape: Vec<usize>) -> HostTensor {
        debug_assert_eq!(numel(&shape), self.numel());
        HostTensor {
            shape,
            data: self.data.clone(),
        }
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
    /// All elements as f64 (for tests and audits).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.numel()).map(|i| self.data.get_f64(i)).collect()
    }
    /// The elements as f32, converting from any dtype.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self.data.view() {
            DataRef::F32(v) => v.to_vec(),
            DataRef::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            DataRef::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            _ => (0..self.numel())
                .map(|i| self.data.get_f64(i) as f32)
                .collect(),
        }
    }
    pub fn as_f32(&self) -> Result<&[f32]> {
        match (self.data.view(), &self.data) {
            (DataRef::F32(v), _) => Ok(v),
            (_, d) => Err(Error::dtype(
                "HostTensor::as_f32",
                "not an f32 tensor",
                &[d.dtype()],
            )),
        }
    }
    pub fn as_i32(&self) -> Result<&[i32]> {
        match (self.data.view(), &self.data) {
            (DataRef::I32(v), _) => Ok(v),
            (_, d) => Err(Error::dtype(
                "HostTensor::as_i32",
                "not an i32 tensor",
                &[d.dtype()],
            )),
        }
    }
    /// Converts to another dtype (round-to-nearest-even for bf16 and f16, overflow to inf; truncation toward zero for float->int).
    pub fn convert(&self, to: DType) -> HostTensor {
        let n = self.numel();
        let data = match to {
            DType::F32 => Data::F32(self.to_f32_vec()),
            DType::F64 => Data::F64(self.to_f64_vec()),
            // From f64 directly: rounding through f32 first could round twice.
            DType::BF16 => match &self.data {
                Data::F64(v) => Data::BF16(v.iter().map(|&x| bf16::from_f64(x)).collect()),
                _ => Data::BF16(self.to_f32_vec().into_iter().map(bf16::from_f32).collect()),
            },
            DType::F16 => match &self.data {
                Data::F64(v) => Data::F16(v.iter().map(|&x| f16::from_f64(x)).collect()),
                _ => Data::F16(self.to_f32_vec().into_iter().map(f16::from_f32).collect()),
            },
            DType::I32 => Data::I32((0..n).map(|i| self.data.get_f64(i) as i32).collect()),
            DType::U32 => Data::U32((0..n).map(|i| self.data.get_f64(i) as u32).collect()),
            DType::I64 => Data::I64((0..n).map(|i| self.data.get_f64(i) as i64).collect()),
            DType::Bool => Data::Bool(
                (0..n)
                    .map(|i| u8::from(self.data.get_f64(i) != 0.0))
                    .collect(),
            ),
        };
        HostTensor {
            shape: self.shape.clone(),
            data,
        }
    }
}
