//! The suite must see a wrong executor: one that perturbs a single element of one output
//! fails its row, and only that row; the honest cpu executor passes the same checks.

#![allow(clippy::unwrap_used)]

use super::*;
use gidd_engine::{CpuExecutor, Data, Program};
use std::cell::Cell;

/// The cpu executor, except that output `which` of every run comes back with its element
/// 0 moved by `delta` (relative, at least `delta` absolute).
#[derive(Clone)]
struct Corrupt {
    which: usize,
    delta: f64,
    downloads: std::rc::Rc<Cell<usize>>,
}

impl Corrupt {
    fn new(which: usize, delta: f64) -> Self {
        Corrupt {
            which,
            delta,
            downloads: Default::default(),
        }
    }
}

impl Executor for Corrupt {
    type Buffer = HostTensor;
    type Loaded = <CpuExecutor as Executor>::Loaded;
    fn name(&self) -> String {
        "corrupt cpu".into()
    }
    fn upload(&self, t: &HostTensor) -> gidd_engine::Result<HostTensor> {
        CpuExecutor.upload(t)
    }
    fn download(&self, b: &HostTensor) -> gidd_engine::Result<HostTensor> {
        let k = self.downloads.get();
        self.downloads.set(k + 1);
        let mut t = b.clone();
        if k == self.which {
            let x = t.data.get_f64(0);
            let y = x + self.delta * x.abs().max(1.0);
            match &mut t.data {
                Data::F32(v) => v[0] = y as f32,
                Data::BF16(v) => v[0] = half::bf16::from_f64(y),
                Data::F16(v) => v[0] = half::f16::from_f64(y),
                Data::F64(v) => v[0] = y,
                Data::I32(v) => v[0] += 1,
                Data::U32(v) => v[0] ^= 1,
                Data::I64(v) => v[0] += 1,
                Data::Bool(v) => v[0] ^= 1,
                Data::Mapped(_) => unreachable!("a download is owned data, never a mapping"),
            }
        }
        Ok(t)
    }
    fn load(&self, p: &Program) -> gidd_engine::Result<Self::Loaded> {
        CpuExecutor.load(p)
    }
    fn run(
        &self,
        p: &mut Self::Loaded,
        inputs: &[&HostTensor],
    ) -> gidd_engine::Result<Vec<HostTensor>> {
        self.downloads.set(0);
        CpuExecutor.run(p, inputs)
    }
}

fn some_cases() -> Vec<float::Case> {
    let mut r = gidd_engine::rng::HostRng::new(7);
    cases::float_cases(&mut r, true)
}

fn find<'a>(cases: &'a [float::Case], op: &str, edge: bool) -> &'a float::Case {
    cases.iter().find(|c| c.op == op && c.edge == edge).unwrap()
}

#[test]
fn the_honest_cpu_passes_and_a_perturbed_output_fails_its_row() {
    let cases = some_cases();
    for (op, edge) in [
        ("exp", false),
        ("max", false),
        ("softmax", false),
        ("rms_norm", false),
        ("compare (all six)", true),
    ] {
        let c = find(&cases, op, edge);
        for dt in [DType::F32, DType::BF16] {
            let ok = float::check(&CpuExecutor, c, dt);
            assert!(
                ok.iter().all(|r| r.status == Status::Pass),
                "{op} {dt}: {ok:?}"
            );
            // one element off by 5% (f32) or 50% (bf16, whose bars are 1e-2 and 2e-2 of
            // the whole tensor's L2 norm); output 0 is the op's, output 1 the first gradient
            let delta = if dt == DType::BF16 { 0.5 } else { 0.05 };
            let fwd = float::check(&Corrupt::new(0, delta), c, dt);
            assert_eq!(fwd[0].status, Status::Fail, "{op} {dt}: {:?}", fwd[0]);
            if fwd.len() > 1 {
                assert_eq!(fwd[1].status, Status::Pass, "{op} {dt} grad: {:?}", fwd[1]);
                let bad_grad = float::check(&Corrupt::new(1, delta), c, dt);
                assert_eq!(bad_grad[0].status, Status::Pass);
                assert_eq!(
                    bad_grad[1].status,
                    Status::Fail,
                    "{op} {dt}: {:?}",
                    bad_grad[1]
                );
            }
        }
    }
}

#[test]
fn a_change_of_a_few_ulps_fails_an_exact_row_but_not_a_rounded_one() {
    let cases = some_cases();
    // max is exact: any change fails; exp tolerates f32 rounding (a part in 1e6 here)
    let max = float::check(
        &Corrupt::new(0, 1e-6),
        find(&cases, "max", false),
        DType::F32,
    );
    assert_eq!(max[0].status, Status::Fail);
    let exp = float::check(
        &Corrupt::new(0, 1e-6),
        find(&cases, "exp", false),
        DType::F32,
    );
    assert_eq!(exp[0].status, Status::Pass, "{:?}", exp[0]);
}

#[test]
fn exact_checks_pass_on_the_cpu_and_see_a_flipped_bit() {
    let mut r = gidd_engine::rng::HostRng::new(3);
    for case in exact::exact_cases(&mut r) {
        let rows = exact::check(&CpuExecutor, &case);
        for row in &rows {
            assert_eq!(row.status, Status::Pass, "{row:?}");
        }
        let bad = exact::check(&Corrupt::new(0, 0.5), &case);
        assert_eq!(bad[0].status, Status::Fail, "{:?}", bad[0]);
        assert!(bad[1..].iter().all(|r| r.status == Status::Pass));
    }
}

#[test]
fn errors_treat_nan_and_infinities_as_values() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let e = Errors::of(&[1.0, nan, inf], &[1.0, nan, inf]);
    assert!(e.pass(0.0, 0.0));
    assert!(!Errors::of(&[1.0, 2.0], &[1.0, nan]).pass(1.0, 1.0));
    assert!(!Errors::of(&[inf], &[-inf]).pass(1.0, 1.0));
    assert!(!Errors::of(&[1.0], &[1.0, 2.0]).pass(1.0, 1.0));
    let e = Errors::of(&[1.0 + 1e-6, 2.0], &[1.0, 2.0]);
    assert!(e.pass(1e-5, 0.0) && !e.pass(1e-7, 0.0) && !e.pass(0.0, 1.0));
    // all-zero reference: only the absolute floor can pass a non-zero result
    let e = Errors::of(&[1e-7, 0.0], &[0.0, 0.0]);
    assert!(e.rel.is_infinite() && e.pass(1e-5, 1e-6) && !e.pass(1e-5, 1e-8));
    // the floor scales with the reference's magnitude past 1
    let e = Errors::of(&[100.5, 0.0], &[100.0, 0.0]);
    assert!(!e.pass(1e-3, 1e-3) && e.pass(1e-3, 1e-2));
}

#[test]
fn every_op_kind_of_the_engine_is_checked() {
    // every op but the leaves (input, constant, splat, iota: iota has an exact check of
    // its own), and every elementwise kind, as the programs of the checks hold them
    // (before an executor lowers fused ops)
    let mut seen = std::collections::BTreeSet::new();
    let mut note = |p: &Program| {
        for n in &p.nodes {
            seen.insert(n.op.name().to_string());
            match &n.op {
                gidd_engine::Op::Unary(u) => seen.insert(format!("{u:?}")),
                gidd_engine::Op::Binary(b) => seen.insert(format!("{b:?}")),
                gidd_engine::Op::Compare(c) => seen.insert(format!("{c:?}")),
                _ => false,
            };
        }
    };
    let mut r = gidd_engine::rng::HostRng::new(5);
    for c in cases::float_cases(&mut r, false) {
        let p = float::assemble(&c, DType::F32, float::values(&c, DType::F32, DType::F32));
        note(&p.unwrap().prog);
    }
    for c in exact::exact_cases(&mut r) {
        note(&exact::program(&c).unwrap());
    }
    let want = [
        "unary",
        "binary",
        "compare",
        "select",
        "convert",
        "iota",
        "broadcast_in_dim",
        "reshape",
        "transpose",
        "slice",
        "concatenate",
        "dot_general",
        "reduce",
        "gather",
        "scatter_add",
        "softmax",
        "log_softmax",
        "softmax_bwd",
        "rms_norm",
        "rms_norm_bwd",
        "rope",
        "rope_bwd",
        "attention",
        "attention_bwd",
        "diffusion_kl",
        "diffusion_kl_bwd",
        "Neg",
        "Exp",
        "Log",
        "Tanh",
        "Logistic",
        "Sqrt",
        "Rsqrt",
        "Abs",
        "Sin",
        "Cos",
        "Not",
        "Floor",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Max",
        "Min",
        "Pow",
        "Rem",
        "And",
        "Or",
        "Xor",
        "ShiftLeft",
        "ShiftRightLogical",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
    ];
    let missing: Vec<&str> = want.into_iter().filter(|w| !seen.contains(*w)).collect();
    assert!(missing.is_empty(), "no check runs {missing:?}");
}
