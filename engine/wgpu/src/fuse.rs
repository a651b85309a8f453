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
//! functions, with the op and dtype kind as literals, and bf16 or f16 rounded after every op),
//! so fusing changes no bit.
//!
//! bf16 and f16 values are read from their packed words; when the chain writes one, each
//! invocation computes two consecutive elements and writes whole words (two invocations
//! writing the halves of one word would race). The same generator lowers a lone elementwise
//! node or view that touches them ([`lower_single`]), so packed 16-bit floats need no second
//! set of hand-written elementwise kernels.

use crate::buffer::{half, is_half};
use crate::error::Result;
use crate::lower::{class, Class};
use crate::pipelines::Kernel;
use crate::plan::{Bind, Builder};
use crate::positional::{Bound, Map};
use gidd_engine::chain::{canonical, is_chain_op, is_view, view_strides, ChainIo as Io};
use gidd_engine::op::Op;
use gidd_engine::program::Loc;
use gidd_engine::{DType, Program};
use gidd_kernels::wgsl::{binary_code, cmp_code, generated_source, unary_code};
use std::collections::HashMap;
use std::fmt::Write;

pub use gidd_engine::chain::Chain;

/// Whether node `ni` can be a chain member.
fn fusible(p: &Program, ni: usize) -> bool {
    let node = &p.nodes[ni];
    p.runs[ni]
        && is_chain_op(&node.op)
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

/// The operand element that view node `ni` reads for output element (coordinates) c:
/// offset + sum over output dims d of c_d * strides[d] (stride 0: not read along d).
pub fn view_map(p: &Program, ni: usize) -> (usize, Vec<usize>) {
    let shape = &p.values[p.nodes[ni].outputs[0]].ty.shape;
    let (off, mut st) = view_strides(p, ni);
    for (s, &n) in st.iter_mut().zip(shape) {
        if n == 1 {
            *s = 0;
        }
    }
    (off, st)
}

/// The WGSL index expression of the element at `off + sum_d c_d * st[d]`, c the coordinates
/// of global output element `gi` in `shape`.
pub fn index_expr(shape: &[usize], off: usize, st: &[usize]) -> String {
    let ost = strides(shape);
    let mut e = format!("{off}u");
    for d in 0..shape.len() {
        if st[d] != 0 {
            let _ = write!(e, " + ((gi / {}u) % {}u) * {}u", ost[d], shape[d], st[d]);
        }
    }
    e
}

/// The WGSL index expression of the operand element that view node `ni` reads for output
/// element `gi`.
fn view_index(p: &Program, ni: usize) -> String {
    let (off, st) = view_map(p, ni);
    index_expr(&p.values[p.nodes[ni].outputs[0]].ty.shape, off, &st)
}

fn strides(shape: &[usize]) -> Vec<usize> {
    crate::plan::strides(shape)
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
            let v = format!("((gi / {st}u) % {}u)", sh[*dim]);
            match c {
                Class::Float { half } => format!("store_f(f32({v}), {half}u)"),
                Class::Int { kind } => format!("int_to_int({kind}u, {v})"),
                Class::Long => format!("l_from_u32({v})"),
            }
        }
        // the operand expression of a view is its strided load (kernel_text)
        (op, _) if is_view(op) => a[0].clone(),
        (Op::Unary(u), Class::Float { half }) => {
            format!(
                "store_f(unary_f_op({}u, {}), {half}u)",
                unary_code(*u),
                f(&a[0])
            )
        }
        (Op::Unary(u), Class::Int { kind }) => {
            format!("unary_i_op({}u, {kind}u, {})", unary_code(*u), a[0])
        }
        (Op::Unary(u), Class::Long) => format!("unary_l_op({}u, {})", unary_code(*u), a[0]),
        (Op::Binary(o), Class::Float { half }) => format!(
            "store_f(binary_f_op({}u, {}, {}), {half}u)",
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
                (Class::Float { .. }, Class::Float { half }) => {
                    format!("store_f({}, {half}u)", f(x))
                }
                (Class::Float { .. }, Class::Int { kind }) => {
                    format!("f32_to_int({kind}u, {})", f(x))
                }
                (Class::Float { .. }, Class::Long) => format!("l_from_f32({})", f(x)),
                (Class::Int { kind }, Class::Float { half }) => {
                    format!("store_f(int_to_f32({kind}u, {x}), {half}u)")
                }
                (Class::Int { .. }, Class::Int { kind }) => format!("int_to_int({kind}u, {x})"),
                (Class::Int { kind }, Class::Long) => format!("int_to_long({kind}u, {x})"),
                (Class::Long, Class::Int { kind }) => format!("long_to_int({kind}u, {x})"),
                (Class::Long, Class::Float { half }) => {
                    format!("store_f(l_to_f32({x}), {half}u)")
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

/// The WGSL expression of value `v`'s words at global element index `idx`: a literal for a
/// splat, else a load from `I{k}` (k its place among `bufs`) at `idx` less `P[3 + k]`, the
/// element where that binding's window starts (0 when bound whole).
pub fn load(p: &Program, bufs: &[usize], v: usize, idx: &str) -> String {
    let d = p.values[v].ty.dtype;
    if let Loc::Splat(x) = p.loc[v] {
        let w = crate::buffer::scalar_words(x, d);
        return match d {
            DType::I64 => format!("vec2<u32>({}u, {}u)", w[0], w[1]),
            _ => format!("{}u", w[0]),
        };
    }
    let k = bufs.iter().position(|&b| b == v).unwrap_or(0);
    let idx = format!("({idx}) - P[{}u]", 3 + k);
    match d {
        DType::I64 => format!("vec2<u32>(I{k}[2u * ({idx})], I{k}[2u * ({idx}) + 1u])"),
        DType::BF16 | DType::F16 => {
            format!("half_bits(I{k}[({idx}) >> 1u], {idx}, {}u)", half(d))
        }
        _ => format!("I{k}[{idx}]"),
    }
}

/// The kernel text of a chain and the values it binds.
pub struct Text {
    pub text: String,
    pub writes: Vec<usize>,
    pub reads: Vec<usize>,
    /// Elements per invocation: 2 when a written value is packed (bf16, f16), else 1.
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
    let per = if io.writes.iter().any(|&v| is_half(p.values[v].ty.dtype)) {
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
    let wdt: Vec<DType> = io.writes.iter().map(|&v| p.values[v].ty.dtype).collect();
    let ind = crate::positional::frame_head(&mut s, &wdt);
    // register name of each canonical value
    let mut reg: HashMap<usize, String> = HashMap::new();
    let word = |v: usize, idx: &str| load(p, &bufs, v, idx);
    for &v in &io.direct {
        let d = p.values[v].ty.dtype;
        let e = word(v, "gi");
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
        let r = format!("r{v}");
        crate::positional::frame_write(&mut s, k, wdt[k], &r, bufs.len(), ind);
    }
    crate::positional::frame_tail(&mut s, &wdt, bufs.len());
    let direct = bufs.iter().map(|v| io.direct.contains(v)).collect();
    Ok(Text {
        text: generated_source(&s),
        writes: io.writes,
        reads: bufs,
        per,
        direct,
    })
}

/// Adds the dispatch of chain `c`: one, or, when a value it binds is larger than one storage
/// binding, one per chunk of output elements, each binding the windows of its values that
/// the chunk reads (at the output's index, or through a view's map: crate::positional).
pub fn lower_chain(b: &mut Builder, c: &Chain) -> Result<()> {
    let p = b.p;
    let t = kernel_text(p, c)?;
    b.windowed = true;
    let binds = bind_all(b, &t);
    b.windowed = false;
    let binds = binds?;
    let n = p.values[p.nodes[c.nodes[0]].outputs[0]].ty.numel();
    let writes: Vec<Bound> = t
        .writes
        .iter()
        .zip(&binds)
        .map(|(&v, &bind)| Bound::of(b, v, bind, vec![]))
        .collect();
    let reads: Vec<Bound> = t
        .reads
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            // every map under which a member reads v: at the output's index, or a view's
            let mut maps = vec![];
            if t.direct[k] {
                maps.push(Map::direct(n));
            }
            for &ni in &c.nodes {
                let node = &p.nodes[ni];
                if is_view(&node.op) && canonical(p, node.inputs[0]) == v {
                    let (off, st) = view_map(p, ni);
                    let shape = p.values[node.outputs[0]].ty.shape.clone();
                    maps.push(Map::view(shape, off, st));
                }
            }
            Bound::of(b, v, binds[t.writes.len() + k], maps)
        })
        .collect();
    let k = Kernel::generated(t.text, "fused_elementwise", t.writes.len(), t.reads.len());
    match crate::positional::chunks(b, &writes, &reads, n, t.per) {
        Ok(chunks) => {
            for (windows, params, g) in chunks {
                b.push_windows(k.clone(), binds.clone(), windows, &params, g)?;
            }
            Ok(())
        }
        // a value read through two views whose windows together exceed a binding (the two
        // halves of a concatenation's gradient): each member alone, one map per read
        Err(_) if c.nodes.len() > 1 => c.nodes.iter().try_for_each(|&ni| lower_single(b, ni)),
        Err(e) => Err(e),
    }
}

fn bind_all(b: &mut Builder, t: &Text) -> Result<Vec<Bind>> {
    let mut binds: Vec<Bind> = t.writes.iter().map(|&v| b.out(v)).collect::<Result<_>>()?;
    for &v in &t.reads {
        binds.push(b.buf(v)?);
    }
    Ok(binds)
}

/// Node `ni` (an elementwise op, iota or view) alone as a generated kernel: how one that
/// touches packed bf16 or f16 runs outside a chain.
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
