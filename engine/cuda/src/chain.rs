//! Chains of elementwise ops as one generated PTX kernel. A decomposed training step is
//! mostly elementwise glue (the optimizer update, the Philox draws of the noise, the loss's
//! and norms' pieces): one launch per op costs a launch and a full pass over memory each.
//! Here runs of consecutive elementwise nodes of equal element count become one kernel
//! (crate::chain_ptx writes its text) that keeps every intermediate in registers and writes
//! only the values read after the run.
//!
//! The rules are the wgpu executor's (engine/wgpu/src/fuse.rs), for the same reasons: only
//! *consecutive* nodes (of those that run), because the memory plan reuses a slot once its
//! value's last reader has run, so a value read from memory is intact only while nothing
//! else has run; a view (broadcast, transpose, slice) reads its operand at a strided index,
//! so that operand must come from memory, never from a member; and a chain that would write
//! a value into the slot of a value it reads is split there (another thread may still have
//! to read the element it overwrites).
//!
//! Generated modules are cached for the process by their text: a program loaded twice, or
//! two programs with the same chain, share one module (and one JIT load per device). The
//! entry is named by a hash of the text, so its name is stable across runs and machines.

use crate::error::{CudaError, Result};
use crate::plan::{u32_of, Arg, Builder};
pub use gidd_engine::chain::{canonical, is_chain_op, is_view, Chain, ChainIo as Io};
use gidd_engine::program::Loc;
use gidd_engine::{DType, Program};
use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many written and this many read buffers per chain (a longer chain is split):
/// the argument names come from fixed tables, and the parameter block stays small.
pub const MAX_IO: usize = 24;

const OUT_NAMES: [&str; MAX_IO] = [
    "o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9", "o10", "o11", "o12", "o13", "o14",
    "o15", "o16", "o17", "o18", "o19", "o20", "o21", "o22", "o23",
];
const IN_NAMES: [&str; MAX_IO] = [
    "i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9", "i10", "i11", "i12", "i13", "i14",
    "i15", "i16", "i17", "i18", "i19", "i20", "i21", "i22", "i23",
];

/// Whether generated chain kernels are used: on unless GIDD_CUDA_CHAINS=0 (for comparisons).
pub fn enabled() -> bool {
    std::env::var("GIDD_CUDA_CHAINS").as_deref() != Ok("0")
}

/// Whether node `ni` can be a chain member.
fn fusible(p: &Program, ni: usize) -> bool {
    let node = &p.nodes[ni];
    p.runs[ni]
        && p.values[node.outputs[0]].ty.numel() > 0
        && is_chain_op(&node.op)
        && node
            .inputs
            .iter()
            .chain(&node.outputs)
            .all(|&v| p.values[v].ty.dtype != DType::F64)
}

/// The chains of two or more nodes; every node not in one is lowered on its own.
///
/// Beyond the wgpu fuser's rules, a member of one element (a scalar: Philox's key schedule,
/// a step counter's arithmetic) joins a chain of any size: every thread computes it (a few
/// instructions), a view of it is its register, and where it is read after the chain the
/// thread of element 0 writes it. Otherwise those scalars, interleaved with the draws' ops,
/// would cut the draws into a chain per Philox round.
pub fn chains(p: &Program) -> Vec<Chain> {
    let mut out = vec![];
    let mut cur: Vec<usize> = vec![];
    // the element count of the chain's members that are not scalars (None: only scalars yet)
    let mut numel: Option<usize> = None;
    for ni in 0..p.nodes.len() {
        if !p.runs[ni] {
            continue;
        }
        let n = p.values[p.nodes[ni].outputs[0]].ty.numel();
        let src_in_chain = |ni: usize| {
            let v = canonical(p, p.nodes[ni].inputs[0]);
            cur.contains(&p.values[v].node) && p.values[v].ty.numel() != 1
        };
        let view_of_member = is_view(&p.nodes[ni].op) && src_in_chain(ni);
        let fits = n == 1 || numel.is_none_or(|m| m == n);
        if fusible(p, ni) && fits && !view_of_member {
            cur.push(ni);
            if n != 1 {
                numel = Some(n);
            }
            continue;
        }
        split(p, std::mem::take(&mut cur), &mut out);
        numel = None;
        if fusible(p, ni) {
            cur.push(ni);
            if n != 1 {
                numel = Some(n);
            }
        }
    }
    split(p, cur, &mut out);
    out
}

/// Adds `nodes` as chains, split where a written value shares a read value's slot or where
/// the kernel would take too many buffers.
fn split(p: &Program, nodes: Vec<usize>, out: &mut Vec<Chain>) {
    if nodes.len() < 2 {
        return;
    }
    let io = Io::of(p, &nodes);
    let read: Vec<Option<usize>> = io.reads.iter().map(|&v| slot(p, v)).collect();
    let clash = io.writes.iter().position(|&v| {
        let s = slot(p, v);
        s.is_some() && read.contains(&s)
    });
    let at = match clash {
        // the member that writes the clashing value starts a new chain
        Some(w) => nodes
            .iter()
            .position(|&ni| p.nodes[ni].outputs[0] == io.writes[w])
            .unwrap_or(0)
            .max(1),
        None if io.buffer_reads(p).len() > MAX_IO || io.writes.len() > MAX_IO => nodes.len() / 2,
        None => {
            out.push(Chain { nodes });
            return;
        }
    };
    let rest = nodes[at..].to_vec();
    split(p, nodes[..at].to_vec(), out);
    split(p, rest, out);
}

fn slot(p: &Program, v: usize) -> Option<usize> {
    match p.loc[v] {
        Loc::Slot(s) => Some(s),
        _ => None,
    }
}

/// A generated module: its text (one entry) and the entry's argument slots.
#[derive(Debug)]
pub struct Generated {
    pub entry: &'static str,
    pub text: String,
    pub args: Vec<&'static str>,
}

struct Cache {
    by_text: HashMap<String, &'static Generated>,
    by_entry: HashMap<&'static str, &'static Generated>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// FNV-1a: a stable hash (the same name for the same chain on every machine and run).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The cached module for `text` (whose entry is written as [`crate::chain_ptx::ENTRY`]),
/// made and kept for the process on first use. Modules are few (one per distinct chain) and
/// the driver and the plans refer to them by a `&'static str` entry name, hence the leak.
pub fn intern(text: String, args: Vec<&'static str>) -> &'static Generated {
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let c = guard.get_or_insert_with(|| Cache {
        by_text: HashMap::new(),
        by_entry: HashMap::new(),
    });
    if let Some(g) = c.by_text.get(&text) {
        return g;
    }
    let mut name = format!("chain_{:016x}", fnv(&text));
    // another text with the same hash (never seen, but cheap to rule out): a suffix
    while c.by_entry.contains_key(name.as_str()) {
        name.push('x');
    }
    let entry: &'static str = Box::leak(name.into_boxed_str());
    let g: &'static Generated = Box::leak(Box::new(Generated {
        entry,
        text: text.replace(crate::chain_ptx::ENTRY, entry),
        args,
    }));
    c.by_text.insert(text, g);
    c.by_entry.insert(entry, g);
    g
}

/// The generated module whose entry is `entry`, if any.
pub fn generated(entry: &str) -> Option<&'static Generated> {
    let guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_ref()?.by_entry.get(entry).copied()
}

/// The argument slots of any kernel: a hand-written module's ARGS line or a generated one's.
pub fn arg_names(entry: &str) -> Option<Vec<&'static str>> {
    gidd_kernels::ptx::arg_names(entry).or_else(|| generated(entry).map(|g| g.args.clone()))
}

/// The generated modules `plan`'s launches use, each once, in first-use order.
pub fn modules_of(plan: &crate::plan::Plan) -> Vec<&'static Generated> {
    let mut v: Vec<&'static Generated> = vec![];
    for s in &plan.steps {
        if let crate::plan::Step::Launch(l) = s {
            if let Some(g) = generated(l.entry) {
                if !v.iter().any(|h| h.entry == g.entry) {
                    v.push(g);
                }
            }
        }
    }
    v
}

/// The element count a chain's kernel runs over: its largest member's (scalars are 1).
pub fn size(p: &Program, c: &Chain) -> usize {
    c.nodes
        .iter()
        .map(|&ni| p.values[p.nodes[ni].outputs[0]].ty.numel())
        .max()
        .unwrap_or(0)
}

/// A pointer's byte offset from its buffer's base; every base (the arena's and its buffers',
/// each input's own allocation) is plan::ALIGN-aligned.
fn byte_offset(ptr: crate::plan::Ptr) -> u64 {
    use crate::plan::Ptr;
    match ptr {
        Ptr::Slot(_, o) | Ptr::Const(o) | Ptr::Scratch(o) | Ptr::Input(_, o) => o,
    }
}

/// Adds the launch of chain `c`: `n`, the written values' slots, then the read buffers.
pub fn lower(b: &mut Builder, c: &Chain) -> Result<()> {
    let p = b.p;
    let io = Io::of(p, &c.nodes);
    let bufs = io.buffer_reads(p);
    if io.writes.is_empty() {
        return Err(CudaError::Unsupported(format!(
            "an elementwise chain (nodes {:?}) whose values nobody reads",
            c.nodes
        )));
    }
    let outs = io
        .writes
        .iter()
        .map(|&v| b.out(v))
        .collect::<Result<Vec<_>>>()?;
    let ins = bufs.iter().map(|&v| b.ptr(v)).collect::<Result<Vec<_>>>()?;
    let at = |v: usize| {
        let k = io.writes.iter().position(|&w| w == v);
        let ptr = k.map_or_else(
            || bufs.iter().position(|&r| r == v).map(|k| ins[k]),
            |k| Some(outs[k]),
        );
        ptr.map_or(1, byte_offset)
    };
    let lanes = crate::chain_vec::lanes(p, &c.nodes, &io, &at);
    let text = crate::chain_ptx::text(p, &c.nodes, &io, &bufs, lanes)?;
    let mut names = vec!["n"];
    names.extend(&OUT_NAMES[..io.writes.len()]);
    names.extend(&IN_NAMES[..bufs.len()]);
    let g = intern(text, names.clone());
    let n = size(p, c) / lanes;
    let mut args = vec![("n", Arg::Val(u32_of(n)?))];
    for (k, &ptr) in outs.iter().enumerate() {
        args.push((names[1 + k], Arg::Ptr(ptr)));
    }
    for (k, &ptr) in ins.iter().enumerate() {
        args.push((names[1 + io.writes.len() + k], Arg::Ptr(ptr)));
    }
    b.launch_1d(g.entry, n, args);
    Ok(())
}
