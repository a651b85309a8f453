//! Float checks: one op as a small program at a dtype, with the gradients of a
//! random-weighted sum of its outputs, against the same program built at f64 (its twin)
//! on the cpu executor.

use super::{run_on, shape_str, tol, Errors, Row};
use gidd_engine::rng::HostRng;
use gidd_engine::{grad, CpuExecutor, DType, Executor, Graph, HostTensor, Program, Tensor};

/// How strictly a case's forward outputs must match (gradients: always [`tol::rounded`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum FwdTol {
    /// Bit-equal: the op moves or picks values (copies, max, floor, comparisons), so any
    /// executor at any dtype must reproduce the twin exactly.
    Exact,
    /// [`tol::rounded`] of the dtype.
    Rounded,
    /// [`tol::rounded`] times this factor, for a cancellation the case states.
    Loose(f64),
}

/// One program input: its values (floats drawn as f64 and rounded to each dtype the case
/// runs in; ids and booleans in their own dtype) and whether gradients are taken for it.
pub(crate) struct Input {
    pub name: &'static str,
    pub value: HostTensor,
    pub diff: bool,
}

impl Input {
    fn is_float(&self) -> bool {
        self.value.dtype() == DType::F64
    }
}

/// Builds a case's outputs from its inputs (in order) for a run at `dt`: float inputs
/// arrive at `dt`; the op's outputs may be any dtype.
pub(crate) type Build = Box<dyn Fn(&[Tensor], DType) -> gidd_engine::Result<Vec<Tensor>>>;

pub(crate) struct Case {
    pub op: String,
    pub inputs: Vec<Input>,
    pub build: Build,
    pub fwd: FwdTol,
    /// Edge values: forward only (gradients at infinities are not worth comparing).
    pub edge: bool,
    /// Seed of the weights of the gradient's weighted sum.
    pub seed: u64,
}

/// A case's program at one dtype, with its inputs.
pub(super) struct Assembled {
    pub prog: Program,
    pub inputs: Vec<HostTensor>,
    /// a name per output: y (or y0, y1 ...) for the op's outputs, then `d <input>`
    labels: Vec<String>,
    n_fwd: usize,
}

/// The values of `case`'s inputs for a run at `dt`, widened to `wide` (the twin's f64).
pub(super) fn values(case: &Case, dt: DType, wide: DType) -> Vec<HostTensor> {
    case.inputs
        .iter()
        .map(|i| {
            if i.is_float() {
                i.value.convert(dt).convert(wide)
            } else {
                i.value.clone()
            }
        })
        .collect()
}

/// The program of `case` at `dt` on `vals`: the op's outputs, then the gradient of
/// `sum_i sum(y_i r_i)` with respect to each differentiated input, r_i uniform in [-1, 1)
/// (f32 values, the same for every dtype) in the precision `dt` accumulates in.
pub(super) fn assemble(
    case: &Case,
    dt: DType,
    vals: Vec<HostTensor>,
) -> gidd_engine::Result<Assembled> {
    let g = Graph::new();
    let ins: Vec<Tensor> = case
        .inputs
        .iter()
        .zip(&vals)
        .map(|(i, v)| g.input(i.name, &v.shape, v.dtype()))
        .collect();
    let ys = (case.build)(&ins, dt)?;
    let n_fwd = ys.len();
    let mut labels: Vec<String> = match n_fwd {
        1 => vec!["y".into()],
        n => (0..n).map(|i| format!("y{i}")).collect(),
    };
    let mut outs = ys.clone();
    let mut inputs = vals;
    let mut names: Vec<String> = case.inputs.iter().map(|i| i.name.to_string()).collect();
    let wrt: Vec<(&Input, &Tensor)> = case
        .inputs
        .iter()
        .zip(&ins)
        .filter(|(i, _)| i.diff)
        .collect();
    if !case.edge && !wrt.is_empty() {
        let acc = dt.accum();
        let mut rng = HostRng::new(case.seed);
        let mut loss: Option<Tensor> = None;
        for (k, y) in ys.iter().enumerate().filter(|(_, y)| y.dtype().is_float()) {
            let w: Vec<f32> = (0..y.numel())
                .map(|_| (2.0 * rng.next_f64() - 1.0) as f32)
                .collect();
            let name = format!("r{k}");
            let r = g.input(&name, y.shape(), acc);
            let term = y.to(acc)?.mul(&r)?.sum_all()?;
            loss = Some(match loss {
                Some(l) => l.add(&term)?,
                None => term,
            });
            inputs.push(HostTensor::f32(y.shape().to_vec(), w)?.convert(acc));
            names.push(name);
        }
        if let Some(loss) = loss {
            let xs: Vec<Tensor> = wrt.iter().map(|(_, t)| (*t).clone()).collect();
            for ((i, _), d) in wrt.iter().zip(grad(&loss, &xs)?) {
                labels.push(format!("d {}", i.name));
                outs.push(d);
            }
        }
    }
    // pruned: a weight whose output no gradient flows from (diffusion_kl's log q) drops out
    let order: Vec<&str> = names.iter().map(String::as_str).collect();
    let prog = Program::compile_pruned(&outs, &order)?;
    let inputs = names
        .iter()
        .zip(inputs)
        .filter(|(n, _)| prog.inputs.iter().any(|(m, _)| m == *n))
        .map(|(_, t)| t)
        .collect();
    Ok(Assembled {
        prog,
        inputs,
        labels,
        n_fwd,
    })
}

/// Rows of `case` at `dt` on `exec`: forward (or edge) and, when the case has
/// differentiated inputs, gradients.
pub(crate) fn check<E: Executor>(exec: &E, case: &Case, dt: DType) -> Vec<Row> {
    let shapes: Vec<&[usize]> = case.inputs.iter().map(|i| &i.value.shape[..]).collect();
    let shape = shape_str(&shapes);
    let value = if case.edge { "edge" } else { "fwd" };
    let fail = |why: String| {
        vec![Row::failed(
            &case.op,
            value,
            dt.to_string(),
            shape.clone(),
            &why,
        )]
    };
    let built = assemble(case, dt, values(case, dt, dt))
        .and_then(|t| Ok((t, assemble(case, DType::F64, values(case, dt, DType::F64))?)));
    let (tgt, twin) = match built {
        Ok(b) => b,
        Err(e) => return fail(format!("building the program: {e}")),
    };
    // a program holding f64 values (an f64 row, or an f32 row converting through f64) or
    // f16 values that `load` refuses is unsupported, not failed: executors may have no f64
    // or f16 path (wgpu has neither, cuda no f16)
    let optional = tgt
        .prog
        .values
        .iter()
        .find(|v| matches!(v.ty.dtype, DType::F64 | DType::F16));
    let got = match run_on(exec, &tgt.prog, &tgt.inputs) {
        Ok(v) => v,
        Err((true, why)) if optional.is_some() => {
            let d = optional.map(|v| v.ty.dtype).unwrap_or(dt);
            return vec![Row::unsupported(
                &case.op,
                value,
                dt.to_string(),
                shape,
                &format!("load refused {d}: {why}"),
            )];
        }
        Err((_, why)) => return fail(why),
    };
    let want = match run_on(&CpuExecutor, &twin.prog, &twin.inputs) {
        Ok(v) => v,
        Err((_, why)) => return fail(format!("the f64 reference: {why}")),
    };
    let (tf, tg) = tol::rounded(dt);
    let (ft, gt) = match case.fwd {
        FwdTol::Exact => (0.0, tg),
        FwdTol::Rounded => (tf, tg),
        FwdTol::Loose(k) => (k * tf, tg),
    };
    let n = tgt.n_fwd;
    let mut rows = vec![judge(
        (&case.op, value, dt, &shape),
        ft,
        &tgt.labels[..n],
        &got[..n],
        &want[..n],
    )];
    if tgt.labels.len() > n {
        rows.push(judge(
            (&case.op, "grad", dt, &shape),
            gt,
            &tgt.labels[n..],
            &got[n..],
            &want[n..],
        ));
    }
    rows
}

/// One row over several outputs: each float output within `tol` (others bit-equal); the
/// row shows the output furthest from its bar, named when there are several.
pub(crate) fn judge(
    (op, value, dt, shape): (&str, &'static str, DType, &str),
    tol: f64,
    labels: &[String],
    got: &[HostTensor],
    want: &[HostTensor],
) -> Row {
    let floor = tol::floor(dt);
    let mut pass = true;
    let mut worst: Option<(f64, Errors, f64, &str)> = None;
    for ((label, g), w) in labels.iter().zip(got).zip(want) {
        let t = if w.dtype().is_float() { tol } else { 0.0 };
        let mut e = Errors::of(&g.to_f64_vec(), &w.to_f64_vec());
        e.mismatch |= g.shape != w.shape;
        let ok = e.pass(t, floor);
        pass &= ok;
        // the fraction of the bar used: of the nearer one, relative or absolute
        let score = if !ok {
            f64::INFINITY
        } else if t == 0.0 {
            0.0
        } else {
            (e.rel / t).min(e.max_abs / (floor * e.scale.max(1.0)))
        };
        if worst.as_ref().is_none_or(|w| score > w.0) {
            worst = Some((score, e, t, label));
        }
    }
    let (margin, e, t, label) = worst.unwrap_or((0.0, Errors::of(&[], &[]), tol, ""));
    let mut note = vec![];
    if labels.len() > 1 {
        note.push(format!("worst: {label}"));
    }
    if e.mismatch {
        note.push("NaN, inf or shape differs".to_string());
    } else if pass && t > 0.0 && e.rel > t {
        note.push(format!("cancels: within the {floor:.0e} absolute floor"));
    }
    Row {
        op: op.to_string(),
        value,
        dtype: dt.to_string(),
        shape: shape.to_string(),
        max_abs: e.max_abs,
        rel: e.rel,
        tol: t,
        margin,
        status: if pass {
            super::Status::Pass
        } else {
            super::Status::Fail
        },
        note: note.join("; "),
    }
}
