//! Elementwise chains on the cpu executor. A run of consecutive f32 elementwise nodes over
//! the same number of elements (unary, binary, compare, select, and broadcasts of one element)
//! runs tile by tile: the values between its members stay in L1/L2 instead of costing a pass
//! over memory per op. The optimizer's update alone is ~25 such ops per weight, each one a
//! memory-bound pass when run alone.
//!
//! Each member calls the same per-element kernel its node would (`gidd_kernels::elementwise`)
//! on a tile of its operands, and those kernels compute every element independently of its
//! neighbours, so a fused run gives the unfused run's bits (pinned by `engine/tests/cpu_chains.rs`
//! and the training-step test there). `GIDD_CPU_CHAINS=0` turns the fusion off at load.

use super::elem::{Arg, Elem};
use crate::dtype::DType;
use crate::host::{Data, HostTensor};
use crate::op::{BinaryOp, CmpOp, Op, UnaryOp};
use crate::program::{Loc, Program};
use gidd_kernels::elementwise::{self as ew, Src};
use rayon::prelude::*;

/// Elements per tile: every member's tile of a 30-op chain fits in L2 together.
const TILE: usize = 1024;
/// Elements per rayon task, and the size below which a chain runs on one thread (the
/// unfused kernels' own threshold).
const TASK: usize = 1 << 14;
const PAR_MIN: usize = 1 << 15;

/// What node `i` of a loaded program does in `run_nodes`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Role {
    /// Runs alone.
    Plain,
    /// First member of chain `c`: the whole chain runs here.
    Start(usize),
    /// A later member: already ran with its chain.
    Inside,
}

#[derive(Debug)]
pub(super) struct Chain {
    /// Elements of every member's output.
    n: usize,
    members: Vec<Member>,
    /// Values read from outside the chain (canonical), in first-use order.
    pub ext: Vec<usize>,
    /// The program node of each member, in order (for profiles and collectives).
    pub nodes: Vec<usize>,
}

#[derive(Debug)]
struct Member {
    kind: Kind,
    ins: Vec<Operand>,
    /// The value to write to its slot (read after the chain or a program output).
    write: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Unary(UnaryOp),
    Binary(BinaryOp),
    Compare(CmpOp),
    Select,
    /// A broadcast of one element.
    Fill,
}

impl Kind {
    fn of(op: &Op) -> Option<Kind> {
        Some(match op {
            Op::Unary(u) => Kind::Unary(*u),
            Op::Binary(b) => Kind::Binary(*b),
            Op::Compare(c) => Kind::Compare(*c),
            Op::Select => Kind::Select,
            Op::BroadcastInDim { .. } => Kind::Fill,
            _ => return None,
        })
    }
    fn bool_out(self) -> bool {
        matches!(self, Kind::Compare(_))
    }
}

#[derive(Clone, Copy, Debug)]
enum Operand {
    /// `ext[i]`, read at the element's index.
    Ext(usize),
    /// `ext[i]`'s one element, for every index.
    Scalar(usize),
    /// An earlier member's output.
    Member(usize),
}

/// The chains of `p`, and each node's role.
pub(super) fn find(p: &Program) -> (Vec<Role>, Vec<Chain>) {
    let mut role = vec![Role::Plain; p.nodes.len()];
    let mut chains = vec![];
    let last_read = last_reads(p);
    let mut cur: Vec<usize> = vec![];
    for ni in 0..p.nodes.len() {
        if !p.runs[ni] {
            continue;
        }
        if !joins(p, ni, &cur) {
            close(p, &last_read, &mut cur, &mut role, &mut chains);
            if !joins(p, ni, &cur) {
                continue;
            }
        }
        cur.push(ni);
    }
    close(p, &last_read, &mut cur, &mut role, &mut chains);
    (role, chains)
}

fn numel(p: &Program, v: usize) -> usize {
    p.values[v].ty.numel()
}

/// Whether node `ni` may extend the chain `cur` (or start one when `cur` is empty).
fn joins(p: &Program, ni: usize, cur: &[usize]) -> bool {
    let node = &p.nodes[ni];
    let Some(kind) = Kind::of(&node.op) else {
        return false;
    };
    let out = node.outputs[0];
    let want = if kind.bool_out() {
        DType::Bool
    } else {
        DType::F32
    };
    let n = match cur.first() {
        Some(&c) => numel(p, p.nodes[c].outputs[0]),
        None => numel(p, out),
    };
    if p.values[out].ty.dtype != want || numel(p, out) != n {
        return false;
    }
    node.inputs.iter().enumerate().all(|(k, &v)| {
        let c = crate::chain::canonical(p, v);
        let dt = p.values[c].ty.dtype;
        let want_in = if matches!(kind, Kind::Select) && k == 0 {
            DType::Bool
        } else {
            DType::F32
        };
        let m = numel(p, c);
        dt == want_in
            && match kind {
                Kind::Fill => m == 1,
                _ => m == n || cur.contains(&p.values[c].node),
            }
    })
}

/// For each value (canonical), the last running node that reads it; programs' outputs count
/// as read at the end.
fn last_reads(p: &Program) -> Vec<usize> {
    let mut last = vec![0usize; p.values.len()];
    for (ni, node) in p.nodes.iter().enumerate() {
        if p.runs[ni] {
            for &v in &node.inputs {
                let c = crate::chain::canonical(p, v);
                last[c] = last[c].max(ni);
            }
        }
    }
    for &v in &p.outputs {
        last[crate::chain::canonical(p, v)] = usize::MAX;
    }
    last
}

/// Makes `cur` a chain when it has two members or more (one alone runs as its node would).
fn close(
    p: &Program,
    last_read: &[usize],
    cur: &mut Vec<usize>,
    role: &mut [Role],
    chains: &mut Vec<Chain>,
) {
    let nodes = std::mem::take(cur);
    if nodes.len() < 2 {
        return;
    }
    let end = *nodes.last().expect("two members");
    let mut ext: Vec<usize> = vec![];
    let mut members: Vec<Member> = vec![];
    for &ni in &nodes {
        let node = &p.nodes[ni];
        let kind = Kind::of(&node.op).expect("joined");
        let ins = node
            .inputs
            .iter()
            .map(|&v| {
                let c = crate::chain::canonical(p, v);
                // A broadcast member fills its tile even where its readers could take the
                // element itself: the kernels' slice-and-scalar loops may order a NaN's operands
                // differently from their slice-and-slice loops, and the unfused run reads a slice.
                if let Some(j) = nodes.iter().position(|&m| p.nodes[m].outputs[0] == c) {
                    Operand::Member(j)
                } else {
                    let e = ext.iter().position(|&x| x == c).unwrap_or_else(|| {
                        ext.push(c);
                        ext.len() - 1
                    });
                    match kind {
                        Kind::Fill => Operand::Scalar(e),
                        _ => Operand::Ext(e),
                    }
                }
            })
            .collect();
        let out = node.outputs[0];
        let write = (last_read[out] > end).then_some(out);
        members.push(Member { kind, ins, write });
    }
    role[nodes[0]] = Role::Start(chains.len());
    for &ni in &nodes[1..] {
        role[ni] = Role::Inside;
    }
    chains.push(Chain {
        n: numel(p, p.nodes[nodes[0]].outputs[0]),
        members,
        ext,
        nodes,
    });
}

/// A raw operand or destination: the chain's tiles are disjoint index ranges of buffers that
/// outlive the run, shared across rayon tasks.
#[derive(Clone, Copy)]
enum Ptr {
    F32(*const f32),
    U8(*const u8),
    ScalarF32(f32),
    ScalarU8(u8),
}

#[derive(Clone, Copy)]
enum Out {
    F32(*mut f32),
    U8(*mut u8),
}

struct Plan<'a> {
    chain: &'a Chain,
    ext: Vec<Ptr>,
    /// Each member's destination when it is written back.
    out: Vec<Option<Out>>,
}

// SAFETY: the pointers address buffers that live for the whole run (the program's slots, its
// inputs and constants); tasks write disjoint index ranges, and a member's reads at index i
// happen before any write at i by a later member of the same tile (the planner frees a slot only
// after its value's last reader, so a written member reuses at most the slot of a value whose
// readers come earlier in the chain). Reads at other indices (one-element values broadcast)
// are taken before any tile runs.
unsafe impl Send for Plan<'_> {}
unsafe impl Sync for Plan<'_> {}

/// Runs `ch`, writing its members' outputs that are read later into their slots.
pub(super) fn run(p: &Program, ch: &Chain, slots: &mut [Data], inputs: &[&HostTensor]) {
    // The written members' slots, taken out so that they can be written while other slots are
    // read; an ext value living in one of them is read there.
    let mut taken: Vec<(usize, Data)> = vec![];
    let mut out = vec![None; ch.members.len()];
    for (i, m) in ch.members.iter().enumerate() {
        if let Some(v) = m.write {
            let Loc::Slot(s) = p.loc[v] else {
                unreachable!("a running node's output has a slot")
            };
            let mut d = std::mem::replace(&mut slots[s], Data::F32(vec![]));
            out[i] = Some(match &mut d {
                Data::F32(x) => Out::F32(x.as_mut_ptr()),
                Data::Bool(x) => Out::U8(x.as_mut_ptr()),
                _ => unreachable!("chains hold f32 and bool values"),
            });
            taken.push((s, d));
        }
    }
    let ext = ch
        .ext
        .iter()
        .map(|&v| {
            let held = taken
                .iter()
                .find(|(s, _)| matches!(p.loc[v], Loc::Slot(t) if t == *s));
            let a = match held {
                Some((_, d)) => Arg::Data(d),
                None => super::arg(p, slots, inputs, v),
            };
            match a {
                Arg::Splat(x, DType::Bool) => Ptr::ScalarU8(x as u8),
                Arg::Splat(x, _) => Ptr::ScalarF32(x as f32),
                Arg::Data(d) if d.dtype() == DType::Bool => {
                    Ptr::U8(<u8 as Elem>::slice(d).expect("bool").as_ptr())
                }
                // A one-element value is read once, now: a written member may reuse its slot,
                // and the element (index 0) is overwritten by the first tile.
                Arg::Data(d) if p.values[v].ty.numel() == 1 => {
                    Ptr::ScalarF32(<f32 as Elem>::slice(d).expect("f32")[0])
                }
                Arg::Data(d) => Ptr::F32(<f32 as Elem>::slice(d).expect("f32").as_ptr()),
            }
        })
        .collect();
    let plan = Plan {
        chain: ch,
        ext,
        out,
    };
    let task = |scratch: &mut Scratch, t: usize| {
        let end = ((t + 1) * TASK).min(ch.n);
        let mut s = t * TASK;
        while s < end {
            let len = TILE.min(end - s);
            // SAFETY: see `Plan`.
            unsafe { tile(&plan, scratch, s, len) };
            s += len;
        }
    };
    let tasks = ch.n.div_ceil(TASK);
    if ch.n < PAR_MIN {
        let mut scratch = Scratch::new(ch);
        (0..tasks).for_each(|t| task(&mut scratch, t));
    } else {
        (0..tasks)
            .into_par_iter()
            .for_each_init(|| Scratch::new(ch), task);
    }
    for (s, d) in taken {
        slots[s] = d;
    }
}

/// Per-task tiles of the members that are not written back.
struct Scratch {
    f32s: Vec<f32>,
    u8s: Vec<u8>,
}

impl Scratch {
    fn new(ch: &Chain) -> Scratch {
        let n = ch.members.len() * TILE;
        Scratch {
            f32s: vec![0.0; n],
            u8s: vec![0; n],
        }
    }
}

/// Every member over elements [s, s + len).
///
/// # Safety
/// `plan`'s pointers are valid for the chain's `n` elements and `s + len <= n`; no other
/// thread touches [s, s + len) meanwhile.
unsafe fn tile(plan: &Plan, scratch: &mut Scratch, s: usize, len: usize) {
    let ch = plan.chain;
    let sf = scratch.f32s.as_mut_ptr();
    let su = scratch.u8s.as_mut_ptr();
    // where each member's tile lives
    let dest = |i: usize| -> Out {
        match plan.out[i] {
            Some(Out::F32(o)) => Out::F32(o.add(s)),
            Some(Out::U8(o)) => Out::U8(o.add(s)),
            None if ch.members[i].kind.bool_out() => Out::U8(su.add(i * TILE)),
            None => Out::F32(sf.add(i * TILE)),
        }
    };
    let f32_in = |o: Operand| -> Src<'_, f32> {
        match o {
            Operand::Ext(e) | Operand::Scalar(e) => match plan.ext[e] {
                Ptr::F32(x) => Src::Slice(std::slice::from_raw_parts(x.add(s), len)),
                Ptr::ScalarF32(x) => Src::Scalar(x),
                _ => unreachable!("f32 operand"),
            },
            Operand::Member(j) => match dest(j) {
                Out::F32(x) => Src::Slice(std::slice::from_raw_parts(x, len)),
                Out::U8(_) => unreachable!("f32 operand"),
            },
        }
    };
    let u8_in = |o: Operand| -> Src<'_, u8> {
        match o {
            Operand::Ext(e) | Operand::Scalar(e) => match plan.ext[e] {
                Ptr::U8(x) => Src::Slice(std::slice::from_raw_parts(x.add(s), len)),
                Ptr::ScalarU8(x) => Src::Scalar(x),
                _ => unreachable!("bool operand"),
            },
            Operand::Member(j) => match dest(j) {
                Out::U8(x) => Src::Slice(std::slice::from_raw_parts(x, len)),
                Out::F32(_) => unreachable!("bool operand"),
            },
        }
    };
    for (i, m) in ch.members.iter().enumerate() {
        match (m.kind, dest(i)) {
            (Kind::Compare(c), Out::U8(o)) => ew::compare_f32(
                c,
                f32_in(m.ins[0]),
                f32_in(m.ins[1]),
                std::slice::from_raw_parts_mut(o, len),
            ),
            (kind, Out::F32(o)) => {
                let o = std::slice::from_raw_parts_mut(o, len);
                match kind {
                    Kind::Unary(u) => match f32_in(m.ins[0]) {
                        Src::Slice(x) => ew::unary_f32(u, x, o),
                        Src::Scalar(x) => {
                            let mut y = [0f32];
                            ew::unary_f32(u, &[x], &mut y);
                            o.fill(y[0]);
                        }
                    },
                    Kind::Binary(b) => ew::binary_f32(b, f32_in(m.ins[0]), f32_in(m.ins[1]), o),
                    Kind::Select => {
                        ew::select_f32(u8_in(m.ins[0]), f32_in(m.ins[1]), f32_in(m.ins[2]), o)
                    }
                    Kind::Fill => match f32_in(m.ins[0]) {
                        Src::Scalar(x) => o.fill(x),
                        Src::Slice(x) => o.fill(x[0]),
                    },
                    Kind::Compare(_) => unreachable!("bool output"),
                }
            }
            _ => unreachable!("member outputs match their kind"),
        }
    }
}

/// Whether chains are on: `GIDD_CPU_CHAINS=0` turns them off (to compare, or to profile op
/// by op).
pub(super) fn enabled() -> bool {
    std::env::var("GIDD_CPU_CHAINS").map_or(true, |v| v != "0")
}
