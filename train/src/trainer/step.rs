//! The whole training step as one graph: noise, forward, GIDD loss, backward,
//! optimizer update. Compiled once, run every step.

use super::optim::{group_of, update, Group, OptimOpts};
use gidd_engine::{grad, DType, Error, Graph, Op, Program, Result, Tensor};
use gidd_model::loss::{gidd_loss, LossTerms};
use gidd_model::noise::{noisy_batch, NoiseOpts, NoisyBatch};
use gidd_model::transformer::{forward, ForwardOpts};
use gidd_model::{GiddConfig, Params, Schedule};

/// Names of the step's scalar inputs and metric outputs.
pub const SCALARS: [&str; 4] = ["lr_bulk", "lr_aux", "b1t", "b2t"];
pub const METRICS: [&str; 6] = ["loss", "elbo", "kl", "is", "grad_norm", "noisy_tokens"];

/// Noise, forward and per-token loss terms of a batch of labels [B, L].
#[allow(clippy::too_many_arguments)]
fn noisy_loss(
    cfg: &GiddConfig,
    p: &Params,
    s: &Schedule,
    no: &NoiseOpts,
    labels: &Tensor,
    seed: &Tensor,
    step: &Tensor,
    row0: &Tensor,
    beta_is_div: f64,
    dtype: DType,
) -> Result<(LossTerms, NoisyBatch)> {
    let g = labels.graph();
    let nb = noisy_batch(s, no, labels, seed, step, row0, dtype.accum())?;
    let pos = g.iota(labels.shape(), 1, DType::I32)?;
    let out = forward(
        cfg,
        p,
        &nb.z,
        &nb.attn,
        &pos,
        ForwardOpts {
            dtype,
            attentions: false,
        },
    )?;
    let t = gidd_loss(s, &out.logits, &nb.z, labels, &nb.log_snr, beta_is_div)?;
    Ok((t, nb))
}

/// One input per parameter named "{prefix}.{name}", of its type (optimizer state, gradients).
fn declare_like(g: &Graph, p: &Params, prefix: &str) -> Vec<Tensor> {
    p.names()
        .iter()
        .zip(p.tensors())
        .map(|(n, t)| g.input(&format!("{prefix}.{n}"), t.shape(), t.dtype()))
        .collect()
}

/// The SCALARS inputs, in the master precision.
fn declare_scalars(g: &Graph, master: DType) -> Vec<Tensor> {
    SCALARS.iter().map(|n| g.input(n, &[], master)).collect()
}

/// sqrt(sum of squares) over all gradients.
fn global_norm(grads: &[Tensor]) -> Result<Tensor> {
    let mut gn = grads[0].graph().scalar(0.0, grads[0].dtype());
    for x in grads {
        gn = gn.add(&x.square()?.sum_all()?)?;
    }
    gn.sqrt()
}

/// The optimizer update of every parameter with its group's lr and decay:
/// returns new params, then new mu, then new nu. `sc` holds the SCALARS inputs.
/// The update is elementwise but for the group, which the name decides: it applies as
/// well to a parameter's shard as to the whole of it.
#[allow(clippy::too_many_arguments)]
fn update_all(
    oo: &OptimOpts,
    names: &[String],
    params: &[Tensor],
    grads: &[Tensor],
    mu: &[Tensor],
    nu: &[Tensor],
    sc: &[Tensor],
) -> Result<Vec<Tensor>> {
    let (mut np, mut nmu, mut nnu) = (vec![], vec![], vec![]);
    for (i, (name, pt)) in names.iter().zip(params).enumerate() {
        let grp = group_of(name);
        let lr = if grp == Group::Bulk { &sc[0] } else { &sc[1] };
        let (a, b, c) = update(
            oo.laprop,
            pt,
            &grads[i],
            &mu[i],
            &nu[i],
            lr,
            &sc[2],
            &sc[3],
            oo.eps(),
            oo.group_lr_wd(grp).1,
        )?;
        np.push(a);
        nmu.push(b);
        nnu.push(c);
    }
    np.extend(nmu);
    np.extend(nnu);
    Ok(np)
}

pub struct LossOpts {
    pub beta_is_div: f64,
    /// "sum" (the reference's default) or mean over noisy tokens
    pub sum: bool,
    pub loss_scale: f64,
}

/// Builds the training step: returns the program and its input names in order
/// (params, mu.*, nu.*, labels, seed, step, scalars). Outputs: METRICS, then new params, mu, nu.
#[allow(clippy::too_many_arguments)]
pub fn build_step(
    cfg: &GiddConfig,
    s: &Schedule,
    no: &NoiseOpts,
    oo: &OptimOpts,
    lo: &LossOpts,
    batch: usize,
    seq: usize,
    dtype: DType,
) -> Result<(Program, Vec<String>)> {
    let g = Graph::new();
    let p = Params::declare_as(&g, cfg, dtype.accum());
    let names = p.names();
    let (mu, nu) = (declare_like(&g, &p, "mu"), declare_like(&g, &p, "nu"));
    let labels = g.input("labels", &[batch, seq], DType::I32);
    let seed = g.input("seed", &[2], DType::U32);
    let step = g.input("step", &[], DType::U32);
    let sc = declare_scalars(&g, dtype.accum());

    let (t, nb) = noisy_loss(
        cfg,
        &p,
        s,
        no,
        &labels,
        &seed,
        &step,
        &g.scalar(0.0, DType::U32),
        lo.beta_is_div,
        dtype,
    )?;
    let count = nb.noise_mask.sum_all()?.max_scalar(1.0)?;
    let masked = |x: &Tensor| x.mul(&nb.noise_mask)?.sum_all();
    let total = masked(&t.loss)?;
    // f16 activations and the mean: the cotangents of the mean are 1/count those of the sum,
    // and with thousands of tokens they fall into f16's subnormals (below 6.1e-5, spaced
    // 6e-8): measured on the tiny preset at batch 256 x 32, the step's gradient norm 2% off
    // f32's (bf16 0.06%). So f16 differentiates the sum, whose cotangents are what the
    // reference's default (sum) aggregation has, and divides the f32 parameter gradients by
    // the count after: a loss scale of exactly the token count, unscaled where nothing
    // underflows.
    let count_scaled = !lo.sum && dtype == DType::F16;
    let objective = if lo.sum || count_scaled {
        total.clone()
    } else {
        total.div(&count)?
    }
    .mul_scalar(lo.loss_scale)?;
    let mut grads = grad(&objective, &p.tensors())?;
    if count_scaled {
        grads = grads.iter().map(|g| g.div(&count)).collect::<Result<_>>()?;
    }
    let mut outs = vec![
        total.div(&count)?,
        masked(&t.elbo)?.div(&count)?,
        masked(&t.kl_loss)?.div(&count)?,
        masked(&t.is_loss)?.div(&count)?,
        global_norm(&grads)?,
        count,
    ];
    outs.extend(update_all(
        oo,
        &p.names(),
        &p.tensors(),
        &grads,
        &mu,
        &nu,
        &sc,
    )?);
    let mut order: Vec<String> = names.clone();
    order.extend(names.iter().map(|n| format!("mu.{n}")));
    order.extend(names.iter().map(|n| format!("nu.{n}")));
    order.extend(["labels", "seed", "step"].iter().map(|s| s.to_string()));
    order.extend(SCALARS.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
    let state = state_aliases(3 * names.len(), METRICS.len());
    Ok((Program::compile(&outs, &refs)?.with_aliases(&state)?, order))
}

/// The first `n` inputs (parameters, mu and nu; or gradient sums) each alias their updated
/// output, which starts at output `first`: an executor given them updates them in place.
fn state_aliases(n: usize, first: usize) -> Vec<(usize, usize)> {
    (0..n).map(|i| (i, first + i)).collect()
}

/// Held-out evaluation: mean ELBO (nats per noisy token) and the count, under noise drawn from (seed, step).
pub fn build_eval(
    cfg: &GiddConfig,
    s: &Schedule,
    no: &NoiseOpts,
    batch: usize,
    seq: usize,
    dtype: DType,
) -> Result<(Program, Vec<String>)> {
    let g = Graph::new();
    let p = Params::declare_as(&g, cfg, dtype.accum());
    let labels = g.input("labels", &[batch, seq], DType::I32);
    // 0/1 weights: exact in any precision, so the host always sends f32
    let valid = g
        .input("valid", &[batch, seq], DType::F32)
        .to(dtype.accum())?;
    let seed = g.input("seed", &[2], DType::U32);
    let step = g.input("step", &[], DType::U32);
    // Held-out ELBO is over every token: no clean prompt positions.
    let no = NoiseOpts {
        p_prompt: 0.0,
        p_infilling: 0.0,
        p_independent: 1.0,
        ..no.clone()
    };
    let (t, nb) = noisy_loss(
        cfg,
        &p,
        s,
        &no,
        &labels,
        &seed,
        &step,
        &g.scalar(0.0, DType::U32),
        1.0,
        dtype,
    )?;
    let m = nb.noise_mask.mul(&valid)?;
    let elbo_sum = t.elbo.mul(&m)?.sum_all()?;
    let count = m.sum_all()?;
    let mut order = p.names();
    order.extend(
        ["labels", "valid", "seed", "step"]
            .iter()
            .map(|s| s.to_string()),
    );
    let refs: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
    Ok((Program::compile(&[elbo_sum, count], &refs)?, order))
}

/// Gradient accumulation, part 1: one micro-batch's loss sums and the running sums of the
/// gradients of each micro-batch's summed (scaled) loss, kept where the executor keeps
/// them (on a device, no gradient crosses to the host). Inputs: acc.* (the sums so far,
/// donated: each aliases its update), params, labels, seed, step, row0. Outputs:
/// [loss_sum, elbo_sum, kl_sum, is_sum, noisy_tokens], then acc + grad per parameter.
#[allow(clippy::too_many_arguments)]
pub fn build_micro(
    cfg: &GiddConfig,
    s: &Schedule,
    no: &NoiseOpts,
    lo: &LossOpts,
    batch: usize,
    seq: usize,
    dtype: DType,
) -> Result<Program> {
    let g = Graph::new();
    let p = Params::declare_as(&g, cfg, dtype.accum());
    let acc = declare_like(&g, &p, "acc");
    let labels = g.input("labels", &[batch, seq], DType::I32);
    let seed = g.input("seed", &[2], DType::U32);
    let step = g.input("step", &[], DType::U32);
    let row0 = g.input("row0", &[], DType::U32);
    let (t, nb) = noisy_loss(
        cfg,
        &p,
        s,
        no,
        &labels,
        &seed,
        &step,
        &row0,
        lo.beta_is_div,
        dtype,
    )?;
    let masked = |x: &Tensor| x.mul(&nb.noise_mask)?.sum_all();
    let total = masked(&t.loss)?;
    let grads = grad(&total.mul_scalar(lo.loss_scale)?, &p.tensors())?;
    let mut outs = vec![
        total,
        masked(&t.elbo)?,
        masked(&t.kl_loss)?,
        masked(&t.is_loss)?,
        nb.noise_mask.sum_all()?,
    ];
    for (a, gr) in acc.iter().zip(&grads) {
        outs.push(a.add(gr)?);
    }
    let names = p.names();
    let mut order: Vec<String> = names.iter().map(|n| format!("acc.{n}")).collect();
    order.extend(names.iter().cloned());
    order.extend(
        ["labels", "seed", "step", "row0"]
            .iter()
            .map(|s| s.to_string()),
    );
    let refs: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
    let first = outs.len() - names.len();
    Program::compile(&outs, &refs)?.with_aliases(&state_aliases(names.len(), first))
}

/// Gradient accumulation, part 2: the optimizer update from accumulated gradients
/// times `grad_scale` (1 for sum aggregation, 1 / noisy tokens for mean).
/// Inputs: params, mu.*, nu.*, grad.*, SCALARS, grad_scale. Outputs: [grad_norm], new params, mu, nu.
/// `master` is the parameters' dtype (f32, or f64 in an f64 run).
pub fn build_update(cfg: &GiddConfig, oo: &OptimOpts, master: DType) -> Result<Program> {
    let g = Graph::new();
    let p = Params::declare_as(&g, cfg, master);
    let names = p.names();
    let (mu, nu, gr) = (
        declare_like(&g, &p, "mu"),
        declare_like(&g, &p, "nu"),
        declare_like(&g, &p, "grad"),
    );
    let sc = declare_scalars(&g, master);
    let gs = g.input("grad_scale", &[], master);
    let grads: Vec<Tensor> = gr.iter().map(|x| x.mul(&gs)).collect::<Result<_>>()?;
    let mut outs = vec![global_norm(&grads)?];
    outs.extend(update_all(
        oo,
        &p.names(),
        &p.tensors(),
        &grads,
        &mu,
        &nu,
        &sc,
    )?);
    let mut order = names.clone();
    for pre in ["mu", "nu", "grad"] {
        order.extend(names.iter().map(|n| format!("{pre}.{n}")));
    }
    order.extend(SCALARS.iter().map(|s| s.to_string()));
    order.push("grad_scale".into());
    let refs: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
    Program::compile(&outs, &refs)?.with_aliases(&state_aliases(3 * names.len(), 1))
}

/// The update of one rank's shards (FSDP): [`build_update`] over flat shards of the given
/// lengths, one per parameter in `names` order. Outputs: [sum of squares of the scaled
/// gradient shards] (the ranks add theirs for the global norm), new params, mu, nu.
pub fn build_update_shards(
    names: &[String],
    lens: &[usize],
    oo: &OptimOpts,
    master: DType,
) -> Result<Program> {
    let g = Graph::new();
    let decl = |pre: &str| -> Vec<Tensor> {
        names
            .iter()
            .zip(lens)
            .map(|(n, &l)| g.input(&format!("{pre}{n}"), &[l], master))
            .collect()
    };
    let (p, mu, nu, gr) = (decl(""), decl("mu."), decl("nu."), decl("grad."));
    let sc = declare_scalars(&g, master);
    let gs = g.input("grad_scale", &[], master);
    let grads: Vec<Tensor> = gr.iter().map(|x| x.mul(&gs)).collect::<Result<_>>()?;
    let mut sq = g.scalar(0.0, master);
    for x in &grads {
        sq = sq.add(&x.square()?.sum_all()?)?;
    }
    let mut outs = vec![sq];
    outs.extend(update_all(oo, names, &p, &grads, &mu, &nu, &sc)?);
    let mut order = names.to_vec();
    for pre in ["mu", "nu", "grad"] {
        order.extend(names.iter().map(|n| format!("{pre}.{n}")));
    }
    order.extend(SCALARS.iter().map(|s| s.to_string()));
    order.push("grad_scale".into());
    let refs: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
    Program::compile(&outs, &refs)?.with_aliases(&state_aliases(3 * names.len(), 1))
}

/// The FSDP unit a parameter is gathered with: its layer (`model.layers.{i}`), or itself
/// (the embedding, the final norm and the head, each used at one end of the model).
pub fn fsdp_unit(name: &str) -> &str {
    match name.strip_prefix("model.layers.") {
        Some(rest) => {
            let i = rest.find('.').unwrap_or(rest.len());
            &name[.."model.layers.".len() + i]
        }
        None => name,
    }
}

/// FSDP's micro-batch program for one rank: [`build_micro`] over the rank's flat shards
/// of the parameters and of the gradient sums (`plan`'s layout). Each unit of parameters
/// ([`fsdp_unit`]) is one all_gather node and each gradient one reduce_scatter node;
/// compiled with the collectives' schedule (`Program::compile_scheduled`), a unit is
/// gathered just before its first use with the next one prefetched, freed after its last
/// forward use, gathered again for the backward, and each gradient is reduce-scattered as
/// soon as it is complete: the memory plan holds about two units' parameters and one
/// unit's gradients at a time, not the whole model. Inputs: acc.* (shard sums, donated:
/// each aliases its update), the parameters' shards (by name), labels, seed, step, row0.
/// Outputs: [loss_sum, elbo_sum, kl_sum, is_sum, noisy_tokens] of this rank's rows, then
/// acc + this rank's shard of the gradient summed over all ranks, per parameter.
#[allow(clippy::too_many_arguments)]
pub fn build_micro_sharded(
    cfg: &GiddConfig,
    s: &Schedule,
    no: &NoiseOpts,
    lo: &LossOpts,
    batch: usize,
    seq: usize,
    dtype: DType,
    plan: &crate::fsdp::ShardPlan,
) -> Result<Program> {
    let names: Vec<String> = cfg.param_shapes().into_iter().map(|(n, _)| n).collect();
    if names != plan.names {
        return Err(Error::Msg(
            "the shard plan's parameters are not the config's, in its order".into(),
        ));
    }
    let (g, master, world) = (Graph::new(), dtype.accum(), plan.world);
    let decl = |pre: &str| -> Vec<Tensor> {
        names
            .iter()
            .zip(&plan.lens)
            .map(|(n, &l)| g.input(&format!("{pre}{n}"), &[l], master))
            .collect()
    };
    let (acc, shards) = (decl("acc."), decl(""));
    let mut units: Vec<(&str, Vec<usize>)> = vec![];
    for (i, n) in names.iter().enumerate() {
        match units.iter_mut().find(|(u, _)| *u == fsdp_unit(n)) {
            Some((_, members)) => members.push(i),
            None => units.push((fsdp_unit(n), vec![i])),
        }
    }
    let mut full: Vec<Option<Tensor>> = vec![None; names.len()];
    for (_, members) in &units {
        let op = Op::AllGather {
            world,
            shapes: members.iter().map(|&i| plan.shapes[i].clone()).collect(),
        };
        let ins: Vec<&Tensor> = members.iter().map(|&i| &shards[i]).collect();
        for (&i, t) in members.iter().zip(g.apply(op, &ins)?) {
            full[i] = Some(t);
        }
    }
    let p = Params::from_tensors(
        names
            .iter()
            .cloned()
            .zip(full.into_iter().flatten())
            .collect(),
    );
    let row0 = g.input("row0", &[], DType::U32);
    let labels = g.input("labels", &[batch, seq], DType::I32);
    let seed = g.input("seed", &[2], DType::U32);
    let step = g.input("step", &[], DType::U32);
    let (t, nb) = noisy_loss(
        cfg,
        &p,
        s,
        no,
        &labels,
        &seed,
        &step,
        &row0,
        lo.beta_is_div,
        dtype,
    )?;
    let masked = |x: &Tensor| x.mul(&nb.noise_mask)?.sum_all();
    let total = masked(&t.loss)?;
    let backward_from = g.data().nodes.len();
    let grads = grad(&total.mul_scalar(lo.loss_scale)?, &p.tensors())?;
    let mut outs = vec![
        total,
        masked(&t.elbo)?,
        masked(&t.kl_loss)?,
        masked(&t.is_loss)?,
        nb.noise_mask.sum_all()?,
    ];
    for (a, gr) in acc.iter().zip(&grads) {
        let mine = g.apply1(Op::ReduceScatter { world }, &[gr])?;
        outs.push(a.add(&mine)?);
    }
    let mut order: Vec<String> = names.iter().map(|n| format!("acc.{n}")).collect();
    order.extend(names.iter().cloned());
    order.extend(
        ["labels", "seed", "step", "row0"]
            .iter()
            .map(|s| s.to_string()),
    );
    let refs: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
    let first = outs.len() - names.len();
    Program::compile_scheduled(&outs, &refs, backward_from)?
        .with_aliases(&state_aliases(names.len(), first))
}
