//! The vectorized chain kernels (crate::chain_vec): which chains qualify, and that those that
//! do give, through the PTX interpreter (which runs their vector loads and stores and
//! rejects a misaligned one), the scalar kernels' bits and the cpu executor's values.

#![allow(clippy::unwrap_used)]

use crate::chain::{chains, Io};
use crate::chain_vec::{lanes, with_scalar};
use crate::emulate;
use crate::plan::{Plan, Step};
use crate::tests_chain::check_fused;
use gidd_engine::op::BinaryOp;
use gidd_engine::{rewrite, CpuExecutor, DType, Executor, Graph, HostTensor, Program, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (vectorized chain launches, chain launches) of a plan.
fn vector_launches(pl: &Plan) -> (usize, usize) {
    let mut c = (0, 0);
    for s in &pl.steps {
        if let Step::Launch(l) = s {
            if let Some(g) = crate::chain::generated(l.entry) {
                c.1 += 1;
                c.0 += usize::from(g.text.contains("vectorized:"));
            }
        }
    }
    c
}

fn lowered(outs: &[Tensor], names: &[&str]) -> (Program, Program) {
    let p = Program::compile(outs, names).unwrap();
    let l = rewrite::lower_for(&p, &crate::fused::supports).unwrap();
    (p, l)
}

/// Runs `outs` on the cpu, fused (vectorized where eligible) and fused with scalar chains
/// only; the two fused runs must agree bit for bit. Returns the vectorized plan's counts.
fn run_both(case: &str, outs: &[Tensor], inputs: &[(&str, HostTensor)]) -> (usize, usize) {
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let host: Vec<&HostTensor> = inputs.iter().map(|(_, t)| t).collect();
    let (p, low) = lowered(outs, &names);
    let want = CpuExecutor
        .run(&mut CpuExecutor.load(&p).unwrap(), &host)
        .unwrap();
    let vec_pl = check_fused(case, &low, &host, &want, 0.0, false);
    let case_s = format!("{case}, scalar chains");
    let sc_pl = with_scalar(|| check_fused(&case_s, &low, &host, &want, 0.0, false));
    assert_eq!(vector_launches(&sc_pl).0, 0, "{case_s}");
    let (a, b) = (
        emulate::run(&low, &vec_pl, &host),
        emulate::run(&low, &sc_pl, &host),
    );
    for (o, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.data.as_bytes(), y.data.as_bytes(), "{case}: output {o}");
    }
    vector_launches(&vec_pl)
}

/// Random contiguous chains over f32 or bf16, i32, i64 and bools (with a broadcast scalar
/// and splats): on sizes a multiple of 16 every chain is vectorized, on odd ones none, and
/// either way the outputs are the scalar kernels' bits.
#[test]
fn contiguous_random_chains_vectorize_and_keep_the_scalar_bits() {
    let mut r = StdRng::seed_from_u64(20261208);
    let mut vectorized = 0;
    for case in 0..24 {
        let even = case % 2 == 0;
        let (m, n) = if even {
            (r.random_range(1..5usize), 16 * r.random_range(1..4usize))
        } else {
            (
                r.random_range(0..4usize) * 2 + 1,
                r.random_range(1..8usize) * 2 + 1,
            )
        };
        let dt = if r.random_bool(0.5) {
            DType::F32
        } else {
            DType::BF16
        };
        let g = Graph::new();
        let x = g.input("x", &[m, n], dt);
        let y = g.input("y", &[m, n], dt);
        let s = g.input("s", &[], dt).broadcast_to(&[m, n]).unwrap();
        let k = g.input("k", &[m, n], DType::I32);
        let mut fl = vec![x, y, s];
        let mut ints = vec![k.clone()];
        let mut wide = vec![k.to(DType::I64).unwrap()];
        let mut outs = vec![];
        for _ in 0..r.random_range(4..12) {
            let a = fl[r.random_range(0..fl.len())].clone();
            let b = fl[r.random_range(0..fl.len())].clone();
            let t = match r.random_range(0..9) {
                0 => a.add(&b),
                1 => a.mul(&b),
                2 => a.sub(&b.mul_scalar(0.5).unwrap()),
                3 => a.tanh(),
                4 => a.lt(&b).unwrap().select(&a, &b),
                5 => {
                    let c = a.lt(&b).unwrap();
                    outs.push(c.clone());
                    c.to(dt)
                }
                6 => {
                    let i = ints[r.random_range(0..ints.len())].clone();
                    let j = a.mul_scalar(8.0).unwrap().to(DType::I32).unwrap();
                    let v = i.binary(&j, BinaryOp::Xor).unwrap().add(&i).unwrap();
                    ints.push(v.clone());
                    v.to(dt)
                }
                7 => {
                    let w = wide[r.random_range(0..wide.len())].clone();
                    let j = a.mul_scalar(1e3).unwrap().to(DType::I64).unwrap();
                    let v = w.mul(&j).unwrap().sub(&w).unwrap();
                    wide.push(v.clone());
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
        let all = fl[..3]
            .iter()
            .fold(fl.last().unwrap().clone(), |a, b| a.add(b).unwrap());
        outs.push(all);
        outs.push(ints.last().unwrap().clone());
        if wide.len() > 1 || r.random_bool(0.5) {
            outs.push(wide.last().unwrap().clone());
        }
        let mut inputs = vec![];
        for (name, shape) in [("x", vec![m, n]), ("y", vec![m, n]), ("s", vec![])] {
            let t = crate::tests::rand_f32(&mut r, &shape, -3.0, 3.0).convert(dt);
            inputs.push((name, t));
        }
        let kv = (0..m * n).map(|_| r.random_range(-1000..1000)).collect();
        inputs.push(("k", HostTensor::i32(vec![m, n], kv).unwrap()));
        let case = format!("contiguous chain {case} ({dt}, {m}x{n})");
        let (v, c) = run_both(&case, &outs, &inputs);
        assert!(c >= 1, "{case}: no chain");
        if even {
            assert_eq!(v, c, "{case}: a chain was not vectorized");
        } else {
            assert_eq!(v, 0, "{case}: a chain with a tail was vectorized");
        }
        vectorized += v;
    }
    assert!(vectorized > 0);
}

/// The lanes of the longest chain computing `out` (inputs named `names`), with buffer offsets
/// from `offset`.
fn lanes_of(out: &Tensor, names: &[&str], offset: &dyn Fn(usize) -> u64) -> usize {
    let (_, p) = lowered(std::slice::from_ref(out), names);
    let c = chains(&p)
        .into_iter()
        .max_by_key(|c| c.nodes.len())
        .unwrap();
    let io = Io::of(&p, &c.nodes);
    lanes(&p, &c.nodes, &io, offset)
}

#[test]
fn eligibility_needs_contiguous_operands_whole_vectors_and_alignment() {
    let aligned = |_: usize| 0u64;
    let chain = |d: DType, shape: &[usize], extra: Option<DType>| {
        let g = Graph::new();
        let x = g.input("x", shape, d);
        let y = g.input("y", shape, d);
        let z = x.mul(&y).unwrap().add_scalar(1.0).unwrap();
        let out = match extra {
            Some(e) => z.to(e).unwrap().add(&x.to(e).unwrap()).unwrap(),
            None => z,
        };
        (out, vec!["x", "y"])
    };
    let (t, n) = chain(DType::F32, &[4, 8], None);
    assert_eq!(lanes_of(&t, &n, &aligned), 4, "f32");
    // an offset of a multiple of 16 keeps it, one of 4 (an f32 but not a vector) does not
    assert_eq!(lanes_of(&t, &n, &|_| 48), 4, "f32 at +48");
    assert_eq!(lanes_of(&t, &n, &|_| 4), 1, "f32 at +4");
    assert_eq!(with_scalar(|| lanes_of(&t, &n, &aligned)), 1);
    let (t, n) = chain(DType::BF16, &[3, 8], None);
    assert_eq!(lanes_of(&t, &n, &aligned), 8, "bf16");
    // a tail: 12 bf16s are not whole 8-lane groups, 15 f32s not 4-lane ones
    let (t, n) = chain(DType::BF16, &[2, 6], None);
    assert_eq!(lanes_of(&t, &n, &aligned), 1, "bf16 with a tail");
    let (t, n) = chain(DType::F32, &[3, 5], None);
    assert_eq!(lanes_of(&t, &n, &aligned), 1, "f32 with a tail");
    // mixed dtypes: lanes from the widest element
    let (t, n) = chain(DType::BF16, &[2, 8], Some(DType::F32));
    assert_eq!(lanes_of(&t, &n, &aligned), 4, "bf16 and f32");
    let (t, n) = chain(DType::F32, &[2, 8], Some(DType::I64));
    assert_eq!(lanes_of(&t, &n, &aligned), 2, "f32 and i64");
    // at +8 an f32 operand's 16-byte access is misaligned, though a bf16's 8 would not be
    let (t, n) = chain(DType::BF16, &[2, 8], Some(DType::F32));
    assert_eq!(lanes_of(&t, &n, &|_| 8), 1, "bf16+f32 at +8");
    assert_eq!(lanes_of(&t, &n, &|_| 32), 4, "bf16+f32 at +32");

    let g = Graph::new();
    let x = g.input("x", &[4, 8], DType::F32);
    let names = ["x", "y"];
    // views of whole operands read at strided indices: scalar kernel
    let y = g.input("y", &[8, 4], DType::F32).t().unwrap();
    let t = x.mul(&y).unwrap().exp().unwrap();
    assert_eq!(lanes_of(&t, &names, &aligned), 1, "transpose");
    let row = g
        .input("y", &[8], DType::F32)
        .broadcast_to(&[4, 8])
        .unwrap();
    let t = x.mul(&row).unwrap().exp().unwrap();
    assert_eq!(lanes_of(&t, &names, &aligned), 1, "broadcast row");
    // a broadcast scalar is one element for every lane
    let s = g.input("y", &[], DType::F32).broadcast_to(&[4, 8]).unwrap();
    let t = x.mul(&s).unwrap().exp().unwrap();
    assert_eq!(lanes_of(&t, &names, &aligned), 4, "broadcast scalar");
    // iota needs the element index
    let i = g.iota(&[4, 8], 1, DType::F32).unwrap();
    let t = x.mul(&i).unwrap().exp().unwrap();
    assert_eq!(lanes_of(&t, &["x"], &aligned), 1, "iota");
}

/// The interpreter runs the vector accesses the text has: a kernel whose vector load is
/// moved off its alignment (4 bytes on) panics there, as a GPU would fault.
#[test]
fn a_misaligned_vector_access_is_caught() {
    let g = Graph::new();
    let x = g.input("x", &[2, 8], DType::F32);
    let t = x.mul(&x).unwrap().exp().unwrap();
    let xs = crate::tests::rand_f32(&mut StdRng::seed_from_u64(5), &[2, 8], -1.0, 1.0);
    let (p, low) = lowered(&[t], &["x"]);
    let want = CpuExecutor
        .run(&mut CpuExecutor.load(&p).unwrap(), &[&xs])
        .unwrap();
    let pl = check_fused("aligned", &low, &[&xs], &want, 0.0, false);
    let m = crate::chain::modules_of(&pl)[0];
    assert!(m.text.contains("ld.global.v4.u32"), "{}", m.text);
    let planted = m
        .text
        .replacen("add.u64 %ta1, %in0, %ta0", "add.u64 %ta1, %in0, 4", 1);
    assert_ne!(planted, m.text, "the load's address is not where expected");
    let mut bad = pl.clone();
    let entry = crate::chain::intern(
        planted.replace(m.entry, crate::chain_ptx::ENTRY),
        m.args.clone(),
    )
    .entry;
    for s in &mut bad.steps {
        if let Step::Launch(l) = s {
            l.entry = entry;
        }
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        emulate::run(&low, &bad, &[&xs])
    }));
    let msg = r
        .err()
        .and_then(|e| e.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(msg.contains("misaligned 16-byte vector access"), "{msg}");
}
