//! Flash-style attention, forward and backward, as PTX kernels (attention/attention.ptx and
//! attention_rows.ptx): the `[B, H, Lq, Lk]` scores are never stored. The forward is one
//! launch (a block per 8 queries of a head, 32-key tiles under an online softmax); the
//! backward three: a pass over the query rows (D = do . o, and lse' / fill that make fully
//! masked rows uniform) into scratch, then dk, dv (a block per 8 keys, streaming the
//! queries) and dq (a block per 8 queries, streaming the keys). Every gradient row has one
//! owner: deterministic, no atomics. Unverified on hardware (see crate::fused).
//!
//! The graph builds attention over f32 (the api converts bf16 around it), so the kernels
//! take f32 q, k, v and a bool mask; head dims up to [`DMAX`]. A forward whose operands were
//! converted from bf16 runs on tensor cores instead (crate::attention_mma), and so does such
//! a backward after attention_bwd_rows.

use crate::attention_mma::Kernel;
use crate::error::{CudaError, Result};
use crate::plan::{u32_of, Arg, Builder, Ptr, MAX_GRID_YZ};
use gidd_engine::op::{AttnSpec, Op};
use gidd_engine::DType;

/// The largest head dim: a lane holds 4 dims of a row (4 x 32 lanes), and shared rows are 128
/// floats (129 padded).
pub const DMAX: usize = 128;
/// Queries (forward, dq) or keys (dk, dv) per block: one per warp.
pub const ROWS_PER_BLOCK: usize = 8;
/// Keys (or queries) per streamed tile: one per lane.
pub const TILE: usize = 32;
/// Bytes of the backward's per-row statistics (D, lse', fill).
pub const ST_BYTES: usize = 12;

pub fn supports(_op: &Op, dtype: DType) -> bool {
    dtype == DType::F32
}

/// (B, H, Lq, Lk, D) of q [B,H,Lq,D] and k [B,H,Lk,D].
fn dims(b: &Builder, q: usize, k: usize) -> (usize, usize, usize, usize, usize) {
    let (qs, ks) = (b.shape(q), b.shape(k));
    (qs[0], qs[1], qs[2], ks[2], qs[3])
}

/// The grid of the per-head kernels: blocks of [`ROWS_PER_BLOCK`] rows by (batch, head).
pub fn grid(rows: usize, bh: usize) -> [u32; 3] {
    [rows.div_ceil(ROWS_PER_BLOCK) as u32, bh as u32, 1]
}

/// The slots every per-head kernel starts with.
fn head_args(
    (bs, h, lq, lk, d): (usize, usize, usize, usize, usize),
    s: &AttnSpec,
) -> Result<Vec<(&'static str, Arg)>> {
    Ok(vec![
        ("bh", Arg::Val(u32_of(bs * h)?)),
        ("heads", Arg::Val(u32_of(h)?)),
        ("lq", Arg::Val(u32_of(lq)?)),
        ("lk", Arg::Val(u32_of(lk)?)),
        ("dim", Arg::Val(u32_of(d)?)),
        ("scale", Arg::Val(s.scale.to_bits() as u64)),
        ("cap", Arg::Val(s.softcap.unwrap_or(1.0).to_bits() as u64)),
        ("capped", Arg::Val(u64::from(s.softcap.is_some()))),
    ])
}

pub fn lower(b: &mut Builder, op: &Op, ins: &[usize], outs: &[usize]) -> Result<()> {
    let spec = match op {
        Op::Attention(s) | Op::AttentionBwd(s) => *s,
        _ => {
            return Err(CudaError::Unsupported(format!(
                "{} is not attention",
                op.name()
            )))
        }
    };
    for &v in ins.iter().chain(outs) {
        let d = b.dtype(v);
        if d != DType::F32 && !(v == ins[3] && d == DType::Bool) {
            return Err(CudaError::Unsupported(format!(
                "{}: the PTX kernels take f32 values (and a bool mask), not {d}",
                op.name()
            )));
        }
    }
    let dm = dims(b, ins[0], ins[1]);
    let (bs, h, lq, lk, d) = dm;
    if d > DMAX {
        return Err(CudaError::Unsupported(format!(
            "{}: head dim {d} exceeds the PTX kernels' {DMAX}",
            op.name()
        )));
    }
    if bs * h > MAX_GRID_YZ {
        return Err(CudaError::Unsupported(format!(
            "{}: {} (batch, head) pairs exceed the grid's {MAX_GRID_YZ}",
            op.name(),
            bs * h
        )));
    }
    if bs * h * lq == 0 {
        return Ok(()); // nothing to compute (and no key to attend to is then allowed)
    }
    if lk == 0 {
        return Err(CudaError::Unsupported(format!(
            "{}: queries with no keys",
            op.name()
        )));
    }
    // every index the kernels form stays below 2^31 (ST's bytes included)
    for n in [
        bs * h * lq * d,
        bs * h * lk * d,
        bs * lq * lk,
        bs * h * lq * ST_BYTES,
    ] {
        u32_of(n)?;
    }
    let (q, k, v, mask) = (
        b.ptr(ins[0])?,
        b.ptr(ins[1])?,
        b.ptr(ins[2])?,
        b.ptr(ins[3])?,
    );
    let mut args = head_args(dm, &spec)?;
    if matches!(op, Op::Attention(_)) {
        match crate::attention_mma::pick_for(b.p, ins, b.hopper) {
            Kernel::Mma(d) => return crate::attention_mma::lower_fwd(b, d, ins, outs, args),
            Kernel::Wgmma(d) => {
                return crate::attention_mma::lower_fwd_wgmma(b, d, ins, outs, args)
            }
            Kernel::Simt => {}
        }
        args.push(("out", Arg::Ptr(b.out(outs[0])?)));
        args.push(("lse", Arg::Ptr(b.out(outs[1])?)));
        push_ptrs(&mut args, [("q", q), ("k", k), ("v", v), ("mask", mask)]);
        b.launch("attention_fwd", grid(lq, bs * h), args);
        return Ok(());
    }
    let (out, lse, dout) = (b.ptr(ins[4])?, b.ptr(ins[5])?, b.ptr(ins[6])?);
    let rows = bs * h * lq;
    let st = b.scratch((rows * ST_BYTES) as u64);
    let row_args = vec![
        ("rows", Arg::Val(u32_of(rows)?)),
        ("heads", Arg::Val(u32_of(h)?)),
        ("lq", Arg::Val(u32_of(lq)?)),
        ("lk", Arg::Val(u32_of(lk)?)),
        ("dim", Arg::Val(u32_of(d)?)),
        ("st", Arg::Ptr(st)),
        ("out", Arg::Ptr(out)),
        ("dout", Arg::Ptr(dout)),
        ("lse", Arg::Ptr(lse)),
        ("mask", Arg::Ptr(mask)),
    ];
    b.launch_1d("attention_bwd_rows", rows, row_args);
    // the backward runs on mma.sync on Hopper too (no wgmma backward yet)
    if let Kernel::Mma(d) | Kernel::Wgmma(d) = crate::attention_mma::pick_for(b.p, ins, b.hopper) {
        return crate::attention_mma::lower_bwd(b, d, ins, outs, args, st);
    }
    let mut kv = args.clone();
    kv.push(("dk", Arg::Ptr(b.out(outs[1])?)));
    kv.push(("dv", Arg::Ptr(b.out(outs[2])?)));
    let tail = [
        ("q", q),
        ("k", k),
        ("v", v),
        ("mask", mask),
        ("st", st),
        ("dout", dout),
    ];
    push_ptrs(&mut kv, tail);
    b.launch("attention_bwd_dkdv", grid(lk, bs * h), kv);
    args.push(("dq", Arg::Ptr(b.out(outs[0])?)));
    push_ptrs(&mut args, tail);
    b.launch("attention_bwd_dq", grid(lq, bs * h), args);
    Ok(())
}

fn push_ptrs<const N: usize>(args: &mut Vec<(&'static str, Arg)>, ptrs: [(&'static str, Ptr); N]) {
    args.extend(ptrs.map(|(n, p)| (n, Arg::Ptr(p))));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's tile sizes and limits are the PTX's: 8 warps a block own a row each, rows of
    /// DMAX floats and tiles of TILE rows padded to DMAX + 1.
    #[test]
    fn sizes_match_the_ptx() {
        let m = gidd_kernels::ptx::module_of("attention_fwd").expect("module");
        let s = m.source;
        assert!(s.contains(&format!(".f32 tile_a[{}]", TILE * (DMAX + 1))));
        assert!(s.contains(&format!(".f32 rows_a[{}]", ROWS_PER_BLOCK * DMAX)));
        assert!(s.contains(&format!("mad.lo.u32 %qi, %qi, {ROWS_PER_BLOCK}, %warp;")));
        assert!(s.contains(&format!("mad.lo.u32 %a, %lane, {}, %ta;", 4 * (DMAX + 1))));
        assert_eq!(ROWS_PER_BLOCK * 32, crate::plan::BLOCK as usize);
        let rows = gidd_kernels::ptx::module_of("attention_bwd_rows").expect("module");
        assert!(rows
            .source
            .contains(&format!("mul.wide.u32 %g, %r, {ST_BYTES};")));
    }

    #[test]
    fn grids_cover_every_row_once_per_head() {
        assert_eq!(grid(1, 1), [1, 1, 1]);
        assert_eq!(grid(8, 3), [1, 3, 1]);
        assert_eq!(grid(9, 3), [2, 3, 1]);
        assert_eq!(grid(2049, 64), [257, 64, 1]);
    }
}
