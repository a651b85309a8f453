//! diffusion_kl and diffusion_kl_bwd run as their WGSL kernels (one dispatch each, asserted
//! on the loaded program) and equal the cpu executor's fused kernels: odd vocabularies and
//! row counts, every marginal shift (masked, uniform, hybrid), log-SNRs past the clip, ids of
//! every integer dtype, ids at x and at the mask, edge logits; the gradient directly and
//! through autograd; a bf16 program (its logits reach the op as f32).

mod common;

use common::{check_kernels, ints, rng, seed, uniform, TOL};
use gidd_engine::op::MarginalSpec;
use gidd_engine::{api, grad, DType, Graph, HostTensor, Op, Result, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

fn spec(mask_id: u32, shift: f32) -> MarginalSpec {
    MarginalSpec {
        mask_id,
        min_log_snr: -9.0,
        max_log_snr: 9.0,
        scale: 1.0,
        shift,
    }
}

/// (logits, z, x, l, g_kl, g_lpz) for `rows` tokens over `v` ids: x is often a special id or
/// the mask, z often x or the mask.
fn inputs(
    r: &mut StdRng,
    rows: usize,
    v: usize,
    mask: u32,
    idt: DType,
    logits: Option<Vec<f32>>,
) -> Vec<(&'static str, HostTensor)> {
    let lg = match logits {
        Some(l) => HostTensor::f32(vec![rows, v], l).unwrap_or_else(|e| panic!("{e}")),
        None => uniform(r, &[rows, v], DType::F32, -4.0, 4.0),
    };
    let mut xs = vec![];
    let mut zs = vec![];
    for _ in 0..rows {
        let x = match r.random_range(0..4) {
            0 => mask as i64,
            1 => r.random_range(0..3),
            _ => r.random_range(0..v as i64),
        };
        let z = match r.random_range(0..3) {
            0 => x,
            1 => mask as i64,
            _ => r.random_range(0..v as i64),
        };
        xs.push(x);
        zs.push(z);
    }
    let as_ids = |v: Vec<i64>| {
        HostTensor::new(vec![rows], gidd_engine::Data::I64(v))
            .unwrap_or_else(|e| panic!("{e}"))
            .convert(idt)
    };
    vec![
        ("logits", lg),
        ("z", as_ids(zs)),
        ("x", as_ids(xs)),
        ("l", uniform(r, &[rows], DType::F32, -11.0, 11.0)),
        ("gk", uniform(r, &[rows], DType::F32, -1.0, 1.0)),
        ("gp", uniform(r, &[rows], DType::F32, -1.0, 1.0)),
    ]
}

/// The op and its backward, both applied directly.
fn kl_outs(g: &Graph, rows: usize, v: usize, s: MarginalSpec, idt: DType) -> Result<Vec<Tensor>> {
    let lg = g.input("logits", &[rows, v], DType::F32);
    let z = g.input("z", &[rows], idt);
    let x = g.input("x", &[rows], idt);
    let l = g.input("l", &[rows], DType::F32);
    let gk = g.input("gk", &[rows], DType::F32);
    let gp = g.input("gp", &[rows], DType::F32);
    let mut outs = g.apply(Op::DiffusionKl(s), &[&lg, &z, &x, &l])?;
    outs.push(g.apply1(Op::DiffusionKlBwd(s), &[&lg, &z, &x, &l, &gk, &gp])?);
    Ok(outs)
}

const ENTRIES: [&str; 2] = ["diffusion_kl", "diffusion_kl_bwd"];

#[test]
fn diffusion_kl_and_backward_match_cpu() -> Result<()> {
    let mut s = seed(9700);
    let mut worst = 0f64;
    let cases = [
        (1, 5, DType::I32),
        (3, 7, DType::I64),
        (257, 255, DType::I32),
        (3, 256, DType::U32),
        (2, 1000, DType::I64),
        (3, 4097, DType::I32),
    ];
    for (rows, v, idt) in cases {
        for shift in [-1000.0f32, 0.0, 1000.0, 2.5] {
            s += 1;
            let mut r = rng(s);
            let mask = r.random_range(0..v as u32);
            let g = Graph::new();
            let outs = kl_outs(&g, rows, v, spec(mask, shift), idt)?;
            let ins = inputs(&mut r, rows, v, mask, idt, None);
            let case = format!("diffusion_kl [{rows}, {v}] {idt} ids, mask {mask}, shift {shift}");
            let Some(e) = check_kernels(&case, &outs, &ins, TOL, &ENTRIES, 2) else {
                return Ok(());
            };
            worst = e.into_iter().fold(worst, f64::max);
        }
    }
    eprintln!("diffusion_kl: worst scaled error {worst:.2e}");
    Ok(())
}

/// Logits of +-80, all equal, -1e30 and f32::MIN beside finite ones, -inf entries, and rows
/// whose every logit is below the mask's -1e6 (the max is then the mask's).
#[test]
fn diffusion_kl_edge_logits_match_cpu() -> Result<()> {
    let (rows, v) = (6, 300);
    let mut r = rng(seed(9800));
    let mut lg: Vec<f32> = uniform(&mut r, &[v], DType::F32, -80.0, 80.0)
        .to_f64_vec()
        .iter()
        .map(|&y| y as f32)
        .collect();
    lg.extend(vec![3.0; v]);
    lg.extend((0..v).map(|j| match j % 3 {
        0 => f32::MIN,
        1 => -1e30,
        _ => (j % 7) as f32,
    }));
    lg.extend((0..v).map(|j| if j % 2 == 0 { f32::NEG_INFINITY } else { -2.0 }));
    lg.extend(vec![-2e6; v]);
    lg.extend((0..v).map(|j| -1.5e6 - j as f32));
    let mask = 7;
    for shift in [0.0f32, 2.5] {
        let g = Graph::new();
        let outs = kl_outs(&g, rows, v, spec(mask, shift), DType::I32)?;
        let ins = inputs(&mut r, rows, v, mask, DType::I32, Some(lg.clone()));
        let case = format!("diffusion_kl edge logits, shift {shift}");
        check_kernels(&case, &outs, &ins, TOL, &ENTRIES, 2);
    }
    Ok(())
}

/// The loss's use: api::diffusion_kl on [B, L, V] logits, the gradient by autograd, in f32
/// and as a bf16 program.
#[test]
fn gradient_through_autograd_matches_cpu() -> Result<()> {
    let s = seed(9900);
    for d in [DType::F32, DType::BF16, DType::F16] {
        let mut r = rng(s);
        let (b, l, v) = (2, 3, 301);
        let g = Graph::new();
        let lg = g.input("logits", &[b, l, v], d);
        let z = g.input("z", &[b, l], DType::I32);
        let x = g.input("x", &[b, l], DType::I32);
        let ls = g.input("l", &[b, l], DType::F32);
        let sp = spec(4, 2.5);
        let (kl, lpz, lqz) = api::diffusion_kl(&lg, &z, &x, &ls, sp)?;
        let loss = kl.sum_all()?.sub(&lpz.mul_scalar(0.5)?.sum_all()?)?;
        let gl = grad(&loss, std::slice::from_ref(&lg))?;
        let mut outs = vec![loss, kl, lpz, lqz];
        outs.extend(gl);
        let ids = |r: &mut StdRng| ints(r, &[b, l], DType::I32, 0, v as i64);
        let ins = [
            ("logits", uniform(&mut r, &[b, l, v], d, -5.0, 5.0)),
            ("z", ids(&mut r)),
            ("x", ids(&mut r)),
            ("l", uniform(&mut r, &[b, l], DType::F32, -10.0, 10.0)),
        ];
        let case = format!("diffusion_kl by autograd, {d} program");
        if check_kernels(&case, &outs, &ins, TOL, &ENTRIES, 12).is_none() {
            return Ok(());
        }
    }
    Ok(())
}
