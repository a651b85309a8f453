//! The emitter's text, checked without a plugin (so CI machines without one still
//! cover emission): an exact golden module and the forms of the fiddly ops.

use gidd_engine::op::{DotDims, ReduceOp};
use gidd_engine::{DType, Graph, Op, Result};
use gidd_xla::{emit_graph, emit_module_with, fsdp_module, Partitioner, Sharding};

#[test]
fn golden_module() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", &[2, 3], DType::F32);
    let b = g.input("b", &[2, 3], DType::F32);
    let m = emit_graph(&[a.add(&b)?.max_scalar(0.5)?], &["a", "b"])
        .map_err(gidd_engine::Error::from)?;
    let want = r#"module @gidd {
  func.func public @main(%arg0: tensor<2x3xf32>, %arg1: tensor<2x3xf32>) -> (tensor<2x3xf32>) {
    %t1 = "stablehlo.add"(%arg0, %arg1) : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
    %t2 = "stablehlo.constant"() <{value = dense<0x3F000000> : tensor<f32>}> : () -> tensor<f32>
    %t3 = "stablehlo.broadcast_in_dim"(%t2) <{broadcast_dimensions = array<i64>}> : (tensor<f32>) -> tensor<2x3xf32>
    %t4 = "stablehlo.maximum"(%t1, %t3) : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
    %t5 = "stablehlo.compare"(%t1, %t1) <{comparison_direction = #stablehlo<comparison_direction NE>, compare_type = #stablehlo<comparison_type FLOAT>}> : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xi1>
    %t6 = "stablehlo.compare"(%t3, %t3) <{comparison_direction = #stablehlo<comparison_direction NE>, compare_type = #stablehlo<comparison_type FLOAT>}> : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xi1>
    %t7 = "stablehlo.select"(%t6, %t3, %t4) : (tensor<2x3xi1>, tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
    %t8 = "stablehlo.select"(%t5, %t1, %t7) : (tensor<2x3xi1>, tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
    "func.return"(%t8) : (tensor<2x3xf32>) -> ()
  }
}
"#;
    assert_eq!(m, want, "\n{m}");
    Ok(())
}

#[test]
fn fiddly_ops_use_the_generic_forms() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", &[4, 5, 6], DType::BF16);
    let i = g.input("i", &[3], DType::I32);
    let gathered = g.apply1(Op::Gather { axis: 1 }, &[&x, &i])?;
    let back = g.apply1(
        Op::ScatterAdd {
            axis: 1,
            shape: vec![4, 5, 6],
        },
        &[&gathered, &i],
    )?;
    let s = g.apply1(
        Op::Reduce {
            op: ReduceOp::Sum,
            dims: vec![0, 2],
        },
        &[&back],
    )?;
    let d = x.dot_general(
        &x,
        DotDims {
            lhs_batch: vec![0],
            rhs_batch: vec![0],
            lhs_contract: vec![2],
            rhs_contract: vec![2],
        },
    )?;
    let m = emit_graph(&[s, d], &["x", "i"]).map_err(gidd_engine::Error::from)?;
    for want in [
        "#stablehlo.gather<offset_dims = [0, 2], collapsed_slice_dims = [1], start_index_map = [1], index_vector_dim = 1>, slice_sizes = array<i64: 4, 1, 6>",
        "#stablehlo.scatter<update_window_dims = [0, 2], inserted_window_dims = [1], scatter_dims_to_operand_dims = [1], index_vector_dim = 1>",
        "\"stablehlo.clamp\"",
        "\"stablehlo.reduce\"",
        "dimensions = array<i64: 0, 2>",
        "#stablehlo.dot<lhs_batching_dimensions = [0], rhs_batching_dimensions = [0], lhs_contracting_dimensions = [2], rhs_contracting_dimensions = [2]>",
        // bf16 products accumulate into f32
        ": (tensor<4x5x6xbf16>, tensor<4x5x6xbf16>) -> tensor<4x5x5xf32>",
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
    Ok(())
}

#[test]
fn sharding_annotations() -> Result<()> {
    let g = Graph::new();
    let w = g.input("w", &[8, 3], DType::F32);
    let p = gidd_engine::Program::compile(&[w.sum_all()?], &["w"])?;
    let sh = Sharding {
        num_partitions: 4,
        mesh: None,
        args: vec![Some("{devices=[4,1]0,1,2,3}".into())],
        results: vec![Some("{replicated}".into())],
    };
    let m = emit_module_with(&p, Some(&sh)).map_err(gidd_engine::Error::from)?;
    assert!(
        m.starts_with(
            "module @gidd attributes {mhlo.num_partitions = 4 : i32, mhlo.num_replicas = 1 : i32}"
        ),
        "{m}"
    );
    assert!(
        m.contains("%arg0: tensor<8x3xf32> {mhlo.sharding = \"{devices=[4,1]0,1,2,3}\"}"),
        "{m}"
    );
    assert!(
        m.contains("-> (tensor<f32> {mhlo.sharding = \"{replicated}\"})"),
        "{m}"
    );
    Ok(())
}

#[test]
fn fsdp_module_annotates_by_shape_for_both_partitioners() -> Result<()> {
    let g = Graph::new();
    let w = g.input("w", &[8, 3], DType::F32);
    let b = g.input("b", &[3], DType::F32);
    let w2 = w.add(&b)?;
    let p = gidd_engine::Program::compile(&[w2.sum_all()?, w2], &["w", "b"])?
        .with_aliases(&[(0, 1)])?;
    let m = fsdp_module(&p, 4, Partitioner::Gspmd).map_err(gidd_engine::Error::from)?;
    for want in [
        "%arg0: tensor<8x3xf32> {mhlo.sharding = \"{devices=[4,1]0,1,2,3}\", tf.aliasing_output = 1 : i32}",
        "%arg1: tensor<3xf32> {mhlo.sharding = \"{replicated}\"}",
        "-> (tensor<f32> {mhlo.sharding = \"{replicated}\"}, tensor<8x3xf32> {mhlo.sharding = \"{devices=[4,1]0,1,2,3}\"})",
    ] {
        assert!(m.contains(want), "gspmd: missing {want:?} in\n{m}");
    }
    let m = fsdp_module(&p, 4, Partitioner::Shardy).map_err(gidd_engine::Error::from)?;
    for want in [
        "  sdy.mesh @mesh = <[\"d\"=4]>\n",
        "%arg0: tensor<8x3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{\"d\"}, {}]>, tf.aliasing_output = 1 : i32}",
        "%arg1: tensor<3xf32> {sdy.sharding = #sdy.sharding<@mesh, [{}]>}",
        "-> (tensor<f32> {sdy.sharding = #sdy.sharding<@mesh, []>}",
    ] {
        assert!(m.contains(want), "shardy: missing {want:?} in\n{m}");
    }
    Ok(())
}
