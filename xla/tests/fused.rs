//! Fused ops run on XLA through their decompositions into primitives; the CPU
//! executor runs its fused kernels. Forward values within 1e-5 relative, backward
//! ops within 1e-4 (DESIGN.md's gradient tolerance).

mod common;

use common::{check, ints, rng, uniform, Tol, TOL};
use gidd_engine::{AttnSpec, DType, Graph, HostTensor, Op, Result};

const BWD: Tol = Tol {
    f32: 1e-4,
    bf16: 2e-2,
};

#[test]
fn softmax_family() -> Result<()> {
    for shape in [vec![3, 5, 37], vec![1, 129], vec![7]] {
        let g = Graph::new();
        let x = g.input("x", &shape, DType::F32);
        let dy = g.input("dy", &shape, DType::F32);
        let y = g.apply1(Op::Softmax, &[&x])?;
        let ls = g.apply1(Op::LogSoftmax, &[&x])?;
        let dx = g.apply1(Op::SoftmaxBwd, &[&y, &dy])?;
        let mut r = rng(1);
        let ins = [
            ("x", uniform(&mut r, &shape, DType::F32, -8.0, 8.0)),
            ("dy", uniform(&mut r, &shape, DType::F32, -1.0, 1.0)),
        ];
        if !check(&format!("softmax {shape:?}"), &[y, ls, dx], &ins, TOL) {
            return Ok(());
        }
    }
    Ok(())
}

#[test]
fn rms_norm_fwd_bwd() -> Result<()> {
    for shape in [vec![2, 5, 48], vec![3, 17]] {
        let n = *shape.last().unwrap_or(&1);
        let g = Graph::new();
        let x = g.input("x", &shape, DType::F32);
        let w = g.input("w", &[n], DType::F32);
        let dy = g.input("dy", &shape, DType::F32);
        let fwd = g.apply(Op::RmsNorm { eps: 1e-6 }, &[&x, &w])?;
        let bwd = g.apply(Op::RmsNormBwd, &[&x, &w, &fwd[1], &dy])?;
        let mut r = rng(2);
        let ins = [
            ("x", uniform(&mut r, &shape, DType::F32, -2.0, 2.0)),
            ("w", uniform(&mut r, &[n], DType::F32, -0.5, 0.5)),
            ("dy", uniform(&mut r, &shape, DType::F32, -1.0, 1.0)),
        ];
        let outs = [fwd, bwd].concat();
        if !check(&format!("rms_norm {shape:?}"), &outs, &ins, BWD) {
            return Ok(());
        }
    }
    Ok(())
}

#[test]
fn rope_fwd_bwd() -> Result<()> {
    let (rows, h, d) = (6, 3, 10);
    let g = Graph::new();
    let x = g.input("x", &[rows, h, d], DType::F32);
    let cos = g.input("cos", &[rows, d / 2], DType::F32);
    let sin = g.input("sin", &[rows, d / 2], DType::F32);
    let y = g.apply1(Op::Rope, &[&x, &cos, &sin])?;
    let dx = g.apply1(Op::RopeBwd, &[&x, &cos, &sin])?;
    let mut r = rng(3);
    let ins = [
        ("x", uniform(&mut r, &[rows, h, d], DType::F32, -2.0, 2.0)),
        (
            "cos",
            uniform(&mut r, &[rows, d / 2], DType::F32, -1.0, 1.0),
        ),
        (
            "sin",
            uniform(&mut r, &[rows, d / 2], DType::F32, -1.0, 1.0),
        ),
    ];
    check("rope", &[y, dx], &ins, TOL);
    Ok(())
}

#[test]
fn attention_fwd_bwd() -> Result<()> {
    let (b, h, lq, lk, d) = (2, 3, 5, 7, 8);
    for softcap in [None, Some(5.0)] {
        let spec = AttnSpec {
            scale: (d as f32).powf(-0.5),
            softcap,
        };
        let g = Graph::new();
        let q = g.input("q", &[b, h, lq, d], DType::F32);
        let k = g.input("k", &[b, h, lk, d], DType::F32);
        let v = g.input("v", &[b, h, lk, d], DType::F32);
        let m = g.input("m", &[b, lq, lk], DType::Bool);
        let dout = g.input("dout", &[b, h, lq, d], DType::F32);
        let fwd = g.apply(Op::Attention(spec), &[&q, &k, &v, &m])?;
        let bwd = g.apply(
            Op::AttentionBwd(spec),
            &[&q, &k, &v, &m, &fwd[0], &fwd[1], &dout],
        )?;
        let mut r = rng(4);
        let mut mask = ints(&mut r, &[b, lq, lk], DType::Bool, 0, 4);
        if let gidd_engine::Data::Bool(mv) = &mut mask.data {
            mv.iter_mut().take(lk).for_each(|x| *x = 0); // one fully masked row
        }
        let ins = [
            ("q", uniform(&mut r, &[b, h, lq, d], DType::F32, -2.0, 2.0)),
            ("k", uniform(&mut r, &[b, h, lk, d], DType::F32, -2.0, 2.0)),
            ("v", uniform(&mut r, &[b, h, lk, d], DType::F32, -2.0, 2.0)),
            ("m", mask),
            (
                "dout",
                uniform(&mut r, &[b, h, lq, d], DType::F32, -1.0, 1.0),
            ),
        ];
        let outs = [fwd, bwd].concat();
        if !check(&format!("attention softcap {softcap:?}"), &outs, &ins, BWD) {
            return Ok(());
        }
    }
    Ok(())
}

#[test]
fn bf16_activations_through_fused_ops() -> Result<()> {
    // The model converts bf16 activations to f32 around fused ops.
    let g = Graph::new();
    let x = g.input("x", &[4, 24], DType::BF16);
    let w = g.input("w", &[24], DType::F32);
    let y = x.rms_norm(&w, 1e-6)?;
    let s = y.to(DType::F32)?.softmax()?;
    let mut r = rng(5);
    let ins = [
        ("x", uniform(&mut r, &[4, 24], DType::BF16, -2.0, 2.0)),
        ("w", HostTensor::zeros(DType::F32, vec![24])),
    ];
    check("bf16 rms_norm + softmax", &[y, s], &ins, TOL);
    Ok(())
}
