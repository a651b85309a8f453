//! Chains of elementwise ops as one generated kernel. A decomposed training step is mostly
//! elementwise glue (the optimizer update, the Philox draws, the loss's and norms' pieces):
//! one dispatch per op costs a launch and a full pass over memory each. Here runs of
//! consecutive elementwise nodes of equal element count become one kernel that keeps every
//! intermediate in registers and writes only the values read after the run.
//!
//! Why only *consecutive* nodes (in the program's execution order, counting the nodes that
//! run): the memory plan reuses a slot once its value's last reader has run. Inside a run
//! nothing else executes, so every value read from memory is still intact when the fused
//! kernel reads it; a member placed later than a foreign node could find its operand's slot
//! already reused. The one remaining conflict, a written value planned into the slot of a
//! value the run reads (freed by an earlier member), would bind one buffer both read-only and
//! writable in one dispatch, which WebGPU forbids: such a run is split there.
//!
//! Members are elementwise ops, iota, and views of values from outside the chain (broadcast,
//! transpose, slice: a load at a strided index, so a broadcast row or a transposed gradient
//! is never copied out). Each member computes what its own kernel would (ops.wgsl's
//! functions, with the op and dtype kind as literals, and bf16 rounded after every op), so
//! fusing changes no bit.
//!
//! bf16 values are read from their packed words; when the chain writes a bf16 value, each
//! invocation computes two consecutive elements and writes whole words (two invocations
//! writing the halves of one word would race). The same generator lowers a lone elementwise
//! node or view that touches bf16 ([`lower_single`]), so packed bf16 needs no second set of
//! hand-written elementwise kernels.

use crate::buffer::elem_bytes;
use crate::error::Result;
use crate::lower::{class, Class};
use crate::pipelines::Kernel;
use crate::plan::{u32_of, Bind, Builder};
use gidd_engine::chain::{canonical, is_view, view_strides, ChainIo as Io};
use gidd_engine::op::Op;
use gidd_engine::program::Loc;
use gidd_engine::{DType, Program};
use gidd_kernels::wgsl::{binary_code, cmp_code, generated_source, unary_code};
use std::collections::HashMap;
use std::fmt::Write;

/// A run of nodes (indices into `Program::nodes`, in order) that becomes one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub nodes: Vec<usize>,
}

/// Whether node `ni` can be a chain member.
fn fusible(p: &Program, ni: usize) -> bool {
    let node = &p.nodes[ni];
    p.runs[ni]
        && (is_view(&node.op)
            || matches!(
                node.op,
                Op::Unary(_)
                    | Op::Binary(_)
                    | Op::Compare(_)
                    | Op::Select
                    | Op::Convert { .. }
                    | Op::Iota { .. }
            ))
        && node
            .inputs
            .iter()
            .chain(&node.outputs)
            .all(|&v| class(p.values[v].ty.dtype).is_ok())
}

/// The chains of two or more nodes; every node not in one is lowered on its own.
/// `max_bindings`: storage buffers one kernel may bind (the parameter block included).
pub fn chains(p: &Program, max_bindings: usize) -> Vec<Chain> {
    let mut out = vec![];
    let mut cur: Vec<usize> = vec![];
    let mut numel = 0;
    for ni in 0..p.nodes.len() {
        if !p.runs[ni] {
            continue;
        }
        let n = p.values[p.nodes[ni].outputs[0]].ty.numel();
        // a view reads its operand from memory: not from a member of the current chain
        let view_of_member = is_view(&p.nodes[ni].op) && {
            let src = p.values[canonical(p, p.nodes[ni].inputs[0])].node;
            cur.contains(&src)
        };
        if fusible(p, ni) && (cur.is_empty() || n == numel) && !view_of_member {
            cur.push(ni);
            numel = n;
            continue;
        }
        split(p, std::mem::take(&mut cur), max_bindings, &mut out);
        if fusible(p, ni) {
            cur.push(ni);
            numel = n;
        }
    }
    split(p, cur, max_bindings, &mut out);
    out
}

/// Adds `nodes` as chains, split where a written value shares a read value's slot or where
/// the kernel would bind too many buffers.
fn split(p: &Program, nodes: Vec<usize>, max_bindings: usize, out: &mut Vec<Chain>) {
    if nodes.len() < 2 {
        return;
    }
    let io = Io::of(p, &nodes);
    let read: Vec<Option<usize>> = io.reads.iter().map(|&v| slot(p, v)).collect();
    let clash = io.writes.iter().position(|&v| {
        let s = slot(p, v);
        s.is_some() && read.contains(&s)
    });
    if let Some(w) = clash {
        // the member that writes the clashing value starts a new chain
        let at = nodes
            .iter()
            .position(|&ni| p.nodes[ni].outputs[0] == io.writes[w])
            .unwrap_or(0)
            .max(1);
        let rest = nodes[at..].to_vec();
        split(p, nodes[..at].to_vec(), max_bindings, out);
        split(p, rest, max_bindings, out);
        return;
    }
    if 1 + io.buffer_reads(p).len() + io.writes.len() > max_bindings {
        let mid = nodes.len() / 2;
        let rest = nodes[mid..].to_vec();
        split(p, nodes[..mid].to_vec(), max_bindings, out);
        split(p, rest, max_bindings, out);
        return;
    }
    out.push(Chain { nodes });
}

fn slot(p: &Program, v: usize) -> Option<usize> {
    match p.loc[v] {
        Loc::Slot(s) => Some(s),
        _ => None,
    }
}

/// WGSL for the words of `v` (u32, or vec2<u32> for i64) held in `reg`.
fn ty(d: DType) -> &'static str {
    if d == DType::I64 {
        "vec2<u32>"
    } else {
        "u32"
    }
}

/// The WGSL index expression of the operand element that view node `ni` reads for output
/// element `i`: offset + sum over output dims of (coordinate * operand stride).
fn view_index(p: &Program, ni: usize) -> String {
    let shape = &p.values[p.nodes[ni].outputs[0]].ty.shape;
    let (off, src_st) = view_strides(p, ni);
    let ost = crate::plan::strides(shape);
    let mut e = format!("{off}u");
    for d in 0..shape.len() {
        if src_st[d] != 0 && shape[d] != 1 {
            let _ = write!(e, " + ((i / {}u) % {}u) * {}u", ost[d], shape[d], src_st[d]);
        }
    }
    e
}

/// The expression of member `node`'s output from its operands' expressions.
fn expr(p: &Program, ni: usize, a: &[String]) -> Result<String> {
    let node = &p.nodes[ni];
    let d = p.values[node.outputs[0]].ty.dtype;
    let f = |x: &String| format!("bitcast<f32>({x})");
    Ok(match (&node.op, class(d)?) {
        (Op::Iota { dim }, c) => {
            let sh = &p.values[node.outputs[0]].ty.shape;
            let st: usize = sh[dim + 1..].iter().product();
            let v = format!("((i / {st}u) % {}u)", sh[*dim]);
            match c {
                Class::Float { bf16 } => format!("store_f(f32({v}), {bf16})"),
                Class::Int { kind } => format!("int_to_int({kind}u, {v})"),
                Class::Long => format!("l_from_u32({v})"),
            }
        }
        // the operand expression of a view is its strided load (kernel_text)
        (op, _) if is_view(op) => a[0].clone(),
        (Op::Unary(u), Class::Float { bf16 }) => {
            format!(
                "store_f(unary_f_op({}u, {}), {bf16})",
                unary_code(*u),
                f(&a[0])
            )
        }
        (Op::Unary(u), Class::Int { kind }) => {
            format!("unary_i_op({}u, {kind}u, {})", unary_code(*u), a[0])
        }
        (Op::Unary(u), Class::Long) => format!("unary_l_op({}u, {})", unary_code(*u), a[0]),
        (Op::Binary(o), Class::Float { bf16 }) => format!(
            "store_f(binary_f_op({}u, {}, {}), {bf16})",
            binary_code(*o),
            f(&a[0]),
            f(&a[1])
        ),
        (Op::Binary(o), Class::Int { kind }) => {
            format!(
                "binary_i_op({}u, {kind}u, {}, {})",
                binary_code(*o),
                a[0],
                a[1]
            )
        }
        (Op::Binary(o), Class::Long) => {
            format!("binary_l_op({}u, {}, {})", binary_code(*o), a[0], a[1])
        }
        (Op::Compare(c), _) => {
            let op = cmp_code(*c);
            match class(p.values[node.inputs[0]].ty.dtype)? {
                Class::Float { .. } => format!("compare_f_op({op}u, {}, {})", f(&a[0]), f(&a[1])),
                Class::Int { kind } => format!(
                    "compare_i_op({op}u, {}u, {}, {})",
                    u32::from(kind != 0),
                    a[0],
                    a[1]
                ),
                Class::Long => format!("compare_l_op({op}u, {}, {})", a[0], a[1]),
            }
        }
        (Op::Select, _) => format!("select({}, {}, {} != 0u)", a[2], a[1], a[0]),
        (Op::Convert { .. }, to) => {
            let x = &a[0];
            match (class(p.values[node.inputs[0]].ty.dtype)?, to) {
                (Class::Float { .. }, Class::Float { bf16 }) => {
                    format!("store_f({}, {bf16})", f(x))
                }
                (Class::Float { .. }, Class::Int { kind }) => {
                    format!("f32_to_int({kind}u, {})", f(x))
                }
                (Class::Float { .. }, Class::Long) => format!("l_from_f32({})", f(x)),
                (Class::Int { kind }, Class::Float { bf16 }) => {
                    format!("store_f(int_to_f32({kind}u, {x}), {bf16})")
                }
                (Class::Int { .. }, Class::Int { kind }) => format!("int_to_int({kind}u, {x})"),
                (Class::Int { kind }, Class::Long) => format!("int_to_long({kind}u, {x})"),
                (Class::Long, Class::Int { kind }) => format!("long_to_int({kind}u, {x})"),
                (Class::Long, Class::Float { bf16 }) => {
                    format!("store_f(l_to_f32({x}), {bf16})")
                }
                (Class::Long, Class::Long) => x.clone(),
            }
        }
        (op, _) => {
            return Err(crate::error::WgpuError::Unsupported(format!(
                "{} in an elementwise chain",
                op.name()
            )))
        }
    })
}

/// The kernel text of a chain and the values it binds.
pub struct Text {
    pub text: String,
    pub writes: Vec<usize>,
    pub reads: Vec<usize>,
    /// Elements per invocation: 2 when a written value is packed bf16, else 1.
    pub per: usize,
    /// Per read: whether a member reads it at the output's index (else only through views).
    pub direct: Vec<bool>,
}

/// The kernel text of a chain, and the values it binds: (written, read buffers).
pub fn kernel_text(p: &Program, c: &Chain) -> Result<Text> {
    let io = Io::of(p, &c.nodes);
    let bufs: Vec<usize> = io.buffer_reads(p);
    let mut s = String::from(
        "\n// generated: a chain of elementwise ops (engine/wgpu/src/fuse.rs)\n\
         @group(0) @binding(0) var<storage, read> P: array<u32>;\n",
    );
    for k in 0..io.writes.len() {
        let _ = writeln!(
            s,
            "@group(0) @binding({}) var<storage, read_write> O{k}: array<u32>;",
            1 + k
        );
    }
    for k in 0..bufs.len() {
        let b = 1 + io.writes.len() + k;
        let _ = writeln!(
            s,
            "@group(0) @binding({b}) var<storage, read> I{k}: array<u32>;"
        );
    }
    let is_bf16 = |v: usize| p.values[v].ty.dtype == DType::BF16;
    let per = if io.writes.iter().any(|&v| is_bf16(v)) {
        2
    } else {
        1
    };
    s.push_str(
        "\n@compute @workgroup_size(256)\n\
         fn fused_elementwise(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,\n\
         \x20                    @builtin(local_invocation_id) lid: vec3<u32>) {\n\
         \x20   // P[1] is 0, but the compiler cannot know: or-ing it into every float result\n\
         \x20   // keeps a multiply and the add that reads it from contracting into an fma,\n\
         \x20   // which one dispatch per op never does.\n\
         \x20   let opaque = P[1];\n",
    );
    // `ind`: the indent of the per-element code
    let ind = if per == 1 {
        s.push_str(
            "    let i = flat_id(wg, nwg, lid);\n    if i >= P[0] {\n        return;\n    }\n",
        );
        "    "
    } else {
        // two elements, 2j and 2j + 1, per invocation; the packed words collect in w*
        s.push_str(
            "    let j = flat_id(wg, nwg, lid);\n    if 2u * j >= P[0] {\n        return;\n    }\n",
        );
        for (k, &v) in io.writes.iter().enumerate() {
            if is_bf16(v) {
                let _ = writeln!(s, "    var w{k} = 0u;");
            }
        }
        s.push_str(
            "    for (var e = 0u; e < 2u; e = e + 1u) {\n        let i = 2u * j + e;\n        if i < P[0] {\n",
        );
        "            "
    };
    // register name of each canonical value
    let mut reg: HashMap<usize, String> = HashMap::new();
    let word = |v: usize, idx: &str| -> String {
        match p.loc[v] {
            Loc::Splat(x) => {
                let w = crate::buffer::scalar_words(x, p.values[v].ty.dtype);
                if p.values[v].ty.dtype == DType::I64 {
                    format!("vec2<u32>({}u, {}u)", w[0], w[1])
                } else {
                    format!("{}u", w[0])
                }
            }
            _ => {
                let k = bufs.iter().position(|&b| b == v).unwrap_or(0);
                match p.values[v].ty.dtype {
                    DType::I64 => format!("vec2<u32>(I{k}[2u * ({idx})], I{k}[2u * ({idx}) + 1u])"),
                    DType::BF16 => format!("bf16_bits(I{k}[({idx}) >> 1u], {idx})"),
                    _ => format!("I{k}[{idx}]"),
                }
            }
        }
    };
    for &v in &io.direct {
        let d = p.values[v].ty.dtype;
        let e = word(v, "i");
        let name = format!("r{v}");
        let _ = writeln!(s, "{ind}let {name}: {} = {e};", ty(d));
        reg.insert(v, name);
    }
    for &ni in &c.nodes {
        let node = &p.nodes[ni];
        let args: Vec<String> = match is_view(&node.op) {
            true => vec![word(canonical(p, node.inputs[0]), &view_index(p, ni))],
            false => node
                .inputs
                .iter()
                .map(|&v| reg.get(&canonical(p, v)).cloned().unwrap_or_default())
                .collect(),
        };
        let o = node.outputs[0];
        let d = p.values[o].ty.dtype;
        let name = format!("r{o}");
        let e = expr(p, ni, &args)?;
        let e = match d.is_float() {
            true => format!("({e}) | opaque"),
            false => e,
        };
        let _ = writeln!(s, "{ind}let {name}: {} = {e};", ty(d));
        reg.insert(o, name);
    }
    for (k, &v) in io.writes.iter().enumerate() {
        match p.values[v].ty.dtype {
            DType::I64 => {
                let _ = writeln!(
                    s,
                    "{ind}O{k}[2u * i] = r{v}.x;\n{ind}O{k}[2u * i + 1u] = r{v}.y;"
                );
            }
            // bf16 results are rounded already (low half zero): the high half moves down
            // for the even element
            DType::BF16 => {
                let _ = writeln!(s, "{ind}w{k} = w{k} | select(r{v} >> 16u, r{v}, e == 1u);");
            }
            _ => {
                let _ = writeln!(s, "{ind}O{k}[i] = r{v};");
            }
        }
    }
    if per == 2 {
        s.push_str("        }\n    }\n");
        for (k, &v) in io.writes.iter().enumerate() {
            if is_bf16(v) {
                let _ = writeln!(s, "    O{k}[j] = w{k};");
            }
        }
    }
    s.push_str("}\n");
    let direct = bufs.iter().map(|v| io.direct.contains(v)).collect();
    Ok(Text {
        text: generated_source(&s),
        writes: io.writes,
        reads: bufs,
        per,
        direct,
    })
}

/// Adds the dispatch of chain `c` (several over windows, when a value it binds is larger than
/// one storage binding and every member reads at the output's index: no views, no iota).
pub fn lower_chain(b: &mut Builder, c: &Chain) -> Result<()> {
    let p = b.p;
    let t = kernel_text(p, c)?;
    // an iota, or a view whose index moves with i, reads by position: a window would shift it
    // (a broadcast scalar's index is a constant: its operand is bound whole)
    let positional = c.nodes.iter().any(|&ni| match &p.nodes[ni].op {
        Op::Iota { .. } => true,
        op => is_view(op) && view_index(p, ni).contains("(i /"),
    });
    b.windowed = !positional;
    let binds = bind_all(b, &t);
    b.windowed = false;
    let binds = binds?;
    let n = p.values[p.nodes[c.nodes[0]].outputs[0]].ty.numel();
    let whole = |k: usize| !t.direct[k];
    let bytes: Vec<u64> = t
        .writes
        .iter()
        .map(|&v| elem_bytes(p.values[v].ty.dtype))
        .chain(t.reads.iter().enumerate().map(|(k, &v)| match whole(k) {
            true => 0,
            false => elem_bytes(p.values[v].ty.dtype),
        }))
        .collect();
    let k = Kernel::generated(t.text, "fused_elementwise", t.writes.len(), t.reads.len());
    b.push_chunked(k, binds, &bytes, n, t.per, |len| Ok(vec![u32_of(len)?, 0]))
}

fn bind_all(b: &mut Builder, t: &Text) -> Result<Vec<Bind>> {
    let mut binds: Vec<Bind> = t.writes.iter().map(|&v| b.out(v)).collect::<Result<_>>()?;
    for &v in &t.reads {
        binds.push(b.buf(v)?);
    }
    Ok(binds)
}

/// Node `ni` (an elementwise op, iota or view) alone as a generated kernel: how one that
/// touches packed bf16 runs outside a chain.
pub fn lower_single(b: &mut Builder, ni: usize) -> Result<()> {
    lower_chain(b, &Chain { nodes: vec![ni] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gidd_engine::Graph;

    fn program(
        build: impl FnOnce(&Graph) -> gidd_engine::Result<Vec<gidd_engine::Tensor>>,
    ) -> Program {
        let g = Graph::new();
        let outs = build(&g).expect("graph");
        Program::compile(&outs, &["x", "y"]).expect("compile")
    }

    #[test]
    fn a_chain_keeps_intermediates_in_registers() {
        let p = program(|g| {
            let x = g.input("x", &[3, 5], DType::F32);
            let y = g.input("y", &[3, 5], DType::F32);
            let z = x.mul(&y)?.exp()?.add(&x)?.tanh()?;
            Ok(vec![z])
        });
        let cs = chains(&p, 8);
        assert_eq!(cs.len(), 1, "{cs:?}");
        let t = kernel_text(&p, &cs[0]).expect("text");
        assert_eq!((t.writes.len(), t.reads.len()), (1, 2), "{}", t.text);
        assert!(t.text.contains("unary_f_op(3u"), "{}", t.text);
    }

    #[test]
    fn a_value_read_after_the_chain_is_written_and_other_sizes_break_it() {
        let p = program(|g| {
            let x = g.input("x", &[4, 6], DType::F32);
            let y = g.input("y", &[4, 6], DType::F32);
            let a = x.add(&y)?.exp()?;
            let s = a.sum(&[1], false)?;
            let b = a.mul(&y)?;
            Ok(vec![b, s])
        });
        let cs = chains(&p, 8);
        let writes = kernel_text(&p, &cs[0]).expect("text").writes;
        // exp's output is read by the reduction: written even though the multiply reads it too
        assert!(cs.iter().all(|c| c.nodes.len() >= 2), "{cs:?}");
        assert!(!writes.is_empty());
        for c in &cs {
            let n = p.values[p.nodes[c.nodes[0]].outputs[0]].ty.numel();
            assert!(c
                .nodes
                .iter()
                .all(|&ni| p.values[p.nodes[ni].outputs[0]].ty.numel() == n));
        }
    }

    #[test]
    fn binding_limits_split_chains() {
        let p = program(|g| {
            let x = g.input("x", &[7], DType::F32);
            let y = g.input("y", &[7], DType::F32);
            let mut outs = vec![];
            let mut a = x.add(&y)?;
            for _ in 0..6 {
                a = a.mul(&x)?;
                outs.push(a.clone());
            }
            Ok(outs)
        });
        for c in chains(&p, 5) {
            let io = Io::of(&p, &c.nodes);
            assert!(
                1 + io.buffer_reads(&p).len() + io.writes.len() <= 5,
                "{c:?}"
            );
        }
    }
}
