//! Views that read by position (transpose, slice, a broadcast of rows or columns), iota and
//! concatenate over values larger than one storage binding (capped at 64 KiB: common::CAP),
//! alone and inside fused chains, forward and through autograd (log-softmax's gradient
//! broadcasts a row sum back over the rows; slices and concatenations are each other's
//! gradients): against the cpu executor, and bit for bit against the same program on the
//! uncapped executor. f32, bf16 (packed: chunks of whole words), i64 and bool.

mod common;

use common::*;
use gidd_engine::{grad, DType, Graph, HostTensor, Result, Tensor};

/// The views, iota and concatenations of one dtype, and their inputs.
fn views(d: DType, s: u64) -> Result<(Vec<Tensor>, Vec<(&'static str, HostTensor)>)> {
    let mut r = rng(s);
    // x [301, 257] f32 is 302 KiB (five windows); y [257, 301]; t3 [37, 41, 53] 314 KiB
    let (a, b) = (301, 257);
    let g = Graph::new();
    let x = g.input("x", &[a, b], d);
    let y = g.input("y", &[b, a], d);
    let col = g.input("col", &[a, 1], d);
    let row = g.input("row", &[b], d);
    let t3 = g.input("t3", &[37, 41, 53], d);
    let outs = vec![
        // alone
        x.transpose(&[1, 0])?,
        x.slice(&[5, 3], &[290, 250])?,
        col.broadcast_to(&[a, b])?,
        row.broadcast_in_dim(&[a, b], vec![1])?,
        t3.transpose(&[2, 0, 1])?,
        t3.slice(&[1, 2, 3], &[36, 40, 52])?,
        // in chains: x + col - y^T, x * row, a slice of a transposed sum
        x.add(&col.broadcast_to(&[a, b])?)?
            .sub(&y.transpose(&[1, 0])?)?,
        x.mul(&row.broadcast_in_dim(&[a, b], vec![1])?)?,
        // concatenations: along the rows, along the columns (odd widths: bf16 parts start
        // mid-word), of a value with itself, and a small part beside a big one
        Tensor::concat(&[&x, &y.transpose(&[1, 0])?], 0)?,
        Tensor::concat(&[&x, &col, &x], 1)?,
        Tensor::concat(&[&col, &x.slice(&[0, 0], &[a, 7])?], 1)?,
        // 20000 elements: 40 KB packed, fits; widened it would not
        Tensor::concat(
            &[
                &x.slice(&[0, 0], &[100, 97])?,
                &y.slice(&[0, 0], &[100, 103])?,
            ],
            1,
        )?,
    ];
    let ins = vec![
        ("x", uniform(&mut r, &[a, b], d, -2.0, 2.0)),
        ("y", uniform(&mut r, &[b, a], d, -2.0, 2.0)),
        ("col", uniform(&mut r, &[a, 1], d, -1.0, 1.0)),
        ("row", uniform(&mut r, &[b], d, -1.0, 1.0)),
        ("t3", uniform(&mut r, &[37, 41, 53], d, -1.0, 1.0)),
    ];
    Ok((outs, ins))
}

#[test]
fn positional_views_and_concat_over_windows_match_the_cpu_and_the_unwindowed_run() -> Result<()> {
    let s = seed(5100);
    let Some(base) = wgpu() else {
        return Ok(());
    };
    for (x, fused) in capped() {
        for d in [DType::F32, DType::BF16, DType::F16] {
            let (outs, ins) = views(d, s)?;
            let case = format!("views and concat, {d}, fused={fused}");
            check_windowed(&x, &case, &outs, &ins, 40);
            assert_bitwise(&x, &base.clone().with_fusion(fused), &case, &outs, &ins);
        }
    }
    Ok(())
}

/// Integers and bools by position: the embedding's one-hot (an iota over [tokens, vocab]
/// against the ids broadcast along the vocabulary), an i64 transpose and concatenation, and
/// the bias slot's mask concatenation (a splat of ones beside a bool mask).
#[test]
fn iota_one_hot_and_integer_views_over_windows_match_the_cpu() -> Result<()> {
    let s = seed(5200);
    let Some(base) = wgpu() else {
        return Ok(());
    };
    for (x, fused) in capped() {
        let mut r = rng(s);
        let (m, v) = (97, 301);
        let g = Graph::new();
        let ids = g.input("ids", &[m], DType::I32);
        let l = g.input("l", &[67, 131], DType::I64);
        let mk = g.input("mask", &[2, 131, 130], DType::Bool);
        let ones = g.splat(1.0, &[2, 131, 1], DType::Bool);
        let outs = vec![
            ids.one_hot(v, DType::F32)?,
            g.iota(&[m, v, 3], 1, DType::I32)?,
            l.transpose(&[1, 0])?,
            Tensor::concat(&[&l, &l], 1)?,
            Tensor::concat(&[&ones, &mk], 2)?,
        ];
        let ins = [
            ("ids", ints(&mut r, &[m], DType::I32, 0, v as i64)),
            ("l", ints(&mut r, &[67, 131], DType::I64, -1 << 40, 1 << 40)),
            ("mask", ints(&mut r, &[2, 131, 130], DType::Bool, 0, 2)),
        ];
        let case = format!("iota and integer views, fused={fused}");
        check_windowed(&x, &case, &outs, &ins, 12);
        assert_bitwise(&x, &base.clone().with_fusion(fused), &case, &outs, &ins);
    }
    Ok(())
}

/// Gradients that autograd builds from positional views over values larger than a binding:
/// log-softmax's (a row sum broadcast back over the rows), a transpose's (the transpose
/// back), a slice's (a concatenation with zeros) and a concatenation's (slices).
#[test]
fn gradients_through_views_over_windows_match_the_cpu() -> Result<()> {
    let s = seed(5300);
    let Some(base) = wgpu() else {
        return Ok(());
    };
    for (x, fused) in capped() {
        for d in [DType::F32, DType::BF16, DType::F16] {
            let mut r = rng(s);
            let (a, b) = (301, 257);
            let g = Graph::new();
            let lg = g.input("logits", &[a, b], d);
            let y = g.input("y", &[b, a], d);
            let c = g.input("c", &[a, b], DType::F32);
            let c2 = g.input("c2", &[2 * a, 250], DType::F32);
            let lsm = lg.to(DType::F32)?.log_softmax()?;
            let both = Tensor::concat(&[&lg, &y.transpose(&[1, 0])?], 0)?;
            let cut = both.slice(&[0, 3], &[2 * a, 253])?.to(DType::F32)?;
            let loss = lsm.mul(&c)?.sum_all()?.add(&cut.mul(&c2)?.sum_all()?)?;
            let gr = grad(&loss, &[lg.clone(), y.clone()])?;
            let outs = vec![loss, lsm, cut, gr[0].clone(), gr[1].clone()];
            let ins = [
                ("logits", uniform(&mut r, &[a, b], d, -4.0, 4.0)),
                ("y", uniform(&mut r, &[b, a], d, -1.0, 1.0)),
                ("c", uniform(&mut r, &[a, b], DType::F32, -1.0, 1.0)),
                ("c2", uniform(&mut r, &[2 * a, 250], DType::F32, -1.0, 1.0)),
            ];
            let case = format!("gradients through views, {d}, fused={fused}");
            check_windowed(&x, &case, &outs, &ins, 20);
            // the loss is a sum in windows (f32 partials): held to the cpu only
            let whole = base.clone().with_fusion(fused);
            assert_bitwise(&x, &whole, &case, &outs[1..], &ins);
        }
    }
    Ok(())
}
