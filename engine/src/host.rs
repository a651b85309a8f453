//! Host-side tensors: what goes into and comes out of programs.

use crate::dtype::{numel, DType};
use crate::error::{Error, Result};
use half::bf16;

/// Typed element storage. Bool is stored as bytes 0/1.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    BF16(Vec<bf16>),
    I32(Vec<i32>),
    U32(Vec<u32>),
    I64(Vec<i64>),
    Bool(Vec<u8>),
}

impl Data {
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
            Data::BF16(_) => DType::BF16,
            Data::I32(_) => DType::I32,
            Data::U32(_) => DType::U32,
            Data::I64(_) => DType::I64,
            Data::Bool(_) => DType::Bool,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::BF16(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::U32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Bool(v) => v.len(),
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
            DType::I32 => Data::I32(vec![0; n]),
            DType::U32 => Data::U32(vec![0; n]),
            DType::I64 => Data::I64(vec![0; n]),
            DType::Bool => Data::Bool(vec![0; n]),
        }
    }
    /// Element `i` widened to f64 (exact for every dtype but large i64).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Data::F32(v) => v[i] as f64,
            Data::F64(v) => v[i],
            Data::BF16(v) => v[i].to_f64(),
            Data::I32(v) => v[i] as f64,
            Data::U32(v) => v[i] as f64,
            Data::I64(v) => v[i] as f64,
            Data::Bool(v) => v[i] as f64,
        }
    }
    /// Raw little-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::F32(v) => bytemuck::cast_slice(v),
            Data::F64(v) => bytemuck::cast_slice(v),
            Data::BF16(v) => bytemuck::cast_slice(v),
            Data::I32(v) => bytemuck::cast_slice(v),
            Data::U32(v) => bytemuck::cast_slice(v),
            Data::I64(v) => bytemuck::cast_slice(v),
            Data::Bool(v) => v,
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
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            d => (0..d.len()).map(|i| d.get_f64(i) as f32).collect(),
        }
    }
    pub fn as_f32(&self) -> Result<&[f32]> {
        match &self.data {
            Data::F32(v) => Ok(v),
            d => Err(Error::dtype(
                "HostTensor::as_f32",
                "not an f32 tensor",
                &[d.dtype()],
            )),
        }
    }
    /// Converts to another dtype (round-to-nearest-even for bf16; truncation toward zero for float->int).
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
