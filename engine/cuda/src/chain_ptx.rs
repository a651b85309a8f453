//! The PTX text of an elementwise chain (crate::chain): one grid-stride entry that loads each
//! value read from memory once, computes every member in registers, and stores the values
//! read after the chain.
//!
//! Each member computes exactly what its own kernel would, so fusing changes no bit:
//! * floats are f32 registers, f32 math, the same instructions as elementwise/float.ptx
//!   (whose `.func` helpers, exp, log, tanh, sin/cos, pow, fmod and the bf16 conversions, are
//!   copied into the module from that file's text, not rewritten); a bf16 value is held as its
//!   16 raw bits (so a select or a copy moves them unchanged, as the unfused kernels do),
//!   widened where an op reads it and rounded once after each op;
//! * integers and bools are 64-bit registers as elementwise/int.ptx loads them (i32
//!   sign-extended, u32 and bool zero-extended), the op in 64 bits as there, then the value
//!   the unfused kernel's store and the next load would give (low 32 bits sign- or
//!   zero-extended, a bool's low byte);
//! * conversions follow elementwise/convert.ptx's `store_any` (through f64, `cvt.rzi`
//!   saturating, integer -> bf16 via a truncated f32), iota its `(i / stride) % size`.
//!
//! Splat operands are literals; views (broadcast, transpose, slice) load their operand at the
//! strided index of the output element, computed from the flat index with constant strides.

use crate::chain::{canonical, is_view, Io};
use crate::chain_ops::{bad, member, store};
use crate::error::{CudaError, Result};
use crate::plan::splat_bits;
use gidd_engine::op::Op;
use gidd_engine::program::Loc;
use gidd_engine::{DType, Program};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

/// The entry's name in the text before the cache names it (crate::chain::intern).
pub const ENTRY: &str = "@ENTRY@";

/// How a value lives in registers.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    /// An f32 register (f32 values).
    F(String),
    /// A b32 register holding a bf16's bits in its low half.
    H(String),
    /// An s64 register (integers and bools, widened as int.ptx loads them).
    X(String),
}

/// Register classes of the temporaries: (prefix, PTX type).
const CLASSES: [(&str, &str); 7] = [
    ("%tf", ".f32"),
    ("%tb", ".b32"),
    ("%tu", ".u32"),
    ("%tx", ".s64"),
    ("%td", ".f64"),
    ("%tp", ".pred"),
    ("%ta", ".u64"),
];
pub(crate) const F: usize = 0;
pub(crate) const B: usize = 1;
pub(crate) const U: usize = 2;
pub(crate) const X: usize = 3;
pub(crate) const D: usize = 4;
pub(crate) const P: usize = 5;
pub(crate) const A: usize = 6;

/// The helpers of elementwise/float.ptx a chain may call, in the file's order (a callee
/// before its callers), with the helpers each one calls.
const HELPERS: [(&str, &[&str]); 8] = [
    ("bf16_to_f32", &[]),
    ("f32_to_bf16", &[]),
    ("gidd_expf", &[]),
    ("gidd_logf", &[]),
    ("gidd_tanhf", &["gidd_expf"]),
    ("gidd_sincosf", &[]),
    ("gidd_powf", &["gidd_logf", "gidd_expf"]),
    ("gidd_fmodf", &[]),
];

/// The text of helper `name` from elementwise/float.ptx: its `.func` line to the closing brace.
fn helper_text(name: &str) -> Result<&'static str> {
    let src = gidd_kernels::ptx::MODULES
        .iter()
        .find(|m| m.name == "elementwise/float")
        .map(|m| m.source)
        .unwrap_or("");
    let needle = format!(" {name}(");
    let start = src
        .lines()
        .filter(|l| l.starts_with(".func") && l.contains(&needle))
        .map(|l| l.as_ptr() as usize - src.as_ptr() as usize)
        .next();
    let end = start.and_then(|s| src[s..].find("\n}\n").map(|e| s + e + 3));
    match (start, end) {
        (Some(s), Some(e)) => Ok(&src[s..e]),
        _ => Err(CudaError::Unsupported(format!(
            "helper {name} is not in elementwise/float.ptx"
        ))),
    }
}

pub(crate) struct Gen<'a> {
    pub(crate) p: &'a Program,
    /// Loop-invariant code (splat literals), before the loop.
    pre: String,
    body: String,
    counts: [usize; 7],
    helpers: BTreeSet<&'static str>,
    reg: HashMap<usize, Val>,
}

impl Gen<'_> {
    pub(crate) fn tmp(&mut self, class: usize) -> String {
        let r = format!("{}{}", CLASSES[class].0, self.counts[class]);
        self.counts[class] += 1;
        r
    }

    pub(crate) fn emit(&mut self, line: &str) {
        self.body.push_str("    ");
        self.body.push_str(line);
        self.body.push_str(";\n");
    }

    pub(crate) fn call(&mut self, name: &'static str) {
        self.helpers.insert(name);
    }

    /// A float value as an f32 register (a bf16 widened as half's to_f32).
    pub(crate) fn widen(&mut self, v: &Val) -> String {
        match v {
            Val::F(r) => r.clone(),
            Val::H(h) => {
                let f = self.tmp(F);
                self.call("bf16_to_f32");
                self.emit(&format!("call ({f}), bf16_to_f32, ({h})"));
                f
            }
            Val::X(r) => r.clone(),
        }
    }

    /// An f32 result stored as `d` (f32 or bf16, rounded once).
    pub(crate) fn round(&mut self, f: String, d: DType) -> Val {
        if d == DType::BF16 {
            let h = self.tmp(B);
            self.call("f32_to_bf16");
            self.emit(&format!("call ({h}), f32_to_bf16, ({f})"));
            Val::H(h)
        } else {
            Val::F(f)
        }
    }

    /// A 64-bit integer result as the unfused store of dtype `d` and the next load give it.
    pub(crate) fn wrap(&mut self, x: String, d: DType) -> Val {
        let w = match d {
            DType::I32 => {
                let (u, w) = (self.tmp(U), self.tmp(X));
                self.emit(&format!("cvt.u32.u64 {u}, {x}"));
                self.emit(&format!("cvt.s64.s32 {w}, {u}"));
                w
            }
            DType::U32 | DType::Bool => {
                let w = self.tmp(X);
                let mask = if d == DType::Bool { 255 } else { 4294967295u64 };
                self.emit(&format!("and.b64 {w}, {x}, {mask}"));
                w
            }
            _ => x,
        };
        Val::X(w)
    }

    /// A 0/1 predicate as a bool value.
    pub(crate) fn bool_of(&mut self, p: &str) -> Val {
        let x = self.tmp(X);
        self.emit(&format!("selp.s64 {x}, 1, 0, {p}"));
        Val::X(x)
    }

    /// A value of dtype `d` from memory at element index `idx` (a u32 register) of `ptr`.
    pub(crate) fn load(&mut self, ptr: &str, idx: &str, d: DType) -> Val {
        // a scalar's one element is at the pointer itself
        let a = if idx == "0" {
            ptr.to_string()
        } else {
            let (off, a) = (self.tmp(A), self.tmp(A));
            self.emit(&format!("mul.wide.u32 {off}, {idx}, {}", d.size()));
            self.emit(&format!("add.u64 {a}, {ptr}, {off}"));
            a
        };
        match d {
            DType::F32 => {
                let f = self.tmp(F);
                self.emit(&format!("ld.global.f32 {f}, [{a}]"));
                Val::F(f)
            }
            DType::BF16 => {
                let h = self.tmp(B);
                self.emit(&format!("ld.global.u16 {h}, [{a}]"));
                Val::H(h)
            }
            DType::I64 => {
                let x = self.tmp(X);
                self.emit(&format!("ld.global.s64 {x}, [{a}]"));
                Val::X(x)
            }
            _ => {
                let (u, x) = (self.tmp(U), self.tmp(X));
                let (ld, cvt) = match d {
                    DType::I32 => ("u32", "cvt.s64.s32"),
                    DType::U32 => ("u32", "cvt.u64.u32"),
                    _ => ("u8", "cvt.u64.u32"),
                };
                self.emit(&format!("ld.global.{ld} {u}, [{a}]"));
                self.emit(&format!("{cvt} {x}, {u}"));
                Val::X(x)
            }
        }
    }

    /// A splat of `x` as dtype `d`: a register set once before the loop.
    pub(crate) fn literal(&mut self, x: f64, d: DType) -> Val {
        let bits = splat_bits(x, d);
        let (class, line) = match d {
            DType::F32 => (F, format!("mov.f32 {{}}, 0f{:08X}", bits as u32)),
            DType::BF16 => (
                B,
                format!(
                    "mov.b32 {{}}, 0x{:04x}",
                    crate::plan::raw_bits(x, DType::BF16)
                ),
            ),
            _ => (X, format!("mov.b64 {{}}, 0x{bits:016x}")),
        };
        let r = self.tmp(class);
        let _ = writeln!(self.pre, "    {};", line.replace("{}", &r));
        match class {
            F => Val::F(r),
            B => Val::H(r),
            _ => Val::X(r),
        }
    }

    /// Value `v` from outside the chain at element index `idx`: a buffer read, or a literal.
    pub(crate) fn read(&mut self, v: usize, idx: &str, bufs: &[usize]) -> Result<Val> {
        let d = self.p.values[v].ty.dtype;
        match self.p.loc[v] {
            Loc::Splat(x) => Ok(self.literal(x, d)),
            _ => {
                let k = bufs.iter().position(|&b| b == v).ok_or_else(|| {
                    CudaError::Unsupported(format!("chain read {v} is not bound"))
                })?;
                Ok(self.load(&format!("%in{k}"), idx, d))
            }
        }
    }

    /// The index (u32 register) of the operand element view node `ni` reads for element %i.
    pub(crate) fn view_index(&mut self, ni: usize) -> String {
        let p = self.p;
        let shape = &p.values[p.nodes[ni].outputs[0]].ty.shape;
        let (off, src_st) = gidd_engine::chain::view_strides(p, ni);
        let ost = crate::movement::strides(shape);
        let mut idx = self.tmp(U);
        self.emit(&format!("mov.u32 {idx}, {off}"));
        for d in 0..shape.len() {
            if src_st[d] == 0 || shape[d] == 1 {
                continue;
            }
            let c = self.tmp(U);
            self.emit(&format!("div.u32 {c}, %i, {}", ost[d]));
            if d > 0 {
                self.emit(&format!("rem.u32 {c}, {c}, {}", shape[d]));
            }
            let next = self.tmp(U);
            self.emit(&format!("mad.lo.u32 {next}, {c}, {}, {idx}", src_st[d]));
            idx = next;
        }
        idx
    }
}

/// The module text of the chain `nodes` (entry named [`ENTRY`]): arguments `n`, then one
/// pointer per written value, then one per read buffer (`bufs`, in that order). With
/// `lanes` > 1 (crate::chain_vec::lanes said it may) each thread handles `lanes` consecutive
/// elements with vector accesses, and `n` counts those groups.
pub fn text(p: &Program, nodes: &[usize], io: &Io, bufs: &[usize], lanes: usize) -> Result<String> {
    let mut g = Gen {
        p,
        pre: String::new(),
        body: String::new(),
        counts: [0; 7],
        helpers: BTreeSet::new(),
        reg: HashMap::new(),
    };
    // each lane's registers of the values read from outside (a scalar's are shared)
    let mut lane_in: Vec<HashMap<usize, Val>> = vec![HashMap::new(); lanes];
    for &v in &io.direct {
        if p.values[v].ty.numel() == 1 {
            // a scalar operand (of a scalar member) is element 0 for every thread
            let val = g.read(v, "0", bufs)?;
            for m in &mut lane_in {
                m.insert(v, val.clone());
            }
        } else if lanes == 1 {
            let val = g.read(v, "%i", bufs)?;
            lane_in[0].insert(v, val);
        } else {
            let vals = crate::chain_vec::read(&mut g, v, bufs, lanes)?;
            for (m, val) in lane_in.iter_mut().zip(vals) {
                m.insert(v, val);
            }
        }
    }
    let mut summary = String::new();
    if lanes > 1 {
        let _ = writeln!(summary, "//   vectorized: {lanes} elements per thread");
    }
    let mut lane_out = vec![];
    for (lane, regs) in lane_in.into_iter().enumerate() {
        g.reg = regs;
        for &ni in nodes {
            let node = &p.nodes[ni];
            let src = node.inputs.first().map_or(0, |&v| canonical(p, v));
            let of_member = !node.inputs.is_empty() && nodes.contains(&p.values[src].node);
            let args: Vec<Val> = if is_view(&node.op) && of_member {
                // a view of a scalar member (chain::chains admits no other view of a member)
                vec![g.reg[&src].clone()]
            } else if is_view(&node.op) && lanes > 1 {
                // chain_vec::lanes admits only views of one element (or of a splat)
                vec![g.read(src, "0", bufs)?]
            } else if is_view(&node.op) {
                let idx = g.view_index(ni);
                vec![g.read(src, &idx, bufs)?]
            } else {
                node.inputs
                    .iter()
                    .map(|&v| {
                        g.reg
                            .get(&canonical(p, v))
                            .cloned()
                            .ok_or_else(|| bad(ni, "an operand with no register"))
                    })
                    .collect::<Result<_>>()?
            };
            let o = node.outputs[0];
            let val = member(&mut g, ni, &args)?;
            g.reg.insert(o, val);
            if lane == 0 {
                let _ = writeln!(summary, "//   {} -> {}", op_label(&node.op), p.values[o].ty);
            }
        }
        lane_out.push(std::mem::take(&mut g.reg));
    }
    for (k, &v) in io.writes.iter().enumerate() {
        let vals = lane_out
            .iter()
            .map(|m| m.get(&v).cloned().ok_or_else(|| bad(v, "a write")))
            .collect::<Result<Vec<Val>>>()?;
        let ty = &p.values[v].ty;
        if lanes == 1 || ty.numel() == 1 {
            // a scalar is written by the thread of element 0, from lane 0
            store(
                &mut g,
                &format!("%o{k}"),
                &vals[0],
                ty.dtype,
                ty.numel() == 1,
            );
        } else {
            crate::chain_vec::write(&mut g, &format!("%o{k}"), &vals, ty.dtype);
        }
    }

    let mut s = String::new();
    let _ = writeln!(
        s,
        "// Generated by engine/cuda/src/chain_ptx.rs: {} elementwise ops as one kernel,\n\
         // intermediates in registers.\n{summary}//\n\
         // ARGS {ENTRY}: n{}{}\n\n.version 7.0\n.target sm_80\n.address_size 64\n",
        nodes.len(),
        (0..io.writes.len()).fold(String::new(), |a, k| a + &format!(" o{k}")),
        (0..bufs.len()).fold(String::new(), |a, k| a + &format!(" i{k}")),
    );
    let mut needed = g.helpers.clone();
    for (name, deps) in HELPERS {
        if g.helpers.contains(name) {
            needed.extend(deps.iter().copied());
        }
    }
    for (name, _) in HELPERS {
        if needed.contains(name) {
            s.push_str(helper_text(name)?);
            s.push('\n');
        }
    }
    let slots = 1 + io.writes.len() + bufs.len();
    let _ = writeln!(
        s,
        ".visible .entry {ENTRY}(.param .align 8 .b8 args[{}])\n{{\n    .reg .u32 %n, %i, %step, %g;\n    .reg .pred %p;",
        8 * slots
    );
    let _ = writeln!(s, "    .reg .u64 %o<{}>;", io.writes.len());
    if !bufs.is_empty() {
        let _ = writeln!(s, "    .reg .u64 %in<{}>;", bufs.len());
    }
    for (k, (prefix, ty)) in CLASSES.iter().enumerate() {
        if g.counts[k] > 0 {
            let _ = writeln!(s, "    .reg {ty} {prefix}<{}>;", g.counts[k]);
        }
    }
    s.push_str("    ld.param.u32 %n, [args+0];\n");
    for k in 0..io.writes.len() {
        let _ = writeln!(s, "    ld.param.u64 %o{k}, [args+{}];", 8 * (1 + k));
    }
    for k in 0..bufs.len() {
        let _ = writeln!(
            s,
            "    ld.param.u64 %in{k}, [args+{}];",
            8 * (1 + io.writes.len() + k)
        );
    }
    s.push_str(
        "    mov.u32 %i, %ctaid.x;\n    mov.u32 %step, %ntid.x;\n    mov.u32 %g, %tid.x;\n    \
         mad.lo.u32 %i, %i, %step, %g;\n    mov.u32 %g, %nctaid.x;\n    mul.lo.u32 %step, %step, %g;\n",
    );
    s.push_str(&g.pre);
    s.push_str("LOOP:\n    setp.ge.u32 %p, %i, %n;\n    @%p bra END;\n");
    s.push_str(&g.body);
    s.push_str("    add.u32 %i, %i, %step;\n    bra LOOP;\nEND:\n    ret;\n}\n");
    Ok(s)
}

fn op_label(op: &Op) -> String {
    match op {
        Op::Unary(u) => format!("{u:?}"),
        Op::Binary(b) => format!("{b:?}"),
        Op::Compare(c) => format!("{c:?}"),
        Op::Convert { to } => format!("convert to {to}"),
        op => op.name().to_string(),
    }
}
