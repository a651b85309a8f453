//! A tiny GIDD model end to end: forward, loss and gradients on wgpu (attention, norms, RoPE
//! and the diffusion loss as its fused WGSL kernels) equal the cpu executor's (its fused
//! kernels), and 20 SGD steps with the parameters donated on the device track the cpu
//! executor's losses within 1e-4 relative. Prints load and step times.

mod common;

use common::{assert_close, ints, rng, uniform, Tol, TOL};
use gidd_engine::{grad, CpuExecutor, DType, Executor, Graph, HostTensor, Program, Result};
use gidd_model::loss::gidd_loss;
use gidd_model::{forward, ForwardOpts, GiddConfig, Params, Schedule};
use std::time::Instant;

const GRAD: Tol = Tol {
    f32: 1e-4,
    bf16: 2e-2,
    f16: 2.5e-3,
};
const B: usize = 2;
const L: usize = 12;
const V: usize = 64;

fn config() -> GiddConfig {
    GiddConfig::from_json(serde_json::json!({
        "vocab_size": V, "hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": L, "attention_bias": true,
        "mlp_bias": true, "weight_scaling": 1.0, "head_scaling": 1.0, "attn_soft_cap": 30.0
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// (step program [loss, p - lr g ...], grad program [loss, logits, g ...], input order)
fn programs(lr: f64) -> Result<(Program, Program, Vec<String>, GiddConfig)> {
    let cfg = config();
    let sched = Schedule {
        min_log_snr: -9.0,
        max_log_snr: 9.0,
        scale: 1.0,
        shift: 0.0,
        vocab_size: V,
        mask_id: 3,
    };
    let g = Graph::new();
    let p = Params::declare(&g, &cfg);
    let z = g.input("z", &[B, L], DType::I32);
    let x = g.input("x", &[B, L], DType::I32);
    let l = g.input("l", &[B, L], DType::F32);
    let mask = g.input("mask", &[B, L], DType::Bool);
    let pos = g.iota(&[B, L], 1, DType::I32)?;
    let out = forward(&cfg, &p, &z, &mask, &pos, ForwardOpts::default())?;
    let t = gidd_loss(&sched, &out.logits, &z, &x, &l, 1.0)?;
    let loss = t.loss.sum_all()?.mul_scalar(1.0 / (B * L) as f64)?;
    let grads = grad(&loss, &p.tensors())?;
    let mut step = vec![loss.clone()];
    for (pt, gt) in p.tensors().iter().zip(&grads) {
        step.push(pt.sub(&gt.mul_scalar(lr)?)?);
    }
    let mut gouts = vec![loss, out.logits];
    gouts.extend(grads);
    let mut names = p.names();
    names.extend(["z", "x", "l", "mask"].map(String::from));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok((
        Program::compile(&step, &refs)?,
        Program::compile(&gouts, &refs)?,
        names,
        cfg,
    ))
}

fn init(cfg: &GiddConfig) -> Vec<HostTensor> {
    let mut r = rng(42);
    cfg.param_shapes()
        .iter()
        .map(|(_, s)| uniform(&mut r, s, DType::F32, -0.2, 0.2))
        .collect()
}

/// (z, x, l, mask) of batch `i`.
fn batch(i: u64) -> Vec<HostTensor> {
    let mut r = rng(1000 + i);
    let x = ints(&mut r, &[B, L], DType::I32, 4, V as i64);
    let z = ints(&mut r, &[B, L], DType::I32, 0, V as i64);
    let l = uniform(&mut r, &[B, L], DType::F32, -6.0, 6.0);
    let mut keys = vec![true; B * L];
    keys[L - 1] = false; // one padded key
    vec![
        z,
        x,
        l,
        HostTensor::bool(vec![B, L], keys).unwrap_or_else(|e| panic!("{e}")),
    ]
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0) * 1e3
}

#[test]
fn forward_loss_and_gradients_match_cpu() -> Result<()> {
    let Some(x) = common::wgpu() else {
        return Ok(());
    };
    let (_, gp, names, cfg) = programs(0.0)?;
    let mut ins = init(&cfg);
    ins.extend(batch(0));
    let refs: Vec<&HostTensor> = ins.iter().collect();
    let want = CpuExecutor.run(&mut CpuExecutor.load(&gp)?, &refs)?;
    let t0 = Instant::now();
    let mut lp = x.load(&gp)?;
    eprintln!(
        "grad program: wgpu load {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let bufs = ins
        .iter()
        .map(|t| x.upload(t))
        .collect::<Result<Vec<_>>>()?;
    let got = x.run(&mut lp, &bufs.iter().collect::<Vec<_>>())?;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let what = match i {
            0 => "loss".to_string(),
            1 => "logits".to_string(),
            _ => format!("grad {}", names[i - 2]),
        };
        assert_close(&what, &x.download(g)?, w, if i < 2 { TOL } else { GRAD });
    }
    eprintln!(
        "loss cpu {:?} wgpu {:?}",
        want[0].to_f32_vec(),
        x.download(&got[0])?.to_f32_vec()
    );
    Ok(())
}

#[test]
fn twenty_sgd_steps_with_parameters_on_device() -> Result<()> {
    let Some(x) = common::wgpu() else {
        return Ok(());
    };
    let (sp, _, _, cfg) = programs(0.5)?;
    let np = cfg.param_shapes().len();
    // each parameter input is aliased to its update, so the device keeps one copy
    let sp = sp.with_aliases(&(0..np).map(|i| (i, i + 1)).collect::<Vec<_>>())?;
    let t0 = Instant::now();
    let mut cpu_lp = CpuExecutor.load(&sp)?;
    let cpu_load = t0.elapsed();
    let t0 = Instant::now();
    let mut gpu_lp = x.load(&sp)?;
    let gpu_load = t0.elapsed();

    let mut cpu_params = init(&cfg);
    let mut dev_params = cpu_params
        .iter()
        .map(|t| x.upload(t))
        .collect::<Result<Vec<_>>>()?;
    let (mut cpu_ms, mut gpu_ms) = (vec![], vec![]);
    let mut losses = vec![];
    for step in 0..20 {
        let data = batch(step % 2);
        // cpu
        let mut refs: Vec<&HostTensor> = cpu_params.iter().collect();
        refs.extend(data.iter());
        let t = Instant::now();
        let mut out = CpuExecutor.run(&mut cpu_lp, &refs)?;
        cpu_ms.push(t.elapsed().as_secs_f64());
        let cpu_loss = out[0].to_f32_vec()[0];
        cpu_params = out.split_off(1);
        // wgpu: parameters stay on the device, donated to the step; only the batch goes up
        let dev_data = data
            .iter()
            .map(|t| x.upload(t))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<_> = dev_data.iter().collect();
        let t = Instant::now();
        let mut out = x.run_donating(&mut gpu_lp, std::mem::take(&mut dev_params), &refs)?;
        gpu_ms.push(t.elapsed().as_secs_f64());
        let gpu_loss = x.download(&out[0])?.to_f32_vec()[0];
        dev_params = out.split_off(1);
        let rel = ((gpu_loss - cpu_loss) / cpu_loss).abs();
        losses.push((cpu_loss, gpu_loss, rel));
        assert!(
            rel <= 1e-4,
            "step {step}: loss wgpu {gpu_loss} cpu {cpu_loss} (rel {rel:e})"
        );
    }
    for (i, (c, g, r)) in losses.iter().enumerate() {
        eprintln!("step {i:2}: loss cpu {c:.7} wgpu {g:.7} rel {r:.1e}");
    }
    assert!(
        losses[18].0 < losses[0].0 && losses[19].0 < losses[1].0,
        "training reduced the loss"
    );
    for (i, (d, c)) in dev_params.iter().zip(&cpu_params).enumerate().take(np) {
        assert_close(
            &format!("param {i} after 20 steps"),
            &x.download(d)?,
            c,
            GRAD,
        );
    }
    eprintln!(
        "tiny model ({} params, B={B} L={L}): cpu load {:.1} ms, step {:.2} ms | wgpu load {:.0} ms, step {:.2} ms ({} dispatches)",
        cfg.num_params(),
        cpu_load.as_secs_f64() * 1e3,
        median_ms(cpu_ms),
        gpu_load.as_secs_f64() * 1e3,
        median_ms(gpu_ms),
        gpu_lp.dispatch_count()
    );
    Ok(())
}
