//! Chains of elementwise ops fused into generated kernels compute exactly what the ops compute
//! one dispatch at a time: random programs (seeded; the seed is printed) over every dtype the
//! executor stores (f32, bf16, i32, u32, i64, bool), with splat operands, comparisons, selects,
//! conversions between every pair of classes, aliasing reshapes and values read both inside
//! and after a chain, run with fusion on and off: every output bitwise equal (a NaN's sign
//! and payload aside), with fewer dispatches. Each op's agreement with the cpu executor is ops.rs's.

mod common;

use common::{ints, rng, seed, uniform, wgpu};
use gidd_engine::op::{BinaryOp, CmpOp, UnaryOp};
use gidd_engine::{DType, Executor, Graph, HostTensor, Op, Program, Result, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

const DTYPES: [DType; 7] = [
    DType::F32,
    DType::BF16,
    DType::F16,
    DType::I32,
    DType::U32,
    DType::I64,
    DType::Bool,
];

fn pick<'a>(r: &mut StdRng, pool: &'a [Tensor]) -> &'a Tensor {
    &pool[r.random_range(0..pool.len())]
}

/// One random op over the pool's values; its result joins the pool.
fn grow(r: &mut StdRng, pool: &mut Vec<Tensor>, n: usize) -> Result<()> {
    let x = pick(r, pool).clone();
    let same: Vec<Tensor> = pool
        .iter()
        .filter(|t| t.dtype() == x.dtype())
        .cloned()
        .collect();
    let y = pick(r, &same).clone();
    let float = x.dtype().is_float();
    let choice = r.random_range(0..11);
    let g = x.graph().clone();
    let rows: Vec<Tensor> = pool.iter().filter(|t| t.shape() != [n]).cloned().collect();
    let mut make = || -> Result<Tensor> {
        Ok(match choice {
            0 if float => {
                let u = [
                    UnaryOp::Exp,
                    UnaryOp::Tanh,
                    UnaryOp::Neg,
                    UnaryOp::Abs,
                    UnaryOp::Log,
                    UnaryOp::Logistic,
                    UnaryOp::Floor,
                    UnaryOp::Sqrt,
                ][r.random_range(0..8)];
                x.graph().apply1(Op::Unary(u), &[&x])?
            }
            0 => {
                let u = match x.dtype() {
                    DType::Bool => UnaryOp::Not,
                    _ => [UnaryOp::Neg, UnaryOp::Not, UnaryOp::Abs][r.random_range(0..3)],
                };
                x.graph().apply1(Op::Unary(u), &[&x])?
            }
            1 if float => {
                let b = [
                    BinaryOp::Add,
                    BinaryOp::Mul,
                    BinaryOp::Sub,
                    BinaryOp::Div,
                    BinaryOp::Max,
                ][r.random_range(0..5)];
                x.binary(&y, b)?
            }
            1 if x.dtype() != DType::Bool => {
                let b = [
                    BinaryOp::Add,
                    BinaryOp::Mul,
                    BinaryOp::Xor,
                    BinaryOp::ShiftRightLogical,
                    BinaryOp::Div,
                    BinaryOp::Min,
                ][r.random_range(0..6)];
                x.binary(&y, b)?
            }
            2 if x.dtype() != DType::Bool => x.binary(&x.full_like(3.0), BinaryOp::Mul)?,
            3 => x.compare(&y, [CmpOp::Lt, CmpOp::Eq, CmpOp::Ge][r.random_range(0..3)])?,
            4 => {
                let preds: Vec<Tensor> = pool
                    .iter()
                    .filter(|t| t.dtype() == DType::Bool)
                    .cloned()
                    .collect();
                match preds.is_empty() {
                    true => x.lt(&y)?,
                    false => pick(r, &preds).select(&x, &y)?,
                }
            }
            5 => x.to(DTYPES[r.random_range(0..DTYPES.len())])?,
            // an aliasing reshape in the middle of a chain
            6 if n.is_multiple_of(3) => x.reshape(&[3, n / 3])?.reshape(&[n])?,
            // views: a transpose (of a chain value: the chain splits there) and a slice
            7 if n.is_multiple_of(3) => {
                x.reshape(&[3, n / 3])?.transpose(&[1, 0])?.reshape(&[n])?
            }
            7 => x.reshape(&[1, n])?.slice(&[0, 0], &[1, n])?.reshape(&[n])?,
            // a broadcast of a one-element input
            8 if !rows.is_empty() => pick(r, &rows).broadcast_to(&[n])?,
            9 => g.iota(&[n], 0, DTYPES[r.random_range(0..DTYPES.len())])?,
            _ => x.to(DType::F32)?.add_scalar(0.5)?,
        })
    };
    // an op the dtype does not define (abs of u32, ...) is refused by the graph: draw again
    if let Ok(t) = make() {
        pool.push(t);
    }
    Ok(())
}

fn input(r: &mut StdRng, name: &str, n: usize, d: DType) -> HostTensor {
    let _ = name;
    match d {
        DType::F32 | DType::BF16 | DType::F16 => uniform(r, &[n], d, -4.0, 4.0),
        DType::Bool => ints(r, &[n], d, 0, 2),
        _ => ints(r, &[n], d, -40, 40),
    }
}

/// The outputs and dispatch count of `p` on the executor, fused or not.
fn run(p: &Program, inputs: &[HostTensor], fuse: bool) -> (Vec<HostTensor>, usize) {
    let x = wgpu().expect("adapter").clone().with_fusion(fuse);
    let mut lp = x.load(p).expect("load");
    let bufs: Vec<_> = inputs
        .iter()
        .map(|t| x.upload(t).expect("upload"))
        .collect();
    let outs = x
        .run(&mut lp, &bufs.iter().collect::<Vec<_>>())
        .expect("run");
    let host = outs
        .iter()
        .map(|b| x.download(b).expect("download"))
        .collect();
    (host, lp.dispatch_count())
}

#[test]
fn fused_chains_are_bitwise_the_unfused_ops() -> Result<()> {
    if wgpu().is_none() {
        return Ok(());
    }
    let base = seed(41);
    let (mut fused_total, mut unfused_total) = (0, 0);
    for case in 0..24u64 {
        let mut r = rng(base + case);
        let n = [1usize, 7, 255, 256, 1000, 4101][case as usize % 6];
        let g = Graph::new();
        let mut names = vec![];
        let mut hosts = vec![];
        let mut pool = vec![];
        for (k, d) in DTYPES.iter().enumerate() {
            for (tag, len) in [("n", n), ("1", 1)] {
                let name = format!("in{k}_{tag}");
                pool.push(g.input(&name, &[len], *d));
                hosts.push(input(&mut r, &name, len, *d));
                names.push(name);
            }
        }
        for _ in 0..r.random_range(10..40) {
            grow(&mut r, &mut pool, n)?;
        }
        // a few results are read after the chains, the last always
        let mut outs: Vec<Tensor> = (0..3).map(|_| pick(&mut r, &pool[12..]).clone()).collect();
        outs.push(pool[pool.len() - 1].clone());
        // one result also feeds a reduction (a non-elementwise reader in the middle)
        let mid = pick(&mut r, &pool[12..]).to(DType::F32)?;
        outs.push(mid.sum(&[0], false)?);
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let p = Program::compile_pruned(&outs, &refs)?;
        let ins: Vec<HostTensor> = p
            .inputs
            .iter()
            .map(|(name, _)| hosts[names.iter().position(|m| m == name).unwrap_or(0)].clone())
            .collect();
        let (a, fa) = run(&p, &ins, true);
        let (b, fb) = run(&p, &ins, false);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x.dtype(), y.dtype());
            // floats bitwise too, except that a NaN's sign and payload are the hardware's
            // (x86 makes 0 * inf negative, a folded constant may not)
            let same = match x.dtype().is_float() {
                false => x.data == y.data,
                true => {
                    let (u, v) = (x.to_f64_vec(), y.to_f64_vec());
                    u.iter()
                        .zip(&v)
                        .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
                }
            };
            assert!(
                same,
                "case {case} (n {n}) output {i} ({:?}): fused {:?} unfused {:?}",
                x.dtype(),
                &x.to_f64_vec()[..n.min(8)],
                &y.to_f64_vec()[..n.min(8)]
            );
        }
        assert!(fa <= fb, "case {case}: {fa} dispatches fused, {fb} unfused");
        fused_total += fa;
        unfused_total += fb;
    }
    eprintln!("dispatches: {fused_total} fused, {unfused_total} one per op");
    assert!(
        2 * fused_total < unfused_total,
        "fusion saved too little: {fused_total} vs {unfused_total}"
    );
    Ok(())
}
