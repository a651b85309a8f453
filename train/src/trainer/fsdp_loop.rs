//! `gidd train --nproc N`: fully sharded data parallel training with N ranks as threads
//! of this process, each running the executor `--backend` names on a device of its own
//! (cpu; wgpu and cuda stage the collective nodes through host memory), meeting at the
//! engine's in-process collectives; or, launched as N processes with torchrun's variables (RANK, WORLD_SIZE,
//! MASTER_ADDR, MASTER_PORT; `torchrun --nproc_per_node N`, srun, or by hand), one rank per
//! process meeting over TCP (`collective::TcpComm`). Both compute every collective with the
//! same code, so they give the same losses; rank 0 alone writes metrics and the report.
//!
//! Each rank keeps 1/N of every parameter, of mu and nu (flat, padded: `fsdp::ShardPlan`).
//! A step, on every rank:
//! 1. rank 0 draws the global batch and broadcasts it, so every world size trains on
//!    exactly the batch a single rank would;
//! 2. the micro-batch program (`step::build_micro_sharded`) over the rank's own rows of the
//!    batch, rows [r B/N, (r+1) B/N), with `row0` its first row, so every row draws the
//!    noise it draws in the whole batch. The program's collective nodes gather each layer's
//!    parameters just before use (the next layer's prefetched), free them after the
//!    forward, gather them again for the backward, and reduce-scatter each gradient as soon
//!    as it is complete (summed in rank order: deterministic); the rank adds its gradient
//!    shards up over its micro-batches. The loss sums and the noisy-token count are
//!    all-reduced;
//! 3. the optimizer update of the rank's shards (`step::build_update_shards`), whose squared
//!    gradient norms are all-reduced into the global gradient norm.
//!
//! The trainer's update has no gradient clipping; the global norm is the reported metric.

use super::heldout::heldout_record;
use super::run_loop::LoopCtx;
use super::step::{self, LossOpts, METRICS};
use super::{elbo_on, rows_tensor, scalar_in, HELDOUT_REPS};
use crate::backend::Backend;
use crate::fsdp::{checkpoint as sharded, ShardPlan};
use crate::packer::Packer;
use anyhow::{anyhow, bail, Context, Result};
use gidd_engine::backend::cpu::Comm;
use gidd_engine::collective::tcp_store::RankEnv;
use gidd_engine::collective::{run_ranks, Collective, TcpComm};
use gidd_engine::{CollectiveExecutor, CpuExecutor, Data, Executor, HostTensor};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a rank waits for the others at one collective before it declares them failed.
/// Long: the other ranks wait at the next step's broadcast while rank 0 evaluates or
/// writes a checkpoint. A rank that errors or panics stops the others at once, not after it.
const RANK_TIMEOUT: Duration = Duration::from_secs(3600);

/// What every rank reads: the loop context's fields, less the packer (behind a lock:
/// rank 0 alone draws batches).
struct RankCtx<'a> {
    a: &'a super::TrainArgs,
    r: &'a super::Resolved,
    cfg: &'a gidd_model::GiddConfig,
    sched: &'a gidd_model::Schedule,
    no: &'a gidd_model::noise::NoiseOpts,
    oo: &'a super::optim::OptimOpts,
    dtype: gidd_engine::DType,
    eval: &'a crate::packer::EvalSet,
    start: usize,
    heldout_true_entropy: Option<f64>,
    tokenizer: Option<&'a std::path::Path>,
    data: &'a serde_json::Value,
    lo: &'a LossOpts,
    plan: &'a ShardPlan,
    /// the state at the start, whole: each rank takes its shards of it
    full: [&'a [HostTensor]; 3],
    /// rows per micro-batch
    micro: usize,
}

/// How the ranks of a run are launched.
pub(super) enum Ranks {
    /// `--nproc N`: N threads of this process
    Threads(usize),
    /// this process is one rank of a group launched with torchrun's variables
    Process(RankEnv),
}

impl Ranks {
    /// `--nproc`, or this process's rank when WORLD_SIZE is set (to more than 1).
    pub(super) fn new(nproc: usize) -> Result<Ranks> {
        let var = |k: &str| std::env::var(k).ok();
        let launched = var("WORLD_SIZE").is_some_and(|w| w.trim() != "1");
        match (launched, nproc) {
            (false, n) => Ok(Ranks::Threads(n)),
            (true, 1) => Ok(Ranks::Process(RankEnv::from_vars(var).map_err(|e| {
                anyhow!("{e} (this process was launched as one rank of a group: WORLD_SIZE is set)")
            })?)),
            (true, n) => bail!(
                "--nproc {n} with WORLD_SIZE set: a launcher (torchrun) starts one process per rank; use one or the other"
            ),
        }
    }
    pub(super) fn world(&self) -> usize {
        match self {
            Ranks::Threads(n) => *n,
            Ranks::Process(e) => e.world,
        }
    }
    /// Whether this process reports (writes metrics, evaluates, prints the report).
    pub(super) fn reports(&self) -> bool {
        match self {
            Ranks::Threads(_) => true,
            Ranks::Process(e) => e.rank == 0,
        }
    }
}

/// Trains steps `c.start..` with the ranks `ranks`; returns the last checkpoint written
/// and, where this process reports, leaves the final parameters, gathered, in `params`.
/// `mu` and `nu` are the starting optimizer state (the final one stays sharded, in the
/// checkpoints).
pub(super) fn train_fsdp(
    c: &mut LoopCtx,
    lo: &LossOpts,
    ranks: &Ranks,
    params: &mut [(String, HostTensor)],
    mu: &[HostTensor],
    nu: &[HostTensor],
) -> Result<Option<PathBuf>> {
    let world = ranks.world();
    let (batch, a) = (c.r.batch, c.a);
    if world == 0 || !batch.is_multiple_of(world) {
        bail!("--nproc {world} must divide --batch_size {batch}: every rank trains on its own rows of the batch");
    }
    let per = batch / world;
    let micro = a.micro_batch_size.unwrap_or(per).min(per);
    if !per.is_multiple_of(micro) {
        bail!("--micro_batch_size {micro} must divide the {per} rows of each of the {world} ranks");
    }
    let shapes: Vec<(String, Vec<usize>)> = params
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone()))
        .collect();
    let plan = ShardPlan::new(&shapes, world)?;
    let full_p: Vec<HostTensor> = params.iter().map(|(_, t)| t.clone()).collect();
    let packer = Mutex::new(&mut *c.packer);
    let x = RankCtx {
        a: c.a,
        r: c.r,
        cfg: c.cfg,
        sched: c.sched,
        no: c.no,
        oo: c.oo,
        dtype: c.dtype,
        eval: c.eval,
        start: c.start,
        heldout_true_entropy: c.heldout_true_entropy,
        tokenizer: c.tokenizer.as_deref(),
        data: &c.data,
        lo,
        plan: &plan,
        full: [&full_p, mu, nu],
        micro,
    };
    let backend = a.exec.backend;
    let (last, final_params) = match ranks {
        Ranks::Threads(_) => {
            // one device per rank: GPU `rank` on cuda, a device of its own on wgpu
            let outs = run_ranks(world, RANK_TIMEOUT, |comm| {
                on_executor(backend, comm.rank(), comm, &x, &packer)
            });
            outs.map_err(|e| anyhow!("{e}"))?.swap_remove(0)
        }
        Ranks::Process(env) => {
            let comm = TcpComm::connect(env, RANK_TIMEOUT).map_err(|e| anyhow!("{e}"))?;
            if env.rank == 0 {
                eprintln!(
                    "fsdp: {world} process ranks met at {}:{}",
                    env.master_addr, env.master_port
                );
            }
            let out = on_executor(backend, env.local_rank, &comm, &x, &packer);
            if let Err(e) = &out {
                // the other processes stop at their next collective, naming this rank
                comm.abort(&format!("{e:#}"));
            }
            out.with_context(|| format!("rank {} of {world}", env.rank))?
        }
    };
    if ranks.reports() {
        for ((_, p), t) in params
            .iter_mut()
            .zip(final_params.context("rank 0 returned no parameters")?)
        {
            *p = t;
        }
    }
    c.start = c.r.steps;
    Ok(last)
}

/// What a rank returns: its last checkpoint, and on rank 0 the final parameters.
type RankOut = (Option<PathBuf>, Option<Vec<HostTensor>>);

/// [`rank_main`] on the executor `backend` names, on device `device` of this host.
fn on_executor(
    backend: Backend,
    device: usize,
    comm: Comm,
    x: &RankCtx,
    packer: &Mutex<&mut Packer>,
) -> Result<RankOut> {
    match backend {
        Backend::Cpu => rank_main(&CpuExecutor, comm, x, packer),
        Backend::Wgpu => rank_main(&gidd_wgpu::WgpuExecutor::new()?, comm, x, packer),
        Backend::Cuda => rank_main(&gidd_cuda::CudaExecutor::new(device)?, comm, x, packer),
        Backend::Xla => bail!(
            "ranks (--nproc, or WORLD_SIZE) run on the cpu, wgpu and cuda executors; sharding on XLA devices is --devices"
        ),
    }
}

fn upload_all<E: Executor>(exec: &E, ts: &[HostTensor]) -> Result<Vec<E::Buffer>> {
    Ok(ts
        .iter()
        .map(|t| exec.upload(t))
        .collect::<gidd_engine::Result<_>>()?)
}

fn download_all<E: Executor>(exec: &E, bs: &[E::Buffer]) -> Result<Vec<HostTensor>> {
    Ok(bs
        .iter()
        .map(|b| exec.download(b))
        .collect::<gidd_engine::Result<_>>()?)
}

/// One rank's run on `exec` (its state in the executor's buffers; what crosses ranks goes
/// through `comm`, inside the programs or between them). Only the collective's interface
/// is used: the same loop serves any implementation of it.
fn rank_main<E: CollectiveExecutor>(
    exec: &E,
    comm: Comm,
    x: &RankCtx,
    packer: &Mutex<&mut Packer>,
) -> Result<RankOut> {
    let (c, plan) = (x, x.plan);
    let (a, r, oo) = (c.a, c.r, c.oo);
    let (rank, world) = (comm.rank(), comm.world());
    let (per, seq, master) = (r.batch / world, r.seq, c.dtype.accum());
    let t0 = Instant::now();
    let pmicro =
        step::build_micro_sharded(c.cfg, c.sched, c.no, x.lo, x.micro, seq, c.dtype, plan)?;
    let mut lmicro = exec.load(&pmicro)?;
    // the program as the executor runs it (its fused ops without a kernel decomposed)
    let pmicro = gidd_engine::rewrite::lower_for(&pmicro, &|op, d| exec.supports_fused(op, d))?;
    let mut lupdate = exec.load(&step::build_update_shards(
        &plan.names,
        &plan.lens,
        oo,
        master,
    )?)?;
    let [fp, fmu, fnu] = x.full;
    let (mut sp, mut smu, mut snu) = (
        upload_all(exec, &plan.shard(fp, rank)?)?,
        upload_all(exec, &plan.shard(fmu, rank)?)?,
        upload_all(exec, &plan.shard(fnu, rank)?)?,
    );
    let mut metrics = match rank {
        0 => {
            eprintln!(
                "fsdp: {world} ranks on the {} executor, {per} rows each in micro-batches of {}; per rank {:.2} MiB of parameter shards, {:.2} MiB of mu and nu; step program {:.2} MiB planned, of it gathered parameters and full gradients at most {} bytes; compiled in {:.1}s",
                exec.name(),
                x.micro,
                mib(plan.total * master.size()),
                mib(2 * plan.total * master.size()),
                mib(pmicro.planned_bytes()),
                crate::fsdp::memory::collective_peak_bytes(&pmicro),
                t0.elapsed().as_secs_f64()
            );
            Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(a.save_directory.join("metrics.jsonl"))?,
            )
        }
        _ => None,
    };
    let seed_t = exec.upload(&HostTensor::u32(
        vec![2],
        vec![a.seed as u32, (a.seed >> 32) as u32 ^ 0x9e37],
    )?)?;
    let mut leval = None;
    let mut last_good = None;
    let mut k = c.start;
    while k < r.steps {
        // 1. the global batch, drawn once
        let mine = match rank {
            0 => {
                let mut p = packer.lock().map_err(|_| anyhow!("packer lock poisoned"))?;
                rows_tensor(&p.next_batch(r.batch)?, seq)?.data
            }
            _ => Data::I32(vec![]),
        };
        let Data::I32(tokens) = comm.broadcast(&mine, 0)? else {
            bail!("rank {rank}: the broadcast batch is not i32");
        };
        if tokens.len() != r.batch * seq {
            bail!(
                "rank {rank}: a batch of {} tokens, expected {}",
                tokens.len(),
                r.batch * seq
            );
        }
        let t = Instant::now();
        // 2. this rank's rows; gathers and reduce-scatters run inside the program
        let step_t = exec.upload(&HostTensor::u32(vec![], vec![k as u32])?)?;
        let mut gshard = upload_all(exec, &plan.zeros(master))?;
        let mut sums = vec![0f64; 5];
        for i in 0..per / x.micro {
            let row0 = rank * per + i * x.micro;
            let labels = exec.upload(&HostTensor::i32(
                vec![x.micro, seq],
                tokens[row0 * seq..(row0 + x.micro) * seq].to_vec(),
            )?)?;
            let r0 = exec.upload(&HostTensor::u32(vec![], vec![row0 as u32])?)?;
            let mut rest: Vec<&E::Buffer> = sp.iter().collect();
            rest.extend([&labels, &seed_t, &step_t, &r0]);
            let o =
                exec.run_donating_with(&mut lmicro, comm, std::mem::take(&mut gshard), &rest)?;
            for (j, s) in sums.iter_mut().enumerate() {
                *s += exec.download(&o[j])?.to_f64_vec()[0];
            }
            gshard = o.into_iter().skip(5).collect();
        }
        let sums = comm.all_reduce(&Data::F64(sums))?;
        let sums: Vec<f64> = (0..5).map(|i| sums.get_f64(i)).collect();
        let count = sums[4].max(1.0);
        // 3. this rank's update
        let scalars = oo.step_scalars(k);
        let sc: Vec<HostTensor> = scalars.iter().map(|&v| scalar_in(v, master)).collect();
        let sc = upload_all(exec, &sc)?;
        let scale = exec.upload(&scalar_in(if x.lo.sum { 1.0 } else { 1.0 / count }, master))?;
        let mut rest: Vec<&E::Buffer> = gshard.iter().collect();
        rest.extend(sc.iter());
        rest.push(&scale);
        let mut state = std::mem::take(&mut sp);
        state.append(&mut smu);
        state.append(&mut snu);
        let o = exec.run_donating(&mut lupdate, state, &rest)?;
        let sq = comm
            .all_reduce(&Data::F64(vec![exec.download(&o[0])?.to_f64_vec()[0]]))?
            .get_f64(0);
        let n = plan.names.len();
        let mut it = o.into_iter().skip(1);
        sp = it.by_ref().take(n).collect();
        smu = it.by_ref().take(n).collect();
        snu = it.collect();
        let dt = t.elapsed().as_secs_f64();
        let m = [
            sums[0] / count,
            sums[1] / count,
            sums[2] / count,
            sums[3] / count,
            sq.sqrt(),
            count,
        ];
        debug_assert_eq!(m.len(), METRICS.len());
        if !m[0].is_finite() {
            bail!("loss is {} at step {}: stopping", m[0], k + 1);
        }
        k += 1;
        if let Some(f) = &mut metrics {
            let tps = (r.batch * seq) as f64 / dt;
            let line = serde_json::json!({
                "step": k, "loss": m[0], "elbo": m[1], "kl": m[2], "is": m[3], "lr": scalars[0],
                "grad_norm": m[4], "tokens_per_s": tps, "ms_per_step": dt * 1e3, "world": world,
            });
            writeln!(f, "{line}")?;
            if k.is_multiple_of((r.steps / 40).max(10)) || k == c.start + 1 || k == r.steps {
                eprintln!(
                    "step {k:>6}/{} loss {:.4} elbo {:.4} kl {:.4} is {:.4} |g| {:.3} {tps:.0} tok/s ({world} ranks)",
                    r.steps, m[0], m[1], m[2], m[3], m[4]
                );
            }
        }
        let every = a.eval_steps.unwrap_or(r.steps / 4);
        if every > 0 && k.is_multiple_of(every) && k < r.steps {
            let full =
                plan.unshard(&comm.all_gather(&plan.flatten(&download_all(exec, &sp)?)?)?)?;
            if let Some(f) = &mut metrics {
                let full = upload_all(exec, &full)?;
                let le =
                    match &mut leval {
                        Some(l) => l,
                        None => leval.insert(exec.load(
                            &step::build_eval(c.cfg, c.sched, c.no, r.batch, seq, c.dtype)?.0,
                        )?),
                    };
                let refs: Vec<&E::Buffer> = full.iter().collect();
                let e = elbo_on(exec, le, &refs, c.eval, r.batch, seq, HELDOUT_REPS)?.0;
                let (msg, line) =
                    heldout_record(k, e, t0.elapsed().as_secs_f64(), c.heldout_true_entropy);
                eprintln!("{msg}");
                writeln!(f, "{line}")?;
            }
        }
        if k.is_multiple_of(r.save_steps) || k == r.steps {
            let meta = match rank {
                0 => Some(sharded::Meta {
                    cfg: c.cfg,
                    state: serde_json::json!({
                        "step": k,
                        "packer": packer.lock().map_err(|_| anyhow!("packer lock poisoned"))?.state(),
                        "data": c.data,
                        "fsdp_world": world,
                    }),
                    tokenizer: c.tokenizer,
                    keep: a.save_total_limit,
                }),
                _ => None,
            };
            let host = [&sp, &smu, &snu].map(|b| download_all(exec, b));
            let [hp, hmu, hnu] = host;
            let (hp, hmu, hnu) = (hp?, hmu?, hnu?);
            let dir = sharded::save(comm, &a.save_directory, plan, [&hp, &hmu, &hnu], meta, k)?;
            if rank == 0 {
                eprintln!("  saved {}", dir.display());
            }
            last_good = Some(dir);
        }
    }
    let full = plan.unshard(&comm.all_gather(&plan.flatten(&download_all(exec, &sp)?)?)?)?;
    if let Some(t) = comm.traffic() {
        eprintln!(
            "fsdp: rank {rank} sent {:.2} MiB of tensors ({:.2} MiB on the wire) in {} exchanges",
            mib(t.payload as usize),
            mib(t.wire as usize),
            t.rounds
        );
    }
    Ok((last_good, (rank == 0).then_some(full)))
}

fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}
