//! The members of an elementwise chain as PTX (crate::chain_ptx): each op as its unfused
//! kernel computes it (elementwise/float.ptx, int.ptx, convert.ptx), on register values.

use crate::chain::is_view;
use crate::chain_ptx::{Gen, Val, A, B, D, F, P, U, X};
use crate::error::{CudaError, Result};
use gidd_engine::op::{BinaryOp, CmpOp, Op, UnaryOp};
use gidd_engine::DType;

fn cmp_name(c: CmpOp, float: bool) -> &'static str {
    match c {
        CmpOp::Eq => "eq",
        CmpOp::Ne if float => "neu",
        CmpOp::Ne => "ne",
        CmpOp::Lt => "lt",
        CmpOp::Le => "le",
        CmpOp::Gt => "gt",
        CmpOp::Ge => "ge",
    }
}

/// Member `ni`'s value from its operands' values.
pub(crate) fn member(g: &mut Gen, ni: usize, a: &[Val]) -> Result<Val> {
    let p = g.p;
    let node = &p.nodes[ni];
    let d = p.values[node.outputs[0]].ty.dtype;
    let float = matches!(d, DType::F32 | DType::BF16);
    Ok(match &node.op {
        Op::Unary(u) if float => {
            let x = g.widen(&a[0]);
            let w = g.tmp(F);
            match u {
                UnaryOp::Neg => g.emit(&format!("neg.f32 {w}, {x}")),
                UnaryOp::Abs => g.emit(&format!("abs.f32 {w}, {x}")),
                UnaryOp::Sqrt => g.emit(&format!("sqrt.rn.f32 {w}, {x}")),
                UnaryOp::Rsqrt => {
                    g.emit(&format!("sqrt.rn.f32 {w}, {x}"));
                    g.emit(&format!("rcp.rn.f32 {w}, {w}"));
                }
                UnaryOp::Floor => g.emit(&format!("cvt.rmi.f32.f32 {w}, {x}")),
                UnaryOp::Not => g.emit(&format!("mov.f32 {w}, {x}")),
                UnaryOp::Logistic => {
                    g.call("gidd_expf");
                    g.emit(&format!("neg.f32 {w}, {x}"));
                    g.emit(&format!("call ({w}), gidd_expf, ({w})"));
                    g.emit(&format!("add.f32 {w}, {w}, 0f3F800000"));
                    g.emit(&format!("rcp.rn.f32 {w}, {w}"));
                }
                UnaryOp::Exp | UnaryOp::Log | UnaryOp::Tanh => {
                    let f = match u {
                        UnaryOp::Exp => "gidd_expf",
                        UnaryOp::Log => "gidd_logf",
                        _ => "gidd_tanhf",
                    };
                    g.call(f);
                    g.emit(&format!("call ({w}), {f}, ({x})"));
                }
                UnaryOp::Sin | UnaryOp::Cos => {
                    g.call("gidd_sincosf");
                    let c = u32::from(*u == UnaryOp::Cos);
                    g.emit(&format!("call ({w}), gidd_sincosf, ({x}, {c})"));
                }
            }
            g.round(w, d)
        }
        Op::Unary(u) => {
            let Val::X(x) = &a[0] else {
                return Err(bad(ni, "an integer op on a float register"));
            };
            let w = g.tmp(X);
            let signed = matches!(d, DType::I32 | DType::I64);
            match u {
                UnaryOp::Neg if signed => g.emit(&format!("neg.s64 {w}, {x}")),
                UnaryOp::Abs if signed => g.emit(&format!("abs.s64 {w}, {x}")),
                UnaryOp::Not if d == DType::Bool => g.emit(&format!("sub.s64 {w}, 1, {x}")),
                UnaryOp::Not => g.emit(&format!("not.b64 {w}, {x}")),
                _ => g.emit(&format!("mov.s64 {w}, {x}")),
            }
            g.wrap(w, d)
        }
        Op::Binary(o) if float => {
            let (x, y) = (g.widen(&a[0]), g.widen(&a[1]));
            let w = g.tmp(F);
            let line = match o {
                BinaryOp::Add => format!("add.rn.f32 {w}, {x}, {y}"),
                BinaryOp::Sub => format!("sub.rn.f32 {w}, {x}, {y}"),
                BinaryOp::Mul => format!("mul.rn.f32 {w}, {x}, {y}"),
                BinaryOp::Div => format!("div.rn.f32 {w}, {x}, {y}"),
                BinaryOp::Max => format!("max.NaN.f32 {w}, {x}, {y}"),
                BinaryOp::Min => format!("min.NaN.f32 {w}, {x}, {y}"),
                BinaryOp::Pow => {
                    g.call("gidd_powf");
                    format!("call ({w}), gidd_powf, ({x}, {y})")
                }
                BinaryOp::Rem => {
                    g.call("gidd_fmodf");
                    format!("call ({w}), gidd_fmodf, ({x}, {y})")
                }
                // not float ops: NaN, as binary_float
                _ => format!("mov.f32 {w}, 0f7FC00000"),
            };
            g.emit(&line);
            g.round(w, d)
        }
        Op::Binary(o) => {
            let (Val::X(x), Val::X(y)) = (&a[0], &a[1]) else {
                return Err(bad(ni, "an integer op on a float register"));
            };
            let w = int_binary(g, *o, x, y, d);
            g.wrap(w, d)
        }
        Op::Compare(c) => {
            let pr = g.tmp(P);
            match (&a[0], &a[1]) {
                (Val::X(x), Val::X(y)) => {
                    g.emit(&format!("setp.{}.s64 {pr}, {x}, {y}", cmp_name(*c, false)))
                }
                (x, y) => {
                    let (x, y) = (g.widen(x), g.widen(y));
                    g.emit(&format!("setp.{}.f32 {pr}, {x}, {y}", cmp_name(*c, true)));
                }
            }
            g.bool_of(&pr)
        }
        Op::Select => {
            let Val::X(c) = &a[0] else {
                return Err(bad(ni, "a select on a float predicate"));
            };
            let pr = g.tmp(P);
            g.emit(&format!("setp.ne.s64 {pr}, {c}, 0"));
            match (&a[1], &a[2]) {
                (Val::F(x), Val::F(y)) => {
                    let w = g.tmp(F);
                    g.emit(&format!("selp.f32 {w}, {x}, {y}, {pr}"));
                    Val::F(w)
                }
                (Val::H(x), Val::H(y)) => {
                    let w = g.tmp(B);
                    g.emit(&format!("selp.b32 {w}, {x}, {y}, {pr}"));
                    Val::H(w)
                }
                (Val::X(x), Val::X(y)) => {
                    let w = g.tmp(X);
                    g.emit(&format!("selp.b64 {w}, {x}, {y}, {pr}"));
                    Val::X(w)
                }
                _ => return Err(bad(ni, "a select between different registers")),
            }
        }
        Op::Convert { to } => convert(g, &a[0], p.values[node.inputs[0]].ty.dtype, *to),
        Op::Iota { dim } => {
            let sh = &p.values[node.outputs[0]].ty.shape;
            let stride: usize = sh[dim + 1..].iter().product();
            let (q, r, x) = (g.tmp(U), g.tmp(U), g.tmp(X));
            g.emit(&format!("div.u32 {q}, %i, {}", stride.max(1)));
            g.emit(&format!("rem.u32 {r}, {q}, {}", sh[*dim].max(1)));
            g.emit(&format!("cvt.u64.u32 {x}, {r}"));
            convert(g, &Val::X(x), DType::U32, d)
        }
        op if is_view(op) => a[0].clone(),
        op => return Err(bad(ni, op.name())),
    })
}

pub(crate) fn bad(ni: usize, what: &str) -> CudaError {
    CudaError::Unsupported(format!("node {ni}: {what} in an elementwise chain"))
}

/// An integer binary op in 64 bits, as binary_int computes it.
fn int_binary(g: &mut Gen, o: BinaryOp, x: &str, y: &str, d: DType) -> String {
    let w = g.tmp(X);
    let op3 = |g: &mut Gen, ins: &str| g.emit(&format!("{ins} {w}, {x}, {y}"));
    match o {
        BinaryOp::Add => op3(g, "add.s64"),
        BinaryOp::Sub => op3(g, "sub.s64"),
        BinaryOp::Mul => op3(g, "mul.lo.s64"),
        BinaryOp::Max => op3(g, "max.s64"),
        BinaryOp::Min => op3(g, "min.s64"),
        BinaryOp::And => op3(g, "and.b64"),
        BinaryOp::Or => op3(g, "or.b64"),
        BinaryOp::Xor => op3(g, "xor.b64"),
        BinaryOp::Pow => g.emit(&format!("mov.s64 {w}, 0")),
        BinaryOp::Div | BinaryOp::Rem => {
            // y = 0 gives 0; y = -1 gives -x (div, wrapping) or 0 (rem); the hardware divides
            // by 1 instead in those lanes, so it is never asked for an undefined quotient
            let (z, m, e) = (g.tmp(P), g.tmp(P), g.tmp(P));
            let (s, q) = (g.tmp(X), g.tmp(X));
            g.emit(&format!("setp.eq.s64 {z}, {y}, 0"));
            g.emit(&format!("setp.eq.s64 {m}, {y}, -1"));
            g.emit(&format!("or.pred {e}, {z}, {m}"));
            g.emit(&format!("selp.s64 {s}, 1, {y}, {e}"));
            if o == BinaryOp::Div {
                let n = g.tmp(X);
                g.emit(&format!("div.s64 {q}, {x}, {s}"));
                g.emit(&format!("neg.s64 {n}, {x}"));
                g.emit(&format!("selp.s64 {q}, {n}, {q}, {m}"));
            } else {
                g.emit(&format!("rem.s64 {q}, {x}, {s}"));
                g.emit(&format!("selp.s64 {q}, 0, {q}, {m}"));
            }
            g.emit(&format!("selp.s64 {w}, 0, {q}, {z}"));
        }
        BinaryOp::ShiftLeft | BinaryOp::ShiftRightLogical => {
            // the amount as unsigned 64 bits: negative amounts are huge, hence out of range
            let bits = if d == DType::I64 { 64 } else { 32 };
            let (out, sh, t) = (g.tmp(P), g.tmp(U), g.tmp(X));
            g.emit(&format!("setp.ge.u64 {out}, {y}, {bits}"));
            g.emit(&format!("cvt.u32.u64 {sh}, {y}"));
            if o == BinaryOp::ShiftLeft {
                g.emit(&format!("shl.b64 {t}, {x}, {sh}"));
            } else if bits == 32 {
                // the narrow bit pattern, zero-extended, so the shift brings in zeros
                let n = g.tmp(X);
                g.emit(&format!("and.b64 {n}, {x}, 4294967295"));
                g.emit(&format!("shr.u64 {t}, {n}, {sh}"));
            } else {
                g.emit(&format!("shr.u64 {t}, {x}, {sh}"));
            }
            g.emit(&format!("selp.s64 {w}, 0, {t}, {out}"));
        }
    }
    w
}

/// `x` of dtype `from` converted to `to`, as convert.ptx's store_any and the next load.
fn convert(g: &mut Gen, x: &Val, from: DType, to: DType) -> Val {
    if from == to {
        return x.clone();
    }
    let float_src = matches!(from, DType::F32 | DType::BF16);
    // the source as f64, where a target needs it
    let as_f64 = |g: &mut Gen| -> String {
        let dd = g.tmp(D);
        match x {
            Val::X(r) => g.emit(&format!("cvt.rn.f64.s64 {dd}, {r}")),
            v => {
                let f = g.widen(v);
                g.emit(&format!("cvt.f64.f32 {dd}, {f}"));
            }
        }
        dd
    };
    match to {
        DType::F32 => {
            let dd = as_f64(g);
            let f = g.tmp(F);
            g.emit(&format!("cvt.rn.f32.f64 {f}, {dd}"));
            Val::F(f)
        }
        DType::BF16 if from == DType::F32 => g.round(g_reg(x), DType::BF16),
        DType::BF16 => {
            // from_f64: truncate to the 20 mantissa bits of the f64's top word, then round
            let dd = as_f64(g);
            let (f, b, m) = (g.tmp(F), g.tmp(B), g.tmp(F));
            g.emit(&format!("cvt.rz.f32.f64 {f}, {dd}"));
            g.emit(&format!("mov.b32 {b}, {f}"));
            g.emit(&format!("and.b32 {b}, {b}, 0xfffffff8"));
            g.emit(&format!("mov.b32 {m}, {b}"));
            g.round(m, DType::BF16)
        }
        DType::I32 | DType::U32 if float_src => {
            let dd = as_f64(g);
            let (u, w) = (g.tmp(U), g.tmp(X));
            let (c, ext) = match to {
                DType::I32 => ("s32", "cvt.s64.s32"),
                _ => ("u32", "cvt.u64.u32"),
            };
            g.emit(&format!("cvt.rzi.{c}.f64 {u}, {dd}"));
            g.emit(&format!("{ext} {w}, {u}"));
            Val::X(w)
        }
        DType::I64 if float_src => {
            let dd = as_f64(g);
            let w = g.tmp(X);
            g.emit(&format!("cvt.rzi.s64.f64 {w}, {dd}"));
            Val::X(w)
        }
        DType::Bool => {
            let pr = g.tmp(P);
            if float_src {
                let dd = as_f64(g);
                g.emit(&format!("setp.neu.f64 {pr}, {dd}, 0d0000000000000000"));
            } else {
                g.emit(&format!("setp.ne.s64 {pr}, {}, 0", g_reg(x)));
            }
            g.bool_of(&pr)
        }
        // integer -> integer: the low bits
        _ => g.wrap(g_reg(x), to),
    }
}

fn g_reg(v: &Val) -> String {
    match v {
        Val::F(r) | Val::H(r) | Val::X(r) => r.clone(),
    }
}

/// Stores `v` (a value of dtype `d`) as element %i of the array at `ptr`.
/// A scalar (`scalar`: a one-element value in a larger chain) is stored by element 0's
/// thread only.
pub(crate) fn store(g: &mut Gen, ptr: &str, v: &Val, d: DType, scalar: bool) {
    let (a, guard) = if scalar {
        let z = g.tmp(P);
        g.emit(&format!("setp.eq.u32 {z}, %i, 0"));
        (ptr.to_string(), format!("@{z} "))
    } else {
        let (off, a) = (g.tmp(A), g.tmp(A));
        g.emit(&format!("mul.wide.u32 {off}, %i, {}", d.size()));
        g.emit(&format!("add.u64 {a}, {ptr}, {off}"));
        (a, String::new())
    };
    match (v, d) {
        (Val::F(f), _) => g.emit(&format!("{guard}st.global.f32 [{a}], {f}")),
        (Val::H(h), _) => g.emit(&format!("{guard}st.global.u16 [{a}], {h}")),
        (Val::X(x), DType::I64) => g.emit(&format!("{guard}st.global.s64 [{a}], {x}")),
        (Val::X(x), _) => {
            let u = g.tmp(U);
            g.emit(&format!("cvt.u32.u64 {u}, {x}"));
            let w = if d == DType::Bool { "u8" } else { "u32" };
            g.emit(&format!("{guard}st.global.{w} [{a}], {u}"));
        }
    }
}
