//! The vectorized form of an elementwise chain (crate::chain_ptx): each thread handles
//! `lanes` consecutive elements, loading and storing each operand's `lanes` elements as one
//! access of up to 16 bytes (`ld.global.v4.u32` and the like) and running the chain once
//! per lane in registers. Per-lane code is the scalar kernel's, so the bits are the same;
//! only the memory traffic changes (a quarter to a sixteenth of the load/store instructions).
//!
//! Eligible when every operand that is not a scalar is read or written at the element's own
//! index (a view is allowed only of a scalar or a splat: it reads one element), no member
//! needs the element index itself (iota), the element count is a multiple of the lane count
//! (no tail: the other chains keep the scalar kernel), and every such buffer's address is
//! aligned to its whole access. The lane count comes from the widest element: 16 bytes of
//! it per thread (4 f32 or i32, 2 i64, 8 bf16, 16 bools); narrower operands of the same
//! chain take 8, 4 or 2 bytes per access.

use crate::chain::{canonical, is_view, Io};
use crate::chain_ptx::{Gen, Val, A, B, F, U, X};
use crate::error::{CudaError, Result};
use gidd_engine::op::Op;
use gidd_engine::program::Loc;
use gidd_engine::Program;

/// The most bytes one thread reads or writes of an operand in one access.
pub const VECTOR_BYTES: usize = 16;

thread_local! {
    static SCALAR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every chain planned on this thread as the scalar kernel (for comparisons:
/// the vectorized kernels must give the scalar ones' bits). GIDD_CUDA_VECTOR=0 does the same
/// for the whole process.
pub fn with_scalar<T>(f: impl FnOnce() -> T) -> T {
    let was = SCALAR.with(|c| c.replace(true));
    let out = f();
    SCALAR.with(|c| c.set(was));
    out
}

fn scalar_only() -> bool {
    SCALAR.with(std::cell::Cell::get) || std::env::var("GIDD_CUDA_VECTOR").as_deref() == Ok("0")
}

/// The values a vectorized chain reads or writes as whole vectors: those of more than one
/// element that live in memory (splats are literals, scalars one element).
fn wide(p: &Program, io: &Io) -> Vec<usize> {
    let direct = io
        .direct
        .iter()
        .filter(|&&v| !matches!(p.loc[v], Loc::Splat(_)));
    direct
        .chain(&io.writes)
        .copied()
        .filter(|&v| p.values[v].ty.numel() > 1)
        .collect()
}

/// The lanes per thread of chain `nodes` (1: the scalar kernel), given each buffer value's
/// byte offset from an ALIGN-aligned base (`offset`).
pub fn lanes(p: &Program, nodes: &[usize], io: &Io, offset: &dyn Fn(usize) -> u64) -> usize {
    let numel = |v: usize| p.values[v].ty.numel();
    let n = nodes
        .iter()
        .map(|&ni| numel(p.nodes[ni].outputs[0]))
        .max()
        .unwrap_or(0);
    if n < 2 || VECTOR_BYTES as u64 > crate::plan::ALIGN || scalar_only() {
        return 1;
    }
    for &ni in nodes {
        let node = &p.nodes[ni];
        if matches!(node.op, Op::Iota { .. }) {
            return 1;
        }
        if is_view(&node.op) {
            let src = canonical(p, node.inputs[0]);
            if numel(src) != 1 && !matches!(p.loc[src], Loc::Splat(_)) {
                return 1;
            }
        }
    }
    let wide = wide(p, io);
    let size = |v: usize| p.values[v].ty.dtype.size();
    let Some(widest) = wide.iter().map(|&v| size(v)).max() else {
        return 1;
    };
    let l = VECTOR_BYTES / widest;
    let misaligned = |v: usize| !offset(v).is_multiple_of((l * size(v)) as u64);
    if l < 2 || !n.is_multiple_of(l) || wide.iter().any(|&v| misaligned(v)) {
        return 1;
    }
    l
}

/// The address (a u64 register) of thread %i's `bytes`-byte vector at `ptr`.
fn address(g: &mut Gen, ptr: &str, bytes: usize) -> String {
    let (off, a) = (g.tmp(A), g.tmp(A));
    g.emit(&format!("mul.wide.u32 {off}, %i, {bytes}"));
    g.emit(&format!("add.u64 {a}, {ptr}, {off}"));
    a
}

/// The load or store of `words` (u32 registers; one u16 for a 2-byte access) at `a`.
fn access(g: &mut Gen, op: &str, a: &str, words: &[String], bytes: usize) {
    let list = format!("{{{}}}", words.join(", "));
    let (ty, opd) = match bytes {
        16 => ("v4.u32", list),
        8 => ("v2.u32", list),
        4 => ("u32", words[0].clone()),
        _ => ("u16", words[0].clone()),
    };
    if op == "ld" {
        g.emit(&format!("ld.global.{ty} {opd}, [{a}]"));
    } else {
        g.emit(&format!("st.global.{ty} [{a}], {opd}"));
    }
}

/// Value `v` (read at the element's own index) for each of `lanes` lanes, as the scalar
/// kernel's load of each element gives it.
pub(crate) fn read(g: &mut Gen, v: usize, bufs: &[usize], lanes: usize) -> Result<Vec<Val>> {
    let p = g.p;
    let d = p.values[v].ty.dtype;
    if let Loc::Splat(x) = p.loc[v] {
        return Ok(vec![g.literal(x, d); lanes]);
    }
    let k = bufs
        .iter()
        .position(|&b| b == v)
        .ok_or_else(|| CudaError::Unsupported(format!("chain read {v} is not bound")))?;
    let (s, bytes) = (d.size(), d.size() * lanes);
    let a = address(g, &format!("%in{k}"), bytes);
    let words: Vec<String> = (0..bytes.div_ceil(4)).map(|_| g.tmp(U)).collect();
    access(g, "ld", &a, &words, bytes);
    let mut out = vec![];
    for j in 0..lanes {
        let (w, sh) = (&words[j * s / 4], 8 * (j * s % 4));
        out.push(match (d, s) {
            (_, 8) => {
                let (lo, hi, x) = (g.tmp(X), g.tmp(X), g.tmp(X));
                g.emit(&format!("cvt.u64.u32 {lo}, {w}"));
                g.emit(&format!("cvt.u64.u32 {hi}, {}", words[2 * j + 1]));
                g.emit(&format!("shl.b64 {hi}, {hi}, 32"));
                g.emit(&format!("or.b64 {x}, {lo}, {hi}"));
                Val::X(x)
            }
            (gidd_engine::DType::F32, _) => {
                let f = g.tmp(F);
                g.emit(&format!("mov.b32 {f}, {w}"));
                Val::F(f)
            }
            (gidd_engine::DType::I32, _) => {
                let x = g.tmp(X);
                g.emit(&format!("cvt.s64.s32 {x}, {w}"));
                Val::X(x)
            }
            (_, 4) => {
                let x = g.tmp(X);
                g.emit(&format!("cvt.u64.u32 {x}, {w}"));
                Val::X(x)
            }
            (gidd_engine::DType::BF16, _) => {
                let (t, h) = (g.tmp(U), g.tmp(B));
                g.emit(&format!("shr.u32 {t}, {w}, {sh}"));
                g.emit(&format!("and.b32 {h}, {t}, 65535"));
                Val::H(h)
            }
            _ => {
                let (t, x) = (g.tmp(U), g.tmp(X));
                g.emit(&format!("shr.u32 {t}, {w}, {sh}"));
                g.emit(&format!("and.b32 {t}, {t}, 255"));
                g.emit(&format!("cvt.u64.u32 {x}, {t}"));
                Val::X(x)
            }
        });
    }
    Ok(out)
}

/// Stores each lane's value of `vals` (of dtype `d`) as the scalar kernel's store of each
/// element would, in one access at `ptr`.
pub(crate) fn write(g: &mut Gen, ptr: &str, vals: &[Val], d: gidd_engine::DType) {
    let (s, bytes) = (d.size(), d.size() * vals.len());
    let mut words: Vec<Option<String>> = vec![None; bytes.div_ceil(4)];
    for (j, v) in vals.iter().enumerate() {
        // the element's low 32 bits (a bf16's 16, a bool's 8), as the scalar store keeps them
        let low = match v {
            Val::F(f) => {
                let u = g.tmp(U);
                g.emit(&format!("mov.b32 {u}, {f}"));
                u
            }
            Val::H(h) => h.clone(),
            Val::X(x) => {
                let u = g.tmp(U);
                g.emit(&format!("cvt.u32.u64 {u}, {x}"));
                u
            }
        };
        if s >= 4 {
            words[j * s / 4] = Some(low);
            if let (8, Val::X(x)) = (s, v) {
                let (t, u) = (g.tmp(X), g.tmp(U));
                g.emit(&format!("shr.b64 {t}, {x}, 32"));
                g.emit(&format!("cvt.u32.u64 {u}, {t}"));
                words[2 * j + 1] = Some(u);
            }
            continue;
        }
        let (k, sh, mask) = (j * s / 4, 8 * (j * s % 4), (1u32 << (8 * s)) - 1);
        let part = g.tmp(U);
        g.emit(&format!("and.b32 {part}, {low}, {mask}"));
        if sh > 0 {
            g.emit(&format!("shl.b32 {part}, {part}, {sh}"));
        }
        words[k] = Some(match words[k].take() {
            None => part,
            Some(w) => {
                let u = g.tmp(U);
                g.emit(&format!("or.b32 {u}, {w}, {part}"));
                u
            }
        });
    }
    let words: Vec<String> = words.into_iter().map(Option::unwrap_or_default).collect();
    let a = address(g, ptr, bytes);
    access(g, "st", &a, &words, bytes);
}
