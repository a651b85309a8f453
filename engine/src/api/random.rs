//! Counter-based random numbers (Philox-4x32-10) written in primitive integer ops,
//! so every executor produces the same bits. `crate::rng` has the host twin.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::{Graph, Tensor};
use crate::op::BinaryOp;
use crate::rng::{PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1};

/// (hi, lo) 32-bit halves of a * m, via a wrapping 64-bit product.
fn mulhilo(a: &Tensor, m: u32) -> Result<(Tensor, Tensor)> {
    let g = a.graph();
    let p = a.to(DType::I64)?.mul(&g.scalar(m as f64, DType::I64))?;
    let hi = p
        .binary(&g.scalar(32.0, DType::I64), BinaryOp::ShiftRightLogical)?
        .to(DType::U32)?;
    let lo = p.to(DType::U32)?;
    Ok((hi, lo))
}

/// Philox-4x32 with 10 rounds on counters c (4 u32 tensors of one shape) and key k (2 u32
/// scalars, or 2 u32 tensors of c's shape: a key per element).
pub fn philox4x32(c: [Tensor; 4], k: [Tensor; 2]) -> Result<[Tensor; 4]> {
    let g = c[0].graph().clone();
    let [mut c0, mut c1, mut c2, mut c3] = c;
    let [mut k0, mut k1] = k;
    for round in 0..10 {
        if round > 0 {
            k0 = k0.add(&g.scalar(PHILOX_W0 as f64, DType::U32))?;
            k1 = k1.add(&g.scalar(PHILOX_W1 as f64, DType::U32))?;
        }
        let (hi0, lo0) = mulhilo(&c0, PHILOX_M0)?;
        let (hi1, lo1) = mulhilo(&c2, PHILOX_M1)?;
        let n0 = hi1.binary(&c1, BinaryOp::Xor)?.binary(&k0, BinaryOp::Xor)?;
        let n2 = hi0.binary(&c3, BinaryOp::Xor)?.binary(&k1, BinaryOp::Xor)?;
        (c0, c1, c2, c3) = (n0, lo1, n2, lo0);
    }
    Ok([c0, c1, c2, c3])
}

/// Uniform f32 in [0, 1) of `shape`: element i comes from word i % 4 of the Philox
/// block at counter (i / 4, stream, 0, 0) under key `seed` (u32 [2]).
/// `stream` is a u32 scalar (e.g. the training step), so one program serves every step.
pub fn uniform_f32(g: &Graph, shape: &[usize], seed: &Tensor, stream: &Tensor) -> Result<Tensor> {
    if seed.shape() != [2]
        || seed.dtype() != DType::U32
        || stream.rank() != 0
        || stream.dtype() != DType::U32
    {
        return Err(Error::shape(
            "uniform_f32",
            "seed must be u32 [2] and stream a u32 scalar",
            &[seed.shape(), stream.shape()],
        ));
    }
    let n: usize = shape.iter().product();
    let blocks = n.div_ceil(4).max(1);
    let ctr0 = g.iota(&[blocks], 0, DType::U32)?;
    let ctr1 = stream.broadcast_to(&[blocks])?;
    let zero = g.zeros(&[blocks], DType::U32);
    let k0 = seed.narrow(0, 0, 1)?.reshape(&[])?;
    let k1 = seed.narrow(0, 1, 2)?.reshape(&[])?;
    let words = philox4x32([ctr0, ctr1, zero.clone(), zero], [k0, k1])?;
    let cols: Vec<Tensor> = words
        .iter()
        .map(|w| w.reshape(&[blocks, 1]))
        .collect::<Result<_>>()?;
    let refs: Vec<&Tensor> = cols.iter().collect();
    let bits = Tensor::concat(&refs, 1)?
        .reshape(&[blocks * 4])?
        .narrow(0, 0, n)?;
    // 24 high bits -> [0, 1) exactly representable in f32.
    let top = bits.binary(&g.scalar(8.0, DType::U32), BinaryOp::ShiftRightLogical)?;
    top.to(DType::F32)?
        .mul_scalar(1.0 / 16_777_216.0)?
        .reshape(shape)
}

/// Uniform f32 in [0, 1) keyed by position: element (r, c) of a [rows, cols] draw is word
/// c % 4 of the Philox block at counter (c / 4, stream, row0 + r, 0). A micro-batch that
/// starts at row `row0` of a batch therefore draws exactly the full batch's numbers.
pub fn uniform_rows(
    g: &Graph,
    rows: usize,
    cols: usize,
    seed: &Tensor,
    stream: &Tensor,
    row0: &Tensor,
) -> Result<Tensor> {
    if seed.shape() != [2]
        || seed.dtype() != DType::U32
        || stream.rank() != 0
        || stream.dtype() != DType::U32
        || row0.rank() != 0
        || row0.dtype() != DType::U32
    {
        return Err(Error::shape(
            "uniform_rows",
            "seed must be u32 [2]; stream and row0 u32 scalars",
            &[seed.shape(), stream.shape(), row0.shape()],
        ));
    }
    let bpr = cols.div_ceil(4).max(1);
    let ctr2 = g.iota(&[rows, bpr], 0, DType::U32)?.add(row0)?;
    philox_rows(g, rows, cols, scalar_key(seed)?, stream, ctr2)
}

/// [`uniform_rows`] with each row's counter given: row r of the [rows, cols] draw is row
/// `row_ids[r]` of an unbounded keyed draw, so rows can repeat or skip indices (several
/// rows drawing the same numbers, as the likelihood's splits of one request do).
/// row_ids: u32 [rows]; seed: u32 [2] for every row, or u32 [rows, 2], a key per row (rows
/// of different requests in one batch, each drawing as it would alone).
pub fn uniform_rows_at(
    g: &Graph,
    cols: usize,
    seed: &Tensor,
    stream: &Tensor,
    row_ids: &Tensor,
) -> Result<Tensor> {
    let rows = row_ids.shape().first().copied().unwrap_or(0);
    let seed_ok = seed.shape() == [2] || seed.shape() == [rows, 2];
    if !seed_ok
        || seed.dtype() != DType::U32
        || stream.rank() != 0
        || stream.dtype() != DType::U32
        || row_ids.rank() != 1
        || row_ids.dtype() != DType::U32
    {
        return Err(Error::shape(
            "uniform_rows_at",
            "seed must be u32 [2] or [rows, 2]; stream a u32 scalar; row_ids u32 [rows]",
            &[seed.shape(), stream.shape(), row_ids.shape()],
        ));
    }
    let bpr = cols.div_ceil(4).max(1);
    let ctr2 = row_ids.reshape(&[rows, 1])?.broadcast_to(&[rows, bpr])?;
    let key = if seed.rank() == 1 {
        scalar_key(seed)?
    } else {
        // each row's key words, repeated over its blocks: the same elementwise rounds
        let word = |i: usize| seed.narrow(1, i, i + 1)?.broadcast_to(&[rows, bpr]);
        [word(0)?, word(1)?]
    };
    philox_rows(g, rows, cols, key, stream, ctr2)
}

/// The two key words of a u32 [2] seed, as scalars.
fn scalar_key(seed: &Tensor) -> Result<[Tensor; 2]> {
    Ok([
        seed.narrow(0, 0, 1)?.reshape(&[])?,
        seed.narrow(0, 1, 2)?.reshape(&[])?,
    ])
}

/// The draw of [`uniform_rows`] given its third counter word per (row, block) and the key
/// (scalars, or one per (row, block)).
fn philox_rows(
    g: &Graph,
    rows: usize,
    cols: usize,
    key: [Tensor; 2],
    stream: &Tensor,
    ctr2: Tensor,
) -> Result<Tensor> {
    let bpr = cols.div_ceil(4).max(1);
    let shape = [rows, bpr];
    let ctr0 = g.iota(&shape, 1, DType::U32)?;
    let ctr1 = stream.broadcast_to(&shape)?;
    let zero = g.zeros(&shape, DType::U32);
    let words = philox4x32([ctr0, ctr1, ctr2, zero], key)?;
    let cols4: Vec<Tensor> = words
        .iter()
        .map(|w| w.reshape(&[rows, bpr, 1]))
        .collect::<Result<_>>()?;
    let refs: Vec<&Tensor> = cols4.iter().collect();
    let bits = Tensor::concat(&refs, 2)?
        .reshape(&[rows, bpr * 4])?
        .narrow(1, 0, cols)?; // (rows, cols)
    let top = bits.binary(&g.scalar(8.0, DType::U32), BinaryOp::ShiftRightLogical)?;
    top.to(DType::F32)?.mul_scalar(1.0 / 16_777_216.0)
}

/// Bernoulli draws: u < p elementwise (p broadcast to u's shape), from position-keyed uniforms.
pub fn bernoulli(u: &Tensor, p: &Tensor) -> Result<Tensor> {
    u.lt(&p.to(u.dtype())?)
}

/// Integers uniform in [0, n) from uniforms u in [0, 1): floor(u n), clamped below n
/// (u < 1, but u n can round up to n in f32).
pub fn randint(u: &Tensor, n: usize) -> Result<Tensor> {
    u.mul_scalar(n as f64)?
        .floor()?
        .to(DType::I32)?
        .min_scalar((n - 1) as f64)
}
