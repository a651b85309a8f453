//! The cpu executor hands its output buffers over instead of copying them, and refills those
//! slots from donated inputs at the next run: outputs stay intact across later runs, two
//! outputs sharing one buffer are both right, and donated and plain runs agree.

mod common;
use common::*;
use gidd_engine::{CpuExecutor, DType, Executor, Graph, HostTensor, Program};

#[test]
fn handed_over_outputs_survive_later_runs() {
    let mut r = rng(seed("cpu_handover"));
    let n = 50_001;
    let g = Graph::new();
    let (state, x) = (
        g.input("state", &[n], DType::F32),
        g.input("x", &[n], DType::F32),
    );
    let next = state.mul_scalar(0.5).unwrap().add(&x).unwrap();
    let sum = next.sum_all().unwrap();
    // the same buffer twice (a reshape aliases its input): copied, not handed over
    let twice = next.reshape(&[1, n]).unwrap();
    let p = Program::compile(&[next, sum, twice.clone()], &["state", "x"])
        .unwrap()
        .with_aliases(&[(0, 0)])
        .unwrap();
    let mut lp = CpuExecutor.load(&p).unwrap();
    let x = rand_f32(&mut r, &[n], -1.0, 1.0);
    let mut s = rand_f32(&mut r, &[n], -1.0, 1.0);
    let mut want = f32_data(&s).to_vec();
    let mut kept: Vec<(Vec<f32>, HostTensor)> = vec![];
    for step in 0..5 {
        for (w, &xi) in want.iter_mut().zip(f32_data(&x)) {
            *w = *w * 0.5 + xi;
        }
        let out = if step % 2 == 0 {
            CpuExecutor.run_donating(&mut lp, vec![s], &[&x]).unwrap()
        } else {
            CpuExecutor.run(&mut lp, &[&s, &x]).unwrap()
        };
        assert_eq!(f32_data(&out[0]), &want[..], "step {step}");
        assert_eq!(
            f32_data(&out[2]),
            &want[..],
            "step {step}: the aliased output"
        );
        let total: f64 = want.iter().map(|&v| v as f64).sum();
        assert!((f32_data(&out[1])[0] as f64 - total).abs() < 1e-2 * (1.0 + total.abs()));
        kept.push((want.clone(), out[2].clone()));
        let mut out = out.into_iter();
        let next = out.next().unwrap();
        if step % 2 == 1 {
            // a handed-over buffer we keep (its copy goes on as the state)
            s = next.clone();
            kept.push((want.clone(), next));
        } else {
            s = next;
        }
    }
    // every earlier output still holds its values: no slot kept a handle on it
    for (k, (w, t)) in kept.iter().enumerate() {
        assert_eq!(f32_data(t), &w[..], "output of step {k} changed later");
    }
}
