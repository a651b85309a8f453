//! [`Mapped`]: tensor elements that live in memory the process does not own on its heap,
//! typically a read-only memory-mapped checkpoint file. A `Data::Mapped` input is read in
//! place by the CPU executor's kernels: inference on a 10B model in bf16 needs its 20 GB
//! of weights in the page cache once, not an anonymous copy besides.

use crate::dtype::DType;
use crate::error::{Error, Result};
use half::{bf16, f16};
use std::sync::Arc;

/// Bytes that stay put for as long as they are referenced (a file mapping, a `Vec<u8>`).
/// `as_ref` must return the same slice every time: alignment is checked once, at
/// [`Mapped::new`].
pub type Backing = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A read-only run of `len` little-endian elements of `dtype` at byte `start` of a shared
/// backing. Cloning shares the backing, never the elements.
#[derive(Clone)]
pub struct Mapped {
    dtype: DType,
    backing: Backing,
    start: usize,
    len: usize,
}

impl Mapped {
    /// `len` elements of `dtype` at byte offset `start` of `backing`. Fails when they do not
    /// lie inside it, when they are not aligned to their element size (the kernels read
    /// them as typed slices), on a big-endian host (the format is little-endian), and for
    /// bool (whose bytes would need checking to be 0/1).
    pub fn new(backing: Backing, start: usize, dtype: DType, len: usize) -> Result<Mapped> {
        let what = |msg: String| Err(Error::Msg(format!("mapped tensor: {msg}")));
        if cfg!(target_endian = "big") {
            return what(
                "stored little-endian elements cannot be read in place on a big-endian host".into(),
            );
        }
        if dtype == DType::Bool {
            return what("bool elements are not read in place".into());
        }
        let bytes = (*backing).as_ref();
        let end = len
            .checked_mul(dtype.size())
            .and_then(|n| n.checked_add(start));
        let Some(region) = end.and_then(|e| bytes.get(start..e)) else {
            return what(format!(
                "{len} {dtype} elements at byte {start} overrun a backing of {} bytes",
                bytes.len()
            ));
        };
        if !(region.as_ptr() as usize).is_multiple_of(dtype.size()) {
            return what(format!(
                "{dtype} elements at byte {start} are not aligned to {} bytes",
                dtype.size()
            ));
        }
        Ok(Mapped {
            dtype,
            backing,
            start,
            len,
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements' bytes, in place.
    pub fn bytes(&self) -> &[u8] {
        let b = (*self.backing).as_ref();
        &b[self.start..self.start + self.len * self.dtype.size()]
    }

    /// The elements as a typed slice, in place; None when `T` is not the element type.
    pub fn typed<T: MappedElem>(&self) -> Option<&[T]> {
        (T::DTYPE == self.dtype).then(|| bytemuck::cast_slice(self.bytes()))
    }

    /// Whether `other` shares this one's backing (the same mapping, not a copy of it).
    pub fn shares_backing(&self, other: &Mapped) -> bool {
        Arc::ptr_eq(&self.backing, &other.backing)
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mapped({} x {} at byte {})",
            self.len, self.dtype, self.start
        )
    }
}

/// Element types a [`Mapped`] run can be read as.
pub trait MappedElem: bytemuck::Pod {
    const DTYPE: DType;
}

impl MappedElem for f32 {
    const DTYPE: DType = DType::F32;
}
impl MappedElem for f64 {
    const DTYPE: DType = DType::F64;
}
impl MappedElem for bf16 {
    const DTYPE: DType = DType::BF16;
}
impl MappedElem for f16 {
    const DTYPE: DType = DType::F16;
}
impl MappedElem for i32 {
    const DTYPE: DType = DType::I32;
}
impl MappedElem for u32 {
    const DTYPE: DType = DType::U32;
}
impl MappedElem for i64 {
    const DTYPE: DType = DType::I64;
}
