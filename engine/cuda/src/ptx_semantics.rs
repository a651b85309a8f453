//! The semantics of the PTX instructions crate::ptx_interp runs: integer ops on the register's
//! bits by type (wrapping, signed or unsigned by the type's letter), IEEE float ops (`.rn`),
//! `cvt` with its rounding modes and saturation, comparisons ordered and unordered, and
//! `max`/`min` with PTX's NaN and signed-zero rules.

#![allow(clippy::unwrap_used, clippy::panic)]

use crate::emulate::Mem;
use crate::ptx_interp::{val, Inst, Opd};

pub(crate) struct Ctx<'a> {
    pub(crate) m: &'a mut Mem,
    pub(crate) slots: &'a [u64],
    pub(crate) tid: u64,
    pub(crate) ntid: u64,
    pub(crate) ctaid: u64,
    pub(crate) nctaid: u64,
}

fn width(ty: &str) -> u32 {
    match ty {
        "pred" => 1,
        "u8" | "s8" | "b8" => 8,
        "u16" | "s16" | "b16" | "f16" => 16,
        "u32" | "s32" | "b32" | "f32" => 32,
        _ => 64,
    }
}

fn mask(v: u64, w: u32) -> u64 {
    if w >= 64 {
        v
    } else {
        v & ((1u64 << w) - 1)
    }
}

/// `v` (of integer type `ty`) as a signed or unsigned 64-bit value, and whether signed.
fn int_of(v: u64, ty: &str) -> (i128, bool) {
    let w = width(ty);
    let m = mask(v, w);
    if ty.starts_with('s') {
        let sh = 64 - w;
        (((m << sh) as i64 >> sh) as i128, true)
    } else {
        (m as i128, false)
    }
}

fn f32v(v: u64) -> f32 {
    f32::from_bits(v as u32)
}

fn fbits(x: f32) -> u64 {
    x.to_bits() as u64
}

/// `x` rounded toward zero to f32.
fn f64_to_f32_rz(x: f64) -> f32 {
    let f = x as f32;
    if x.is_nan() || f as f64 == x || x == 0.0 {
        return f;
    }
    if f.is_infinite() || (f as f64).abs() > x.abs() {
        let b = f.to_bits();
        // one step toward zero (from an overflowed infinity: the largest finite value)
        return f32::from_bits(b - 1);
    }
    f
}

fn round_int(x: f64, mode: &str) -> f64 {
    match mode {
        "rni" => x.round_ties_even(),
        "rmi" => x.floor(),
        "rpi" => x.ceil(),
        _ => x.trunc(),
    }
}

/// max/min as PTX: with `.NaN` any NaN operand gives the canonical NaN, else a NaN operand
/// gives the other; +0 is above -0.
fn fmax(a: f64, b: f64, max: bool, nan: bool) -> f64 {
    if a.is_nan() || b.is_nan() {
        return if nan || (a.is_nan() && b.is_nan()) {
            f64::NAN
        } else if a.is_nan() {
            b
        } else {
            a
        };
    }
    if a == b {
        let neg = if max {
            a.is_sign_negative() && b.is_sign_negative()
        } else {
            a.is_sign_negative() || b.is_sign_negative()
        };
        return if neg { -a.abs() } else { a.abs() };
    }
    if (a > b) == max {
        a
    } else {
        b
    }
}

fn fcmp(c: &str, a: f64, b: f64) -> bool {
    let un = a.is_nan() || b.is_nan();
    match c {
        "eq" => a == b,
        "ne" => !un && a != b,
        "lt" => a < b,
        "le" => a <= b,
        "gt" => a > b,
        "ge" => a >= b,
        "equ" => un || a == b,
        "neu" => un || a != b,
        "ltu" => un || a < b,
        "leu" => un || a <= b,
        "gtu" => un || a > b,
        "geu" => un || a >= b,
        "num" => !un,
        "nan" => un,
        _ => panic!("setp comparison {c}"),
    }
}

fn icmp(c: &str, a: i128, b: i128) -> bool {
    match c {
        "eq" => a == b,
        "ne" => a != b,
        "lt" | "lo" => a < b,
        "le" | "ls" => a <= b,
        "gt" | "hi" => a > b,
        "ge" | "hs" => a >= b,
        _ => panic!("setp comparison {c}"),
    }
}

/// `ld.global.vN.T {..}, [a]` / `st.global.vN.T [a], {..}`: N elements of T at consecutive
/// addresses. The address must be aligned to the whole access (N x T), as the hardware
/// requires; a misaligned one panics here (on a GPU it faults).
fn vector(ins: &Inst, r: &mut [u64], cx: &mut Ctx) {
    let p = &ins.parts;
    let ty = p.last().unwrap().as_str();
    let n: usize = match p
        .iter()
        .find(|x| *x == "v2" || *x == "v4")
        .map(String::as_str)
    {
        Some("v2") => 2,
        Some("v4") => 4,
        _ => panic!("vector access {p:?} without v2/v4"),
    };
    assert_eq!(
        ins.vregs.len(),
        n,
        "{p:?} with {} registers",
        ins.vregs.len()
    );
    assert!(!ty.starts_with('f') || ty == "f32", "vector type {ty}");
    let w = (width(ty) / 8) as usize;
    let at = if p[0] == "ld" { 1 } else { 0 };
    let Opd::Addr(b, off) = ins.args[at] else {
        panic!("{p:?} at {:?}", ins.args[at])
    };
    let addr = r[b].wrapping_add(off as u64);
    assert!(
        addr.is_multiple_of((n * w) as u64),
        "misaligned {}-byte vector access at {addr:#x}",
        n * w
    );
    for (k, &reg) in ins.vregs.iter().enumerate() {
        let a = addr + (k * w) as u64;
        if p[0] == "ld" {
            r[reg] = cx.m.rd(a, w);
        } else {
            cx.m.wr(a, w, mask(r[reg], width(ty)));
        }
    }
}

pub(crate) fn exec(ins: &Inst, r: &mut [u64], cx: &mut Ctx) {
    let p = &ins.parts;
    let op = p[0].as_str();
    let ty = p.last().unwrap().as_str();
    let a = &ins.args;
    let v = |k: usize, r: &[u64], cx: &Ctx| val(r, &a[k], cx);
    let dst = match a.first() {
        Some(Opd::Reg(d)) => *d,
        _ => usize::MAX,
    };
    let float = ty.starts_with('f');
    let fl = |x: u64| -> f64 {
        if ty == "f32" {
            f32v(x) as f64
        } else {
            f64::from_bits(x)
        }
    };
    let back = |x: f64| -> u64 {
        if ty == "f32" {
            fbits(x as f32)
        } else {
            x.to_bits()
        }
    };
    // an f32 result computed in f64 rounds once (exact for +, -, *, / and sqrt of f32s)
    let out: u64 = match op {
        "mov" => v(1, r, cx),
        "ld" | "st" if !ins.vregs.is_empty() => return vector(ins, r, cx),
        "ld" => {
            let w = (width(ty) / 8) as usize;
            let raw = match a[1] {
                Opd::Param(off) => {
                    let s = cx.slots[off as usize / 8];
                    s >> (8 * (off as u64 % 8))
                }
                Opd::Addr(b, off) => cx.m.rd(r[b].wrapping_add(off as u64), w),
                o => panic!("ld from {o:?}"),
            };
            let (x, _) = int_of(raw, if float { "b64" } else { ty });
            mask(x as u64, width(ty).max(32))
        }
        "st" => {
            let Opd::Addr(b, off) = a[0] else {
                panic!("st to {:?}", a[0])
            };
            let w = (width(ty) / 8) as usize;
            let x = v(1, r, cx);
            cx.m.wr(r[b].wrapping_add(off as u64), w, mask(x, width(ty)));
            return;
        }
        "setp" => {
            let c = p[1].as_str();
            let res = if float {
                fcmp(c, fl(v(1, r, cx)), fl(v(2, r, cx)))
            } else {
                icmp(c, int_of(v(1, r, cx), ty).0, int_of(v(2, r, cx), ty).0)
            };
            let res = match p.get(2).map(String::as_str) {
                Some("and") => res && v(3, r, cx) != 0,
                Some("or") => res || v(3, r, cx) != 0,
                Some("xor") => res ^ (v(3, r, cx) != 0),
                _ => res,
            };
            u64::from(res)
        }
        "selp" => {
            if v(3, r, cx) != 0 {
                v(1, r, cx)
            } else {
                v(2, r, cx)
            }
        }
        "testp" => {
            let x = fl(v(1, r, cx));
            u64::from(match p[1].as_str() {
                "notanumber" => x.is_nan(),
                "number" => !x.is_nan(),
                "infinite" => x.is_infinite(),
                "finite" => x.is_finite(),
                t => panic!("testp.{t}"),
            })
        }
        "cvt" => cvt(p, v(1, r, cx)),
        "and" | "or" | "xor" if ty == "pred" => {
            let (x, y) = (v(1, r, cx) != 0, v(2, r, cx) != 0);
            u64::from(match op {
                "and" => x && y,
                "or" => x || y,
                _ => x ^ y,
            })
        }
        "not" if ty == "pred" => u64::from(v(1, r, cx) == 0),
        "and" => v(1, r, cx) & v(2, r, cx),
        "or" => v(1, r, cx) | v(2, r, cx),
        "xor" => v(1, r, cx) ^ v(2, r, cx),
        "not" => !v(1, r, cx),
        "shl" | "shr" => {
            let w = width(ty);
            let sh = v(2, r, cx) as u32 as u64;
            let (x, signed) = int_of(v(1, r, cx), ty);
            if op == "shl" {
                if sh >= w as u64 {
                    0
                } else {
                    (x as u64) << sh
                }
            } else if signed {
                (x >> sh.min(127)) as u64
            } else if sh >= w as u64 {
                0
            } else {
                (x as u64) >> sh
            }
        }
        "fma" | "mad" if float => {
            let (x, y, z) = (fl(v(1, r, cx)), fl(v(2, r, cx)), fl(v(3, r, cx)));
            if ty == "f32" {
                fbits((x as f32).mul_add(y as f32, z as f32))
            } else {
                x.mul_add(y, z).to_bits()
            }
        }
        "mad" => {
            let (x, y, z) = (v(1, r, cx), v(2, r, cx), v(3, r, cx));
            x.wrapping_mul(y).wrapping_add(z)
        }
        _ if float => float_op(op, p, ty, &|k| fl(v(k, r, cx)), &back),
        _ => int_op(op, p, &|k| int_of(v(k, r, cx), ty).0),
    };
    if dst != usize::MAX {
        // (cvt masks to its destination type itself)
        let w = if op == "cvt" || (op == "mul" && p.get(1).map(String::as_str) == Some("wide")) {
            64
        } else if op == "setp" || ty == "pred" {
            1
        } else {
            width(ty).max(32)
        };
        r[dst] = mask(out, w);
    }
}

fn float_op(
    op: &str,
    p: &[String],
    ty: &str,
    x: &dyn Fn(usize) -> f64,
    back: &dyn Fn(f64) -> u64,
) -> u64 {
    let f32_only = |f: fn(f32) -> f32| fbits(f(x(1) as f32));
    let nan = p.iter().any(|s| s == "NaN");
    match op {
        "add" => back(x(1) + x(2)),
        "sub" => back(x(1) - x(2)),
        "mul" => back(x(1) * x(2)),
        "div" => back(x(1) / x(2)),
        "neg" => back(-x(1)),
        "abs" => back(x(1).abs()),
        "max" => back(fmax(x(1), x(2), true, nan)),
        "min" => back(fmax(x(1), x(2), false, nan)),
        "sqrt" if ty == "f32" => f32_only(f32::sqrt),
        "sqrt" => back(x(1).sqrt()),
        "rcp" => back(1.0 / x(1)),
        "ex2" => fbits((x(1)).exp2() as f32),
        _ => panic!("float instruction {}", p.join(".")),
    }
}

fn int_op(op: &str, p: &[String], x: &dyn Fn(usize) -> i128) -> u64 {
    match op {
        "add" => (x(1) + x(2)) as u64,
        "sub" => (x(1) - x(2)) as u64,
        "mul" => (x(1).wrapping_mul(x(2))) as u64,
        "neg" => (-x(1)) as u64,
        "abs" => x(1).unsigned_abs() as u64,
        "max" => x(1).max(x(2)) as u64,
        "min" => x(1).min(x(2)) as u64,
        "div" | "rem" => {
            let (a, b) = (x(1), x(2));
            if b == 0 {
                // undefined in PTX: any value (the generated code never uses it)
                return if op == "div" { u64::MAX } else { a as u64 };
            }
            // i128 holds MIN / -1 exactly; the register keeps the wrapped low bits
            (if op == "div" { a / b } else { a % b }) as u64
        }
        _ => panic!("integer instruction {}", p.join(".")),
    }
}

/// cvt.{rounding}.{dst}.{src}
fn cvt(p: &[String], x: u64) -> u64 {
    let n = p.len();
    let (dt, st) = (p[n - 2].as_str(), p[n - 1].as_str());
    let mode = if n > 3 { p[1].as_str() } else { "" };
    let sf = st.starts_with('f');
    let df = dt.starts_with('f');
    let src: f64 = match st {
        "f32" => f32v(x) as f64,
        "f64" => f64::from_bits(x),
        _ => int_of(x, st).0 as f64,
    };
    match (df, sf) {
        (true, true) => {
            let y = if mode.ends_with('i') {
                round_int(src, mode)
            } else {
                src
            };
            match dt {
                "f32" if mode == "rz" => fbits(f64_to_f32_rz(y)),
                "f32" => fbits(y as f32),
                _ => y.to_bits(),
            }
        }
        (true, false) => {
            // integer -> float: exact through i128 -> f64 for the 32-bit sources
            let (i, _) = int_of(x, st);
            match dt {
                "f32" => fbits(i as f32),
                _ => (i as f64).to_bits(),
            }
        }
        (false, true) => {
            let y = round_int(src, mode);
            let w = width(dt);
            // saturating, NaN -> 0
            if dt.starts_with('s') {
                let v = match w {
                    32 => y as i32 as i64,
                    _ => y as i64,
                };
                mask(v as u64, w.max(32))
            } else {
                let v = match w {
                    32 => y as u32 as u64,
                    _ => y as u64,
                };
                mask(v, w.max(32))
            }
        }
        (false, false) => {
            let (i, _) = int_of(x, st);
            let w = width(dt);
            let m = mask(i as u64, w);
            if dt.starts_with('s') {
                int_of(m, dt).0 as u64
            } else {
                m
            }
        }
    }
}
