//! SPMD on the XLA CPU plugin's devices: arguments split on their first dim
//! (FSDP: parameters and batch), XLA partitions the program, results equal the
//! single-device CPU executor's, and split state stays on the devices across steps.

mod common;

use common::{assert_close, ints, rng, uniform, Tol, TOL};
use gidd_engine::{grad, CpuExecutor, DType, Executor, Graph, HostTensor, Program, Result};
use gidd_model::loss::gidd_loss;
use gidd_model::{forward, ForwardOpts, GiddConfig, Params, Schedule};
use gidd_xla::{fsdp_layout, Partitioner, SpmdExecutor};
use std::time::Instant;

const GRAD: Tol = Tol {
    f32: 1e-4,
    bf16: 2e-2,
    f64: 1e-10,
};

fn spmd(n: usize, part: Partitioner) -> Option<SpmdExecutor> {
    let x = common::xla()?;
    if x.client().device_count() < n {
        eprintln!(
            "SKIPPED: the plugin has {} devices, SPMD test wants {n}",
            x.client().device_count()
        );
        return None;
    }
    Some(
        SpmdExecutor::new(x.client().clone(), n)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_partitioner(part),
    )
}

#[test]
fn matmul_with_split_batch_gspmd() -> Result<()> {
    matmul_with_split_batch(Partitioner::Gspmd)
}

#[test]
fn matmul_with_split_batch_shardy() -> Result<()> {
    matmul_with_split_batch(Partitioner::Shardy)
}

fn matmul_with_split_batch(part: Partitioner) -> Result<()> {
    let Some(s) = spmd(4, part) else {
        return Ok(());
    };
    let g = Graph::new();
    let x = g.input("x", &[8, 6], DType::F32);
    let w = g.input("w", &[6, 5], DType::F32);
    let y = x.matmul(&w)?.tanh()?;
    let total = y.sum_all()?;
    let p = Program::compile(&[y, total], &["x", "w"])?;
    let mut r = rng(7);
    let ins = [
        uniform(&mut r, &[8, 6], DType::F32, -1.0, 1.0),
        uniform(&mut r, &[6, 5], DType::F32, -1.0, 1.0),
    ];
    let want = CpuExecutor.run(&mut CpuExecutor.load(&p)?, &[&ins[0], &ins[1]])?;
    let lp = s.load(&p, &[Some(0), None], &[Some(0), None])?;
    let want_attr = match part {
        Partitioner::Gspmd => "mhlo.sharding = \"{devices=[4,1]0,1,2,3}\"",
        Partitioner::Shardy => "sdy.sharding = #sdy.sharding<@mesh, [{\"d\"}, {}]>",
    };
    assert!(lp.module().contains(want_attr), "{}", lp.module());
    let bx = s.upload(&ins[0], Some(0))?;
    let bw = s.upload(&ins[1], None)?;
    assert_eq!(bx.shards()[1].shape(), &[2, 6]);
    let out = s.run(&lp, &[&bx, &bw])?;
    assert_eq!(out[0].shards()[0].shape(), &[2, 5], "outputs stay split");
    assert_close("tanh(x w)", &s.download(&out[0])?, &want[0], TOL);
    assert_close("sum", &s.download(&out[1])?, &want[1], TOL);
    Ok(())
}

#[test]
fn tiny_model_fsdp_steps_on_four_devices_gspmd() -> Result<()> {
    tiny_model_fsdp_steps_on_four_devices(Partitioner::Gspmd)
}

#[test]
fn tiny_model_fsdp_steps_on_four_devices_shardy() -> Result<()> {
    tiny_model_fsdp_steps_on_four_devices(Partitioner::Shardy)
}

fn tiny_model_fsdp_steps_on_four_devices(part: Partitioner) -> Result<()> {
    let Some(s) = spmd(4, part) else {
        return Ok(());
    };
    let (b, l, v) = (4, 8, 64);
    let cfg = GiddConfig::from_json(serde_json::json!({
        "vocab_size": v, "hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 2, "max_position_embeddings": l, "attention_bias": true,
        "mlp_bias": true, "weight_scaling": 1.0, "head_scaling": 1.0
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let sched = Schedule {
        min_log_snr: -9.0,
        max_log_snr: 9.0,
        scale: 1.0,
        shift: 0.0,
        vocab_size: v,
        mask_id: 3,
    };
    let g = Graph::new();
    let p = Params::declare(&g, &cfg);
    let z = g.input("z", &[b, l], DType::I32);
    let x = g.input("x", &[b, l], DType::I32);
    let ls = g.input("l", &[b, l], DType::F32);
    let mask = g.input("mask", &[b, l], DType::Bool);
    let pos = g.iota(&[b, l], 1, DType::I32)?;
    let out = forward(&cfg, &p, &z, &mask, &pos, ForwardOpts::default())?;
    let t = gidd_loss(&sched, &out.logits, &z, &x, &ls, 1.0)?;
    let loss = t.loss.sum_all()?.mul_scalar(1.0 / (b * l) as f64)?;
    let grads = grad(&loss, &p.tensors())?;
    let mut outs = vec![loss];
    for (pt, gt) in p.tensors().iter().zip(&grads) {
        outs.push(pt.sub(&gt.mul_scalar(0.5)?)?);
    }
    let mut names = p.names();
    names.extend(["z", "x", "l", "mask"].map(String::from));
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let np = cfg.param_shapes().len();
    // Each parameter is donated to its update: the FSDP shards are updated in place.
    let aliases: Vec<(usize, usize)> = (0..np).map(|i| (i, 1 + i)).collect();
    let prog = Program::compile(&outs, &refs)?.with_aliases(&aliases)?;

    // FSDP: every input split on dim 0 where it divides (params and the batch); the new
    // parameters come out with their parameters' layout, the loss replicated.
    let in_types: Vec<_> = prog.input_types().into_iter().map(|(_, t)| t).collect();
    let in_layout = fsdp_layout(&in_types, 4);
    let mut out_layout = vec![None];
    out_layout.extend(in_layout[..np].iter().copied());
    let split = in_layout.iter().filter(|s| s.is_some()).count();
    let t0 = Instant::now();
    let lp = s.load(&prog, &in_layout, &out_layout)?;
    let compile = t0.elapsed();
    let shard_bytes: u64 = in_types[..np]
        .iter()
        .zip(&in_layout)
        .map(|(t, sp)| (t.numel() * 4 / if sp.is_some() { 4 } else { 1 }) as u64)
        .sum();
    let plan = lp
        .executable()
        .memory_stats()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plan.alias_bytes, shard_bytes,
        "per-device state aliased: {plan:?}"
    );

    let mut r = rng(9);
    let mut host: Vec<HostTensor> = cfg
        .param_shapes()
        .iter()
        .map(|(_, sh)| uniform(&mut r, sh, DType::F32, -0.2, 0.2))
        .collect();
    let data = [
        ints(&mut r, &[b, l], DType::I32, 0, v as i64),
        ints(&mut r, &[b, l], DType::I32, 4, v as i64),
        uniform(&mut r, &[b, l], DType::F32, -6.0, 6.0),
        HostTensor::bool(vec![b, l], vec![true; b * l])?,
    ];
    let mut dev = host
        .iter()
        .zip(&in_layout)
        .map(|(t, sp)| Ok(s.upload(t, *sp)?))
        .collect::<Result<Vec<_>>>()?;
    let dev_data = data
        .iter()
        .zip(&in_layout[np..])
        .map(|(t, sp)| Ok(s.upload(t, *sp)?))
        .collect::<Result<Vec<_>>>()?;
    let mut cpu_lp = CpuExecutor.load(&prog)?;
    for step in 0..5 {
        let mut hr: Vec<&HostTensor> = host.iter().collect();
        hr.extend(data.iter());
        let mut want = CpuExecutor.run(&mut cpu_lp, &hr)?;
        let rest: Vec<_> = dev_data.iter().collect();
        let mut got = s.run_donating(&lp, std::mem::take(&mut dev), &rest)?;
        let (c, x) = (
            want[0].to_f32_vec()[0],
            s.download(&got[0])?.to_f32_vec()[0],
        );
        eprintln!("fsdp ({part:?}) step {step}: loss cpu {c:.7} xla x4 {x:.7}");
        assert!(((x - c) / c).abs() <= 1e-4, "step {step}: loss {x} vs {c}");
        host = want.split_off(1);
        dev = got.split_off(1);
    }
    for (i, (d, h)) in dev.iter().zip(&host).enumerate() {
        assert_close(&format!("param {i}"), &s.download(d)?, h, GRAD);
    }
    eprintln!(
        "fsdp ({part:?}) over 4 devices: {split} of {} inputs split on dim 0, compile {:.0} ms",
        in_layout.len(),
        compile.as_secs_f64() * 1e3
    );
    Ok(())
}
