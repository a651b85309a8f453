//! The shape-changing primitives on wgpu equal the cpu executor: movement (broadcast,
//! transpose, slice, concatenate), dot_general (batched, every transpose, layouts that need a
//! copy first), reduce (sum and max over any dims, long rows, every dtype) and gather /
//! scatter-add (clamped indices of every integer dtype). Random inputs, seeds printed.

mod common;

use common::{check, check_on, ints, rng, seed, uniform, wgpu, TOL};
use gidd_engine::op::{DotDims, ReduceOp};
use gidd_engine::{DType, Graph, HostTensor, Op, Result};
use gidd_wgpu::GemmStrategy;

const ALL: [DType; 7] = [
    DType::F32,
    DType::BF16,
    DType::F16,
    DType::I32,
    DType::U32,
    DType::I64,
    DType::Bool,
];

fn random(seed: u64, shape: &[usize], d: DType) -> HostTensor {
    let mut r = rng(seed);
    match d {
        DType::F32 | DType::BF16 | DType::F16 => uniform(&mut r, shape, d, -3.0, 3.0),
        DType::Bool => ints(&mut r, shape, d, 0, 2),
        DType::U32 => ints(&mut r, shape, d, 0, 1000),
        _ => ints(&mut r, shape, d, -1000, 1000),
    }
}

#[test]
fn movement() -> Result<()> {
    let s = seed(700);
    for (i, d) in ALL.into_iter().enumerate() {
        let g = Graph::new();
        let x = g.input("x", &[3, 1, 5], d);
        let y = g.input("y", &[3, 4, 5], d);
        let z = g.input("z", &[2, 3, 1, 4, 1, 3, 2, 2, 3], d);
        let outs = vec![
            g.apply1(
                Op::BroadcastInDim {
                    shape: vec![2, 3, 4, 5],
                    dims: vec![1, 2, 3],
                },
                &[&x],
            )?,
            g.apply1(
                Op::BroadcastInDim {
                    shape: vec![3, 7, 5, 2],
                    dims: vec![0, 1, 2],
                },
                &[&x],
            )?,
            g.apply1(Op::Reshape { shape: vec![5, 3] }, &[&x])?,
            g.apply1(Op::Reshape { shape: vec![60] }, &[&y])?,
            g.apply1(
                Op::Transpose {
                    perm: vec![2, 0, 1],
                },
                &[&y],
            )?,
            g.apply1(
                Op::Transpose {
                    perm: vec![1, 2, 0],
                },
                &[&y],
            )?,
            // nine dims, two of size 1: a transpose that needs most of the kernel's rank
            g.apply1(
                Op::Transpose {
                    perm: vec![8, 0, 2, 6, 4, 1, 3, 5, 7],
                },
                &[&z],
            )?,
            g.apply1(
                Op::Slice {
                    start: vec![1, 1, 0],
                    limit: vec![3, 4, 3],
                },
                &[&y],
            )?,
            g.apply1(
                Op::Slice {
                    start: vec![0, 2, 4],
                    limit: vec![3, 2, 5],
                },
                &[&y],
            )?,
            g.apply1(Op::Concatenate { dim: 1 }, &[&x, &y, &x])?,
            g.apply1(Op::Concatenate { dim: 0 }, &[&y, &y])?,
            g.apply1(
                Op::Concatenate { dim: 2 },
                &[&y, &g.splat(1.0, &[3, 4, 2], d)],
            )?,
        ];
        let ins = [
            ("x", random(s + i as u64, &[3, 1, 5], d)),
            ("y", random(s + 10 + i as u64, &[3, 4, 5], d)),
            (
                "z",
                random(s + 20 + i as u64, &[2, 3, 1, 4, 1, 3, 2, 2, 3], d),
            ),
        ];
        if !check(&format!("movement {d}"), &outs, &ins, TOL) {
            return Ok(());
        }
    }
    Ok(())
}

fn dims(lb: &[usize], rb: &[usize], lc: &[usize], rc: &[usize]) -> DotDims {
    DotDims {
        lhs_batch: lb.to_vec(),
        rhs_batch: rb.to_vec(),
        lhs_contract: lc.to_vec(),
        rhs_contract: rc.to_vec(),
    }
}

#[test]
fn dot_general() -> Result<()> {
    let cases: Vec<(Vec<usize>, Vec<usize>, DotDims)> = vec![
        (vec![7, 13], vec![13, 5], dims(&[], &[], &[1], &[0])),
        (vec![13, 7], vec![5, 13], dims(&[], &[], &[0], &[1])),
        (vec![3, 7, 13], vec![3, 13, 5], dims(&[0], &[0], &[2], &[1])),
        (
            vec![2, 3, 7, 9],
            vec![2, 3, 5, 9],
            dims(&[0, 1], &[0, 1], &[3], &[3]),
        ),
        (
            vec![4, 6, 3],
            vec![6, 3, 5],
            dims(&[], &[], &[1, 2], &[0, 1]),
        ),
        (vec![7], vec![5], dims(&[], &[], &[], &[])),
        (vec![9], vec![9], dims(&[], &[], &[0], &[0])),
        // batch dim of the rhs in the middle, contraction first: copied before the GEMM
        (vec![5, 4, 3], vec![3, 5, 2], dims(&[0], &[1], &[2], &[0])),
        // contraction dims out of order: a copy too
        (
            vec![4, 6, 3],
            vec![3, 6, 5],
            dims(&[], &[], &[1, 2], &[1, 0]),
        ),
        // tiles with ragged edges on every side, and a long k
        (
            vec![2, 67, 131],
            vec![2, 131, 70],
            dims(&[0], &[0], &[2], &[1]),
        ),
        (vec![130, 300], vec![65, 300], dims(&[], &[], &[1], &[1])),
        (vec![300, 1], vec![300, 129], dims(&[], &[], &[0], &[0])),
    ];
    let s = seed(800);
    let Some(x) = wgpu() else { return Ok(()) };
    // both GEMM kernels, whichever this adapter would pick
    for strategy in [GemmStrategy::TiledSmem, GemmStrategy::RegisterBlocked] {
        let x = x.clone().with_gemm(strategy);
        for d in [DType::F32, DType::BF16, DType::F16] {
            for (i, (ls, rs, dd)) in cases.iter().enumerate() {
                let g = Graph::new();
                let a = g.input("a", ls, d);
                let b = g.input("b", rs, d);
                let out = g.apply1(Op::DotGeneral(dd.clone()), &[&a, &b])?;
                let ins = [
                    ("a", random(s + i as u64, ls, d)),
                    ("b", random(s + 20 + i as u64, rs, d)),
                ];
                let case = format!("dot_general {strategy:?} {d} {ls:?}x{rs:?} {dd:?}");
                check_on(&x, &case, &[out], &ins, TOL);
            }
        }
    }
    Ok(())
}

#[test]
fn reduce() -> Result<()> {
    let dims_list: [&[usize]; 7] = [&[0], &[1], &[2], &[0, 2], &[0, 1, 2], &[], &[1, 2]];
    let s = seed(900);
    for (i, d) in ALL.into_iter().enumerate() {
        for shape in [[4, 7, 33], [3, 5, 700]] {
            let g = Graph::new();
            let x = g.input("x", &shape, d);
            let mut outs = vec![];
            for ds in dims_list {
                for op in [ReduceOp::Sum, ReduceOp::Max] {
                    outs.push(g.apply1(
                        Op::Reduce {
                            op,
                            dims: ds.to_vec(),
                        },
                        &[&x],
                    )?);
                }
            }
            let ins = [("x", random(s + i as u64, &shape, d))];
            if !check(&format!("reduce {d} {shape:?}"), &outs, &ins, TOL) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A long f32 sum whose terms cancel: the compensated sums stay near the cpu's f64 sum.
#[test]
fn reduce_long_cancelling_sum() -> Result<()> {
    let s = seed(950);
    let n = 200_000;
    let mut r = rng(s);
    let mut v: Vec<f32> = uniform(&mut r, &[n], DType::F32, 0.0, 1000.0)
        .to_f64_vec()
        .iter()
        .map(|&x| x as f32)
        .collect();
    for k in 0..n / 2 {
        v[n / 2 + k] = -v[k] * (1.0 + 1e-4);
    }
    let g = Graph::new();
    let x = g.input("x", &[n], DType::F32);
    let x2 = g.input("x2", &[n / 1000, 1000], DType::F32);
    let outs = vec![
        g.apply1(
            Op::Reduce {
                op: ReduceOp::Sum,
                dims: vec![0],
            },
            &[&x],
        )?,
        g.apply1(
            Op::Reduce {
                op: ReduceOp::Sum,
                dims: vec![0],
            },
            &[&x2],
        )?,
    ];
    let t = HostTensor::f32(vec![n], v.clone())?;
    let t2 = HostTensor::f32(vec![n / 1000, 1000], v)?;
    check("long cancelling sums", &outs, &[("x", t), ("x2", t2)], TOL);
    Ok(())
}

#[test]
fn gather_scatter_add() -> Result<()> {
    // (x shape, axis, index shape)
    let cases: [(&[usize], usize, &[usize]); 6] = [
        (&[11, 6], 0, &[4, 3]),
        (&[3, 9, 5], 1, &[7]),
        (&[3, 4, 8], 2, &[2, 5]),
        (&[10], 0, &[]),
        (&[5, 6], 1, &[3, 2, 2]),
        // many updates into few rows: contended atomics
        (&[3, 64], 0, &[500]),
    ];
    let mut s = seed(1000);
    for (xs, axis, is) in cases {
        for d in ALL {
            for id in [DType::I32, DType::U32, DType::I64] {
                s += 1;
                let g = Graph::new();
                let x = g.input("x", xs, d);
                let idx = g.input("idx", is, id);
                let gathered = g.apply1(Op::Gather { axis }, &[&x, &idx])?;
                let u = g.input("u", gathered.shape(), d);
                let scattered = g.apply1(
                    Op::ScatterAdd {
                        axis,
                        shape: xs.to_vec(),
                    },
                    &[&u, &idx],
                )?;
                // indices include out-of-range ones on both sides (clamped)
                let len = xs[axis] as i64;
                let lo = if id == DType::U32 { 0 } else { -2 };
                // small integer updates: every order of additions gives the same sums
                let upd = match d {
                    DType::F32 | DType::BF16 | DType::F16 => {
                        ints(&mut rng(s + 99), gathered.shape(), d, -8, 8)
                    }
                    _ => random(s + 99, gathered.shape(), d),
                };
                let ins = [
                    ("x", random(s, xs, d)),
                    ("idx", ints(&mut rng(s + 50), is, id, lo, len + 3)),
                    ("u", upd),
                ];
                let case = format!("gather/scatter {d} x{xs:?} axis {axis} idx {id}{is:?}");
                if !check(&case, &[gathered, scattered], &ins, TOL) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// f32 scatter-add of arbitrary values: the atomic order may differ from the cpu's index
/// order, so the sums agree to rounding.
#[test]
fn scatter_add_float_values() -> Result<()> {
    let s = seed(1100);
    let g = Graph::new();
    let u = g.input("u", &[2, 300, 17], DType::F32);
    let idx = g.input("idx", &[300], DType::I32);
    let out = g.apply1(
        Op::ScatterAdd {
            axis: 1,
            shape: vec![2, 9, 17],
        },
        &[&u, &idx],
    )?;
    let ins = [
        (
            "u",
            uniform(&mut rng(s), &[2, 300, 17], DType::F32, -1.0, 1.0),
        ),
        ("idx", ints(&mut rng(s + 1), &[300], DType::I32, 0, 9)),
    ];
    check("scatter_add f32 values", &[out], &ins, TOL);
    Ok(())
}

/// Copies with long rows and more rows than one grid dimension holds (the flat index then
/// spills into the grid's y), of one- and two-word elements.
#[test]
fn long_row_copies() -> Result<()> {
    let s = seed(1200);
    for (i, d) in [DType::F32, DType::I64].into_iter().enumerate() {
        let g = Graph::new();
        let x = g.input("x", &[7, 5, 40], d);
        let v = g.input("v", &[33], d);
        let outs = vec![
            g.apply1(
                Op::Transpose {
                    perm: vec![1, 0, 2],
                },
                &[&x],
            )?,
            g.apply1(
                Op::Slice {
                    start: vec![1, 0, 3],
                    limit: vec![6, 5, 40],
                },
                &[&x],
            )?,
            g.apply1(Op::Concatenate { dim: 2 }, &[&x, &x])?,
            // 70000 rows: more than 65535
            g.apply1(
                Op::BroadcastInDim {
                    shape: vec![70_000, 33],
                    dims: vec![1],
                },
                &[&v],
            )?,
        ];
        let ins = [
            ("x", random(s + i as u64, &[7, 5, 40], d)),
            ("v", random(s + 10 + i as u64, &[33], d)),
        ];
        if !check(&format!("long-row copies {d}"), &outs, &ins, TOL) {
            return Ok(());
        }
    }
    Ok(())
}
