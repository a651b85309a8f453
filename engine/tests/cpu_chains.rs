//! The cpu executor's fused elementwise chains give the bits of running every node alone:
//! random programs of unary, binary, compare and select ops (values reused far apart, so that
//! members are written back and slots are reused inside a chain), broadcasts of runtime
//! scalars, splat constants, reshaped inputs and reductions that break chains, at awkward
//! sizes on both sides of the parallel threshold, with NaN, infinities, signed zeros and
//! subnormals among the inputs.

mod common;
use common::*;
use gidd_engine::{CpuExecutor, DType, Executor, Graph, HostTensor, Program, Tensor};
use rand::Rng;

const SIZES: [usize; 8] = [1, 7, 1023, 1025, 4099, 40_000, 70_001, 100_003];

fn edgy(r: &mut impl Rng, n: usize) -> Vec<f32> {
    const EDGES: [f32; 9] = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e-40,
        -3e-39,
        1e30,
        -1.0,
    ];
    (0..n)
        .map(|_| {
            if r.random_range(0..16) == 0 {
                EDGES[r.random_range(0..EDGES.len())]
            } else {
                r.random_range(-3.0f32..3.0)
            }
        })
        .collect()
}

/// A random elementwise program over [n]; returns its outputs and inputs.
fn program(r: &mut impl Rng, n: usize) -> (Vec<Tensor>, Vec<(String, HostTensor)>) {
    let g = Graph::new();
    let mut inputs = vec![];
    let mut fs: Vec<Tensor> = vec![];
    for k in 0..3 {
        let name = format!("x{k}");
        // one input arrives as [1, n] and is reshaped (an aliasing reshape the chain reads through)
        let t = if k == 2 {
            g.input(&name, &[1, n], DType::F32).reshape(&[n]).unwrap()
        } else {
            g.input(&name, &[n], DType::F32)
        };
        let shape = if k == 2 { vec![1, n] } else { vec![n] };
        inputs.push((name, HostTensor::f32(shape, edgy(r, n)).unwrap()));
        fs.push(t);
    }
    let s = g.input("s", &[], DType::F32);
    inputs.push(("s".into(), HostTensor::scalar_f32(r.random_range(0.5..2.0))));
    fs.push(s.broadcast_to(&[n]).unwrap());
    let m = g.input("m", &[n], DType::Bool);
    inputs.push(("m".into(), rand_bool(r, &[n], 0.5)));
    let mut bs: Vec<Tensor> = vec![m];
    let steps = r.random_range(8..40);
    for _ in 0..steps {
        let a = fs[r.random_range(0..fs.len())].clone();
        let b = fs[r.random_range(0..fs.len())].clone();
        let t = match r.random_range(0..20) {
            0 => a.neg(),
            1 => a.exp(),
            2 => a.abs().unwrap().sqrt(),
            3 => a.rsqrt(),
            4 => a.tanh(),
            5 => a.floor(),
            6 => a.add(&b),
            7 => a.sub(&b),
            8 => a.mul(&b),
            9 => a.div(&b),
            10 => a.maximum(&b),
            11 => a.minimum(&b),
            12 => a.add_scalar(0.75),
            13 => a.mul_scalar(-1.5),
            14 => a.sigmoid(),
            15 => {
                let c = a.lt(&b).unwrap();
                bs.push(c);
                continue;
            }
            16 => {
                let p = bs[r.random_range(0..bs.len())].clone();
                p.select(&a, &b)
            }
            17 => {
                let p = bs[r.random_range(0..bs.len())].clone();
                p.select(&a, &g.splat(2.5, &[n], DType::F32))
            }
            18 => a.ge(&b).unwrap().select(&b, &a),
            // a reduction ends the chain; its broadcast back starts the next one
            _ => a.sum_all().unwrap().broadcast_to(&[n]),
        }
        .unwrap();
        fs.push(t);
    }
    let mut outs = vec![fs.last().unwrap().clone()];
    for _ in 0..r.random_range(0..4) {
        outs.push(fs[r.random_range(3..fs.len())].clone());
    }
    outs.push(bs.last().unwrap().clone());
    // every input feeds an output (a program must use its inputs)
    let all = bs[0]
        .select(&fs[0], &fs[1])
        .unwrap()
        .add(&fs[2])
        .unwrap()
        .mul(&fs[3])
        .unwrap();
    outs.push(all);
    (outs, inputs)
}

fn bits(t: &HostTensor) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => f32_data(t).iter().map(|x| x.to_bits() as u64).collect(),
        _ => (0..t.numel())
            .map(|i| t.data.get_f64(i).to_bits())
            .collect(),
    }
}

#[test]
fn fused_chains_give_the_unfused_bits() {
    let seed = seed("cpu_chains");
    let mut r = rng(seed);
    let (mut chains, mut members) = (0, 0);
    for round in 0..6 {
        for n in SIZES {
            let (outs, inputs) = program(&mut r, n);
            let names: Vec<&str> = inputs.iter().map(|(k, _)| k.as_str()).collect();
            let p = Program::compile(&outs, &names).expect("compile");
            let vals: Vec<&HostTensor> = inputs.iter().map(|(_, t)| t).collect();
            let mut fused = CpuExecutor.load(&p).unwrap();
            fused.set_chains(true);
            let mut alone = CpuExecutor.load(&p).unwrap();
            alone.set_chains(false);
            let (c, m) = fused.chain_stats();
            chains += c;
            members += m;
            // twice: a rerun reuses the planned slots
            for run in 0..2 {
                let a = CpuExecutor.run(&mut fused, &vals).unwrap();
                let b = CpuExecutor.run(&mut alone, &vals).unwrap();
                for (k, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(x.shape, y.shape);
                    let (bx, by) = (bits(x), bits(y));
                    if let Some(i) = (0..bx.len()).find(|&i| bx[i] != by[i]) {
                        panic!(
                            "round {round} n {n} run {run} output {k} element {i}: fused {:?} vs alone {:?} (GIDD_TEST_SEED={seed})",
                            x.data.get_f64(i),
                            y.data.get_f64(i)
                        );
                    }
                }
            }
        }
    }
    // the test means something only if chains formed
    assert!(
        chains > 50 && members > 3 * chains,
        "{chains} chains of {members} nodes"
    );
}

/// The training step's optimizer chains, and a chain whose members are program outputs,
/// match the f64 reference through the fused path (what every other test of this crate runs
/// too, since chains are on by default).
#[test]
fn chains_match_the_reference() {
    let mut r = rng(seed("cpu_chains_ref"));
    let n = 70_001;
    let g = Graph::new();
    let (x, m, v) = (
        g.input("g", &[n], DType::F32),
        g.input("m", &[n], DType::F32),
        g.input("v", &[n], DType::F32),
    );
    let m2 = m
        .mul_scalar(0.9)
        .unwrap()
        .add(&x.mul_scalar(0.1).unwrap())
        .unwrap();
    let v2 = v
        .mul_scalar(0.99)
        .unwrap()
        .add(&x.mul(&x).unwrap().mul_scalar(0.01).unwrap())
        .unwrap();
    let u = m2
        .div(&v2.sqrt().unwrap().add_scalar(1e-8).unwrap())
        .unwrap();
    let outs = [u, m2, v2];
    let ins = [
        rand_f32(&mut r, &[n], -1.0, 1.0),
        rand_f32(&mut r, &[n], -1.0, 1.0),
        rand_f32(&mut r, &[n], 0.0, 1.0),
    ];
    let named = [("g", &ins[0]), ("m", &ins[1]), ("v", &ins[2])];
    let got = run_cpu(&outs, &named);
    let want = run_ref(&outs, &named);
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_close(&format!("output {k}"), &as_f64(a), b, 1e-6, 1e-5);
    }
}
