//! Reductions, scatter-add, gather over packed bf16 and the fused row ops (softmax,
//! log-softmax, rms_norm, RoPE, the GIDD diffusion KL, forward and backward) over values
//! larger than one storage binding (capped at 64 KiB: common::CAP), against the cpu
//! executor: windows of rows (tokens) where the rows are the outer dim, f32 partials per
//! window where a reduced dim is, windows of the output and of the updates for scatter-add.
//! Random odd shapes, f32 and bf16, values and gradients through autograd.

mod common;

use common::*;
use gidd_engine::api;
use gidd_engine::op::MarginalSpec;
use gidd_engine::{grad, DType, Graph, HostTensor, Result};

#[test]
fn reductions_over_windows_match_the_cpu() -> Result<()> {
    let s = seed(4500);
    // [301, 257] f32 is 302 KiB: rows (sum over the last dim: the rows kernel), partials
    // (sum / max over the first), everything (partials of one run); [301, 5, 37]: a middle
    // dim (windows of the outer rows), the outer and inner dims (partials, kept middle)
    let (a, b) = (301, 257);
    for (x, fused) in capped() {
        for d in [DType::F32, DType::BF16, DType::F16] {
            let mut r = rng(s);
            let g = Graph::new();
            let t = g.input("t", &[a, b], d);
            let t3 = g.input("t3", &[301, 5, 37], d);
            let outs = vec![
                t.sum(&[1], false)?,
                t.max(&[1], true)?,
                t.sum(&[0], false)?,
                t.max(&[0], false)?,
                t.sum_all()?,
                t3.sum(&[1], false)?,
                t3.sum(&[0, 2], false)?,
            ];
            let ins = [
                ("t", uniform(&mut r, &[a, b], d, -2.0, 2.0)),
                ("t3", uniform(&mut r, &[301, 5, 37], d, -2.0, 2.0)),
            ];
            check_windowed(&x, &format!("reduce, {d}, fused={fused}"), &outs, &ins, 14);
        }
        // integers: i64 sums, i32 maxima, and i32 / u32 sums over the windowed dim (exact
        // i64 partials, saturated once): a window's 63 rows of `hi` sum below i32::MAX while
        // its columns' totals saturate; `mix` (hi, then -hi from row 150) passes i32::MAX
        // on the way to a small total
        let mut r = rng(s + 1);
        let g = Graph::new();
        let l = g.input("l", &[301, 67], DType::I64);
        let i = g.input("i", &[301, 257], DType::I32);
        let hi = g.input("hi", &[301, 257], DType::I32);
        let u = g.input("u", &[301, 257], DType::U32);
        let mix = g.input("mix", &[301, 257], DType::I32);
        let outs = vec![
            l.sum(&[0], false)?,
            l.sum(&[1], false)?,
            i.max(&[0], false)?,
            i.sum(&[0], false)?,
            i.sum_all()?,
            hi.sum(&[0], false)?,
            hi.neg()?.sum_all()?,
            mix.sum(&[0], false)?,
            u.sum(&[0], false)?,
        ];
        let hv = ints(&mut r, &[301, 257], DType::I32, 1 << 23, 1 << 25);
        let mv: Vec<i32> = (hv.to_f64_vec().iter().enumerate())
            .map(|(k, &x)| if k / 257 < 150 { x as i32 } else { -(x as i32) })
            .collect();
        let ins = [
            ("l", ints(&mut r, &[301, 67], DType::I64, -1 << 40, 1 << 40)),
            ("i", ints(&mut r, &[301, 257], DType::I32, -1000, 1000)),
            ("hi", hv),
            ("u", ints(&mut r, &[301, 257], DType::U32, 1 << 24, 1 << 25)),
            ("mix", HostTensor::i32(vec![301, 257], mv)?),
        ];
        check_windowed(
            &x,
            &format!("integer reduce, fused={fused}"),
            &outs,
            &ins,
            6,
        );
    }
    Ok(())
}

/// The embedding's backward: scatter-add of [m, d] rows into a [v, d] table larger than a
/// binding (windows of the output), and of updates larger than one (windows of both); the
/// bf16 table summed in f32 and rounded once, the bf16 updates read packed.
#[test]
fn scatter_add_over_windows_matches_the_cpu() -> Result<()> {
    let s = seed(4600);
    for (x, fused) in capped() {
        for d in [DType::F32, DType::BF16, DType::F16] {
            let mut r = rng(s);
            let (v, dm) = (3001, 37);
            for m in [300, 1999] {
                let g = Graph::new();
                let u = g.input("u", &[m, dm], d);
                let ids = g.input("ids", &[m], DType::I32);
                let t = u.scatter_add(0, &ids, &[v, dm])?;
                let mut id = ints(&mut r, &[m], DType::I32, 0, v as i64).to_f64_vec();
                // both ends of the table, and repeats (atomic adds to one row)
                id[0] = 0.0;
                id[1] = (v - 1) as f64;
                id[2] = id[1];
                let id = HostTensor::i32(vec![m], id.iter().map(|&i| i as i32).collect())?;
                let ins = [("u", uniform(&mut r, &[m, dm], d, -1.0, 1.0)), ("ids", id)];
                let case = format!("scatter_add of {m} rows, {d}, fused={fused}");
                check_windowed(&x, &case, &[t], &ins, 8);
            }
        }
    }
    Ok(())
}

/// gather from a packed bf16 table larger than a binding (read in place, no unpacking),
/// odd row width so rows start mid-word, and its gradient (scatter-add) in one program.
#[test]
fn bf16_embedding_gather_and_gradient_over_windows_match_the_cpu() -> Result<()> {
    let s = seed(4700);
    let (v, dm, m) = (3001, 37, 301);
    for (x, fused) in capped() {
        let mut r = rng(s);
        let g = Graph::new();
        let table = g.input("table", &[v, dm], DType::BF16);
        let ids = g.input("ids", &[m], DType::I32);
        let c = g.input("c", &[m, dm], DType::F32);
        let rows = table.gather(0, &ids)?;
        let loss = rows.to(DType::F32)?.mul(&c)?.sum_all()?;
        let gt = grad(&loss, std::slice::from_ref(&table))?;
        let mut id = ints(&mut r, &[m], DType::I32, 0, v as i64).to_f64_vec();
        id[0] = 0.0;
        id[1] = (v - 1) as f64;
        let id = HostTensor::i32(vec![m], id.iter().map(|&i| i as i32).collect())?;
        let ins = [
            ("table", uniform(&mut r, &[v, dm], DType::BF16, -1.0, 1.0)),
            ("ids", id),
            ("c", uniform(&mut r, &[m, dm], DType::F32, -1.0, 1.0)),
        ];
        let case = format!("bf16 gather and its gradient, fused={fused}");
        check_windowed(&x, &case, &[rows, loss, gt[0].clone()], &ins, 8);
    }
    Ok(())
}

/// softmax, log-softmax, rms_norm and RoPE over rows larger than a binding, with their
/// backward through autograd (softmax_bwd, rms_norm_bwd in windows of whole dw blocks,
/// rope_bwd), in f32 and as bf16 and f16 programs. log-softmax's gradient is left out: autograd
/// builds it from a row sum broadcast back over the rows, a positional view that the
/// generated elementwise kernels do not window (refused at load, naming the limit).
#[test]
fn row_ops_over_windows_match_the_cpu() -> Result<()> {
    let s = seed(4800);
    for (x, fused) in capped() {
        for d in [DType::F32, DType::BF16, DType::F16] {
            let mut r = rng(s);
            // x [b, l, h, hd] = [3, 67, 5, 26]: 201 rows of 130 f32 (102 KiB)
            let (b, l, h, hd) = (3, 67, 5, 26);
            let g = Graph::new();
            let xs = g.input("x", &[b, l, h, hd], d);
            let w = g.input("w", &[hd], d);
            let cos = g.input("cos", &[b, l, hd / 2], d);
            let sin = g.input("sin", &[b, l, hd / 2], d);
            let c = g.input("c", &[b * l, h * hd], DType::F32);
            let y = xs.rms_norm(&w, 1e-6)?.rope(&cos, &sin)?;
            let logits = y.reshape(&[b * l, h * hd])?.to(DType::F32)?;
            let lsm = logits.log_softmax()?;
            let sm = logits.softmax()?;
            let loss = sm.mul(&c)?.sum_all()?;
            let grads = grad(&loss, &[xs.clone(), w.clone()])?;
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
            let case = format!("row ops and gradients over windows, {d}, fused={fused}");
            check_windowed_tol(&x, &case, &outs, &ins, 20, program_tol(d));
        }
    }
    Ok(())
}

/// The GIDD diffusion KL and its backward over logits larger than a binding (windows of
/// tokens; the per-token ids, log-SNRs and results in the same windows).
#[test]
fn diffusion_kl_over_windows_matches_the_cpu() -> Result<()> {
    let s = seed(4900);
    let (b, l, v) = (3, 41, 257);
    for (x, fused) in capped() {
        for d in [DType::F32, DType::BF16, DType::F16] {
            let mut r = rng(s);
            let g = Graph::new();
            let lg = g.input("logits", &[b, l, v], d);
            let z = g.input("z", &[b, l], DType::I32);
            let xi = g.input("x", &[b, l], DType::I32);
            let ls = g.input("l", &[b, l], DType::F32);
            let sp = MarginalSpec {
                mask_id: 4,
                min_log_snr: -9.0,
                max_log_snr: 9.0,
                scale: 1.0,
                shift: 2.5,
            };
            let (kl, lpz, lqz) = api::diffusion_kl(&lg, &z, &xi, &ls, sp)?;
            let loss = kl.sum_all()?.sub(&lpz.mul_scalar(0.5)?.sum_all()?)?;
            let gl = grad(&loss, std::slice::from_ref(&lg))?;
            let mut outs = vec![loss, kl, lpz, lqz];
            outs.extend(gl);
            let mut zs = ints(&mut r, &[b, l], DType::I32, 0, v as i64).to_f64_vec();
            // some tokens masked, some z = x
            let xs = ints(&mut r, &[b, l], DType::I32, 0, v as i64).to_f64_vec();
            for k in (0..zs.len()).step_by(3) {
                zs[k] = 4.0;
            }
            for k in (1..zs.len()).step_by(5) {
                zs[k] = xs[k];
            }
            let to_i32 =
                |v: Vec<f64>| HostTensor::i32(vec![b, l], v.iter().map(|&i| i as i32).collect());
            let ins = [
                ("logits", uniform(&mut r, &[b, l, v], d, -5.0, 5.0)),
                ("z", to_i32(zs)?),
                ("x", to_i32(xs)?),
                ("l", uniform(&mut r, &[b, l], DType::F32, -8.0, 8.0)),
            ];
            let case = format!("diffusion_kl over windows, {d}, fused={fused}");
            check_windowed(&x, &case, &outs, &ins, 4);
        }
    }
    Ok(())
}
