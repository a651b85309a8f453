//! The generated chain kernels (crate::chain, crate::chain_ptx), run through the PTX
//! interpreter (crate::ptx_interp) over their whole launch grid and compared with the cpu
//! executor: integers, bools, conversions and Philox bit for bit; floats to a few ulp (the
//! PTX's exp/log/tanh/sin/cos/pow are a few ulp from the standard library's, see
//! elementwise/float.ptx), NaN where the cpu has NaN, infinities and signed zeros equal.

#![allow(clippy::unwrap_used)]

use crate::emulate;
use crate::plan::{Plan, Step};
use gidd_engine::op::{BinaryOp, CmpOp};
use gidd_engine::{
    rewrite, CpuExecutor, DType, Data, Executor, Graph, HostTensor, Program, Tensor,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Relative L2 error allowed for float outputs of fused chains (per dtype), beyond `tol`.
fn float_tol(d: DType) -> f64 {
    match d {
        DType::BF16 => 1e-2,
        _ => 2e-6,
    }
}

/// Compares fused outputs with the cpu executor's: bits for integers and bools; for floats
/// NaN and infinities where the cpu has them, else a relative L2 error within
/// max(`tol`, [`float_tol`]).
pub(crate) fn compare(case: &str, got: &[HostTensor], want: &[HostTensor], tol: f64) {
    for (o, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            (&g.shape, g.dtype()),
            (&w.shape, w.dtype()),
            "{case}: output {o}"
        );
        let (gv, wv) = (g.to_f64_vec(), w.to_f64_vec());
        if !w.dtype().is_float() {
            if let (Data::I64(a), Data::I64(b)) = (&g.data, &w.data) {
                assert_eq!(a, b, "{case}: output {o} (i64)");
            }
            for (i, (x, y)) in gv.iter().zip(&wv).enumerate() {
                assert_eq!(x, y, "{case}: output {o}[{i}] ({})", w.dtype());
            }
            continue;
        }
        let (mut num, mut den) = (0.0, 0.0);
        for (i, (x, y)) in gv.iter().zip(&wv).enumerate() {
            if y.is_nan() || y.is_infinite() || x.is_nan() || x.is_infinite() {
                assert!(
                    (x.is_nan() && y.is_nan()) || x == y,
                    "{case}: output {o}[{i}]: {x} vs cpu {y}"
                );
                continue;
            }
            num += (x - y) * (x - y);
            den += y * y;
        }
        let e = num.sqrt() / den.sqrt().max(1e-30);
        let t = tol.max(float_tol(w.dtype()));
        assert!(e <= t, "{case}: output {o} rel err {e:e} > {t:e}");
    }
}

/// Plans `lowered` with its elementwise chains fused, checks the plan, runs it (chains
/// through the PTX interpreter) and compares with the cpu's outputs `want`.
pub(crate) fn check_fused(
    case: &str,
    lowered: &Program,
    host: &[&HostTensor],
    want: &[HostTensor],
    tol: f64,
    hopper: bool,
) -> Plan {
    let pl = crate::lower::plan_with(lowered, hopper, true)
        .unwrap_or_else(|e| panic!("{case}, fused: {e}"));
    crate::tests::check_plan(case, &pl);
    let got = emulate::run(lowered, &pl, host);
    compare(&format!("{case}, fused"), &got, want, tol);
    pl
}

/// (chain launches, all launches) of a plan.
pub(crate) fn launches(pl: &Plan) -> (usize, usize) {
    let mut c = (0, 0);
    for s in &pl.steps {
        if let Step::Launch(l) = s {
            c.1 += 1;
            c.0 += usize::from(crate::chain::generated(l.entry).is_some());
        }
    }
    c
}

/// Compiles `outs`, runs them on the cpu and fused on the interpreter; returns the plan.
fn run(case: &str, outs: &[Tensor], inputs: &[(&str, HostTensor)]) -> Plan {
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let host: Vec<&HostTensor> = inputs.iter().map(|(_, t)| t).collect();
    let p = Program::compile(outs, &names).unwrap_or_else(|e| panic!("{case}: {e}"));
    let want = CpuExecutor
        .run(&mut CpuExecutor.load(&p).unwrap(), &host)
        .unwrap();
    let lowered = rewrite::lower_for(&p, &crate::fused::supports).unwrap();
    check_fused(case, &lowered, &host, &want, 0.0, false)
}

#[test]
fn a_chain_is_one_kernel_with_intermediates_in_registers() {
    let g = Graph::new();
    let x = g.input("x", &[3, 5], DType::F32);
    let y = g.input("y", &[3, 5], DType::F32);
    let z = x
        .mul(&y)
        .unwrap()
        .exp()
        .unwrap()
        .add(&x)
        .unwrap()
        .tanh()
        .unwrap();
    let mut r = StdRng::seed_from_u64(3);
    let xs = crate::tests::rand_f32(&mut r, &[3, 5], -2.0, 2.0);
    let ys = crate::tests::rand_f32(&mut r, &[3, 5], -2.0, 2.0);
    let pl = run("mul exp add tanh", &[z], &[("x", xs), ("y", ys)]);
    assert_eq!(launches(&pl), (1, 1));
    let g = crate::chain::modules_of(&pl)[0];
    // one output, two inputs; no stores but the result's
    assert_eq!(g.args, ["n", "o0", "i0", "i1"]);
    assert_eq!(g.text.matches("st.global").count(), 1, "{}", g.text);
}

/// Edge values through every integer op, conversions and float specials, bit for bit.
#[test]
fn edge_values_wrap_saturate_and_keep_specials() {
    let g = Graph::new();
    let n = 11;
    let a = g.input("a", &[n], DType::I64);
    let b = g.input("b", &[n], DType::I64);
    let i = g.input("i", &[n], DType::I32);
    let u = g.input("u", &[n], DType::U32);
    let f = g.input("f", &[n], DType::F32);
    let h = g.input("h", &[n], DType::BF16);
    let mut outs = vec![];
    for o in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Xor,
        BinaryOp::ShiftLeft,
        BinaryOp::ShiftRightLogical,
    ] {
        // each op between a convert in and a convert out, so it is inside a chain
        outs.push(a.binary(&b, o).unwrap().neg().unwrap());
        let i2 = b.to(DType::I32).unwrap();
        outs.push(i.binary(&i2, o).unwrap().abs().unwrap());
        let u2 = b.to(DType::U32).unwrap();
        outs.push(u.binary(&u2, o).unwrap().not().unwrap());
    }
    for to in [
        DType::I32,
        DType::U32,
        DType::I64,
        DType::Bool,
        DType::BF16,
        DType::F32,
    ] {
        outs.push(f.neg().unwrap().to(to).unwrap());
        outs.push(h.abs().unwrap().to(to).unwrap());
        outs.push(a.add(&b).unwrap().to(to).unwrap());
        outs.push(i.neg().unwrap().to(to).unwrap());
        outs.push(u.add(&u).unwrap().to(to).unwrap());
    }
    let fl = f
        .mul(&f.to(DType::BF16).unwrap().to(DType::F32).unwrap())
        .unwrap();
    outs.push(fl.clone());
    outs.push(fl.maximum(&f.neg().unwrap()).unwrap());
    outs.push(f.compare(&fl, CmpOp::Ne).unwrap().select(&f, &fl).unwrap());
    outs.push(
        h.neg()
            .unwrap()
            .lt(&h)
            .unwrap()
            .select(&h, &h.neg().unwrap())
            .unwrap(),
    );
    let big = i64::MAX;
    let av = vec![big, i64::MIN, -1, 0, 7, -7, 1 << 40, 3, i64::MIN + 1, 5, -9];
    let bv = vec![1, -1, 0, 64, -3, 2, 31, 33, -1, 63, 32];
    let iv = vec![i32::MIN, i32::MAX, -1, 0, 7, -7, 1 << 30, 3, 9, 5, -9];
    let uv = vec![u32::MAX, 0, 1, 1 << 31, 7, 77, 3, 9, 12345, 5, 31];
    let fv = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        0.0,
        1e10,
        -3e9,
        2.5,
        -2.5,
        1.0000001,
        -1e-40,
    ];
    let hv: Vec<half::bf16> = fv.iter().map(|&x| half::bf16::from_f32(x)).collect();
    let inputs = [
        ("a", HostTensor::new(vec![n], Data::I64(av)).unwrap()),
        ("b", HostTensor::new(vec![n], Data::I64(bv)).unwrap()),
        ("i", HostTensor::i32(vec![n], iv).unwrap()),
        ("u", HostTensor::u32(vec![n], uv).unwrap()),
        ("f", HostTensor::f32(vec![n], fv).unwrap()),
        ("h", HostTensor::new(vec![n], Data::BF16(hv)).unwrap()),
    ];
    let pl = run("edge values", &outs, &inputs);
    let (chains, all) = launches(&pl);
    assert_eq!(chains, all, "every op here is elementwise of one size");
}

/// Philox draws (the noise's uniforms) are the cpu's, bit for bit, in few kernels.
#[test]
fn philox_draws_are_the_cpu_bits() {
    let g = Graph::new();
    let seed = g.input("seed", &[2], DType::U32);
    let step = g.input("step", &[], DType::U32);
    let u = gidd_engine::api::uniform_f32(&g, &[5, 7], &seed, &step).unwrap();
    let bits = u.mul_scalar(16_777_216.0).unwrap().to(DType::U32).unwrap();
    let inputs = [
        (
            "seed",
            HostTensor::u32(vec![2], vec![0xdead_beef, 7]).unwrap(),
        ),
        ("step", HostTensor::u32(vec![], vec![12]).unwrap()),
    ];
    let pl = run("philox", &[u.clone(), bits.clone()], &inputs);
    let p = Program::compile(&[u, bits], &["seed", "step"]).unwrap();
    let unfused = crate::lower::plan_with(&p, false, false).unwrap();
    let ((chains, all), (_, before)) = (launches(&pl), launches(&unfused));
    eprintln!("philox [5, 7]: {before} launches one per op, {all} fused ({chains} chains)");
    assert!(
        chains >= 1 && 2 * all < before,
        "{chains} chains, {all} of {before} launches"
    );
}

/// A random graph of elementwise ops over inputs of a random odd shape (with broadcast rows,
/// a transposed input and splats), run fused and compared with the cpu.
#[test]
fn random_chains_agree_with_the_cpu() {
    let mut r = StdRng::seed_from_u64(20261207);
    for case in 0..24 {
        let (m, n) = (
            r.random_range(1..9usize) * 2 + 1,
            r.random_range(1..12usize) * 2 + 1,
        );
        let dt = if r.random_bool(0.5) {
            DType::F32
        } else {
            DType::BF16
        };
        let g = Graph::new();
        let x = g.input("x", &[m, n], dt);
        let y = g.input("y", &[n, m], dt).t().unwrap();
        let row = g.input("row", &[n], dt).broadcast_to(&[m, n]).unwrap();
        let k = g.input("k", &[m, n], DType::I32);
        let mut fl = vec![x.clone(), y, row];
        let mut ints = vec![k];
        let mut outs = vec![];
        for _ in 0..r.random_range(4..14) {
            let a = fl[r.random_range(0..fl.len())].clone();
            let b = fl[r.random_range(0..fl.len())].clone();
            let t = match r.random_range(0..14) {
                0 => a.add(&b),
                1 => a.mul(&b),
                2 => a.sub(&b.mul_scalar(0.5).unwrap()),
                3 => a.div(&b.abs().unwrap().add_scalar(0.25).unwrap()),
                4 => a.tanh(),
                5 => a.exp().and_then(|e| e.min_scalar(1e4)),
                6 => a.abs().unwrap().add_scalar(1e-3).unwrap().log(),
                7 => a.sigmoid(),
                8 => a.maximum(&b),
                9 => a.lt(&b).unwrap().select(&a, &b),
                10 => a.sin(),
                11 => a.abs().unwrap().sqrt(),
                12 => {
                    let i = ints[r.random_range(0..ints.len())].clone();
                    let j = a.mul_scalar(8.0).unwrap().to(DType::I32).unwrap();
                    let v = i.binary(&j, BinaryOp::Xor).unwrap().add(&i).unwrap();
                    ints.push(v.clone());
                    v.to(dt)
                }
                _ => a.floor(),
            }
            .unwrap();
            if r.random_bool(0.3) {
                outs.push(t.clone());
            }
            fl.push(t);
        }
        // every input is read (a program refuses unused inputs)
        let all = fl[..3]
            .iter()
            .fold(fl.last().unwrap().clone(), |a, b| a.add(b).unwrap());
        outs.push(all);
        outs.push(ints.last().unwrap().clone());
        let mut inputs = vec![];
        for (name, shape) in [("x", vec![m, n]), ("y", vec![n, m]), ("row", vec![n])] {
            let t = crate::tests::rand_f32(&mut r, &shape, -3.0, 3.0).convert(dt);
            inputs.push((name, t));
        }
        let kv = (0..m * n).map(|_| r.random_range(-1000..1000)).collect();
        inputs.push(("k", HostTensor::i32(vec![m, n], kv).unwrap()));
        let pl = run(
            &format!("random chain {case} ({dt}, {m}x{n})"),
            &outs,
            &inputs,
        );
        assert!(launches(&pl).0 >= 1, "case {case}: no chain");
    }
}

/// The training step's noise (log-SNR draws, marginal sampling of z_t, prompt/infill masks,
/// the attention mask; every option on), fused, is the cpu's: z and the masks bit for bit.
#[test]
fn noise_draws_fused_are_the_cpu_draws() {
    use gidd_model::noise::{noisy_batch, NoiseOpts};
    for (shift, causal) in [(-1000.0, false), (0.0, true), (1000.0, false)] {
        let s = gidd_model::Schedule {
            min_log_snr: -9.0,
            max_log_snr: 9.0,
            scale: 1.0,
            shift,
            vocab_size: 50,
            mask_id: 3,
        };
        let o = NoiseOpts {
            p_independent: 0.5,
            p_linear: 0.3,
            p_prompt: 0.4,
            p_infilling: 0.3,
            causal_prompt_attn: causal,
            clean_log_snr: 10.0,
        };
        let (b, l) = (5, 13);
        let g = Graph::new();
        let labels = g.input("labels", &[b, l], DType::I32);
        let seed = g.input("seed", &[2], DType::U32);
        let step = g.input("step", &[], DType::U32);
        let row0 = g.scalar(2.0, DType::U32);
        let nb = noisy_batch(&s, &o, &labels, &seed, &step, &row0, DType::F32).unwrap();
        let outs = [nb.z, nb.log_snr, nb.noise_mask, nb.attn];
        let mut r = StdRng::seed_from_u64(9);
        let lv = (0..b * l).map(|_| r.random_range(4..50)).collect();
        let inputs = [
            ("labels", HostTensor::i32(vec![b, l], lv).unwrap()),
            ("seed", HostTensor::u32(vec![2], vec![77, 0x9e37]).unwrap()),
            ("step", HostTensor::u32(vec![], vec![41]).unwrap()),
        ];
        let case = format!("noise (shift {shift})");
        let pl = run(&case, &outs, &inputs);
        let p = Program::compile(&outs, &["labels", "seed", "step"]).unwrap();
        let one = crate::lower::plan_with(&p, false, false).unwrap();
        let ((chains, all), (_, before)) = (launches(&pl), launches(&one));
        eprintln!("{case}: {before} launches one per op, {all} fused ({chains} chains)");
        assert!(4 * all < before, "{case}: {all} of {before} launches");
    }
}

/// The interpreter runs the emitted text: planted generator bugs (an op, a sign extension,
/// a bit op, a view's index) give wrong results against the cpu.
#[test]
fn planted_bugs_in_the_text_are_caught() {
    let (m, n) = (7, 9);
    let g = Graph::new();
    let x = g.input("x", &[m, n], DType::F32);
    let y = g.input("y", &[n, m], DType::F32);
    let k = g.input("k", &[m, n], DType::I32);
    let a = x.add(&y.t().unwrap()).unwrap();
    let out0 = a.add(&k.to(DType::F32).unwrap()).unwrap();
    let out1 = k.add(&k).unwrap().binary(&k, BinaryOp::Xor).unwrap();
    let mut r = StdRng::seed_from_u64(5);
    let kv = (0..m * n).map(|_| r.random_range(-99..99)).collect();
    let inputs = [
        ("x", crate::tests::rand_f32(&mut r, &[m, n], -3.0, 3.0)),
        ("y", crate::tests::rand_f32(&mut r, &[n, m], -3.0, 3.0)),
        ("k", HostTensor::i32(vec![m, n], kv).unwrap()),
    ];
    let outs = [out0, out1];
    let pl = run("planted bugs: the unplanted text", &outs, &inputs);
    let p = Program::compile(&outs, &["x", "y", "k"]).unwrap();
    let host: Vec<&HostTensor> = inputs.iter().map(|(_, t)| t).collect();
    let want = CpuExecutor
        .run(&mut CpuExecutor.load(&p).unwrap(), &host)
        .unwrap();
    let gen = crate::chain::modules_of(&pl);
    assert_eq!(gen.len(), 1);
    for (from, to) in [
        ("add.rn.f32", "sub.rn.f32"),
        ("cvt.s64.s32", "cvt.u64.u32"),
        ("xor.b64", "or.b64"),
        ("mad.lo.u32", "mul.lo.u32"),
    ] {
        assert!(gen[0].text.contains(from), "{from} is not in the text");
        let text = gen[0].text.replace(gen[0].entry, crate::chain_ptx::ENTRY);
        let bad = crate::chain::intern(text.replacen(from, to, 1), gen[0].args.clone());
        let mut planted = pl.clone();
        for s in &mut planted.steps {
            if let Step::Launch(l) = s {
                l.entry = bad.entry;
            }
        }
        let got = emulate::run(&p, &planted, &host);
        let check = std::panic::AssertUnwindSafe(|| compare("planted", &got, &want, 0.0));
        let caught = std::panic::catch_unwind(check).is_err();
        assert!(caught, "{from} -> {to} was not caught");
    }
}
