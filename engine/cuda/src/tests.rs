//! Plans of real programs, checked without a GPU: every launch against its kernel's declared
//! arguments and the launch limits, the arena's layout, and (through crate::emulate, a host
//! model of the kernels' contracts) every output against the cpu executor.

#![allow(clippy::unwrap_used)]

use crate::emulate;
use crate::lower::plan;
use crate::plan::{Arg, Plan, Ptr, Step, ALIGN, BLOCK, MAX_BLOCKS, MAX_GRID_YZ};
use gidd_engine::op::{BinaryOp, DotDims};
use gidd_engine::{rewrite, CpuExecutor, DType, Executor, Graph, HostTensor, Program, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::sync::Mutex;

pub(crate) static USED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// Every launch names exactly the slots its kernel's ARGS line declares, fits the grid
/// limits, and points inside the arena; slots are aligned and disjoint.
pub(crate) fn check_plan(case: &str, p: &Plan) {
    let a = &p.arena;
    let mut prev_end = 0;
    for (s, &at) in a.slot_at.iter().enumerate() {
        assert_eq!(at % ALIGN, 0, "{case}: slot {s} at {at}");
        assert!(at >= prev_end, "{case}: slot {s} overlaps the one before");
        prev_end = at + 1;
    }
    assert!(a.const_at >= a.slot_bytes && a.scratch_at >= a.const_at + a.const_bytes);
    assert_eq!(a.bytes, a.scratch_at + a.scratch_bytes, "{case}");
    let inside = |ptr: Ptr| {
        if let Some(o) = a.offset(ptr) {
            assert!(
                o < a.bytes.max(1),
                "{case}: {ptr:?} is outside the arena ({} bytes)",
                a.bytes
            );
        }
    };
    for step in &p.steps {
        match step {
            Step::Launch(l) => {
                USED.lock().unwrap().insert(l.entry);
                let want = crate::chain::arg_names(l.entry)
                    .unwrap_or_else(|| panic!("{case}: no kernel {}", l.entry));
                let got: Vec<&str> = l.args.iter().map(|(n, _)| *n).collect();
                assert_eq!(
                    got, want,
                    "{case}: {} packs its slots out of order",
                    l.entry
                );
                let block = if crate::hopper::ENTRIES.contains(&l.entry) {
                    crate::hopper::THREADS
                } else if l.entry.starts_with("attention_wgmma_") {
                    gidd_kernels::attention::wgmma_ptx::THREADS
                } else {
                    BLOCK
                };
                assert_eq!(l.block, block, "{case}: {}", l.entry);
                assert!(
                    l.grid.iter().all(|&g| g >= 1),
                    "{case}: empty grid {:?}",
                    l.grid
                );
                assert!(l.grid[0] as usize <= MAX_BLOCKS.max(MAX_GRID_YZ * 128));
                assert!(l.grid[1] as usize <= MAX_GRID_YZ && l.grid[2] as usize <= MAX_GRID_YZ);
                for (_, arg) in &l.args {
                    if let Arg::Ptr(ptr) | Arg::TensorMap(ptr, _) = arg {
                        inside(*ptr);
                    }
                }
            }
            Step::Zero { dst, .. } => inside(*dst),
            Step::Copy { dst, src, .. } => {
                inside(*dst);
                inside(*src);
            }
        }
    }
}

/// Compiles `outs`, plans it as the cuda executor would, checks the plan, runs it on the host
/// model and compares every output with the cpu executor (`tol`: relative L2 error; 0 asks
/// for equal bits). Returns the plan.
fn check(case: &str, outs: &[Tensor], inputs: &[(&str, HostTensor)], tol: f64) -> Plan {
    check_lowered(case, outs, inputs, tol, &|_, _| false)
}

/// [`check`] with the fused ops `keep` accepts left fused (the executor passes
/// `crate::fused::supports`), the rest decomposed.
pub(crate) fn check_lowered(
    case: &str,
    outs: &[Tensor],
    inputs: &[(&str, HostTensor)],
    tol: f64,
    keep: &dyn Fn(&gidd_engine::op::Op, DType) -> bool,
) -> Plan {
    check_on(case, outs, inputs, tol, keep, false)
}

/// [`check_lowered`] planned for a device with (`hopper`) or without the sm_90a kernels.
pub(crate) fn check_on(
    case: &str,
    outs: &[Tensor],
    inputs: &[(&str, HostTensor)],
    tol: f64,
    keep: &dyn Fn(&gidd_engine::op::Op, DType) -> bool,
    hopper: bool,
) -> Plan {
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let host: Vec<&HostTensor> = inputs.iter().map(|(_, t)| t).collect();
    let p = Program::compile(outs, &names).unwrap_or_else(|e| panic!("{case}: {e}"));
    let mut lp = CpuExecutor.load(&p).unwrap();
    let want = CpuExecutor.run(&mut lp, &host).unwrap();
    let lowered = rewrite::lower_for(&p, keep).unwrap();
    // one launch per op here (each kernel's contract, bit for bit); fused chains after
    let pl =
        crate::lower::plan_with(&lowered, hopper, false).unwrap_or_else(|e| panic!("{case}: {e}"));
    check_plan(case, &pl);
    crate::tests_chain::check_fused(case, &lowered, &host, &want, tol, hopper);
    let got = emulate::run(&lowered, &pl, &host);
    for (o, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.shape, w.shape, "{case}: output {o}");
        assert_eq!(g.dtype(), w.dtype(), "{case}: output {o}");
        let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
        if tol == 0.0 {
            for (i, (x, y)) in g.iter().zip(&w).enumerate() {
                assert!(
                    x == y || (x.is_nan() && y.is_nan()),
                    "{case}: output {o}[{i}]: {x} vs cpu {y}"
                );
            }
        } else {
            let num: f64 = g.iter().zip(&w).map(|(x, y)| (x - y) * (x - y)).sum();
            let den: f64 = w.iter().map(|y| y * y).sum();
            let e = num.sqrt() / den.sqrt().max(1e-30);
            assert!(e <= tol, "{case}: output {o} rel err {e:e} > {tol:e}");
        }
    }
    pl
}

pub(crate) fn rand_f32(r: &mut StdRng, shape: &[usize], lo: f32, hi: f32) -> HostTensor {
    let n = shape.iter().product();
    HostTensor::f32(
        shape.to_vec(),
        (0..n).map(|_| r.random_range(lo..hi)).collect(),
    )
    .unwrap()
}

fn ids(r: &mut StdRng, n: usize, hi: i32) -> HostTensor {
    // a few out of range on both sides: gather and scatter clamp them
    HostTensor::i32(
        vec![n],
        (0..n).map(|_| r.random_range(-1..hi + 1)).collect(),
    )
    .unwrap()
}

#[test]
fn float_elementwise_in_f32_and_bf16() {
    let mut r = StdRng::seed_from_u64(1);
    for dt in [DType::F32, DType::BF16] {
        let g = Graph::new();
        let (x, y) = (g.input("x", &[7, 13], dt), g.input("y", &[7, 13], dt));
        let pos = x.abs().unwrap().add_scalar(0.5).unwrap();
        let outs = vec![
            x.exp().unwrap(),
            pos.log().unwrap(),
            x.tanh().unwrap(),
            x.sigmoid().unwrap(),
            pos.sqrt().unwrap(),
            pos.rsqrt().unwrap(),
            x.sin().unwrap(),
            x.cos().unwrap(),
            x.floor().unwrap(),
            x.neg().unwrap(),
            x.add(&y)
                .unwrap()
                .mul(&y)
                .unwrap()
                .div(&pos)
                .unwrap()
                .sub(&x)
                .unwrap(),
            x.maximum(&y)
                .unwrap()
                .minimum(&x.mul_scalar(0.5).unwrap())
                .unwrap(),
            pos.pow(&y).unwrap(),
            x.binary(&pos, BinaryOp::Rem).unwrap(),
            x.lt(&y).unwrap().select(&x, &y).unwrap(),
            x.ge(&y).unwrap(),
            x.relu().unwrap(),
        ];
        let xs = rand_f32(&mut r, &[7, 13], -3.0, 3.0).convert(dt);
        let ys = rand_f32(&mut r, &[7, 13], -3.0, 3.0).convert(dt);
        check(
            &format!("float elementwise {dt}"),
            &outs,
            &[("x", xs), ("y", ys)],
            0.0,
        );
    }
}

#[test]
fn integer_ops_conversions_and_philox() {
    let mut r = StdRng::seed_from_u64(2);
    let g = Graph::new();
    let a = g.input("a", &[5, 9], DType::I32);
    let b = g.input("b", &[5, 9], DType::I32);
    let au = a.to(DType::U32).unwrap();
    let al = a.to(DType::I64).unwrap();
    let mut outs = vec![
        a.add(&b).unwrap().mul(&b).unwrap(),
        a.binary(&b, BinaryOp::Div).unwrap(),
        a.binary(&b, BinaryOp::Rem).unwrap(),
        a.binary(&b, BinaryOp::ShiftLeft).unwrap(),
        a.binary(&b, BinaryOp::ShiftRightLogical).unwrap(),
        au.binary(&au, BinaryOp::Xor)
            .unwrap()
            .binary(&b.to(DType::U32).unwrap(), BinaryOp::ShiftRightLogical)
            .unwrap(),
        al.mul(&al)
            .unwrap()
            .binary(&b.to(DType::I64).unwrap(), BinaryOp::And)
            .unwrap(),
        a.neg().unwrap().abs().unwrap().not().unwrap(),
        a.maximum(&b).unwrap(),
        a.lt(&b).unwrap().not().unwrap(),
        a.eq(&b)
            .unwrap()
            .binary(&a.ge(&b).unwrap(), BinaryOp::Xor)
            .unwrap(),
        a.to(DType::F32).unwrap(),
        a.to(DType::BF16).unwrap(),
        al.to(DType::F32).unwrap(),
        a.to(DType::Bool).unwrap(),
        a.lt(&b).unwrap().to(DType::F32).unwrap(),
        g.iota(&[5, 9], 1, DType::BF16).unwrap(),
        g.iota(&[5, 9], 0, DType::I64).unwrap(),
    ];
    let x = g.input("x", &[5, 9], DType::F32);
    outs.extend([
        x.to(DType::I32).unwrap(),
        x.to(DType::U32).unwrap(),
        x.to(DType::I64).unwrap(),
        x.to(DType::Bool).unwrap(),
        x.to(DType::BF16).unwrap().to(DType::I32).unwrap(),
    ]);
    // the counter-based generator: u32 products through i64, shifts, xors
    let seed = g.input("seed", &[2], DType::U32);
    let stream = g.input("stream", &[], DType::U32);
    outs.push(gidd_engine::api::uniform_f32(&g, &[6, 11], &seed, &stream).unwrap());
    let av: Vec<i32> = (0..45).map(|_| r.random_range(-50..50)).collect();
    // shifts by -1, 0..40 and zero divisors among them
    let bv: Vec<i32> = (0..45)
        .map(|i| {
            if i % 7 == 0 {
                0
            } else {
                r.random_range(-1..40)
            }
        })
        .collect();
    let xs = rand_f32(&mut r, &[5, 9], -1e10, 1e10);
    check(
        "integer ops",
        &outs,
        &[
            ("a", HostTensor::i32(vec![5, 9], av).unwrap()),
            ("b", HostTensor::i32(vec![5, 9], bv).unwrap()),
            ("x", xs),
            (
                "seed",
                HostTensor::u32(vec![2], vec![0xdead_beef, 42]).unwrap(),
            ),
            ("stream", HostTensor::u32(vec![], vec![3]).unwrap()),
        ],
        0.0,
    );
}

#[test]
fn movement_reductions_and_indexing() {
    let mut r = StdRng::seed_from_u64(3);
    for dt in [DType::F32, DType::BF16] {
        let g = Graph::new();
        let x = g.input("x", &[3, 5, 7], dt);
        let v = g.input("v", &[7], dt);
        let table = g.input("table", &[11, 6], dt);
        let i = g.input("i", &[9], DType::I32);
        let parts = [&x.narrow(2, 1, 4).unwrap(), &x];
        let outs = vec![
            x.transpose(&[2, 0, 1]).unwrap(),
            x.transpose(&[0, 2, 1]).unwrap().reshape(&[3, 35]).unwrap(),
            v.broadcast_to(&[3, 5, 7]).unwrap().add(&x).unwrap(),
            x.slice(&[1, 0, 2], &[3, 4, 7]).unwrap(),
            Tensor::concat(&parts, 2).unwrap(),
            x.sum(&[2], false).unwrap(),
            x.sum(&[0, 2], false).unwrap(),
            x.max(&[1], false).unwrap(),
            x.sum(&[0, 1, 2], false).unwrap(),
            table.gather(0, &i).unwrap(),
            table.gather(1, &i).unwrap(),
            x.reshape(&[15, 7])
                .unwrap()
                .narrow(0, 0, 9)
                .unwrap()
                .scatter_add(0, &i, &[4, 7])
                .unwrap(),
        ];
        let long = g.input("long", &[4, 300], dt);
        let mut outs = outs;
        outs.extend([
            long.sum(&[1], false).unwrap(),
            long.max(&[1], false).unwrap(),
            long.sum(&[0], false).unwrap(),
        ]);
        let inputs = [
            ("x", rand_f32(&mut r, &[3, 5, 7], -2.0, 2.0).convert(dt)),
            ("v", rand_f32(&mut r, &[7], -2.0, 2.0).convert(dt)),
            ("table", rand_f32(&mut r, &[11, 6], -2.0, 2.0).convert(dt)),
            ("i", ids(&mut r, 9, 6)),
            ("long", rand_f32(&mut r, &[4, 300], -2.0, 2.0).convert(dt)),
        ];
        // f32 scatter sums in index order on both sides; reductions sum in f64 on both
        check(
            &format!("movement, reduce, index {dt}"),
            &outs,
            &inputs,
            0.0,
        );
    }
    let g = Graph::new();
    let n = g.input("n", &[4, 6], DType::I32);
    let outs = vec![n.sum(&[1], false).unwrap(), n.max(&[0], false).unwrap()];
    let nv: Vec<i32> = (0..24).map(|_| r.random_range(-100..100)).collect();
    check(
        "integer reductions",
        &outs,
        &[("n", HostTensor::i32(vec![4, 6], nv).unwrap())],
        0.0,
    );
}

#[test]
fn gemms_in_every_layout() {
    let mut r = StdRng::seed_from_u64(4);
    let dd = |lb: &[usize], rb: &[usize], lc: &[usize], rc: &[usize]| DotDims {
        lhs_batch: lb.to_vec(),
        rhs_batch: rb.to_vec(),
        lhs_contract: lc.to_vec(),
        rhs_contract: rc.to_vec(),
    };
    for dt in [DType::F32, DType::BF16] {
        // (m, n, k): aligned (tensor cores in bf16) and ragged (the FMA kernel)
        for (m, n, k) in [(40, 24, 32), (13, 7, 9), (130, 136, 40)] {
            let g = Graph::new();
            let a = g.input("a", &[m, k], dt);
            let at = g.input("at", &[k, m], dt);
            let b = g.input("b", &[k, n], dt);
            let bt = g.input("bt", &[n, k], dt);
            let ab = g.input("ab", &[3, m, k], dt);
            let outs = vec![
                a.matmul(&b).unwrap(),
                a.dot_general(&bt, dd(&[], &[], &[1], &[1])).unwrap(),
                at.dot_general(&b, dd(&[], &[], &[0], &[0])).unwrap(),
                at.dot_general(&bt, dd(&[], &[], &[0], &[1])).unwrap(),
                ab.matmul(&b).unwrap(),
                ab.dot_general(&ab, dd(&[0], &[0], &[2], &[2])).unwrap(),
            ];
            let inputs = [
                ("a", rand_f32(&mut r, &[m, k], -1.0, 1.0).convert(dt)),
                ("at", rand_f32(&mut r, &[k, m], -1.0, 1.0).convert(dt)),
                ("b", rand_f32(&mut r, &[k, n], -1.0, 1.0).convert(dt)),
                ("bt", rand_f32(&mut r, &[n, k], -1.0, 1.0).convert(dt)),
                ("ab", rand_f32(&mut r, &[3, m, k], -1.0, 1.0).convert(dt)),
            ];
            // f32 sums in another order than the CPU's; bf16 results round once from there
            let tol = if dt == DType::F32 { 1e-6 } else { 4e-3 };
            let pl = check(&format!("gemm {dt} {m}x{n}x{k}"), &outs, &inputs, tol);
            let mma = pl
                .steps
                .iter()
                .filter(|s| matches!(s, Step::Launch(l) if l.entry == "gemm_mma_bf16"))
                .count();
            // tensor cores where the unit-stride extents are multiples of 8: all six products
            // of the aligned shape, the four with k contiguous in A when only m is ragged
            let want = match (dt, m % 8, n % 8, k % 8) {
                (DType::BF16, 0, 0, 0) => outs.len(),
                (DType::BF16, _, 0, 0) => 4,
                _ => 0,
            };
            assert_eq!(mma, want, "{dt} {m}x{n}x{k}");
        }
    }
}

/// A small network's forward and backward (softmax decomposed, every GEMM transpose, bias
/// gradients over leading dims), in f32 and bf16 activations.
#[test]
fn an_mlp_step_with_gradients() {
    let mut r = StdRng::seed_from_u64(5);
    for dt in [DType::F32, DType::BF16] {
        let g = Graph::new();
        let x = g.input("x", &[16, 24], dt);
        let w1 = g.input("w1", &[24, 32], DType::F32);
        let w2 = g.input("w2", &[32, 8], DType::F32);
        let h = x.matmul(&w1.to(dt).unwrap()).unwrap().relu().unwrap();
        let logits = h
            .matmul(&w2.to(dt).unwrap())
            .unwrap()
            .to(DType::F32)
            .unwrap();
        let loss = logits
            .log_softmax()
            .unwrap()
            .sum_all()
            .unwrap()
            .neg()
            .unwrap();
        let grads = gidd_engine::grad(&loss, &[w1.clone(), w2.clone()]).unwrap();
        let outs = vec![loss, grads[0].clone(), grads[1].clone()];
        let inputs = [
            ("x", rand_f32(&mut r, &[16, 24], -1.0, 1.0).convert(dt)),
            ("w1", rand_f32(&mut r, &[24, 32], -0.3, 0.3)),
            ("w2", rand_f32(&mut r, &[32, 8], -0.3, 0.3)),
        ];
        let tol = if dt == DType::F32 { 1e-5 } else { 2e-2 };
        check(&format!("mlp {dt}"), &outs, &inputs, tol);
    }
}

/// Runs after the others in this binary (alphabetically last; cargo runs tests in parallel,
/// so it checks what the others planned only if they are done: it builds its own set too).
#[test]
fn z_every_kernel_is_reached_by_some_op() {
    float_elementwise_in_f32_and_bf16();
    integer_ops_conversions_and_philox();
    movement_reductions_and_indexing();
    gemms_in_every_layout();
    crate::tests_fused::the_loss_runs_as_one_kernel_each_way();
    crate::tests_fused::attention_runs_as_the_flash_kernels();
    crate::tests_fused::row_ops_run_as_their_kernels();
    crate::tests_attention_mma::attention_bf16_runs_on_tensor_cores();
    crate::tests_sample::sample_step_emulated_draws_the_cpu_kernels_tokens();
    let used = USED.lock().unwrap().clone();
    for m in gidd_kernels::ptx::MODULES {
        if m.arch != gidd_kernels::ptx::Arch::Sm80 {
            continue;
        }
        for e in m.entries() {
            assert!(
                used.contains(e),
                "no test program reaches kernel {e} ({})",
                m.name
            );
        }
    }
}

#[test]
fn splats_stay_scalars_and_leaves_are_constants() {
    let g = Graph::new();
    let x = g.input("x", &[4], DType::F32);
    let y = x.add_scalar(2.5).unwrap();
    let p = Program::compile(&[y, g.splat(1.0, &[3], DType::BF16)], &["x"]).unwrap();
    let pl = plan(&p).unwrap();
    let Step::Launch(l) = &pl.steps[0] else {
        panic!("not a launch")
    };
    assert_eq!(l.entry, "binary_float");
    assert_eq!(l.args[6], ("b", Arg::Null));
    assert_eq!(l.args[7], ("bs", Arg::Val(2.5f32.to_bits() as u64)));
    assert_eq!(l.args[4], ("a", Arg::Ptr(Ptr::Input(0, 0))));
    // the splat output is a constant of three bf16 ones, copied out at the end
    assert_eq!(pl.arena.consts, vec![(0, [0x80, 0x3f].repeat(3))]);
    assert_eq!(pl.outputs[1], (Ptr::Const(0), 6));
}

#[test]
fn donated_state_is_written_in_place() {
    let g = Graph::new();
    let w = g.input("w", &[4], DType::F32);
    let d = g.input("d", &[4], DType::F32);
    let p = Program::compile(&[w.sub(&d).unwrap(), w.clone()], &["w", "d"])
        .unwrap()
        .with_aliases(&[(0, 0)])
        .unwrap();
    let pl = plan(&p).unwrap();
    // the updated w takes w's storage when donated and unshared; not when output 1 (w as
    // given) still reads that storage, nor when the caller kept a handle
    assert_eq!(
        crate::executor::reuse_plan(&p, &pl, 1, &|_| true),
        vec![None, None]
    );
    let p2 = Program::compile(&[w.sub(&d).unwrap()], &["w", "d"])
        .unwrap()
        .with_aliases(&[(0, 0)])
        .unwrap();
    let pl2 = plan(&p2).unwrap();
    assert_eq!(
        crate::executor::reuse_plan(&p2, &pl2, 1, &|_| true),
        vec![Some(0)]
    );
    assert_eq!(
        crate::executor::reuse_plan(&p2, &pl2, 1, &|_| false),
        vec![None]
    );
    assert_eq!(
        crate::executor::reuse_plan(&p2, &pl2, 0, &|_| true),
        vec![None]
    );
}

#[test]
fn f64_programs_are_refused_with_the_reason() {
    let g = Graph::new();
    let x = g.input("x", &[2], DType::F64);
    let p = Program::compile(&[x.exp().unwrap()], &["x"]).unwrap();
    let e = plan(&p).unwrap_err().to_string();
    assert!(e.contains("f64") && e.contains("--backend cpu"), "{e}");
}
