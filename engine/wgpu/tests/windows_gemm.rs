//! dot_general with operands or output larger than one storage binding, with the binding
//! capped at 64 KiB (common::CAP): an lm_head whose tied embedding E [V, D] and logits
//! [T, V] exceed it (E's rows in windows, the logits in row and column blocks), its
//! gradients dh = dlogits E (split along K = V, the sums carried between blocks) and
//! dE = dlogits^T h (blocks of E's rows, split along K = T), a batched GEMM and a GEMM
//! contracting both operands' leading dims, and GEMMs whose one row of an operand or of the
//! output is larger than a binding (K so large that a row of A does not fit; output rows of
//! such a length; x W^T over such a K; a K-stride of B over a binding with K = 3): those run
//! in blocks of fewer rows, their operands staged in slices; f32 and
//! bf16 programs, against the cpu executor and bit for bit against the same program on an
//! uncapped executor (both register-blocked: the windows change which dispatch computes an
//! element, never its fma chain).

mod common;

use common::*;
use gidd_engine::op::DotDims;
use gidd_engine::{grad, DType, Executor, Graph, HostTensor, Program, Result, Tensor};
use gidd_wgpu::GemmStrategy;

/// Each GEMM below, its gradients through autograd, and the inputs.
fn cases(d: DType, s: u64) -> Result<Vec<(String, Vec<Tensor>, Vec<(&'static str, HostTensor)>)>> {
    let mut r = rng(s);
    let mut out = vec![];
    // lm_head: T and D odd (D not a multiple of 4: K padded), V odd in f32; E 207 KiB,
    // logits 176 KiB. A bf16 output of odd N is not split along N (blocks would share
    // words), and this E needs that: V even there (real vocabularies are)
    let v = if d == DType::F32 { 1001 } else { 1000 };
    let (t, dm) = (45, 53);
    {
        let g = Graph::new();
        let h = g.input("h", &[t, dm], d);
        let e = g.input("e", &[v, dm], d);
        let c = g.input("c", &[t, v], DType::F32);
        let logits = h.dot_general(
            &e,
            DotDims {
                lhs_batch: vec![],
                rhs_batch: vec![],
                lhs_contract: vec![1],
                rhs_contract: vec![1],
            },
        )?;
        let loss = logits.to(DType::F32)?.mul(&c)?.sum_all()?;
        let gr = grad(&loss, &[h.clone(), e.clone()])?;
        let ins = vec![
            ("h", uniform(&mut r, &[t, dm], d, -1.0, 1.0)),
            ("e", uniform(&mut r, &[v, dm], d, -1.0, 1.0)),
            ("c", uniform(&mut r, &[t, v], DType::F32, -1.0, 1.0)),
        ];
        out.push((
            format!("lm_head and gradients, {d}"),
            vec![logits, gr[0].clone(), gr[1].clone()],
            ins,
        ));
    }
    // batched [3, 67, 41] x [3, 41, 131]: the output 103 KiB
    {
        let g = Graph::new();
        let a = g.input("a", &[3, 67, 41], d);
        let b = g.input("b", &[3, 41, 131], d);
        let y = a.matmul(&b)?;
        let ins = vec![
            ("a", uniform(&mut r, &[3, 67, 41], d, -1.0, 1.0)),
            ("b", uniform(&mut r, &[3, 41, 131], d, -1.0, 1.0)),
        ];
        out.push((format!("batched, {d}"), vec![y], ins));
    }
    // both operands contracted along their leading dim (A^T B): [301, 70] and [301, 90]
    {
        let g = Graph::new();
        let a = g.input("a", &[301, 70], d);
        let b = g.input("b", &[301, 90], d);
        let y = a.dot_general(
            &b,
            DotDims {
                lhs_batch: vec![],
                rhs_batch: vec![],
                lhs_contract: vec![0],
                rhs_contract: vec![0],
            },
        )?;
        let ins = vec![
            ("a", uniform(&mut r, &[301, 70], d, -1.0, 1.0)),
            ("b", uniform(&mut r, &[301, 90], d, -1.0, 1.0)),
        ];
        out.push((format!("transposed operands, {d}"), vec![y], ins));
    }
    // a row of A [3, 33001] larger than a binding (129 KiB f32, 64.5 KiB bf16), B [33001, 5];
    // D [3, 5] x E [5, 33001], whose output rows are as long (a bf16 one of odd N sums in f32,
    // packed row by row). No gradients: autograd's transposed copies of such rows take the
    // generated-kernel path (positional::chunks), which finds one-element chunks one by one
    // there: minutes on lavapipe, a separate matter from the GEMM.
    let k = 33_001;
    {
        let g = Graph::new();
        let a = g.input("a", &[3, k], d);
        let b = g.input("b", &[k, 5], d);
        let dd = g.input("d", &[3, 5], d);
        let e = g.input("e", &[5, k], d);
        let y = a.matmul(&b)?;
        let outs = vec![y, dd.matmul(&e)?];
        let ins = vec![
            ("a", uniform(&mut r, &[3, k], d, -1.0, 1.0)),
            ("b", uniform(&mut r, &[k, 5], d, -1.0, 1.0)),
            ("d", uniform(&mut r, &[3, 5], d, -1.0, 1.0)),
            ("e", uniform(&mut r, &[5, k], d, -1.0, 1.0)),
        ];
        out.push((
            format!("rows of A and of the output over a binding, {d}"),
            outs,
            ins,
        ));
    }
    // x W^T with W [7, 33001]: every row of both operands over a binding, W's block staged
    // in slices (bf16: f32 programs transpose W first, the slow copy above)
    if d != DType::F32 {
        let g = Graph::new();
        let x = g.input("x", &[2, k], d);
        let w = g.input("w", &[7, k], d);
        let y = x.dot_general(
            &w,
            DotDims {
                lhs_batch: vec![],
                rhs_batch: vec![],
                lhs_contract: vec![1],
                rhs_contract: vec![1],
            },
        )?;
        let ins = vec![
            ("x", uniform(&mut r, &[2, k], d, -1.0, 1.0)),
            ("w", uniform(&mut r, &[7, k], d, -1.0, 1.0)),
        ];
        out.push((format!("x W^T, rows over a binding, {d}"), vec![y], ins));
    }
    // [1, 3] x [3, 20001]: B's 3 rows of K span more than a binding (K too short to split)
    {
        let g = Graph::new();
        let a = g.input("a", &[1, 3], d);
        let b = g.input("b", &[3, 20_001], d);
        let y = a.matmul(&b)?;
        let ins = vec![
            ("a", uniform(&mut r, &[1, 3], d, -1.0, 1.0)),
            ("b", uniform(&mut r, &[3, 20_001], d, -1.0, 1.0)),
        ];
        out.push((format!("B's K-stride over a binding, {d}"), vec![y], ins));
    }
    Ok(out)
}

#[test]
fn gemm_larger_than_a_binding_matches_the_cpu_and_the_unwindowed_run() -> Result<()> {
    let s = seed(4300);
    let Some(base) = wgpu() else {
        return Ok(());
    };
    let blocked = base.clone().with_gemm(GemmStrategy::RegisterBlocked);
    for (x, fused) in capped() {
        for d in [DType::F32, DType::BF16, DType::F16] {
            for (case, outs, ins) in cases(d, s)? {
                let case = format!("{case}, fused={fused}");
                check_windowed(&x, &case, &outs, &ins, 8);
                let names: Vec<&str> = ins.iter().map(|(n, _)| *n).collect();
                let p = Program::compile(&outs, &names)?;
                let got = wgpu_run(&x, &case, &p, &ins);
                let whole = wgpu_run(&blocked, &case, &p, &ins);
                for (i, (g, w)) in got.iter().zip(&whole).enumerate() {
                    assert_eq!(
                        g.data.as_bytes(),
                        w.data.as_bytes(),
                        "{case}: output {i} is not bitwise the unwindowed run's"
                    );
                }
            }
        }
    }
    Ok(())
}

/// A binding too small for even a block of one row, 4 columns and 4 terms of K (with the
/// aligned window's slack): refused at load, naming the limit, never run wrong.
#[test]
fn a_gemm_without_a_fitting_blocking_is_refused() -> Result<()> {
    let Some(x) = wgpu() else {
        return Ok(());
    };
    let x = x.clone().with_max_binding(32);
    let g = Graph::new();
    let a = g.input("a", &[1, 3], DType::F32);
    let b = g.input("b", &[3, 20_000], DType::F32);
    let y = a.matmul(&b)?;
    let p = Program::compile(&[y], &["a", "b"])?;
    let msg = x
        .load(&p)
        .err()
        .expect("no blocking fits: must be refused")
        .to_string();
    assert!(msg.contains("max_storage_buffer_binding_size"), "{msg}");
    eprintln!("refused as it should be: {msg}");
    Ok(())
}
