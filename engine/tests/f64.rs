//! What only the f64 path has (the op families themselves run in f64 in `ops.rs`):
//! fused ops compiled as their decompositions, and f64 <-> f32 conversions inside a
//! gradient chain.

mod common;
use common::*;
use gidd_engine::{DType, Graph, HostTensor, Program};

#[test]
fn f64_sum_over_leading_dims_and_through_f32_matches_reference() {
    let mut r = rng(seed("f64 leading"));
    let s = [
        odd_size(&mut r, 4),
        odd_size(&mut r, 6),
        odd_size(&mut r, 33),
    ];
    let x = rand_f32(&mut r, &s, -2.0, 2.0).convert(DType::F64);
    let x = HostTensor::f64(
        s.to_vec(),
        x.to_f64_vec().iter().map(|v| v + 1e-12).collect(),
    )
    .unwrap();
    gradcheck(
        "f64 sum leading, through f32",
        &[x],
        &[],
        |x, _| {
            // the leading-dims sum (bias gradients' path), plus a round trip through f32
            let y = x[0].sum(&[0], false).unwrap();
            y.to(DType::F32)
                .unwrap()
                .to(DType::F64)
                .unwrap()
                .add(&y)
                .unwrap()
        },
        // the reference interpreter holds f64 throughout, so the f32 round trip is exact there
        1e-7,
        1e-7,
    );
}

#[test]
fn f64_programs_hold_no_fused_ops_and_f32_programs_keep_them() {
    // (fused op count, ops) of a norm then a softmax compiled at dtype dt
    let plan = |dt: DType| -> (usize, Vec<&'static str>) {
        let g = Graph::new();
        let x = g.input("x", &[3, 8], dt);
        let w = g.input("w", &[8], dt);
        let y = x.rms_norm(&w, 1e-6).unwrap().softmax().unwrap();
        let p = Program::compile(&[y], &["x", "w"]).unwrap();
        let fused = p.nodes.iter().filter(|n| n.op.is_fused()).count();
        (fused, p.nodes.iter().map(|n| n.op.name()).collect())
    };
    let (f64_fused, f64_ops) = plan(DType::F64);
    let (f32_fused, f32_ops) = plan(DType::F32);
    assert_eq!(f64_fused, 0, "f64 program kept a fused op: {f64_ops:?}");
    assert_eq!(f32_fused, 2, "f32 program lost its fused ops: {f32_ops:?}");
}
