//! A host model of the PTX kernels' contracts (their header comments), running a plan's
//! steps on byte buffers: tests run plans here against the cpu executor, which checks the
//! lowering (pointers, offsets, strides, sizes, kernel choice, the order of steps) and the
//! contracts' agreement with the cpu semantics on any machine. It does not check the PTX
//! itself: that is what a GPU run (`gidd check --backend cuda`) is for.

#![allow(clippy::unwrap_used)]

use crate::plan::{resolve, Launch, Plan, Ptr, Step};
use gidd_engine::{DType, Data, HostTensor, Program};
use gidd_kernels::elementwise::{self as ew, Binary, Cmp, Src, Unary};
use gidd_kernels::ptx::{binary_code, cmp_code, code, unary_code};
use half::bf16;
use std::collections::HashMap;

/// The fake address space: the arena at 1 << 40, input i at (i + 2) << 40.
const ARENA: u64 = 1 << 40;

pub(crate) struct Mem {
    arena: Vec<u8>,
    inputs: Vec<Vec<u8>>,
}

impl Mem {
    fn at(&mut self, addr: u64, w: usize) -> &mut [u8] {
        let (buf, off) = if addr >> 40 == 1 {
            (&mut self.arena, addr - ARENA)
        } else {
            (
                &mut self.inputs[(addr >> 40) as usize - 2],
                addr & ((1 << 40) - 1),
            )
        };
        &mut buf[off as usize..off as usize + w]
    }
    pub(crate) fn rd(&mut self, addr: u64, w: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..w].copy_from_slice(self.at(addr, w));
        u64::from_le_bytes(b)
    }
    pub(crate) fn wr(&mut self, addr: u64, w: usize, v: u64) {
        let b = v.to_le_bytes();
        self.at(addr, w).copy_from_slice(&b[..w]);
    }
}

fn from_code<T: Copy>(table: &[T], code_of: impl Fn(T) -> u32, c: u64) -> T {
    *table
        .iter()
        .find(|&&t| code_of(t) as u64 == c)
        .expect("op code")
}

const UNARY: [Unary; 12] = [
    Unary::Neg,
    Unary::Exp,
    Unary::Log,
    Unary::Tanh,
    Unary::Logistic,
    Unary::Sqrt,
    Unary::Rsqrt,
    Unary::Abs,
    Unary::Sin,
    Unary::Cos,
    Unary::Not,
    Unary::Floor,
];
const BINARY: [Binary; 13] = [
    Binary::Add,
    Binary::Sub,
    Binary::Mul,
    Binary::Div,
    Binary::Max,
    Binary::Min,
    Binary::Pow,
    Binary::Rem,
    Binary::And,
    Binary::Or,
    Binary::Xor,
    Binary::ShiftLeft,
    Binary::ShiftRightLogical,
];
const CMP: [Cmp; 6] = [Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge];

fn width(c: u64) -> usize {
    match c as u32 {
        code::F32 | code::I32 | code::U32 => 4,
        code::BF16 => 2,
        code::I64 | code::F64 => 8,
        _ => 1,
    }
}

/// Element i of a float operand as f32 (the splat's f32 bits when the pointer is null).
fn ldf(m: &mut Mem, p: u64, bits: u64, i: u64, dt: u64) -> f32 {
    match (p, dt as u32) {
        (0, _) => f32::from_bits(bits as u32),
        (_, code::BF16) => bf16::from_bits(m.rd(p + 2 * i, 2) as u16).to_f32(),
        _ => f32::from_bits(m.rd(p + 4 * i, 4) as u32),
    }
}

fn stf(m: &mut Mem, p: u64, i: u64, dt: u64, v: f32) {
    match dt as u32 {
        code::BF16 => m.wr(p + 2 * i, 2, bf16::from_f32(v).to_bits() as u64),
        _ => m.wr(p + 4 * i, 4, v.to_bits() as u64),
    }
}

/// Any element as (f64, i64, is-float, raw bits), as convert.ptx loads it.
fn ld_any(m: &mut Mem, p: u64, i: u64, c: u64) -> (f64, i64, bool, u64) {
    let w = width(c) as u64;
    let raw = m.rd(p + w * i, w as usize);
    let int = |v: i64| (v as f64, v, false, raw);
    match c as u32 {
        code::F32 => (f32::from_bits(raw as u32) as f64, 0, true, raw),
        code::BF16 => (bf16::from_bits(raw as u16).to_f64(), 0, true, raw),
        code::F64 => (f64::from_bits(raw), 0, true, raw),
        code::I32 => int(raw as u32 as i32 as i64),
        code::U32 => int(raw as u32 as i64),
        code::I64 => int(raw as i64),
        _ => int(raw as i64),
    }
}

/// Stores by convert.ptx's rules (from is the source's code).
fn st_any(
    m: &mut Mem,
    p: u64,
    i: u64,
    to: u64,
    from: u64,
    (d, v, isf, raw): (f64, i64, bool, u64),
) {
    let w = width(to) as u64;
    let bits = match to as u32 {
        code::F32 => (d as f32).to_bits() as u64,
        code::BF16 if from as u32 == code::F32 => {
            bf16::from_f32(f32::from_bits(raw as u32)).to_bits() as u64
        }
        code::BF16 if from as u32 == code::BF16 => raw,
        code::BF16 => bf16::from_f64(d).to_bits() as u64,
        code::F64 => d.to_bits(),
        code::I32 if isf => (d as i32) as u32 as u64,
        code::U32 if isf => (d as u32) as u64,
        code::I64 if isf => (d as i64) as u64,
        code::BOOL if isf => u64::from(d != 0.0),
        code::BOOL => u64::from(v != 0),
        _ => v as u64,
    };
    m.wr(p + w * i, w as usize, bits);
}

/// An integer operand of kind k, as the narrow Rust type's bits.
fn int_op<T: ew::Int + Copy>(
    m: &mut Mem,
    a: &HashMap<&str, u64>,
    i: u64,
    w: usize,
    f: impl Fn(Src<T>, Src<T>, &mut [T]),
    to: impl Fn(u64) -> T,
    from: impl Fn(T) -> u64,
) {
    let ld = |m: &mut Mem, p: &str, s: &str| {
        if a[p] == 0 {
            to(a[s])
        } else {
            to(m.rd(a[p] + w as u64 * i, w))
        }
    };
    let x = ld(m, "a", "as");
    let y = ld(m, "b", "bs");
    let mut o = [T::default()];
    f(Src::Scalar(x), Src::Scalar(y), &mut o);
    m.wr(a["out"] + w as u64 * i, w, from(o[0]));
}

fn launch(m: &mut Mem, l: &Launch, slots: &[u64]) {
    // generated chains run as their PTX text, interpreted (crate::ptx_interp)
    if let Some(g) = crate::chain::generated(l.entry) {
        return crate::ptx_interp::launch(m, &g.text, l, slots, None);
    }
    if l.entry.starts_with("gemm_wgmma_bf16_") {
        return crate::emulate_hopper::gemm(m, l, slots);
    }
    if l.entry.starts_with("attention_wgmma_fwd_") {
        return crate::emulate_attention_wgmma::forward(m, l, slots);
    }
    let a: HashMap<&str, u64> = l
        .args
        .iter()
        .map(|(n, _)| *n)
        .zip(slots.iter().copied())
        .collect();
    let n = a.get("n").copied().unwrap_or(0);
    match l.entry {
        "unary_float" => {
            let u = from_code(&UNARY, unary_code, a["op"]);
            for i in 0..n {
                let x = ldf(m, a["x"], a["xs"], i, a["dt"]);
                let mut y = [0f32];
                ew::unary_f32(u, &[x], &mut y);
                stf(m, a["out"], i, a["dt"], y[0]);
            }
        }
        "binary_float" | "compare_float" => {
            for i in 0..n {
                let x = ldf(m, a["a"], a["as"], i, a["dt"]);
                let y = ldf(m, a["b"], a["bs"], i, a["dt"]);
                if l.entry == "binary_float" {
                    let mut o = [0f32];
                    let b = from_code(&BINARY, binary_code, a["op"]);
                    ew::binary_f32(b, Src::Scalar(x), Src::Scalar(y), &mut o);
                    stf(m, a["out"], i, a["dt"], o[0]);
                } else {
                    let mut o = [0u8];
                    ew::compare_f32(
                        from_code(&CMP, cmp_code, a["op"]),
                        Src::Scalar(x),
                        Src::Scalar(y),
                        &mut o,
                    );
                    m.wr(a["out"] + i, 1, o[0] as u64);
                }
            }
        }
        "unary_int" => {
            let u = from_code(&UNARY, unary_code, a["op"]);
            let w = width(a["kind"]);
            for i in 0..n {
                let raw = if a["x"] == 0 {
                    a["xs"]
                } else {
                    m.rd(a["x"] + w as u64 * i, w)
                };
                let out = match a["kind"] as u32 {
                    code::I32 => {
                        let mut o = [0i32];
                        ew::unary_int(u, Src::Scalar(raw as i32), &mut o);
                        o[0] as u32 as u64
                    }
                    code::U32 => {
                        let mut o = [0u32];
                        ew::unary_int(u, Src::Scalar(raw as u32), &mut o);
                        o[0] as u64
                    }
                    code::I64 => {
                        let mut o = [0i64];
                        ew::unary_int(u, Src::Scalar(raw as i64), &mut o);
                        o[0] as u64
                    }
                    _ => {
                        let mut o = [0u8];
                        ew::unary_int(u, Src::Scalar(raw as u8), &mut o);
                        o[0] as u64
                    }
                };
                m.wr(a["out"] + w as u64 * i, w, out);
            }
        }
        "binary_int" => {
            let b = from_code(&BINARY, binary_code, a["op"]);
            let w = width(a["kind"]);
            for i in 0..n {
                match a["kind"] as u32 {
                    code::I32 => int_op::<i32>(
                        m,
                        &a,
                        i,
                        w,
                        |x, y, o| ew::binary_int(b, x, y, o),
                        |v| v as i32,
                        |v| v as u32 as u64,
                    ),
                    code::U32 => int_op::<u32>(
                        m,
                        &a,
                        i,
                        w,
                        |x, y, o| ew::binary_int(b, x, y, o),
                        |v| v as u32,
                        |v| v as u64,
                    ),
                    code::I64 => int_op::<i64>(
                        m,
                        &a,
                        i,
                        w,
                        |x, y, o| ew::binary_int(b, x, y, o),
                        |v| v as i64,
                        |v| v as u64,
                    ),
                    _ => int_op::<u8>(
                        m,
                        &a,
                        i,
                        w,
                        |x, y, o| ew::binary_int(b, x, y, o),
                        |v| v as u8,
                        |v| v as u64,
                    ),
                }
            }
        }
        "compare_int" => {
            let c = from_code(&CMP, cmp_code, a["op"]);
            let w = width(a["kind"]);
            for i in 0..n {
                let mut ld = |p: &str, s: &str| {
                    let raw = if a[p] == 0 {
                        a[s]
                    } else {
                        m.rd(a[p] + w as u64 * i, w)
                    };
                    match a["kind"] as u32 {
                        code::I32 => raw as u32 as i32 as i64,
                        code::U32 => raw as u32 as i64,
                        code::I64 => raw as i64,
                        _ => raw as u8 as i64,
                    }
                };
                let (x, y) = (ld("a", "as"), ld("b", "bs"));
                m.wr(a["out"] + i, 1, u64::from(ew::reference::compare(c, x, y)));
            }
        }
        "select" => {
            let w = a["w"] as usize;
            for i in 0..n {
                let mut ld = |p: &str, s: &str, w: usize| {
                    if a[p] == 0 {
                        a[s]
                    } else {
                        m.rd(a[p] + w as u64 * i, w)
                    }
                };
                let v = if ld("p", "ps", 1) != 0 {
                    ld("a", "as", w)
                } else {
                    ld("b", "bs", w)
                };
                m.wr(a["out"] + w as u64 * i, w, v);
            }
        }
        "convert" => {
            for i in 0..n {
                let v = ld_any(m, a["x"], i, a["from"]);
                st_any(m, a["out"], i, a["to"], a["from"], v);
            }
        }
        "iota" => {
            for i in 0..n {
                let q = (i / a["stride"]) % a["size"];
                st_any(
                    m,
                    a["out"],
                    i,
                    a["to"],
                    code::U32 as u64,
                    (q as f64, q as i64, false, q),
                );
            }
        }
        "strided_copy" => {
            let w = a["w"] as usize;
            for i in 0..n {
                let (mut rem, mut so, mut dof) = (i, 0, 0);
                for d in 0..a["rank"] as usize {
                    let sz = a[format!("size{d}").as_str()];
                    let r = rem % sz;
                    so += r * a[format!("src_stride{d}").as_str()];
                    dof += r * a[format!("dst_stride{d}").as_str()];
                    rem /= sz;
                }
                let v = m.rd(a["src"] + so * w as u64, w);
                m.wr(a["dst"] + dof * w as u64, w, v);
            }
        }
        "reduce_rows" | "reduce_cols" => reduce(m, &a),
        "gather" | "scatter_add_f32" | "scatter_add_f64" => index(m, l.entry, &a),
        "gemm_simt" | "gemm_mma_bf16" => gemm(m, l, &a),
        "diffusion_kl" | "diffusion_kl_bwd" => crate::emulate_fused::diffusion_kl(m, l.entry, &a),
        "sample_step" => crate::emulate_sample::sample_step(m, &a),
        "softmax_fwd" | "softmax_bwd" | "rms_norm_fwd" | "rms_norm_bwd_dx" | "rms_norm_dw"
        | "rope" => crate::emulate_rows::rows(m, l.entry, &a),
        "attention_fwd" | "attention_bwd_rows" | "attention_bwd_dkdv" | "attention_bwd_dq" => {
            crate::emulate_attention::attention(m, l, &a)
        }
        "attention_mma_fwd_d64" | "attention_mma_fwd_d128" => {
            crate::emulate_attention_mma::forward(m, l, &a)
        }
        "attention_mma_dq_d64"
        | "attention_mma_dq_d128"
        | "attention_mma_dkdv_d64"
        | "attention_mma_dkdv_d128" => crate::emulate_attention_mma_bwd::backward(m, l, &a),
        e => panic!("no emulation of kernel {e}"),
    }
}

fn unravel(a: &HashMap<&str, u64>, idx: u64, rank: &str, size: &str, stride: &str) -> u64 {
    let (mut rem, mut off) = (idx, 0);
    for d in 0..a[rank] as usize {
        let sz = a[format!("{size}{d}").as_str()];
        off += (rem % sz) * a[format!("{stride}{d}").as_str()];
        rem /= sz;
    }
    off
}

fn reduce(m: &mut Mem, a: &HashMap<&str, u64>) {
    let (max, dt) = (a["op"] == 1, a["dt"]);
    for j in 0..a["n_out"] {
        let base = unravel(a, j, "kept_rank", "kept_size", "kept_stride");
        let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
        for r in 0..a["red_n"] {
            let off = base + unravel(a, r, "red_rank", "red_size", "red_stride");
            let v = ld_any(m, a["x"], off, dt).0;
            acc = if !max {
                acc + v
            } else if v.is_nan() || acc.is_nan() {
                f64::NAN
            } else {
                acc.max(v)
            };
        }
        if max && a["red_n"] == 0 && dt >= code::I32 as u64 {
            acc = 0.0;
        }
        let bits = match dt as u32 {
            code::F32 => (acc as f32).to_bits() as u64,
            code::BF16 => bf16::from_f64(acc).to_bits() as u64,
            code::I32 => (acc as i32) as u32 as u64,
            code::U32 => (acc as u32) as u64,
            code::I64 => (acc as i64) as u64,
            _ => (acc as u8) as u64,
        };
        let w = width(dt);
        m.wr(a["out"] + j * w as u64, w, bits);
    }
}

fn index(m: &mut Mem, entry: &str, a: &HashMap<&str, u64>) {
    let (len, post, mm) = (a["len"], a["post"], a["m"]);
    for e in 0..a["n"] {
        let (q, t) = (e % post, e / post);
        let (j, p) = (t % mm, t / mm);
        let id = ld_any(m, a["ids"], j, a["idk"]).1;
        let id = id.clamp(0, len as i64 - 1) as u64;
        let dst = (p * len + id) * post + q;
        match entry {
            "gather" => {
                let w = a["w"] as usize;
                let v = m.rd(a["x"] + dst * w as u64, w);
                m.wr(a["out"] + e * w as u64, w, v);
            }
            "scatter_add_f32" => {
                let u = f32::from_bits(m.rd(a["upd"] + 4 * e, 4) as u32);
                let o = f32::from_bits(m.rd(a["out"] + 4 * dst, 4) as u32);
                m.wr(a["out"] + 4 * dst, 4, (o + u).to_bits() as u64);
            }
            _ => {
                let u = ld_any(m, a["upd"], e, a["dt"]).0;
                let o = f64::from_bits(m.rd(a["acc"] + 8 * dst, 8));
                m.wr(a["acc"] + 8 * dst, 8, (o + u).to_bits());
            }
        }
    }
}

fn gemm(m: &mut Mem, l: &Launch, a: &HashMap<&str, u64>) {
    let (mm, nn, kk) = (a["m"], a["n"], a["k"]);
    // the strides gemm_simt takes, or those gemm_mma_bf16's layout flags stand for
    let (dt, sa, sb, out_bf16) = if l.entry == "gemm_simt" {
        let s = [a["sa_batch"], a["sa_m"], a["sa_k"]];
        (
            a["dt"],
            s,
            [a["sb_batch"], a["sb_k"], a["sb_n"]],
            a["dt"] == code::BF16 as u64,
        )
    } else {
        let sa = if a["a_kc"] == 1 {
            [a["sa_batch"], a["lda"], 1]
        } else {
            [a["sa_batch"], 1, a["lda"]]
        };
        let sb = if a["b_kc"] == 1 {
            [a["sb_batch"], 1, a["ldb"]]
        } else {
            [a["sb_batch"], a["ldb"], 1]
        };
        (code::BF16 as u64, sa, sb, a["out_bf16"] == 1)
    };
    for z in 0..l.grid[2] as u64 {
        let b = a["b0"] + z;
        for i in 0..mm {
            for j in 0..nn {
                let mut acc = 0f32;
                for k in 0..kk {
                    let x = ldf(m, a["a"], 0, b * sa[0] + i * sa[1] + k * sa[2], dt);
                    let y = ldf(m, a["b"], 0, b * sb[0] + k * sb[1] + j * sb[2], dt);
                    acc = x.mul_add(y, acc);
                }
                stf(
                    m,
                    a["c"],
                    b * mm * nn + i * nn + j,
                    u64::from(out_bf16),
                    acc,
                );
            }
        }
    }
}

/// Runs `plan` (of program `p`) on host copies of `inputs`; returns the outputs.
pub fn run(p: &Program, plan: &Plan, inputs: &[&HostTensor]) -> Vec<HostTensor> {
    let mut m = Mem::new(plan, inputs);
    m.steps(plan, 0..plan.steps.len());
    m.outputs(p, plan)
}

impl Mem {
    /// The arena (constants uploaded, the rest 0xAA) and host copies of `inputs`.
    pub(crate) fn new(plan: &Plan, inputs: &[&HostTensor]) -> Mem {
        let mut m = Mem {
            arena: vec![0xAA; plan.arena.bytes as usize],
            inputs: inputs.iter().map(|t| t.data.as_bytes().to_vec()).collect(),
        };
        for (at, bytes) in &plan.arena.consts {
            let o = (plan.arena.const_at + at) as usize;
            m.arena[o..o + bytes.len()].copy_from_slice(bytes);
        }
        m
    }

    /// The fake address of `p`.
    pub(crate) fn addr(&self, plan: &Plan, p: Ptr) -> u64 {
        match p {
            Ptr::Input(i, o) => ((i as u64 + 2) << 40) + o,
            p => ARENA + plan.arena.offset(p).unwrap_or(0),
        }
    }

    /// `w` bytes at `addr`.
    pub(crate) fn bytes(&mut self, addr: u64, w: usize) -> &mut [u8] {
        self.at(addr, w)
    }

    /// Runs steps `range` of `plan`.
    pub(crate) fn steps(&mut self, plan: &Plan, range: std::ops::Range<usize>) {
        let addr: Vec<u64> = (0..self.inputs.len() as u64)
            .map(|i| (i + 2) << 40)
            .collect();
        let len = range.len();
        for s in plan.steps.iter().skip(range.start).take(len) {
            match s {
                Step::Launch(l) => {
                    let slots = resolve(
                        &l.args,
                        &plan.arena,
                        ARENA,
                        &addr,
                        &crate::emulate_hopper::encode,
                    )
                    .unwrap();
                    launch(self, l, &slots);
                }
                Step::Zero { dst, bytes } => {
                    let a = self.addr(plan, *dst);
                    self.at(a, *bytes as usize).fill(0)
                }
                Step::Copy { dst, src, bytes } => {
                    let (d, s) = (self.addr(plan, *dst), self.addr(plan, *src));
                    let v = self.at(s, *bytes as usize).to_vec();
                    self.at(d, *bytes as usize).copy_from_slice(&v);
                }
            }
        }
    }

    /// The outputs of `p` once its steps are done.
    pub(crate) fn outputs(&mut self, p: &Program, plan: &Plan) -> Vec<HostTensor> {
        let m = self;
        let at = |m: &Mem, p: Ptr| m.addr(plan, p);
        p.outputs
            .iter()
            .zip(&plan.outputs)
            .map(|(&v, &(src, bytes))| {
                let ty = &p.values[v].ty;
                let a = at(m, src);
                let b = m.at(a, bytes as usize).to_vec();
                let data = match ty.dtype {
                    DType::F32 => Data::F32(
                        b.chunks(4)
                            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                    ),
                    DType::BF16 => Data::BF16(
                        b.chunks(2)
                            .map(|c| bf16::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                    ),
                    DType::F16 => Data::F16(
                        b.chunks(2)
                            .map(|c| half::f16::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                    ),
                    DType::I32 => Data::I32(
                        b.chunks(4)
                            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                    ),
                    DType::U32 => Data::U32(
                        b.chunks(4)
                            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                    ),
                    DType::I64 => Data::I64(
                        b.chunks(8)
                            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                    ),
                    DType::F64 => Data::F64(
                        b.chunks(8)
                            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                            .collect(),
                    ),
                    DType::Bool => Data::Bool(b),
                };
                HostTensor::new(ty.shape.clone(), data).unwrap()
            })
            .collect()
    }
}
