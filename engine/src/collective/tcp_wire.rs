//! The frames process ranks send each other ([`super::tcp`]), integers little-endian.
//!
//! Hello, once per connection from the connecting rank: rank u64, world u64.
//! Then, each way, frames: kind u8, then
//! - 0, a piece: op u8 (index in [`OPS`]), meta (u32 count, u64 each), dtype u8, u64 byte
//!   length, the bytes;
//! - 1, a failure: the rank that failed u64 (the sender itself, or one it heard of), the
//!   reason (u32 length, utf-8).

use super::round::{Part, OPS};
use crate::dtype::DType;
use crate::host::Data;
use std::io::{Read, Write};
use std::sync::Arc;

const DTYPES: [DType; 8] = [
    DType::F32,
    DType::F64,
    DType::BF16,
    DType::I32,
    DType::U32,
    DType::I64,
    DType::Bool,
    // last: the wire codes of the others stay what they were
    DType::F16,
];

pub(super) enum Frame {
    Piece(Part),
    Failed(usize, String),
}

/// Writes a piece frame; returns (payload bytes, bytes on the wire).
pub(super) fn put_piece(
    w: &mut impl Write,
    op: &str,
    meta: &[usize],
    data: &Data,
) -> std::io::Result<(u64, u64)> {
    let mut h = vec![0u8];
    h.push(OPS.iter().position(|&o| o == op).unwrap_or(OPS.len()) as u8);
    h.extend((meta.len() as u32).to_le_bytes());
    for &m in meta {
        h.extend((m as u64).to_le_bytes());
    }
    let d = data.dtype();
    h.push(DTYPES.iter().position(|&x| x == d).unwrap_or(DTYPES.len()) as u8);
    let bytes = data.as_bytes();
    h.extend((bytes.len() as u64).to_le_bytes());
    w.write_all(&h)?;
    w.write_all(bytes)?;
    w.flush()?;
    Ok((bytes.len() as u64, (h.len() + bytes.len()) as u64))
}

/// Writes a failure frame: `rank` failed because of `reason`.
pub(super) fn put_failed(w: &mut impl Write, rank: usize, reason: &str) -> std::io::Result<()> {
    let mut b = vec![1u8];
    b.extend((rank as u64).to_le_bytes());
    b.extend((reason.len() as u32).to_le_bytes());
    b.extend(reason.as_bytes());
    w.write_all(&b)?;
    w.flush()
}

pub(super) fn hello(rank: usize, world: usize) -> Vec<u8> {
    let mut b = (rank as u64).to_le_bytes().to_vec();
    b.extend((world as u64).to_le_bytes());
    b
}

/// (rank, world) of a hello.
pub(super) fn read_hello(r: &mut impl Read) -> std::io::Result<(usize, usize)> {
    Ok((read_u64(r)? as usize, read_u64(r)? as usize))
}

fn bad(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

fn read_u8(r: &mut impl Read) -> std::io::Result<u8> {
    let mut b = [0u8];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

pub(super) fn read_frame(r: &mut impl Read) -> std::io::Result<Frame> {
    match read_u8(r)? {
        0 => read_piece(r).map(Frame::Piece),
        1 => {
            let rank = read_u64(r)? as usize;
            let n = read_u32(r)? as usize;
            let mut b = vec![0u8; n];
            r.read_exact(&mut b)?;
            Ok(Frame::Failed(
                rank,
                String::from_utf8_lossy(&b).into_owned(),
            ))
        }
        k => Err(bad(format!("frame kind {k}"))),
    }
}

fn read_piece(r: &mut impl Read) -> std::io::Result<Part> {
    let code = read_u8(r)? as usize;
    let op = *OPS
        .get(code)
        .ok_or_else(|| bad(format!("op code {code}")))?;
    let nm = read_u32(r)? as usize;
    let meta = (0..nm)
        .map(|_| read_u64(r).map(|m| m as usize))
        .collect::<std::io::Result<_>>()?;
    let dc = read_u8(r)? as usize;
    let dtype = *DTYPES
        .get(dc)
        .ok_or_else(|| bad(format!("dtype code {dc}")))?;
    let n = read_u64(r)? as usize;
    if !n.is_multiple_of(dtype.size()) {
        return Err(bad(format!("{n} bytes of {dtype:?}")));
    }
    let mut bytes = vec![0u8; n];
    r.read_exact(&mut bytes)?;
    Ok(Part {
        op,
        meta,
        data: Arc::new(data_from_bytes(dtype, &bytes)),
    })
}

/// `b` as elements of `T` (copied: the bytes need not be aligned).
fn pods<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
    let mut v = vec![T::zeroed(); b.len() / std::mem::size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(b);
    v
}

fn data_from_bytes(dtype: DType, b: &[u8]) -> Data {
    match dtype {
        DType::F32 => Data::F32(pods(b)),
        DType::F64 => Data::F64(pods(b)),
        DType::BF16 => Data::BF16(pods(b)),
        DType::F16 => Data::F16(pods(b)),
        DType::I32 => Data::I32(pods(b)),
        DType::U32 => Data::U32(pods(b)),
        DType::I64 => Data::I64(pods(b)),
        DType::Bool => Data::Bool(b.to_vec()),
    }
}
