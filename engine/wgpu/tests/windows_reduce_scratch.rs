//! Reductions whose f32 scratch outgrows a storage binding (capped at 64 KiB: common::CAP)
//! while the values themselves may fit: a bf16 result's widened sums (4 bytes per output,
//! twice its packed size), the f32 partial rows of a column reduction over windows of rows
//! (one row of n_out partials per window: long rows, or many windows), for bf16 and f32
//! inputs. Those run in chunks of columns, each with its partials in one binding, and the
//! widened result is packed in windows. Against the cpu executor, values and gradients.

mod common;

use common::*;
use gidd_engine::{grad, DType, Executor, Graph, Program, Result};

#[test]
fn reductions_whose_f32_scratch_outgrows_a_binding_match_the_cpu() -> Result<()> {
    let s = seed(5600);
    for (x, fused) in capped() {
        for d in [DType::BF16, DType::F16, DType::F32] {
            let mut r = rng(s);
            let g = Graph::new();
            // [1, 20001] bf16 39 KiB, its widened sum over the unit dim 78 KiB
            let one = g.input("one", &[1, 20_001], d);
            // [6, 20001] bf16 234 KiB: each window one row, its f32 partials 78 KiB
            let long = g.input("long", &[6, 20_001], d);
            // [41, 7999]: 4 rows a window (bf16), 11 windows of 31 KiB f32 partials
            let many = g.input("many", &[41, 7_999], d);
            // [20001, 3] summed over its last dim: a widened result of 78 KiB (rows)
            let rows = g.input("rows", &[20_001, 3], d);
            let c = g.input("c", &[20_001], DType::F32);
            let col = long.sum(&[0], false)?;
            let loss = col.to(DType::F32)?.mul(&c)?.sum_all()?;
            let gr = grad(&loss, std::slice::from_ref(&long))?;
            let outs = vec![
                one.sum(&[0], false)?,
                one.max(&[0], true)?,
                col,
                long.max(&[0], false)?,
                many.sum(&[0], false)?,
                many.max(&[0], true)?,
                rows.sum(&[1], false)?,
                gr[0].clone(),
            ];
            let ins = [
                ("one", uniform(&mut r, &[1, 20_001], d, -2.0, 2.0)),
                ("long", uniform(&mut r, &[6, 20_001], d, -2.0, 2.0)),
                ("many", uniform(&mut r, &[41, 7_999], d, -2.0, 2.0)),
                ("rows", uniform(&mut r, &[20_001, 3], d, -2.0, 2.0)),
                ("c", uniform(&mut r, &[20_001], DType::F32, -1.0, 1.0)),
            ];
            let case = format!("reduce with large scratch, {d}, fused={fused}");
            let names: Vec<&str> = ins.iter().map(|(n, _)| *n).collect();
            let p = Program::compile(&outs, &names)?;
            let lp = x.load(&p)?;
            // the column reductions went in chunks: more final passes than outputs reduced
            // over partials
            eprintln!("{case}: {:?}", lp.dispatch_counts());
            drop(lp);
            check_windowed(&x, &case, &outs, &ins, 20);
        }
    }
    Ok(())
}
