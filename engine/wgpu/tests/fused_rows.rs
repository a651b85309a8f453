//! softmax, log_softmax, softmax_bwd, rms_norm, rms_norm_bwd, rope and rope_bwd run as their
//! WGSL kernels (asserted on the loaded program's dispatches, so a silent fallback to the
//! decomposition fails) and equal the cpu executor's fused kernels: random odd shapes, edge
//! values, gradients through autograd, and bf16 programs (which reach these ops as f32:
//! infer admits f32 or f64 only, and the api converts around them).

mod common;

use common::{check_kernels, rng, seed, uniform, TOL};
use gidd_engine::{grad, DType, Graph, HostTensor, Op, Result, Tensor};

/// (rows, n): one row, odd rows, a workgroup's width and around it, rows longer than 16
/// workgroups.
const SHAPES: [(usize, usize); 8] = [
    (1, 1),
    (3, 7),
    (257, 255),
    (3, 256),
    (2, 1000),
    (1, 4097),
    (257, 1),
    (5, 257),
];

fn softmax_outs(g: &Graph, x: &Tensor, dy: &Tensor) -> Result<Vec<Tensor>> {
    let y = g.apply1(Op::Softmax, &[x])?;
    let ly = g.apply1(Op::LogSoftmax, &[x])?;
    let dx = g.apply1(Op::SoftmaxBwd, &[&y, dy])?;
    Ok(vec![y, ly, dx])
}

const SOFTMAX_ENTRIES: [&str; 2] = ["softmax_fwd", "softmax_bwd"];

#[test]
fn softmax_family_matches_cpu() -> Result<()> {
    let mut s = seed(9100);
    let mut worst = 0f64;
    for (rows, n) in SHAPES {
        s += 1;
        let mut r = rng(s);
        let g = Graph::new();
        let x = g.input("x", &[rows, n], DType::F32);
        let dy = g.input("dy", &[rows, n], DType::F32);
        let outs = softmax_outs(&g, &x, &dy)?;
        let ins = [
            ("x", uniform(&mut r, &[rows, n], DType::F32, -6.0, 6.0)),
            ("dy", uniform(&mut r, &[rows, n], DType::F32, -1.0, 1.0)),
        ];
        let case = format!("softmax [{rows}, {n}]");
        let Some(e) = check_kernels(&case, &outs, &ins, TOL, &SOFTMAX_ENTRIES, 3) else {
            return Ok(());
        };
        worst = e.into_iter().fold(worst, f64::max);
    }
    // a rank-3 operand: rows are every leading index
    let g = Graph::new();
    let x = g.input("x", &[2, 3, 129], DType::F32);
    let dy = g.input("dy", &[2, 3, 129], DType::F32);
    let outs = softmax_outs(&g, &x, &dy)?;
    let mut r = rng(s + 1);
    let ins = [
        ("x", uniform(&mut r, &[2, 3, 129], DType::F32, -6.0, 6.0)),
        ("dy", uniform(&mut r, &[2, 3, 129], DType::F32, -1.0, 1.0)),
    ];
    if let Some(e) = check_kernels("softmax [2, 3, 129]", &outs, &ins, TOL, &SOFTMAX_ENTRIES, 3) {
        worst = e.into_iter().fold(worst, f64::max);
    }
    eprintln!("softmax family: worst scaled error {worst:.2e}");
    Ok(())
}

/// Rows of +-80, equal values, -inf entries, f32::MIN and -1e30 beside finite values, and a
/// row entirely -inf (NaN on both, as the math says).
#[test]
fn softmax_edge_values_match_cpu() -> Result<()> {
    let n = 300;
    let mut r = rng(seed(9200));
    let big = uniform(&mut r, &[n], DType::F32, -80.0, 80.0).to_f64_vec();
    let mut rows: Vec<Vec<f32>> = vec![
        big.iter().map(|&v| v as f32).collect(),
        vec![5.0; n],
        vec![-80.0; n],
        vec![80.0; n],
    ];
    let mut inf = vec![f32::NEG_INFINITY; n];
    inf[17] = 2.0;
    inf[299] = -3.0;
    rows.push(inf);
    let mut mins: Vec<f32> = (0..n)
        .map(|j| if j % 3 == 0 { f32::MIN } else { -1e30 })
        .collect();
    mins[5] = 0.5;
    mins[6] = 0.25;
    rows.push(mins);
    rows.push(vec![f32::NEG_INFINITY; n]);
    let nr = rows.len();
    let flat: Vec<f32> = rows.concat();
    let g = Graph::new();
    let x = g.input("x", &[nr, n], DType::F32);
    let dy = g.input("dy", &[nr, n], DType::F32);
    let outs = softmax_outs(&g, &x, &dy)?;
    let ins = [
        ("x", HostTensor::f32(vec![nr, n], flat)?),
        ("dy", uniform(&mut r, &[nr, n], DType::F32, -1.0, 1.0)),
    ];
    check_kernels("softmax edge values", &outs, &ins, TOL, &SOFTMAX_ENTRIES, 3);
    Ok(())
}

fn rms_outs(g: &Graph, x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<Vec<Tensor>> {
    let f = g.apply(Op::RmsNorm { eps: 1e-6 }, &[x, w])?;
    let b = g.apply(Op::RmsNormBwd, &[x, w, &f[1], dy])?;
    Ok(vec![f[0].clone(), f[1].clone(), b[0].clone(), b[1].clone()])
}

const RMS_ENTRIES: [&str; 4] = [
    "rms_norm_fwd",
    "rms_norm_bwd",
    "rms_norm_dw_part",
    "rms_norm_dw_finish",
];

#[test]
fn rms_norm_forward_and_backward_match_cpu() -> Result<()> {
    let mut s = seed(9300);
    let mut worst = 0f64;
    let mut shapes = SHAPES.to_vec();
    // more rows than one dw block of 32, and more than 1024 blocks' worth of rows
    shapes.push((1100, 9));
    shapes.push((40000, 3));
    for (rows, n) in shapes {
        s += 1;
        let mut r = rng(s);
        let g = Graph::new();
        let x = g.input("x", &[rows, n], DType::F32);
        let w = g.input("w", &[n], DType::F32);
        let dy = g.input("dy", &[rows, n], DType::F32);
        let mut outs = rms_outs(&g, &x, &w, &dy)?;
        if n == 1 {
            // dx = r g dy eps / (x^2 + eps): below an ulp of its terms, rounding noise on
            // both executors
            outs.remove(2);
        }
        let ins = [
            ("x", uniform(&mut r, &[rows, n], DType::F32, -3.0, 3.0)),
            ("w", uniform(&mut r, &[n], DType::F32, -0.5, 0.5)),
            ("dy", uniform(&mut r, &[rows, n], DType::F32, -1.0, 1.0)),
        ];
        let case = format!("rms_norm [{rows}, {n}]");
        let Some(e) = check_kernels(&case, &outs, &ins, TOL, &RMS_ENTRIES, 4) else {
            return Ok(());
        };
        worst = e.into_iter().fold(worst, f64::max);
    }
    eprintln!("rms_norm: worst scaled error {worst:.2e}");
    Ok(())
}

/// Rows of +-80, of equal values, and of zeros (rstd = eps^-1/2).
#[test]
fn rms_norm_edge_values_match_cpu() -> Result<()> {
    let n = 333;
    let mut r = rng(seed(9400));
    let mut flat: Vec<f32> = uniform(&mut r, &[n], DType::F32, -80.0, 80.0)
        .to_f64_vec()
        .iter()
        .map(|&v| v as f32)
        .collect();
    flat.extend(vec![-80.0; n]);
    flat.extend(vec![0.75; n]);
    flat.extend(vec![0.0; n]);
    let g = Graph::new();
    let x = g.input("x", &[4, n], DType::F32);
    let w = g.input("w", &[n], DType::F32);
    let dy = g.input("dy", &[4, n], DType::F32);
    let outs = rms_outs(&g, &x, &w, &dy)?;
    let ins = [
        ("x", HostTensor::f32(vec![4, n], flat)?),
        ("w", uniform(&mut r, &[n], DType::F32, -0.5, 0.5)),
        ("dy", uniform(&mut r, &[4, n], DType::F32, -1.0, 1.0)),
    ];
    check_kernels("rms_norm edge values", &outs, &ins, TOL, &RMS_ENTRIES, 4);
    Ok(())
}

#[test]
fn rope_forward_and_backward_match_cpu() -> Result<()> {
    let mut s = seed(9500);
    let mut worst = 0f64;
    for (rows, heads, d) in [
        (1, 1, 2),
        (3, 5, 8),
        (257, 3, 64),
        (7, 2, 130),
        (2, 1, 4098),
    ] {
        s += 1;
        let mut r = rng(s);
        let g = Graph::new();
        let x = g.input("x", &[rows, heads, d], DType::F32);
        let c = g.input("cos", &[rows, d / 2], DType::F32);
        let sn = g.input("sin", &[rows, d / 2], DType::F32);
        let dy = g.input("dy", &[rows, heads, d], DType::F32);
        let outs = vec![
            g.apply1(Op::Rope, &[&x, &c, &sn])?,
            g.apply1(Op::RopeBwd, &[&dy, &c, &sn])?,
        ];
        let ins = [
            (
                "x",
                uniform(&mut r, &[rows, heads, d], DType::F32, -80.0, 80.0),
            ),
            (
                "cos",
                uniform(&mut r, &[rows, d / 2], DType::F32, -1.0, 1.0),
            ),
            (
                "sin",
                uniform(&mut r, &[rows, d / 2], DType::F32, -1.0, 1.0),
            ),
            (
                "dy",
                uniform(&mut r, &[rows, heads, d], DType::F32, -1.0, 1.0),
            ),
        ];
        let case = format!("rope [{rows}, {heads}, {d}]");
        let Some(e) = check_kernels(&case, &outs, &ins, TOL, &["rope"], 2) else {
            return Ok(());
        };
        worst = e.into_iter().fold(worst, f64::max);
    }
    eprintln!("rope: worst scaled error {worst:.2e}");
    Ok(())
}

/// A composite of every op, differentiated by the engine's autograd (which emits
/// softmax_bwd, rms_norm_bwd and rope_bwd), in f32 and as a bf16 program.
#[test]
fn gradients_through_the_row_ops_match_cpu() -> Result<()> {
    let s = seed(9600);
    for d in [DType::F32, DType::BF16, DType::F16] {
        let mut r = rng(s);
        let (b, l, h, hd) = (2, 5, 3, 10);
        let g = Graph::new();
        let x = g.input("x", &[b, l, h, hd], d);
        let w = g.input("w", &[hd], d);
        let cos = g.input("cos", &[b, l, hd / 2], d);
        let sin = g.input("sin", &[b, l, hd / 2], d);
        let c = g.input("c", &[b * l, h * hd], DType::F32);
        let y = x.rms_norm(&w, 1e-6)?.rope(&cos, &sin)?;
        let logits = y.reshape(&[b * l, h * hd])?.to(DType::F32)?;
        let lsm = logits.log_softmax()?;
        let sm = logits.softmax()?;
        let loss = lsm.mul(&c)?.sum_all()?.add(&sm.mul(&c)?.sum_all()?)?;
        let grads = grad(&loss, &[x.clone(), w.clone()])?;
        let mut outs = vec![loss, lsm, sm, y];
        outs.extend(grads);
        let ins = [
            ("x", uniform(&mut r, &[b, l, h, hd], d, -3.0, 3.0)),
            ("w", uniform(&mut r, &[hd], d, -0.5, 0.5)),
            ("cos", uniform(&mut r, &[b, l, hd / 2], d, -1.0, 1.0)),
            ("sin", uniform(&mut r, &[b, l, hd / 2], d, -1.0, 1.0)),
            (
                "c",
                uniform(&mut r, &[b * l, h * hd], DType::F32, -1.0, 1.0),
            ),
        ];
        let entries = [
            "softmax_fwd",
            "softmax_bwd",
            "rms_norm_fwd",
            "rms_norm_bwd",
            "rms_norm_dw_finish",
            "rope",
        ];
        let case = format!("row ops and gradients, {d} program");
        if check_kernels(&case, &outs, &ins, TOL, &entries, 60).is_none() {
            return Ok(());
        }
    }
    Ok(())
}
