//! Engine programs as StableHLO MLIR text: `module @gidd { func.func public @main(...) }`.
//!
//! Fused ops are first replaced by their decompositions (`gidd_engine::decompose`),
//! so only primitives are emitted. Most ops use MLIR's generic syntax, which is
//! stable across StableHLO versions. Semantics follow the engine's CPU executor:
//! - bf16 elementwise math, sums and dot products compute in f32 and round once;
//! - integer division and remainder by zero give 0 (StableHLO would give -1 / x);
//! - gather and scatter-add clamp indices into range (scatter would drop them);
//! - f32 dot products ask for `HIGHEST` precision (TPUs would otherwise use bf16 passes);
//! - f32 sums accumulate in f32 (the CPU executor uses f64: differences are rounding-level);
//! - a sum or max over bool is a logical or; integer sums wrap on overflow
//!   (the CPU executor saturates).

use crate::error::{Result, XlaError};
pub use crate::hlo_text::tensor_type;
use crate::hlo_text::{
    binary_name, cmp_name, cmp_type, hex, i64_array, list, literal, lowest, tensor_of, tty,
    unary_name,
};
use gidd_engine::graph::{GraphData, ValueId};
use gidd_engine::op::{BinaryOp, CmpOp, ReduceOp, TensorType};
use gidd_engine::{DType, Data, Graph, HostTensor, Op, Program, Tensor};
use std::fmt::Write as _;

mod dot;

/// SPMD annotations per function argument and result, for one of XLA's two partitioners:
/// - GSPMD (`mesh` None): `mhlo.sharding` strings in HloSharding syntax, e.g.
///   `{devices=[4,1]0,1,2,3}` or `{replicated}`;
/// - Shardy (`mesh` the module's `sdy.mesh` declaration, e.g. `sdy.mesh @mesh = <["d"=4]>`):
///   `sdy.sharding` attributes, e.g. `#sdy.sharding<@mesh, [{"d"}, {}]>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sharding {
    pub num_partitions: usize,
    pub mesh: Option<String>,
    /// one entry per program input (None = let XLA choose)
    pub args: Vec<Option<String>>,
    /// one entry per program output (None = let XLA choose)
    pub results: Vec<Option<String>>,
}

/// The StableHLO module of a compiled program (fused ops decomposed).
pub fn emit_module(p: &Program) -> Result<String> {
    emit_module_with(p, None)
}

/// Like [`emit_module`], with optional SPMD sharding annotations.
pub fn emit_module_with(p: &Program, sharding: Option<&Sharding>) -> Result<String> {
    let low = lower(p)?;
    let data = low.graph.data();
    emit(&data, &low.args, &low.outputs, sharding, &p.aliases)
}

/// Compiles `outputs` (inputs in `input_order`) and emits the program's module.
pub fn emit_graph(outputs: &[Tensor], input_order: &[&str]) -> Result<String> {
    emit_module(&Program::compile(outputs, input_order)?)
}

/// A program replayed into a graph of primitives only.
struct Lowered {
    graph: Graph,
    args: Vec<ValueId>,
    outputs: Vec<ValueId>,
}

fn lower(p: &Program) -> Result<Lowered> {
    // XLA has no fused ops of ours: every one becomes its decomposition.
    let r = gidd_engine::rewrite::replay_program(p, &|_, _| false)
        .map_err(|e| XlaError::Emit(e.to_string()))?;
    let graph = match r.outputs.first() {
        Some(t) => t.graph().clone(),
        None => return Err(XlaError::Emit("a program needs at least one output".into())),
    };
    Ok(Lowered {
        graph,
        args: r.inputs.iter().map(|t| t.id()).collect(),
        outputs: r.outputs.iter().map(|t| t.id()).collect(),
    })
}

/// Writes the function body: one line per op, values named `%v<id>`, temporaries `%t<n>`.
struct Emitter<'a> {
    d: &'a GraphData,
    body: String,
    names: Vec<String>,
    tmp: usize,
}

impl Emitter<'_> {
    fn fresh(&mut self) -> String {
        self.tmp += 1;
        format!("%t{}", self.tmp)
    }

    fn ty(&self, v: ValueId) -> &TensorType {
        &self.d.values[v].ty
    }

    /// `%r = "stablehlo.<op>"(operands) <{attrs}> : (types) -> out`; returns `%r`.
    fn op(
        &mut self,
        op: &str,
        operands: &[&str],
        attrs: &str,
        ins: &[String],
        out: &str,
    ) -> String {
        let r = self.fresh();
        let props = if attrs.is_empty() {
            String::new()
        } else {
            format!(" <{{{attrs}}}>")
        };
        let _ = writeln!(
            self.body,
            "    {r} = \"stablehlo.{op}\"({}){props} : ({}) -> {out}",
            operands.join(", "),
            ins.join(", ")
        );
        r
    }

    fn splat(&mut self, x: f64, shape: &[usize], d: DType) -> String {
        self.dense(&literal(x, d), shape, d)
    }

    fn dense(&mut self, lit: &str, shape: &[usize], d: DType) -> String {
        let t = tensor_type(shape, d);
        self.op(
            "constant",
            &[],
            &format!("value = dense<{lit}> : {t}"),
            &[],
            &t,
        )
    }

    fn constant(&mut self, c: &HostTensor) -> String {
        if c.numel() == 0 {
            return self.splat(0.0, &c.shape, c.dtype());
        }
        match &c.data {
            Data::Bool(v) => {
                // i1 has no portable hex form: bytes as i8, then != 0.
                let bytes = self.dense_raw(&hex(v), &c.shape, "i8");
                let from = tensor_of(&c.shape, "i8");
                let to = tensor_type(&c.shape, DType::Bool);
                self.op("convert", &[&bytes], "", &[from], &to)
            }
            d => self.dense(&format!("\"{}\"", hex(d.as_bytes())), &c.shape, c.dtype()),
        }
    }

    fn dense_raw(&mut self, hexs: &str, shape: &[usize], elem: &str) -> String {
        let t = tensor_of(shape, elem);
        self.op(
            "constant",
            &[],
            &format!("value = dense<\"{hexs}\"> : {t}"),
            &[],
            &t,
        )
    }

    fn convert(&mut self, v: &str, shape: &[usize], from: DType, to: DType) -> String {
        self.op(
            "convert",
            &[v],
            "",
            &[tensor_type(shape, from)],
            &tensor_type(shape, to),
        )
    }

    /// An elementwise op over operands of one type.
    fn elementwise(&mut self, op: &str, xs: &[&str], shape: &[usize], d: DType) -> String {
        let t = tensor_type(shape, d);
        self.op(op, xs, "", &vec![t.clone(); xs.len()], &t)
    }

    /// An elementwise float op computed in f32 when `d` is bf16 or f16 (as the CPU executor
    /// does).
    fn float_op(&mut self, op: &str, xs: &[&str], shape: &[usize], d: DType) -> String {
        if !d.is_half() {
            return self.elementwise(op, xs, shape, d);
        }
        let wide: Vec<String> = xs
            .iter()
            .map(|x| self.convert(x, shape, d, DType::F32))
            .collect();
        let refs: Vec<&str> = wide.iter().map(String::as_str).collect();
        let r = self.elementwise(op, &refs, shape, DType::F32);
        self.convert(&r, shape, DType::F32, d)
    }

    fn compare(&mut self, c: CmpOp, a: &str, b: &str, shape: &[usize], d: DType) -> String {
        let t = tensor_type(shape, d);
        let attrs = format!(
            "comparison_direction = #stablehlo<comparison_direction {}>, compare_type = #stablehlo<comparison_type {}>",
            cmp_name(c),
            cmp_type(d)
        );
        self.op(
            "compare",
            &[a, b],
            &attrs,
            &[t.clone(), t],
            &tensor_type(shape, DType::Bool),
        )
    }

    fn select(&mut self, p: &str, a: &str, b: &str, shape: &[usize], d: DType) -> String {
        let t = tensor_type(shape, d);
        self.op(
            "select",
            &[p, a, b],
            "",
            &[tensor_type(shape, DType::Bool), t.clone(), t.clone()],
            &t,
        )
    }

    /// `m` where neither operand is NaN, else the NaN operand: max and min propagate
    /// NaN (XLA's CPU backend may otherwise return the other operand).
    fn nan_through(&mut self, m: &str, x: &str, y: &str, shape: &[usize], d: DType) -> String {
        let xn = self.compare(CmpOp::Ne, x, x, shape, d);
        let yn = self.compare(CmpOp::Ne, y, y, shape, d);
        let r = self.select(&yn, y, m, shape, d);
        self.select(&xn, x, &r, shape, d)
    }

    /// A `(a, b) -> a <op> b` region over scalars of dtype `d`: a plain binary op, so
    /// that XLA recognises the reduction (the SPMD partitioner needs that).
    fn region(&mut self, op: &str, d: DType) -> String {
        let s = tensor_type(&[], d);
        let (a, b, c) = (self.fresh(), self.fresh(), self.fresh());
        format!(
            "({{\n    ^bb0({a}: {s}, {b}: {s}):\n      {c} = \"stablehlo.{op}\"({a}, {b}) : ({s}, {s}) -> {s}\n      \"stablehlo.return\"({c}) : ({s}) -> ()\n    }})"
        )
    }

    /// `reduce(x, init, fun)` over `dims` in dtype `d`.
    fn reduce_raw(
        &mut self,
        x: &str,
        shape: &[usize],
        d: DType,
        fun: &str,
        init: &str,
        dims: &[usize],
    ) -> String {
        let out_shape: Vec<usize> = (0..shape.len())
            .filter(|i| !dims.contains(i))
            .map(|i| shape[i])
            .collect();
        let init = self.dense(init, &[], d);
        let region = self.region(fun, d);
        let r = self.fresh();
        let _ = writeln!(
            self.body,
            "    {r} = \"stablehlo.reduce\"({x}, {init}) <{{dimensions = {}}}> {region} : ({}, {}) -> {}",
            i64_array(dims),
            tensor_type(shape, d),
            tensor_type(&[], d),
            tensor_type(&out_shape, d)
        );
        r
    }

    /// Sum or max over `dims`; a float max is NaN where any reduced element is NaN
    /// (a separate `or` reduction, as XLA's CPU `maximum` may drop NaN).
    fn reduce(&mut self, x: &str, xt: &TensorType, op: ReduceOp, dims: &[usize]) -> String {
        let out_shape: Vec<usize> = (0..xt.shape.len())
            .filter(|i| !dims.contains(i))
            .map(|i| xt.shape[i])
            .collect();
        let shape = &xt.shape;
        let d = xt.dtype;
        match (op, d) {
            (_, DType::Bool) => self.reduce_raw(x, shape, d, "or", "false", dims),
            (ReduceOp::Sum, h) if h.is_half() => {
                let w = self.convert(x, shape, h, DType::F32);
                let r = self.reduce_raw(
                    &w,
                    shape,
                    DType::F32,
                    "add",
                    &literal(0.0, DType::F32),
                    dims,
                );
                self.convert(&r, &out_shape, DType::F32, h)
            }
            (ReduceOp::Sum, _) => self.reduce_raw(x, shape, d, "add", &literal(0.0, d), dims),
            (ReduceOp::Max, _) if d.is_float() => {
                let m = self.reduce_raw(x, shape, d, "maximum", &lowest(d), dims);
                let nan = self.compare(CmpOp::Ne, x, x, shape, d);
                let any = self.reduce_raw(&nan, shape, DType::Bool, "or", "false", dims);
                let q = self.splat(f64::NAN, &out_shape, d);
                self.select(&any, &q, &m, &out_shape, d)
            }
            (ReduceOp::Max, _) => self.reduce_raw(x, shape, d, "maximum", &lowest(d), dims),
        }
    }

    /// Integer division or remainder with a zero divisor giving 0 (as the CPU executor).
    fn int_div(&mut self, op: &str, x: &str, y: &str, shape: &[usize], d: DType) -> String {
        let zero = self.splat(0.0, shape, d);
        let one = self.splat(1.0, shape, d);
        let is0 = self.compare(CmpOp::Eq, y, &zero, shape, d);
        let safe = self.select(&is0, &one, y, shape, d);
        let q = self.elementwise(op, &[x, &safe], shape, d);
        self.select(&is0, &zero, &q, shape, d)
    }

    /// Indices clamped into [0, len - 1].
    fn clamp_indices(&mut self, idx: &str, it: &TensorType, len: usize) -> String {
        let lo = self.splat(0.0, &[], it.dtype);
        let hi = self.splat(len.saturating_sub(1) as f64, &[], it.dtype);
        let s = tensor_type(&[], it.dtype);
        self.op(
            "clamp",
            &[&lo, idx, &hi],
            "",
            &[s.clone(), tty(it), s],
            &tty(it),
        )
    }

    fn node(&mut self, op: &Op, ins: &[ValueId], outs: &[ValueId]) -> Result<Vec<String>> {
        let a: Vec<String> = ins.iter().map(|&v| self.names[v].clone()).collect();
        let it: Vec<TensorType> = ins.iter().map(|&v| self.ty(v).clone()).collect();
        let ot = self.ty(outs[0]).clone();
        let (shape, d) = (&ot.shape, ot.dtype);
        let r = match op {
            Op::Input { name } => {
                return Err(XlaError::Emit(format!(
                    "input '{name}' is not a program argument"
                )))
            }
            Op::Constant(c) => self.constant(c),
            Op::Splat(x) => self.splat(*x, shape, d),
            Op::Iota { dim } => {
                let via = if d == DType::Bool { DType::I32 } else { d };
                let t = tensor_type(shape, via);
                let r = self.op(
                    "iota",
                    &[],
                    &format!("iota_dimension = {dim} : i64"),
                    &[],
                    &t,
                );
                if via != d {
                    self.convert(&r, shape, via, d)
                } else {
                    r
                }
            }
            Op::Unary(u) => {
                if d.is_float() {
                    self.float_op(unary_name(*u), &[&a[0]], shape, d)
                } else {
                    self.elementwise(unary_name(*u), &[&a[0]], shape, d)
                }
            }
            Op::Binary(b) => match b {
                BinaryOp::Div | BinaryOp::Rem if d.is_int() => {
                    self.int_div(binary_name(*b), &a[0], &a[1], shape, d)
                }
                BinaryOp::Max | BinaryOp::Min if d.is_float() => {
                    let m = self.float_op(binary_name(*b), &[&a[0], &a[1]], shape, d);
                    self.nan_through(&m, &a[0], &a[1], shape, d)
                }
                _ if d.is_float() => self.float_op(binary_name(*b), &[&a[0], &a[1]], shape, d),
                _ => self.elementwise(binary_name(*b), &[&a[0], &a[1]], shape, d),
            },
            Op::Compare(c) => self.compare(*c, &a[0], &a[1], shape, it[0].dtype),
            Op::Select => self.select(&a[0], &a[1], &a[2], shape, d),
            Op::Convert { to } => self.convert(&a[0], shape, it[0].dtype, *to),
            Op::BroadcastInDim { dims, .. } => self.op(
                "broadcast_in_dim",
                &[&a[0]],
                &format!("broadcast_dimensions = {}", i64_array(dims)),
                &[tty(&it[0])],
                &tty(&ot),
            ),
            Op::Reshape { .. } => self.op("reshape", &[&a[0]], "", &[tty(&it[0])], &tty(&ot)),
            Op::Transpose { perm } => self.op(
                "transpose",
                &[&a[0]],
                &format!("permutation = {}", i64_array(perm)),
                &[tty(&it[0])],
                &tty(&ot),
            ),
            Op::Slice { start, limit } => self.op(
                "slice",
                &[&a[0]],
                &format!(
                    "start_indices = {}, limit_indices = {}, strides = {}",
                    i64_array(start),
                    i64_array(limit),
                    i64_array(&vec![1; start.len()])
                ),
                &[tty(&it[0])],
                &tty(&ot),
            ),
            Op::Concatenate { dim } => {
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                let tys: Vec<String> = it.iter().map(tty).collect();
                self.op(
                    "concatenate",
                    &refs,
                    &format!("dimension = {dim} : i64"),
                    &tys,
                    &tty(&ot),
                )
            }
            Op::DotGeneral(dd) => self.dot_general(&a[0], &it[0], &a[1], &it[1], dd, &ot),
            Op::Reduce { op, dims } => self.reduce(&a[0], &it[0], *op, dims),
            Op::Gather { axis } => self.gather(&a[0], &it[0], &a[1], &it[1], *axis, &ot),
            Op::ScatterAdd { axis, .. } => {
                self.scatter_add(&a[0], &it[0], &a[1], &it[1], *axis, &ot)
            }
            // Fused ops were decomposed by `lower`. The arm is a wildcard (not the list of
            // fused ops) so that an op added to the engine by another crate's change never
            // breaks this crate's build; a primitive without an arm fails here, by name.
            other => {
                return Err(XlaError::Emit(format!(
                    "no StableHLO emission for {}{}",
                    other.name(),
                    if other.is_fused() {
                        " (a fused op that survived decomposition)"
                    } else {
                        ""
                    }
                )))
            }
        };
        Ok(vec![r])
    }

    /// out[pre.., idx.., post..] = x[pre.., clamp(idx).., post..]: a StableHLO gather
    /// with one collapsed slice dim (gather itself clamps start indices).
    fn gather(
        &mut self,
        x: &str,
        xt: &TensorType,
        idx: &str,
        it: &TensorType,
        axis: usize,
        ot: &TensorType,
    ) -> String {
        let k = it.shape.len();
        let offset: Vec<usize> = (0..axis).chain(axis + k..ot.shape.len()).collect();
        let mut sizes = xt.shape.clone();
        sizes[axis] = 1;
        let mut dn = vec![];
        if !offset.is_empty() {
            dn.push(format!("offset_dims = [{}]", list(&offset)));
        }
        dn.push(format!("collapsed_slice_dims = [{axis}]"));
        dn.push(format!("start_index_map = [{axis}]"));
        dn.push(format!("index_vector_dim = {k}"));
        let attrs = format!(
            "dimension_numbers = #stablehlo.gather<{}>, slice_sizes = {}, indices_are_sorted = false",
            dn.join(", "),
            i64_array(&sizes)
        );
        self.op("gather", &[x, idx], &attrs, &[tty(xt), tty(it)], &tty(ot))
    }

    /// Zeros of the output shape plus updates added at clamped indices along `axis`.
    fn scatter_add(
        &mut self,
        upd: &str,
        ut: &TensorType,
        idx: &str,
        it: &TensorType,
        axis: usize,
        ot: &TensorType,
    ) -> String {
        let k = it.shape.len();
        let idx = self.clamp_indices(idx, it, ot.shape[axis]);
        let wide = ot.dtype.is_half();
        let d = if wide { DType::F32 } else { ot.dtype };
        let upd = if wide {
            self.convert(upd, &ut.shape, ot.dtype, DType::F32)
        } else {
            upd.to_string()
        };
        let zeros = self.splat(0.0, &ot.shape, d);
        let window: Vec<usize> = (0..axis).chain(axis + k..ut.shape.len()).collect();
        let mut dn = vec![];
        if !window.is_empty() {
            dn.push(format!("update_window_dims = [{}]", list(&window)));
        }
        dn.push(format!("inserted_window_dims = [{axis}]"));
        dn.push(format!("scatter_dims_to_operand_dims = [{axis}]"));
        dn.push(format!("index_vector_dim = {k}"));
        let region = self.region(if d == DType::Bool { "or" } else { "add" }, d);
        let r = self.fresh();
        let out = tensor_type(&ot.shape, d);
        let _ = writeln!(
            self.body,
            "    {r} = \"stablehlo.scatter\"({zeros}, {idx}, {upd}) <{{scatter_dimension_numbers = #stablehlo.scatter<{}>, indices_are_sorted = false, unique_indices = false}}> {region} : ({out}, {}, {}) -> {out}",
            dn.join(", "),
            tty(it),
            tensor_type(&ut.shape, d)
        );
        if wide {
            self.convert(&r, &ot.shape, DType::F32, ot.dtype)
        } else {
            r
        }
    }
}

fn emit(
    d: &GraphData,
    args: &[ValueId],
    outputs: &[ValueId],
    sharding: Option<&Sharding>,
    aliases: &[(usize, usize)],
) -> Result<String> {
    // Only nodes the outputs depend on.
    let mut live = vec![false; d.nodes.len()];
    let mut stack: Vec<usize> = outputs.iter().map(|&v| d.values[v].node).collect();
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut live[n], true) {
            continue;
        }
        stack.extend(d.nodes[n].inputs.iter().map(|&v| d.values[v].node));
    }
    let mut e = Emitter {
        d,
        body: String::new(),
        names: vec![String::new(); d.values.len()],
        tmp: 0,
    };
    let shardy = sharding.is_some_and(|s| s.mesh.is_some());
    let shard = |s: Option<&Option<String>>| match s {
        Some(Some(s)) if shardy => Some(format!("sdy.sharding = {s}")),
        Some(Some(s)) => Some(format!("mhlo.sharding = \"{s}\"")),
        _ => None,
    };
    let attr = |a: Vec<String>| {
        if a.is_empty() {
            String::new()
        } else {
            format!(" {{{}}}", a.join(", "))
        }
    };
    let mut params = vec![];
    for (i, &v) in args.iter().enumerate() {
        e.names[v] = format!("%arg{i}");
        // `tf.aliasing_output` is how XLA's StableHLO import learns input-output aliasing:
        // the result may live in the argument's memory when the caller donates it.
        let a: Vec<String> = shard(sharding.and_then(|s| s.args.get(i)))
            .into_iter()
            .chain(
                aliases
                    .iter()
                    .filter(|&&(ai, _)| ai == i)
                    .map(|&(_, o)| format!("tf.aliasing_output = {o} : i32")),
            )
            .collect();
        params.push(format!("%arg{i}: {}{}", tty(&d.values[v].ty), attr(a)));
    }
    for (ni, node) in d.nodes.iter().enumerate() {
        let is_arg = matches!(node.op, Op::Input { .. }) && !e.names[node.outputs[0]].is_empty();
        if !live[ni] || is_arg {
            continue;
        }
        let rs = e.node(&node.op, &node.inputs, &node.outputs)?;
        for (&v, r) in node.outputs.iter().zip(rs) {
            e.names[v] = r;
        }
    }
    let results: Vec<String> = outputs
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            format!(
                "{}{}",
                tty(&d.values[v].ty),
                attr(
                    shard(sharding.and_then(|s| s.results.get(i)))
                        .into_iter()
                        .collect()
                )
            )
        })
        .collect();
    let ret_names: Vec<&str> = outputs.iter().map(|&v| e.names[v].as_str()).collect();
    let ret_types: Vec<String> = outputs.iter().map(|&v| tty(&d.values[v].ty)).collect();
    let module_attrs = match sharding {
        Some(s) if s.num_partitions > 1 => format!(
            " attributes {{mhlo.num_partitions = {} : i32, mhlo.num_replicas = 1 : i32}}",
            s.num_partitions
        ),
        _ => String::new(),
    };
    let mut m = String::with_capacity(e.body.len() + 512);
    let _ = writeln!(m, "module @gidd{module_attrs} {{");
    if let Some(mesh) = sharding.and_then(|s| s.mesh.as_ref()) {
        let _ = writeln!(m, "  {mesh}");
    }
    let _ = writeln!(
        m,
        "  func.func public @main({}) -> ({}) {{",
        params.join(", "),
        results.join(", ")
    );
    m.push_str(&e.body);
    let _ = writeln!(
        m,
        "    \"func.return\"({}) : ({}) -> ()",
        ret_names.join(", "),
        ret_types.join(", ")
    );
    m.push_str("  }\n}\n");
    Ok(m)
}
