//! The CPU executor: runs a program node by node over its memory plan, with
//! kernels from `gidd_kernels` (SIMD chosen at run time, rayon across cores).

mod collective;
mod dot;
mod elem;
mod elementwise;
mod fused;
mod fusion;
mod index;
mod reduce;

use super::Executor;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::host::{Data, HostTensor};
use crate::op::Op;
use crate::program::{Loc, Program};
pub use collective::Comm;
use collective::InFlight;
use elem::{with_dtype, Arg, Elem};
use gidd_kernels::movement;

/// Runs programs on this machine's cores.
#[derive(Clone, Debug, Default)]
pub struct CpuExecutor;

/// A program with its planned buffers, kept across runs.
pub struct CpuProgram {
    pub program: Program,
    slots: Vec<Data>,
    /// What each node does in the node loop, and the elementwise chains that run as one.
    role: Vec<fusion::Role>,
    chains: Vec<fusion::Chain>,
    /// Slots holding exactly one program output: the run hands their buffer over instead of
    /// copying it (the state of a training step is most of what it returns).
    handed_over: Vec<bool>,
    /// Donated input buffers, refilling the handed-over slots at the next run (their pages
    /// are already mapped: a fresh multi-MiB buffer per step is mostly page faults).
    pool: Vec<Data>,
    /// Seconds and calls per op kind, when profiling is on.
    profile: Option<std::collections::BTreeMap<String, (f64, usize)>>,
    /// Profile rows per operand types too (`GIDD_PROFILE_SHAPES` set).
    profile_shapes: bool,
}

impl CpuProgram {
    pub fn program(&self) -> &Program {
        &self.program
    }
    /// Starts collecting time per op kind over the following runs.
    pub fn enable_profile(&mut self) {
        self.profile = Some(Default::default());
        self.profile_shapes = std::env::var_os("GIDD_PROFILE_SHAPES").is_some();
    }
    /// Fuses elementwise chains (the default; `GIDD_CPU_CHAINS=0` loads without) or runs
    /// every node alone. The results are the same bits either way.
    pub fn set_chains(&mut self, on: bool) {
        (self.role, self.chains) = if on {
            fusion::find(&self.program)
        } else {
            (vec![fusion::Role::Plain; self.program.nodes.len()], vec![])
        };
    }
    /// The number of fused elementwise chains and the nodes they hold.
    pub fn chain_stats(&self) -> (usize, usize) {
        let nodes = self.chains.iter().map(|c| c.nodes.len()).sum();
        (self.chains.len(), nodes)
    }
    /// (op kind, seconds, calls), slowest first.
    pub fn profile(&self) -> Vec<(String, f64, usize)> {
        let mut v: Vec<(String, f64, usize)> = self
            .profile
            .iter()
            .flatten()
            .map(|(k, &(t, n))| (k.clone(), t, n))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }
}

fn op_kind(op: &Op) -> String {
    match op {
        Op::Unary(u) => format!("unary {u:?}"),
        Op::Binary(b) => format!("binary {b:?}"),
        Op::Compare(c) => format!("compare {c:?}"),
        Op::Reduce { op, .. } => format!("reduce {op:?}"),
        o => o.name().to_string(),
    }
}

impl Executor for CpuExecutor {
    type Buffer = HostTensor;
    type Loaded = CpuProgram;

    fn name(&self) -> String {
        format!(
            "cpu ({}, {} threads)",
            gidd_kernels::simd::describe(),
            rayon::current_num_threads()
        )
    }

    fn upload(&self, t: &HostTensor) -> Result<HostTensor> {
        Ok(t.clone())
    }

    fn download(&self, b: &HostTensor) -> Result<HostTensor> {
        Ok(b.clone())
    }

    /// Every fused op has a kernel in f32 (bf16 and f16 programs convert around them); f64 is the audit precision, run as
    /// the decompositions (primitives have f64 kernels, fused ops do not).
    fn supports_fused(&self, _op: &Op, dtype: DType) -> bool {
        dtype != DType::F64
    }

    fn peak_flops(&self, dtype: DType) -> Option<f64> {
        // Measured once per process: a 0.2 s FMA loop on every thread.
        static F32_PEAK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
        let f32_peak = *F32_PEAK.get_or_init(|| gidd_kernels::simd::measure_f32_peak(0.2));
        Some(
            1e9 * match dtype {
                DType::BF16 => gidd_kernels::matmul::bf16_peak_gflops(f32_peak),
                // half the lanes per FMA
                DType::F64 => f32_peak / 2.0,
                _ => f32_peak,
            },
        )
    }

    fn load(&self, p: &Program) -> Result<CpuProgram> {
        let p = &crate::rewrite::lower_for(p, &|op, dt| self.supports_fused(op, dt))?;
        let slots = p.slots.iter().map(|&(d, n)| Data::zeros(d, n)).collect();
        let mut outputs_in = vec![0usize; p.slots.len()];
        for &v in &p.outputs {
            if let Loc::Slot(s) = p.loc[v] {
                outputs_in[s] += 1;
            }
        }
        let mut lp = CpuProgram {
            program: p.clone(),
            slots,
            role: vec![],
            chains: vec![],
            handed_over: outputs_in.iter().map(|&k| k == 1).collect(),
            pool: vec![],
            profile: None,
            profile_shapes: false,
        };
        lp.set_chains(fusion::enabled());
        Ok(lp)
    }

    fn run(&self, lp: &mut CpuProgram, inputs: &[&HostTensor]) -> Result<Vec<HostTensor>> {
        run_program(lp, inputs, None)
    }

    fn run_donating(
        &self,
        lp: &mut CpuProgram,
        donated: Vec<HostTensor>,
        rest: &[&HostTensor],
    ) -> Result<Vec<HostTensor>> {
        run_donated(lp, donated, rest, None)
    }
}

/// Runs with the donated inputs first, then keeps their buffers for the next run's refill.
fn run_donated(
    lp: &mut CpuProgram,
    donated: Vec<HostTensor>,
    rest: &[&HostTensor],
    comm: Option<Comm>,
) -> Result<Vec<HostTensor>> {
    let out = {
        let mut ins: Vec<&HostTensor> = donated.iter().collect();
        ins.extend_from_slice(rest);
        run_program(lp, &ins, comm)
    };
    lp.recycle(donated);
    out
}

impl CpuProgram {
    /// Keeps the owned buffers of `donated` for the slots the next run refills.
    fn recycle(&mut self, donated: Vec<HostTensor>) {
        self.pool = donated
            .into_iter()
            .map(|t| t.data)
            .filter(|d| !matches!(d, Data::Mapped(_)))
            .collect();
    }

    /// Gives every slot an earlier run handed over a buffer again: a recycled one of its
    /// dtype and length, else a new one.
    fn refill(&mut self) {
        for (s, &(dt, n)) in self.program.slots.iter().enumerate() {
            if self.slots[s].len() < n {
                let pick = self
                    .pool
                    .iter()
                    .position(|d| d.dtype() == dt && d.len() == n);
                self.slots[s] = match pick {
                    Some(i) => self.pool.swap_remove(i),
                    None => Data::zeros(dt, n),
                };
            }
        }
        self.pool.clear();
    }
}

impl CpuExecutor {
    /// Runs a program whose collective nodes (`Op::is_collective`) talk to the other ranks
    /// through `comm`, this rank's collective; every rank runs the same program.
    pub fn run_with(
        &self,
        lp: &mut CpuProgram,
        comm: Comm,
        inputs: &[&HostTensor],
    ) -> Result<Vec<HostTensor>> {
        run_program(lp, inputs, Some(comm))
    }

    /// [`CpuExecutor::run_with`] with the inputs split as [`Executor::run_donating`] takes them.
    pub fn run_donating_with(
        &self,
        lp: &mut CpuProgram,
        comm: Comm,
        donated: Vec<HostTensor>,
        rest: &[&HostTensor],
    ) -> Result<Vec<HostTensor>> {
        run_donated(lp, donated, rest, Some(comm))
    }
}

impl super::CollectiveExecutor for CpuExecutor {
    fn run_donating_with(
        &self,
        lp: &mut CpuProgram,
        comm: Comm,
        donated: Vec<HostTensor>,
        rest: &[&HostTensor],
    ) -> Result<Vec<HostTensor>> {
        CpuExecutor::run_donating_with(self, lp, comm, donated, rest)
    }
}

fn run_program(
    lp: &mut CpuProgram,
    inputs: &[&HostTensor],
    comm: Option<Comm>,
) -> Result<Vec<HostTensor>> {
    let p = &lp.program;
    if inputs.len() != p.inputs.len() {
        return Err(Error::InputCount {
            expected: p.inputs.len(),
            got: inputs.len(),
        });
    }
    for (i, ((name, v), t)) in p.inputs.iter().zip(inputs).enumerate() {
        let ty = &p.values[*v].ty;
        if t.shape != ty.shape || t.dtype() != ty.dtype {
            return Err(Error::InputMismatch {
                index: i,
                name: name.clone(),
                expected: ty.to_string(),
                got: format!("{:?}{}", t.shape, t.dtype()),
            });
        }
    }
    lp.refill();
    let p = &lp.program;
    let collective = p.nodes.iter().find(|n| n.op.is_collective());
    match (collective, comm) {
            (None, _) => run_nodes(lp, inputs, None)?,
            (Some(n), None) => {
                return Err(Error::Msg(format!(
                    "the program has collectives ({} first): run it with the rank's collective (CpuExecutor::run_with)",
                    n.op.name()
                )))
            }
            (Some(_), Some(c)) => std::thread::scope(|s| {
                let (jobs, jr) = std::sync::mpsc::channel();
                let (dt, done) = std::sync::mpsc::channel();
                s.spawn(move || collective::serve(c, jr, dt));
                let mut fl = InFlight {
                    jobs,
                    done,
                    pending: Default::default(),
                    read: collective::read_values(&lp.program),
                };
                let r = run_nodes(lp, inputs, Some(&mut fl))
                    .and_then(|_| fl.drain(&lp.program, &mut lp.slots));
                if let Err(e) = &r {
                    // a communication thread waiting for the other ranks must not wait
                    // for this one: the group fails, and every rank hears of it
                    c.abort(&e.to_string());
                }
                drop(fl);
                r
            })?,
        }
    let p = &lp.program;
    p.outputs
        .iter()
        .map(|&v| {
            let ty = &p.values[v].ty;
            let n = ty.numel();
            if let Loc::Slot(s) = p.loc[v] {
                if lp.handed_over[s] && lp.slots[s].len() == n {
                    let data = std::mem::replace(&mut lp.slots[s], Data::F32(vec![]));
                    return HostTensor::new(ty.shape.clone(), data);
                }
            }
            let data = match arg(p, &lp.slots, inputs, v) {
                Arg::Data(d) => with_dtype!(ty.dtype, T, { copy_prefix::<T>(d, n) }),
                Arg::Splat(x, d) => {
                    let mut out = Data::zeros(d, n);
                    elementwise::fill(x, &mut out, n);
                    out
                }
            };
            HostTensor::new(ty.shape.clone(), data)
        })
        .collect()
}

/// Runs every planned node in order; collective nodes go to `fl`'s thread, and a node
/// reading one waits for it first.
fn run_nodes(
    lp: &mut CpuProgram,
    inputs: &[&HostTensor],
    mut fl: Option<&mut InFlight>,
) -> Result<()> {
    let p = &lp.program;
    for (ni, node) in p.nodes.iter().enumerate() {
        if !p.runs[ni] || lp.role[ni] == fusion::Role::Inside {
            continue;
        }
        let chain = match lp.role[ni] {
            fusion::Role::Start(c) => Some(&lp.chains[c]),
            _ => None,
        };
        if let Some(fl) = fl.as_deref_mut() {
            let members = chain.map_or(std::slice::from_ref(&ni), |c| &c.nodes);
            for &v in members.iter().flat_map(|&m| &p.nodes[m].inputs) {
                fl.wait_for(
                    crate::collective::nodes::source_node(p, v),
                    p,
                    &mut lp.slots,
                )?;
            }
            if node.op.is_collective() {
                let args: Vec<Arg> = node
                    .inputs
                    .iter()
                    .map(|&v| arg(p, &lp.slots, inputs, v))
                    .collect();
                fl.issue(collective::job(p, ni, node, &args)?)?;
                continue;
            }
        }
        if let Some(ch) = chain {
            let t = lp.profile.as_ref().map(|_| std::time::Instant::now());
            fusion::run(p, ch, &mut lp.slots, inputs);
            if let (Some(t), Some(prof)) = (t, lp.profile.as_mut()) {
                let mut key = "elementwise chain".to_string();
                if lp.profile_shapes {
                    let ops: Vec<String> =
                        ch.nodes.iter().map(|&m| op_kind(&p.nodes[m].op)).collect();
                    key = format!(
                        "{key} {:?} <- [{}]",
                        p.values[node.outputs[0]].ty,
                        ops.join(", ")
                    );
                }
                record(prof, key, t);
            }
            continue;
        }
        let mut outs: Vec<Data> = node
            .outputs
            .iter()
            .map(|&o| match &p.loc[o] {
                Loc::Slot(s) => std::mem::replace(&mut lp.slots[*s], Data::F32(vec![])),
                _ => Data::F32(vec![]),
            })
            .collect();
        {
            let t = lp.profile.as_ref().map(|_| std::time::Instant::now());
            let args: Vec<Arg> = node
                .inputs
                .iter()
                .map(|&v| arg(p, &lp.slots, inputs, v))
                .collect();
            exec(p, node, &args, &mut outs)?;
            if let (Some(t), Some(prof)) = (t, lp.profile.as_mut()) {
                let mut key = op_kind(&node.op);
                if lp.profile_shapes {
                    // GIDD_PROFILE_SHAPES: one row per kind and operand types
                    let ty = |v: &usize| format!("{:?}", p.values[*v].ty);
                    let ins: Vec<String> = node.inputs.iter().map(ty).collect();
                    key = format!("{key} {} <- {}", ty(&node.outputs[0]), ins.join(", "));
                }
                record(prof, key, t);
            }
        }
        for (&o, d) in node.outputs.iter().zip(outs) {
            if let Loc::Slot(s) = &p.loc[o] {
                lp.slots[*s] = d;
            }
        }
    }
    Ok(())
}

/// Adds one call of `key`, started at `t`, to the profile.
fn record(
    prof: &mut std::collections::BTreeMap<String, (f64, usize)>,
    key: String,
    t: std::time::Instant,
) {
    let e = prof.entry(key).or_insert((0.0, 0));
    e.0 += t.elapsed().as_secs_f64();
    e.1 += 1;
}

fn copy_prefix<T: Elem>(d: &Data, n: usize) -> Data {
    let mut out = Data::zeros(d.dtype(), n);
    if let (Some(src), Some(dst)) = (T::slice(d), T::vec_mut(&mut out)) {
        dst.copy_from_slice(&src[..n]);
    }
    out
}

fn arg<'a>(p: &'a Program, slots: &'a [Data], inputs: &[&'a HostTensor], v: usize) -> Arg<'a> {
    match &p.loc[v] {
        Loc::Input(i) => Arg::Data(&inputs[*i].data),
        Loc::Slot(s) => Arg::Data(&slots[*s]),
        Loc::Splat(x) => Arg::Splat(*x, p.values[v].ty.dtype),
        Loc::Const(c) => Arg::Data(&c.data),
    }
}

fn exec(p: &Program, node: &crate::graph::Node, a: &[Arg], outs: &mut [Data]) -> Result<()> {
    let ty = |v: usize| &p.values[v].ty;
    let in_shape = |i: usize| ty(node.inputs[i]).shape.as_slice();
    let out_ty = ty(node.outputs[0]);
    let n = out_ty.numel();
    let out = &mut outs[0];
    match &node.op {
        Op::Input { .. } | Op::Constant(_) | Op::Splat(_) | Op::Reshape { .. } => {
            // Planned away (aliases or folded leaves); a reshape that still runs copies.
            with_dtype!(out_ty.dtype, T, {
                let src = a[0].slice::<T>(n);
                T::vec_mut(out).expect("slot dtype")[..n].copy_from_slice(&src);
            })
        }
        Op::Iota { dim } => elementwise::iota(&out_ty.shape, *dim, out),
        Op::Unary(u) => elementwise::unary(*u, a[0], out, n),
        Op::Binary(b) => elementwise::binary(*b, a[0], a[1], out, n),
        Op::Compare(c) => match out {
            Data::Bool(o) => elementwise::compare(*c, a[0], a[1], &mut o[..n]),
            _ => unreachable!("compare outputs bool"),
        },
        Op::Select => elementwise::select(a[0], a[1], a[2], out, n),
        Op::Convert { .. } => elementwise::convert(a[0], out, n),
        Op::BroadcastInDim { shape, dims } => with_dtype!(out_ty.dtype, T, {
            let src_shape = in_shape(0);
            let src = a[0].slice::<T>(src_shape.iter().product());
            movement::broadcast_in_dim(
                T::vec_mut(out).expect("slot dtype"),
                shape,
                &src,
                src_shape,
                dims,
            );
        }),
        Op::Transpose { perm } => with_dtype!(out_ty.dtype, T, {
            let src = a[0].slice::<T>(n);
            movement::transpose(
                T::vec_mut(out).expect("slot dtype"),
                &src,
                in_shape(0),
                perm,
            );
        }),
        Op::Slice { start, limit } => with_dtype!(out_ty.dtype, T, {
            let src_shape = in_shape(0);
            let src = a[0].slice::<T>(src_shape.iter().product());
            movement::slice(
                T::vec_mut(out).expect("slot dtype"),
                &src,
                src_shape,
                start,
                limit,
            );
        }),
        Op::Concatenate { dim } => with_dtype!(out_ty.dtype, T, {
            let srcs: Vec<_> = (0..a.len())
                .map(|i| a[i].slice::<T>(in_shape(i).iter().product()))
                .collect();
            let parts: Vec<(&[T], &[usize])> = srcs
                .iter()
                .enumerate()
                .map(|(i, s)| (&s[..], in_shape(i)))
                .collect();
            movement::concatenate(T::vec_mut(out).expect("slot dtype"), &parts, *dim);
        }),
        Op::DotGeneral(dd) => dot::dot_general(dd, a[0], in_shape(0), a[1], in_shape(1), out, n),
        Op::Reduce { op, dims } => reduce::reduce(*op, dims, a[0], in_shape(0), out),
        Op::Gather { axis } => {
            let ni: usize = in_shape(1).iter().product();
            index::gather(a[0], in_shape(0), *axis, a[1], ni, out)
        }
        Op::ScatterAdd { axis, shape } => {
            let ni: usize = in_shape(1).iter().product();
            index::scatter_add(a[0], shape, *axis, a[1], ni, out)
        }
        Op::Softmax => fused::softmax_fwd(false, a[0], in_shape(0), out),
        Op::LogSoftmax => fused::softmax_fwd(true, a[0], in_shape(0), out),
        Op::SoftmaxBwd => fused::softmax_bwd(a[0], a[1], in_shape(0), out),
        Op::RmsNorm { eps } => fused::rms_norm_fwd(*eps, a[0], a[1], in_shape(0), outs),
        Op::RmsNormBwd => fused::rms_norm_bwd(a[0], a[1], a[2], a[3], in_shape(0), outs),
        Op::Rope => fused::rope_apply(false, a[0], a[1], a[2], in_shape(0), out),
        Op::RopeBwd => fused::rope_apply(true, a[0], a[1], a[2], in_shape(0), out),
        Op::Attention(spec) => fused::attention_fwd(spec, a, in_shape(0), in_shape(1), outs),
        Op::AttentionBwd(spec) => fused::attention_bwd(spec, a, in_shape(0), in_shape(1), outs),
        Op::DiffusionKl(spec) => fused::diffusion_kl(spec, a, in_shape(0), outs),
        Op::DiffusionKlBwd(spec) => fused::diffusion_kl_bwd(spec, a, in_shape(0), out),
        Op::SampleStep(spec) => fused::sample_step(spec, a, in_shape(0), out)?,
        Op::AllGather { .. } | Op::ReduceScatter { .. } => {
            return Err(Error::Msg(format!(
                "{} reached a kernel: collectives run through the rank's collective",
                node.op.name()
            )))
        }
    }
    Ok(())
}
