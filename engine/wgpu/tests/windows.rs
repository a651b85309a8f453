//! Tensors larger than one storage binding (max_storage_buffer_binding_size: 128 MiB on
//! lavapipe, so a 131072 x 3072 f32 embedding needs twelve) bound in windows, against the cpu
//! executor. The executor's binding cap is lowered to 64 KiB here, so tensors of a few hundred
//! KiB take the windowed paths that a real embedding takes: elementwise ops (one dispatch per
//! window of elements), fused chains, gather (one dispatch per window of the source). GEMM
//! (windows_gemm.rs), reductions, scatter-add and the row ops (windows_rows.rs) have their
//! own tests, as do views and concatenation (windows_views.rs) and attention
//! (windows_attention.rs).

mod common;

use common::*;
use gidd_engine::op::AttnSpec;
use gidd_engine::{api, DType, Executor, Graph, HostTensor, Program, Result};

#[test]
fn elementwise_and_chains_over_windows_match_the_cpu() -> Result<()> {
    let s = seed(4100);
    // 100_003 f32 = 391 KiB: seven windows of 64 KiB; odd, so the last window is partial
    let n = 100_003;
    for (x, fused) in capped() {
        let g = Graph::new();
        let a = g.input("a", &[n], DType::F32);
        let b = g.input("b", &[n], DType::F32);
        let lr = g.input("lr", &[1], DType::F32);
        // an optimizer-like chain: a scalar broadcast (its operand bound whole) among windows
        let step = a.mul(&b)?.exp()?.mul(&lr.broadcast_to(&[n])?)?;
        let upd = a.sub(&step)?;
        let as_bf16 = upd.to(DType::BF16)?.add(&b.to(DType::BF16)?)?;
        let ids = a.to(DType::I64)?;
        let mut r = rng(s);
        let ins = [
            ("a", uniform(&mut r, &[n], DType::F32, -3.0, 3.0)),
            ("b", uniform(&mut r, &[n], DType::F32, -1.0, 1.0)),
            ("lr", uniform(&mut r, &[1], DType::F32, 0.1, 0.2)),
        ];
        let case = format!("elementwise over windows, fused={fused}");
        check_windowed(&x, &case, &[upd, as_bf16, ids], &ins, 7);
    }
    Ok(())
}

#[test]
fn gather_from_a_table_larger_than_a_binding_matches_the_cpu() -> Result<()> {
    let s = seed(4200);
    // a [3001, 37] f32 table is 434 KiB: seven windows; 300 rows of 37 fit one binding
    let (v, d, m) = (3001, 37, 300);
    for (x, fused) in capped() {
        let g = Graph::new();
        let table = g.input("table", &[v, d], DType::F32);
        let ids = g.input("ids", &[m], DType::I32);
        let rows = table.gather(0, &ids)?;
        let mut r = rng(s);
        // the first and last rows included: both ends of the windows
        let mut id = ints(&mut r, &[m], DType::I32, 0, v as i64).to_f64_vec();
        id[0] = 0.0;
        id[1] = (v - 1) as f64;
        let id = HostTensor::i32(vec![m], id.iter().map(|&i| i as i32).collect())?;
        let ins = [
            ("table", uniform(&mut r, &[v, d], DType::F32, -1.0, 1.0)),
            ("ids", id),
        ];
        let case = format!("gather over windows, fused={fused}");
        check_windowed(&x, &case, &[rows], &ins, 7);
    }
    Ok(())
}

/// Attention splits its tensors by heads, query blocks and key blocks, never one row of the
/// mask: a mask row larger than a binding (17000 keys, 68 KiB) is refused at load, naming
/// the op and the limit (never run wrong). Uploads above a binding are fine: only what a
/// kernel binds must fit.
#[test]
fn what_no_window_holds_is_refused_naming_the_op_and_the_limit() -> Result<()> {
    let Some((x, _)) = capped().into_iter().next() else {
        return Ok(());
    };
    let n = 100_003;
    let big = HostTensor::f32(vec![n], vec![1.0; n])?;
    let b = x.upload(&big)?;
    assert_eq!(x.download(&b)?.data.as_bytes(), big.data.as_bytes());
    let (bs, h, lq, lk, d) = (1, 1, 3, 17_000, 2);
    let g = Graph::new();
    let q = g.input("q", &[bs, h, lq, d], DType::F32);
    let k = g.input("k", &[bs, h, lk, d], DType::F32);
    let v = g.input("v", &[bs, h, lk, d], DType::F32);
    let m = g.input("m", &[bs, lq, lk], DType::Bool);
    let spec = AttnSpec {
        scale: 0.25,
        softcap: None,
    };
    let o = api::attention(&q, &k, &v, &m, spec)?;
    let p = Program::compile(&[o], &["q", "k", "v", "m"])?;
    let e = x
        .load(&p)
        .err()
        .expect("a 68 KiB mask row must be refused under a 64 KiB cap");
    let msg = e.to_string();
    assert!(
        msg.contains("attention")
            && msg.contains("mask")
            && msg.contains("max_storage_buffer_binding_size"),
        "{msg}"
    );
    eprintln!("refused as it should be: {msg}");
    Ok(())
}
