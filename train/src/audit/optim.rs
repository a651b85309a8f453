//! The optimizer and learning-rate audit: the reference's own LaProp run
//! (`optim_golden.safetensors` + `.json`, SPEC.md section 5) replayed by the trainer's own
//! update program, [`step::build_update`] (what `gidd train` runs after accumulating
//! gradients), with the step scalars from [`OptimOpts::step_scalars`] (what its run loop
//! feeds), on the audit's executor and in its master precision.
//!
//! Update t (t = 1..steps) takes the golden file's recorded gradient `grad.<name>` times
//! `scales[t - 1]`: the gradients go in as the program's accumulated sums and the scale as
//! its `grad_scale`. Parameters and moments stay with the executor between updates (the
//! run is free-running, as training is: the moments are not in the golden file).
//!
//! Rows: `optim.hyperparameters` (group learning rates, decays, eps, cooldown length derived
//! from the file's hyperparameters, against the reference's), `optim.groups` (the group of
//! every parameter), `optim.lr.bulk` and `optim.lr.aux` (the learning rate each group used
//! at each update), and `optim.step{t}.<name>` (every parameter after every update).

use super::{compare, tol, Row};
use crate::trainer::optim::{group_of, Group, OptimOpts};
use crate::trainer::step::build_update;
use anyhow::{bail, Context, Result};
use gidd_engine::{DType, Executor, HostTensor};
use gidd_model::GiddConfig;
use gidd_ports::TensorStore;
use serde_json::Value;
use std::path::Path;

/// Tolerance of the parameter and learning-rate rows (relative L2), by master precision.
/// f32: the bar. f64: our side without rounding, so what is left is the
/// reference's own f32 rounding over 6 updates (SPEC.md section 5: the formulas reproduce
/// the file to 1e-7; measured here at most 1.0e-7, and 1.8e-7 in f32: README "Numbers and
/// tolerances").
pub fn optim_tolerance(master: DType) -> f64 {
    if master == DType::F64 {
        tol::OPTIM_F64
    } else {
        tol::OPTIM
    }
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("optim_golden.json: no number \"{key}\""))
}

/// The trainer's optimizer options for the file's hyperparameters and the model's size.
fn optim_opts(cfg: &GiddConfig, hp: &Value) -> Result<OptimOpts> {
    Ok(OptimOpts {
        laprop: true,
        lr: num(hp, "lr")?,
        aux_lr_factor: num(hp, "aux_lr_factor")?,
        beta1: num(hp, "beta1")?,
        beta2: num(hp, "beta2")?,
        adam_eps: num(hp, "adam_eps")?,
        weight_decay: num(hp, "weight_decay")?,
        ln_wd: num(hp, "ln_wd")?,
        bias_wd: num(hp, "bias_wd")?,
        hidden: cfg.hidden_size,
        layers: cfg.num_hidden_layers,
        warmup_steps: num(hp, "warmup_steps")? as usize,
        cooldown_steps: num(hp, "cooldown_steps")?,
        max_steps: num(hp, "max_training_steps")? as usize,
    })
}

/// The reference's group label of each of our groups (train.py's `param_label_fn`).
fn label(g: Group) -> &'static str {
    match g {
        Group::Bulk => "bulk_params",
        Group::Ln => "ln_params",
        Group::Emb => "emb_unemb_params",
        Group::Bias => "bias_params",
    }
}

/// Rows of the optimizer audit. `params` are the case's parameters in `master` precision,
/// `gold` the golden file holding `grad.<name>`, `path` the optim_golden.safetensors (its
/// .json beside it).
pub fn audit_optim<E: Executor>(
    exec: &E,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    gold: &TensorStore,
    path: &Path,
    master: DType,
) -> Result<Vec<Row>> {
    let json_path = path.with_extension("json");
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(&json_path)
            .with_context(|| format!("reading {}", json_path.display()))?,
    )
    .with_context(|| format!("parsing {}", json_path.display()))?;
    let og = TensorStore::open(path)?;
    let steps = meta["steps"]
        .as_u64()
        .context("optim_golden.json: no \"steps\"")? as usize;
    let scales: Vec<f64> = meta["scales"]
        .as_array()
        .context("optim_golden.json: no \"scales\"")?
        .iter()
        .map(|s| {
            s.as_f64()
                .context("optim_golden.json: a scale is not a number")
        })
        .collect::<Result<_>>()?;
    if scales.len() < steps {
        bail!(
            "optim_golden.json: {} scales for {steps} steps",
            scales.len()
        );
    }
    let oo = optim_opts(cfg, &meta["hyperparameters"])?;
    let tol = optim_tolerance(master);
    let mut rows = vec![];

    // Derived hyperparameters: the same f64 formulas on both sides.
    let d = &meta["derived"];
    let (bulk_lr, bulk_wd) = oo.group_lr_wd(Group::Bulk);
    rows.push(compare(
        "optim.hyperparameters",
        &[
            bulk_lr,
            bulk_wd,
            oo.group_lr_wd(Group::Emb).0,
            oo.eps(),
            oo.cooldown_len() as f64,
        ],
        &[
            num(d, "bulk_lr")?,
            num(d, "bulk_weight_decay")?,
            num(d, "aux_lr")?,
            num(d, "eps")?,
            num(d, "cooldown_steps")?,
        ],
        tol::EXACT_F64,
    ));

    // Group membership, by name.
    let names: Vec<String> = cfg.param_shapes().into_iter().map(|(n, _)| n).collect();
    let mut wrong = vec![];
    for n in &names {
        let want = meta["groups"][n.as_str()].as_str().unwrap_or("(none)");
        if label(group_of(n)) != want {
            wrong.push(format!("{n}: {} vs {want}", label(group_of(n))));
        }
    }
    rows.push(Row {
        quantity: "optim.groups".into(),
        max_abs: wrong.len() as f64,
        rel_l2: wrong.len() as f64 / names.len().max(1) as f64,
        tol: 0.0,
        pass: wrong.is_empty(),
        note: wrong.first().cloned().unwrap_or_default(),
    });

    // The learning rates the trainer feeds at each update.
    let scalars: Vec<[f64; 4]> = (0..steps).map(|k| oo.step_scalars(k)).collect();
    for (i, n) in ["optim.lr.bulk", "optim.lr.aux"].iter().enumerate() {
        let got: Vec<f64> = scalars.iter().map(|s| s[i]).collect();
        rows.push(compare(n, &got, &og.get(n)?.to_f64_vec(), tol));
    }

    // The updates, through the trainer's update program.
    let prog = build_update(cfg, &oo, master).context("building the update program")?;
    let mut lp = exec.load(&prog)?;
    let by_name: std::collections::HashMap<&str, &HostTensor> =
        params.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut state = vec![];
    for n in &names {
        let p = by_name
            .get(n.as_str())
            .with_context(|| format!("the checkpoint has no {n}"))?;
        state.push(exec.upload(&p.convert(master))?);
    }
    for _ in 0..2 {
        for n in &names {
            let p = by_name[n.as_str()];
            state.push(exec.upload(&HostTensor::zeros(master, p.shape.clone()))?);
        }
    }
    let grads = names
        .iter()
        .map(|n| {
            let g = gold
                .get(&format!("grad.{n}"))
                .with_context(|| format!("the golden file has no grad.{n}"))?;
            Ok(exec.upload(&g.convert(master))?)
        })
        .collect::<Result<Vec<_>>>()?;
    let scalar = |x: f64| exec.upload(&HostTensor::f64(vec![], vec![x])?.convert(master));
    for t in 1..=steps {
        let sc = scalars[t - 1]
            .iter()
            .map(|&x| scalar(x))
            .collect::<gidd_engine::Result<Vec<_>>>()?;
        let gs = scalar(scales[t - 1])?;
        let mut rest: Vec<&E::Buffer> = grads.iter().collect();
        rest.extend(sc.iter());
        rest.push(&gs);
        let out = exec.run_donating(&mut lp, std::mem::take(&mut state), &rest)?;
        // outputs: [grad_norm], params, mu, nu
        state = out.into_iter().skip(1).collect();
        if state.len() != 3 * names.len() {
            bail!("the update returned {} state tensors", state.len());
        }
        for (n, b) in names.iter().zip(&state) {
            let q = format!("optim.step{t}.{n}");
            let want = og.get(&q)?.to_f64_vec();
            rows.push(compare(&q, &exec.download(b)?.to_f64_vec(), &want, tol));
        }
    }
    // A tensor of the file that no row compared (a parameter we do not have) fails.
    let covered: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.quantity.as_str()).collect();
    let missing: Vec<String> = og
        .names()
        .into_iter()
        .filter(|n| !covered.contains(n))
        .map(|n| n.to_string())
        .collect();
    rows.extend(missing.into_iter().map(|n| Row {
        quantity: n,
        max_abs: f64::NAN,
        rel_l2: f64::NAN,
        tol: 0.0,
        pass: false,
        note: "not computed by this audit".into(),
    }));
    Ok(rows)
}
