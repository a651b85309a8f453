//! Device tensors and their word encodings (kernels/src/common/prelude.wgsl): f32, i32, u32
//! one word per element; bool one word (0 or 1); bf16 packed two per word (element 2j in the
//! low half of word j: the bytes of the host's little-endian `[bf16]`), so a bf16 tensor takes
//! half the memory and traffic of an f32 one; i64 two words, little-endian (lo, hi). f64 has
//! no encoding: WGSL has no portable f64.

use crate::error::{Result, WgpuError};
use gidd_engine::{DType, Data, DataRef, HostTensor};
use half::{bf16, f16};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A tensor in device memory. Cheap to clone (the storage is shared and immutable to its
/// holders: only a donation whose handle is the last one lets a run write into it).
#[derive(Clone, Debug)]
pub struct WgpuBuffer {
    pub(crate) buf: Arc<wgpu::Buffer>,
    /// Unique per storage: bind groups are cached by the ids of the buffers they bind.
    pub(crate) id: u64,
    shape: Vec<usize>,
    dtype: DType,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl WgpuBuffer {
    pub(crate) fn new(buf: Arc<wgpu::Buffer>, id: u64, shape: Vec<usize>, dtype: DType) -> Self {
        WgpuBuffer {
            buf,
            id,
            shape,
            dtype,
        }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Names the device storage: equal for two handles of one storage (a donated input and
    /// the output written into it), different otherwise.
    pub fn storage_id(&self) -> u64 {
        self.id
    }
    /// Bytes the tensor's elements take on the device.
    pub fn bytes(&self) -> u64 {
        value_bytes(&self.shape, self.dtype)
    }
}

/// Words per element on the device, for the kernels that read bf16 and f16 widened (one word
/// each, in scratch buffers: `Builder::widened`); stored they take half a word
/// ([`elems_bytes`]).
pub fn words(d: DType) -> usize {
    match d {
        DType::I64 | DType::F64 => 2,
        DType::F32 | DType::BF16 | DType::F16 | DType::I32 | DType::U32 | DType::Bool => 1,
    }
}

/// Bytes one stored element of `d` takes (bf16, f16: half a word).
pub fn elem_bytes(d: DType) -> u64 {
    match d {
        DType::BF16 | DType::F16 => 2,
        _ => words(d) as u64 * 4,
    }
}

/// Bytes `n` stored elements of `d` take (whole words: an odd count of bf16 or f16 leaves the
/// last word's high half unused).
pub fn elems_bytes(n: usize, d: DType) -> u64 {
    match d {
        DType::BF16 | DType::F16 => (n.div_ceil(2) * 4) as u64,
        _ => (n * words(d) * 4) as u64,
    }
}

pub fn value_bytes(shape: &[usize], d: DType) -> u64 {
    elems_bytes(shape.iter().product::<usize>(), d)
}

/// The kind of a 16-bit float as the kernels see it (their HALF, PACKED and SRC_H override
/// constants; prelude.wgsl's HALF_*): 1 = bf16, 2 = f16, 0 = any other dtype (f32: one word
/// per element, no rounding).
pub fn half(d: DType) -> u32 {
    match d {
        DType::BF16 => 1,
        DType::F16 => 2,
        _ => 0,
    }
}

/// Whether `d` is stored packed, two elements per word (bf16, f16).
pub fn is_half(d: DType) -> bool {
    half(d) != 0
}

/// 16-bit floats (their bits) packed two per word.
fn pack_halves(bits: impl Iterator<Item = u16>) -> Vec<u32> {
    let v: Vec<u16> = bits.collect();
    v.chunks(2)
        .map(|p| p[0] as u32 | (p.get(1).copied().unwrap_or(0) as u32) << 16)
        .collect()
}

/// The bytes a device buffer of `bytes` content is created with: wgpu binds no empty buffer,
/// and copies move multiples of 4 bytes.
pub fn alloc_bytes(bytes: u64) -> u64 {
    bytes.max(16).next_multiple_of(16)
}

/// The refusal of f64 programs and tensors.
pub fn no_f64() -> WgpuError {
    WgpuError::Unsupported(
        "f64 has no WGSL encoding on most GPUs: --dtype f64 runs on cpu or xla".into(),
    )
}

/// A host tensor's device words.
pub fn encode(t: &HostTensor) -> Result<Vec<u32>> {
    Ok(match t.data.view() {
        DataRef::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
        DataRef::BF16(v) => pack_halves(v.iter().map(|x| x.to_bits())),
        DataRef::F16(v) => pack_halves(v.iter().map(|x| x.to_bits())),
        DataRef::I32(v) => v.iter().map(|&x| x as u32).collect(),
        DataRef::U32(v) => v.to_vec(),
        DataRef::Bool(v) => v.iter().map(|&x| x as u32).collect(),
        DataRef::I64(v) => v
            .iter()
            .flat_map(|&x| [x as u32, (x as u64 >> 32) as u32])
            .collect(),
        DataRef::F64(_) => return Err(no_f64()),
    })
}

/// Packed 16-bit element `i` of the words `w`.
fn half_at(w: &[u32], i: usize) -> u16 {
    (w[i / 2] >> (16 * (i % 2))) as u16
}

/// The host tensor of `shape` and `dtype` whose device words are `w`.
pub fn decode(w: &[u32], shape: Vec<usize>, dtype: DType) -> Result<HostTensor> {
    let n: usize = shape.iter().product();
    let data = match dtype {
        DType::F32 => Data::F32(w[..n].iter().map(|&b| f32::from_bits(b)).collect()),
        DType::BF16 => Data::BF16((0..n).map(|i| bf16::from_bits(half_at(w, i))).collect()),
        DType::F16 => Data::F16((0..n).map(|i| f16::from_bits(half_at(w, i))).collect()),
        DType::I32 => Data::I32(w[..n].iter().map(|&b| b as i32).collect()),
        DType::U32 => Data::U32(w[..n].to_vec()),
        // bools are 0 or 1; a sum of bools (the cpu's u8 saturates) is kept as the cpu keeps it
        DType::Bool => Data::Bool(w[..n].iter().map(|&b| b.min(255) as u8).collect()),
        DType::I64 => Data::I64(
            w[..2 * n]
                .chunks_exact(2)
                .map(|p| (p[0] as u64 | (p[1] as u64) << 32) as i64)
                .collect(),
        ),
        DType::F64 => return Err(no_f64()),
    };
    HostTensor::new(shape, data).map_err(|e| WgpuError::Unsupported(e.to_string()))
}

/// The words of a scalar splat of `dtype` as a kernel parameter (two for i64; the second is 0
/// otherwise; bf16 and f16 widened to their f32 bits).
pub fn scalar_words(x: f64, dtype: DType) -> [u32; 2] {
    match dtype {
        DType::F32 => [(x as f32).to_bits(), 0],
        DType::BF16 => [(bf16::from_f64(x).to_f32()).to_bits(), 0],
        DType::F16 => [(f16::from_f64(x).to_f32()).to_bits(), 0],
        DType::I32 => [x as i32 as u32, 0],
        DType::U32 => [x as u32, 0],
        DType::Bool => [u32::from(x != 0.0), 0],
        DType::I64 | DType::F64 => {
            let v = x as i64;
            [v as u32, (v as u64 >> 32) as u32]
        }
    }
}

/// `n` elements of the splat `x`, as device words (stored encoding: bf16 and f16 packed).
pub fn splat_words(x: f64, dtype: DType, n: usize) -> Vec<u32> {
    match dtype {
        DType::BF16 => return pack_halves((0..n).map(|_| bf16::from_f64(x).to_bits())),
        DType::F16 => return pack_halves((0..n).map(|_| f16::from_f64(x).to_bits())),
        _ => {}
    }
    let w = scalar_words(x, dtype);
    (0..n).flat_map(|_| w[..words(dtype)].to_vec()).collect()
}

/// The words of a bf16 or f16 tensor widened, one per element (for `Builder::widened`).
pub fn widened_words(t: &HostTensor) -> Result<Vec<u32>> {
    match &t.data {
        Data::BF16(v) => Ok(v.iter().map(|x| x.to_f32().to_bits()).collect()),
        Data::F16(v) => Ok(v.iter().map(|x| x.to_f32().to_bits()).collect()),
        _ => encode(t),
    }
}
