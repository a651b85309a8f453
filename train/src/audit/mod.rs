//! `gidd audit`: recompute every quantity a golden file holds (written by the
//! reference code) and compare, with the tolerances of DESIGN.md "Numbers".

mod generation;
mod likelihood;
mod optim;

pub use likelihood::audit_likelihood;
pub use optim::{audit_optim, optim_tolerance};

use crate::model_dir::{load_checkpoint, params_as, Loaded};
use gidd_engine::{grad, CpuExecutor, DType, Executor, Graph, HostTensor, Program, Tensor};
use gidd_model::loss::gidd_loss;
use gidd_model::transformer::{forward, ForwardOpts};
use gidd_model::{GiddConfig, Schedule};
use gidd_ports::TensorStore;
use std::path::{Path, PathBuf};

/// One line of the audit table.
#[derive(Clone, Debug)]
pub struct Row {
    pub quantity: String,
    pub max_abs: f64,
    pub rel_l2: f64,
    pub tol: f64,
    pub pass: bool,
    pub note: String,
}

/// Named tolerances (relative L2 error), DESIGN.md "Numbers" and SPEC.md section 8.
pub mod tol {
    /// f32 forward values and loss terms
    pub const FORWARD: f64 = 1e-5;
    /// f32 gradients pass through the whole backward graph
    pub const GRAD: f64 = 1e-4;
    /// ELBO values and weights: the reference's own float32 error is ~2.5e-4 per element
    pub const ELBO: f64 = 2e-3;
    /// the schedule grid past |l| > 9, where the reference's f32 weights lose ~1e-2
    pub const SCHED_WEIGHTS: f64 = 1e-2;
    /// bf16 (every model quantity) and the likelihood terms: the quantity's f32 tolerance plus
    /// this margin times the measured rounding of both sides ([`super::measured_row`]); it
    /// replaces the one fixed 2e-2 that bf16 had, which q/k-norm weight gradients (3.3e-2) and
    /// the uniform case's ELBO (3.1e-2) missed while being plain bf16 rounding.
    pub const MEASURED_SAFETY: f64 = 2.0;
    /// ... and the measured rounding itself must stay below this (measured at most 3.3e-2, on
    /// bf16 k-norm weight gradients).
    pub const MEASURED_CEILING: f64 = 1e-1;
    /// f32 parameters after the reference's optimizer updates, and its learning rates
    pub const OPTIM: f64 = 1e-5;
    /// the same in f64: what is left is the reference's own f32 rounding (measured <= 1.0e-7;
    /// f32 <= 1.8e-7)
    pub const OPTIM_F64: f64 = 1e-6;
    /// hyperparameters derived by the same f64 formulas on both sides
    pub const EXACT_F64: f64 = 1e-12;
    /// per-level likelihood terms and totals on the reference's draws, plus their measured
    /// rounding ([`super::measured_row`])
    pub const LIKELIHOOD: f64 = 1e-5;
    /// quantities that are exactly zero by construction (is_loss on a masked model)
    pub const ZERO_ABS: f64 = 1e-6;
}

/// A quantity's tolerance in f32 and f64 (bf16 adds its measured rounding, [`measured_row`]).
fn tolerance(name: &str) -> f64 {
    if name.starts_with("grad.") {
        tol::GRAD
    } else if name.starts_with("sched.elbo_weights") || name.starts_with("sched.loss_weights") {
        tol::SCHED_WEIGHTS
    } else if name == "elbo"
        || name == "elbo_weights"
        || name == "p_log_snr"
        || name == "sched.p_log_snr"
    {
        tol::ELBO
    } else {
        tol::FORWARD
    }
}

pub fn compare(name: &str, got: &[f64], want: &[f64], tol: f64) -> Row {
    let mut num = 0.0;
    let mut den = 0.0;
    let mut max_abs: f64 = 0.0;
    let mut nan = false;
    for (a, b) in got.iter().zip(want) {
        if a.is_nan() != b.is_nan() {
            nan = true;
        }
        if a.is_finite() && b.is_finite() {
            num += (a - b) * (a - b);
            den += b * b;
            max_abs = max_abs.max((a - b).abs());
        }
    }
    let len_ok = got.len() == want.len();
    let rel = if den > 0.0 {
        (num / den).sqrt()
    } else if num == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    let pass = len_ok && !nan && (rel <= tol || max_abs <= tol::ZERO_ABS);
    let note = if !len_ok {
        format!("length {} vs {}", got.len(), want.len())
    } else if nan {
        "NaN mismatch".into()
    } else {
        String::new()
    };
    Row {
        quantity: name.to_string(),
        max_abs,
        rel_l2: rel,
        tol,
        pass,
        note,
    }
}

/// A row whose tolerance comes from measured rounding, for quantities where one fixed
/// number is either loose or wrong: bf16 gradients (issue 20: q/k-norm weight gradients
/// miss 2e-2 in bf16 by little) and the likelihood terms (at low log-SNR the KL of a
/// uniform prior cancels, and the reference's own f32 result is off by up to 2e-4).
/// `exact` is our computation of the quantity in f64 on the same inputs; `at_f32` the same
/// computation in f32, the reference's precision. With e_ours = rel L2(got, exact) and
/// e_ref = rel L2(at_f32, exact):
///   tol = base + MEASURED_SAFETY x (e_ours + e_ref),
/// the triangle inequality |got - want| <= |got - exact| + |want - exact| with each side's
/// rounding estimated by our own computation at its precision, times a margin. `base` is the
/// quantity's f32 tolerance. Fails also where e_ours or e_ref exceeds MEASURED_CEILING: past
/// it a result is noise, not rounding. What this cannot see, a defect of one precision's path
/// below the ceiling, is the kernel tests' job (every kernel against its f64 reference).
pub fn measured_row(
    name: &str,
    got: &[f64],
    want: &[f64],
    exact: &[f64],
    at_f32: &[f64],
    base: f64,
) -> Row {
    // relative rounding of a side; none where it is within the zero bar (exact zeros, as
    // is_loss on a masked model, have no relative error to speak of)
    let rounding = |x: &[f64]| {
        let r = compare(name, x, exact, 0.0);
        if r.max_abs <= tol::ZERO_ABS {
            0.0
        } else {
            r.rel_l2
        }
    };
    let (e_ours, e_ref) = (rounding(got), rounding(at_f32));
    let mut r = compare(
        name,
        got,
        want,
        base + tol::MEASURED_SAFETY * (e_ours + e_ref),
    );
    let worst = e_ours.max(e_ref);
    if worst.is_nan() || worst > tol::MEASURED_CEILING {
        r.pass = false;
        r.note = format!(
            "rounding {worst:.1e} > ceiling {:.0e}",
            tol::MEASURED_CEILING
        );
    } else if r.note.is_empty() {
        r.note = format!("bound: ours {e_ours:.1e} + f32 {e_ref:.1e}");
    }
    r
}

fn ids_i32(t: &HostTensor) -> HostTensor {
    t.convert(DType::I32)
}

/// The golden files of an audit: the main one, and the optimizer and likelihood files
/// (by default `optim_golden.safetensors` and `likelihood_golden.safetensors` beside it,
/// audited when present).
#[derive(Clone, Debug)]
pub struct GoldenFiles {
    pub golden: PathBuf,
    pub optim: Option<PathBuf>,
    pub likelihood: Option<PathBuf>,
}

impl GoldenFiles {
    /// `golden` and whichever of the optimizer and likelihood files sit beside it.
    pub fn beside(golden: &Path) -> GoldenFiles {
        let near = |n: &str| golden.parent().map(|d| d.join(n)).filter(|p| p.exists());
        GoldenFiles {
            golden: golden.to_path_buf(),
            optim: near("optim_golden.safetensors"),
            likelihood: near("likelihood_golden.safetensors"),
        }
    }
}

/// Runs the audit of `checkpoint` against `golden` (a golden.safetensors; its MANIFEST.json
/// beside it, when present, gives schedule and loss settings), and against the optimizer
/// and likelihood golden files beside it.
pub fn audit<E: Executor + Clone>(
    exec: &E,
    checkpoint: &Path,
    golden: &Path,
    dtype: DType,
) -> anyhow::Result<Vec<Row>> {
    audit_files(exec, checkpoint, &GoldenFiles::beside(golden), dtype)
}

/// [`audit`] with the golden files named.
pub fn audit_files<E: Executor + Clone>(
    exec: &E,
    checkpoint: &Path,
    files: &GoldenFiles,
    dtype: DType,
) -> anyhow::Result<Vec<Row>> {
    let golden = files.golden.as_path();
    let Loaded { cfg, params } = load_checkpoint(checkpoint)?;
    // f64 audits run the math with rounding taken out: parameters widened exactly
    let master = dtype.accum();
    let gold = TensorStore::open(golden)?;
    let manifest: serde_json::Value = golden
        .parent()
        .map(|d| d.join("MANIFEST.json"))
        .filter(|p| p.exists())
        .map(|p| std::fs::read_to_string(p).map(|s| serde_json::from_str(&s)))
        .transpose()?
        .transpose()?
        .unwrap_or(serde_json::Value::Null);
    let sched_m = &manifest["schedule"];
    let sched = Schedule {
        min_log_snr: sched_m["min_log_snr"].as_f64().unwrap_or(cfg.min_log_snr),
        max_log_snr: sched_m["max_log_snr"].as_f64().unwrap_or(cfg.max_log_snr),
        scale: sched_m["hybrid_scale"].as_f64().unwrap_or(1.0),
        shift: sched_m["hybrid_shift"].as_f64().unwrap_or(cfg.noise_type),
        vocab_size: cfg.vocab_size,
        mask_id: sched_m["mask_token_id"].as_u64().unwrap_or(3) as u32,
    };
    let beta_is_div = manifest["loss"]["beta_is_div"].as_f64().unwrap_or(1.0);
    let has = |n: &str| gold.info(n).is_some();
    let get = |n: &str| gold.get(n);
    let mut rows = vec![];
    let m = ModelCase {
        cfg: &cfg,
        gold: &gold,
        sched: &sched,
        beta_is_div,
    };

    // ---- model forward, loss, gradients ----
    if has("input_ids") {
        let vals = model_values(exec, &m, &params, dtype)?;
        // bf16 and f16: every model quantity's tolerance comes from its measured rounding (our
        // f64 and f32 runs of the same program), not one fixed number
        let bounds = if dtype.is_half() {
            Some((
                // the exact bound is a reference: the cpu computes it (wgpu has no f64)
                model_values(&CpuExecutor, &m, &params, DType::F64)?,
                model_values(exec, &m, &params, DType::F32)?,
            ))
        } else {
            None
        };
        for (i, (n, r)) in vals.iter().enumerate() {
            let (got, want) = (r.to_f64_vec(), get(n)?.to_f64_vec());
            rows.push(match &bounds {
                Some((e, f)) => measured_row(
                    n,
                    &got,
                    &want,
                    &e[i].1.to_f64_vec(),
                    &f[i].1.to_f64_vec(),
                    tolerance(n),
                ),
                None => compare(n, &got, &want, tolerance(n)),
            });
        }
        let find = |n: &str| vals.iter().find(|(q, _)| q == n).map(|(_, t)| t);
        if let (Some(pd), Some(lg), true) = (
            find("adaptive.p_delta"),
            find("logits"),
            has("adaptive.positions"),
        ) {
            rows.extend(adaptive_choice(&gold, pd, lg)?);
        }
    }
    // ---- the optimizer: the trainer's update program on the reference's run ----
    if let Some(og) = &files.optim {
        let p = params_as(&params, master);
        rows.extend(optim::audit_optim(exec, &cfg, &p, &gold, og, master)?);
    }
    // ---- the likelihood of `gidd eval --requests` on the reference's draws ----
    if let Some(lg) = &files.likelihood {
        rows.extend(likelihood::audit_likelihood(
            exec, &cfg, &params, lg, dtype,
        )?);
    }

    // ---- the schedule grid ----
    if has("sched.log_snr") {
        rows.extend(audit_schedule(exec, &gold, &sched, master)?);
    }
    // ---- greedy generation ----
    if has("generate.output") {
        // generation has no f64 path: an f64 audit checks it on the f32 parameters
        let p32 = params_as(&params, DType::F32);
        rows.push(generation::audit_generation(exec, &cfg, &p32, &gold)?);
    }
    let covered: std::collections::HashSet<String> =
        rows.iter().map(|r| r.quantity.clone()).collect();
    let inputs_only = [
        "input_ids",
        "labels",
        "log_snr",
        "noise_mask",
        "attention_mask",
        "sched.log_snr",
        "sched.t",
    ];
    for n in gold.names() {
        let is_input = inputs_only.contains(&n)
            || n.ends_with(".z")
            || n.ends_with(".z_t")
            || n.contains("log_snr_")
            || n == "adaptive.log_snr"
            || n.starts_with("generate.");
        if !covered.contains(n) && !is_input {
            rows.push(Row {
                quantity: n.to_string(),
                max_abs: f64::NAN,
                rel_l2: f64::NAN,
                tol: 0.0,
                pass: false,
                note: "not computed by this audit".into(),
            });
        }
    }
    Ok(rows)
}

/// What the model quantities are computed from.
struct ModelCase<'a> {
    cfg: &'a GiddConfig,
    gold: &'a TensorStore,
    sched: &'a Schedule,
    beta_is_div: f64,
}

/// Our value of every model quantity the golden file holds (forward, loss terms, gradients,
/// sampler steps), in `dtype` (parameters in its master precision), as one program.
fn model_values<E: Executor>(
    exec: &E,
    m: &ModelCase,
    params: &[(String, HostTensor)],
    dtype: DType,
) -> anyhow::Result<Vec<(String, HostTensor)>> {
    let (cfg, gold, sched, beta_is_div) = (m.cfg, m.gold, m.sched, m.beta_is_div);
    let master = dtype.accum();
    let params = params_as(params, master);
    let has = |n: &str| gold.info(n).is_some();
    let get = |n: &str| gold.get(n);
    let ids = ids_i32(&get("input_ids")?);
    let (b, l) = (ids.shape[0], ids.shape[1]);
    let mask = if has("attention_mask") {
        get("attention_mask")?.convert(DType::Bool)
    } else {
        HostTensor::bool(vec![b, l], vec![true; b * l])?
    };
    let g = Graph::new();
    let p = gidd_model::Params::declare_as(&g, cfg, master);
    let ids_t = g.input("input_ids", &ids.shape, DType::I32);
    let mask_t = g.input("attention_mask", &mask.shape, DType::Bool);
    let pos = g.iota(&[b, l], 1, DType::I32)?;
    let want_att = gold.names().iter().any(|n| n.starts_with("attentions."));
    let out = forward(
        cfg,
        &p,
        &ids_t,
        &mask_t,
        &pos,
        ForwardOpts {
            dtype,
            attentions: want_att,
        },
    )?;
    let mut named: Vec<(String, Tensor)> = vec![("logits".into(), out.logits.clone())];
    for (i, h) in out.hidden_states.iter().enumerate() {
        named.push((format!("hidden_states.{i}"), h.to(master)?));
    }
    named.push((
        "hidden_states.last_prenorm".into(),
        out.last_prenorm.to(master)?,
    ));
    for (i, a) in out.attentions.iter().enumerate() {
        named.push((format!("attentions.{i}"), a.clone()));
    }
    let mut inputs: Vec<(String, HostTensor)> = vec![
        ("input_ids".into(), ids.clone()),
        ("attention_mask".into(), mask),
    ];
    if has("labels") && has("log_snr") {
        let x = ids_i32(&get("labels")?);
        let lsnr = get("log_snr")?.convert(master);
        let x_t = g.input("labels", &x.shape, DType::I32);
        let l_t = g.input("log_snr", &lsnr.shape, master);
        let terms = gidd_loss(sched, &out.logits, &ids_t, &x_t, &l_t, beta_is_div)?;
        let nm = if has("noise_mask") {
            get("noise_mask")?.convert(master)
        } else {
            HostTensor::f32(vec![b, l], vec![1.0; b * l])?.convert(master)
        };
        let nm_t = g.input("noise_mask", &nm.shape, master);
        let total = terms.loss.mul(&nm_t)?.sum_all()?;
        for (n, t) in [
            ("loss", &terms.loss),
            ("elbo", &terms.elbo),
            ("kl_loss", &terms.kl_loss),
            ("is_loss", &terms.is_loss),
            ("loss_weights", &terms.loss_weights),
            ("elbo_weights", &terms.elbo_weights),
            ("p_log_snr", &terms.p_log_snr),
        ] {
            named.push((n.into(), t.clone()));
        }
        named.push(("total_loss".into(), total.reshape(&[1])?));
        let grad_names: Vec<String> = gold
            .names()
            .iter()
            .filter(|n| n.starts_with("grad."))
            .map(|n| n.to_string())
            .collect();
        if !grad_names.is_empty() {
            let mut wrt = vec![];
            let mut wrt_names = vec![];
            for gn in &grad_names {
                let target = &gn["grad.".len()..];
                let t = if target == "logits" {
                    out.logits.clone()
                } else {
                    p.get(target)?.clone()
                };
                wrt.push(t);
                wrt_names.push(gn.clone());
            }
            let grads = grad(&total, &wrt)?;
            named.extend(wrt_names.into_iter().zip(grads));
        }
        inputs.push(("labels".into(), x));
        inputs.push(("log_snr".into(), lsnr));
        inputs.push(("noise_mask".into(), nm));
        // Sampler steps on the same logits.
        if has("ancestral.probs") {
            let lt = get("ancestral.log_snr_t")?.to_f32_vec()[0] as f64;
            let ls = get("ancestral.log_snr_s")?.to_f32_vec()[0] as f64;
            let zt = ids_i32(&get("ancestral.z_t")?);
            let zt_t = g.input("ancestral.z_t", &zt.shape, DType::I32);
            let (x_hat, probs) =
                gidd_model::sample::ancestral_probs(cfg, &out.logits, &zt_t, lt, ls)?;
            named.push(("ancestral.x_hat".into(), x_hat));
            named.push(("ancestral.probs".into(), probs));
            inputs.push(("ancestral.z_t".into(), zt));
        }
        if has("adaptive.p_delta") {
            let la = get("adaptive.log_snr")?.to_f32_vec()[0] as f64;
            let z = ids_i32(&get("adaptive.z")?);
            let z_t = g.input("adaptive.z", &z.shape, DType::I32);
            let pd = gidd_model::sample::adaptive_scores(cfg, &out.logits, &z_t, la)?;
            named.push(("adaptive.p_delta".into(), pd));
            inputs.push(("adaptive.z".into(), z));
        }
    }
    // Keep only what the golden file holds; run once.
    named.retain(|(n, _)| has(n));
    let mut all_inputs: Vec<(String, HostTensor)> = params.to_vec();
    all_inputs.extend(inputs);
    let outs: Vec<Tensor> = named.iter().map(|(_, t)| t.clone()).collect();
    let used = used_inputs(&outs, &all_inputs);
    let names: Vec<&str> = used.iter().map(|(n, _)| n.as_str()).collect();
    let prog = Program::compile(&outs, &names)?;
    let vals: Vec<&HostTensor> = used.iter().map(|(_, t)| t).collect();
    let res = run_once(exec, &prog, &vals)?;
    Ok(named.into_iter().map(|(n, _)| n).zip(res).collect())
}

/// The greedy adaptive step's chosen positions (top-n p_delta) and z_next (argmax
/// of the logits with the mask excluded) at those positions, compared exactly.
fn adaptive_choice(
    gold: &TensorStore,
    pd: &HostTensor,
    logits: &HostTensor,
) -> anyhow::Result<Vec<Row>> {
    let want_pos = gold.get("adaptive.positions")?;
    let (b, n) = (want_pos.shape[0], want_pos.shape[1]);
    let l = pd.shape[1];
    let v = logits.shape[2];
    let pd = pd.to_f64_vec();
    let lg = logits.to_f64_vec();
    let z = gold.get("adaptive.z")?.to_f64_vec();
    let mut pos = vec![];
    let mut z_next = z.clone();
    for r in 0..b {
        let mut idx: Vec<usize> = (0..l).collect();
        idx.sort_by(|&a, &c| pd[r * l + c].total_cmp(&pd[r * l + a]));
        for &j in idx.iter().take(n) {
            pos.push(j as f64);
            let row = &lg[(r * l + j) * v..(r * l + j + 1) * v];
            let best = (0..v)
                .filter(|&k| k != 3)
                .fold(0, |bst, k| if row[k] > row[bst] { k } else { bst });
            z_next[r * l + j] = best as f64;
        }
    }
    let mut rows = vec![compare(
        "adaptive.positions",
        &pos,
        &want_pos.to_f64_vec(),
        0.0,
    )];
    if gold.info("adaptive.z_next").is_some() {
        rows.push(compare(
            "adaptive.z_next",
            &z_next,
            &gold.get("adaptive.z_next")?.to_f64_vec(),
            0.0,
        ));
    }
    Ok(rows)
}

/// Inputs that a set of outputs uses, in a stable order.
fn used_inputs(outs: &[Tensor], all: &[(String, HostTensor)]) -> Vec<(String, HostTensor)> {
    let g = outs[0].graph();
    let data = g.data();
    let mut live = vec![false; data.nodes.len()];
    let mut stack: Vec<usize> = outs.iter().map(|t| data.values[t.id()].node).collect();
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut live[n], true) {
            stack.extend(data.nodes[n].inputs.iter().map(|&v| data.values[v].node));
        }
    }
    let names: std::collections::HashSet<String> = data
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| live[*i])
        .filter_map(|(_, n)| {
            if let gidd_engine::Op::Input { name } = &n.op {
                Some(name.clone())
            } else {
                None
            }
        })
        .collect();
    all.iter()
        .filter(|(n, _)| names.contains(n))
        .cloned()
        .collect()
}

/// Runs `prog` once on `exec` with host inputs; host outputs.
pub(crate) fn run_once<E: Executor>(
    exec: &E,
    prog: &Program,
    inputs: &[&HostTensor],
) -> anyhow::Result<Vec<HostTensor>> {
    let mut lp = exec.load(prog)?;
    let dev = inputs
        .iter()
        .map(|t| exec.upload(t))
        .collect::<gidd_engine::Result<Vec<_>>>()?;
    let refs: Vec<&E::Buffer> = dev.iter().collect();
    let out = exec.run(&mut lp, &refs)?;
    Ok(out
        .iter()
        .map(|b| exec.download(b))
        .collect::<gidd_engine::Result<Vec<_>>>()?)
}

fn audit_schedule<E: Executor>(
    exec: &E,
    gold: &TensorStore,
    s: &Schedule,
    master: DType,
) -> anyhow::Result<Vec<Row>> {
    let lg = gold.get("sched.log_snr")?.convert(master);
    let n = lg.numel();
    let g = Graph::new();
    let l = g.input("l", &[n], master);
    let id = |v: u32| g.splat(v as f64, &[n], DType::I32);
    let (x, zmask, zunif) = (id(5), id(s.mask_id), id(7));
    let mut named: Vec<(&str, Tensor)> = vec![
        ("sched.alpha", s.alpha(&l)?),
        ("sched.p_log_snr", s.p_log_snr(&l)?),
        ("sched.pi_at_mask", s.pi_at(&l, &zmask)?),
        ("sched.pi_at_other", s.pi_at(&l, &x)?),
        ("sched.pi_prime_at_mask", s.pi_prime_at(&l, &zmask)?),
        ("sched.pi_prime_at_other", s.pi_prime_at(&l, &x)?),
        ("sched.loss_weights.zeqx", s.loss_weights(&l, &x, &x)?),
        ("sched.loss_weights.zmask", s.loss_weights(&l, &zmask, &x)?),
        ("sched.loss_weights.zunif", s.loss_weights(&l, &zunif, &x)?),
        ("sched.elbo_weights.zeqx", s.elbo_weights(&l, &x, &x)?),
        ("sched.elbo_weights.zmask", s.elbo_weights(&l, &zmask, &x)?),
        ("sched.elbo_weights.zunif", s.elbo_weights(&l, &zunif, &x)?),
    ];
    let mut inputs: Vec<(&str, HostTensor)> = vec![("l", lg.reshape_to(vec![n]))];
    if gold.info("sched.t").is_some() {
        let t = gold.get("sched.t")?.convert(master);
        let tt = g.input("t", &[t.numel()], master);
        named.push(("sched.log_snr_from_t", s.log_snr_from_time(&tt)?));
        inputs.push(("t", t.reshape_to(vec![t.numel()])));
    }
    named.retain(|(n, _)| gold.info(n).is_some());
    let outs: Vec<Tensor> = named.iter().map(|(_, t)| t.clone()).collect();
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let prog = Program::compile(&outs, &names)?;
    let vals: Vec<&HostTensor> = inputs.iter().map(|(_, t)| t).collect();
    let res = run_once(exec, &prog, &vals)?;
    Ok(named
        .iter()
        .zip(res)
        .map(|((n, _), r)| {
            compare(
                n,
                &r.to_f64_vec(),
                &gold.get(n).map(|t| t.to_f64_vec()).unwrap_or_default(),
                tolerance(n),
            )
        })
        .collect())
}

/// The table as printed by `gidd audit`.
pub fn format_table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<52} {:>12} {:>12} {:>9}  {}\n",
        "quantity", "max abs err", "rel L2 err", "tol", "result"
    );
    for r in rows {
        s += &format!(
            "{:<52} {:>12.3e} {:>12.3e} {:>9.1e}  {}{}\n",
            r.quantity,
            r.max_abs,
            r.rel_l2,
            r.tol,
            if r.pass { "PASS" } else { "FAIL" },
            if r.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.note)
            }
        );
    }
    let fails = rows.iter().filter(|r| !r.pass).count();
    s += &format!(
        "{} quantities, {} passed, {} failed\n",
        rows.len(),
        rows.len() - fails,
        fails
    );
    s
}
