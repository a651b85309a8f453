//! Collective nodes (FSDP's gathers and reduce-scatters) on the wgpu executor, staged
//! through host memory: the dispatches before a collective are submitted, its operands
//! downloaded and handed to a communication thread that runs the rank's collective on the
//! host (`gidd_engine::collective::nodes`, the cpu executor's code), and the dispatches
//! that do not read its results are submitted meanwhile, so the device computes the next
//! layer while the ranks gather; before the first dispatch that reads a result, the
//! result is written into its planned buffer (`queue.write_buffer`, ordered before the
//! later submissions). Where each collective is issued and waited for is
//! `nodes::staging_plan` over the dispatch index each node starts at.

use crate::buffer::{alloc_bytes, decode, encode, splat_words, value_bytes, WgpuBuffer};
use crate::error::{Result, WgpuError};
use crate::executor::{record, WgpuExecutor, WgpuProgram};
use gidd_engine::collective::nodes::{self, Comm, Done, Job, Stage};
use gidd_engine::program::Loc;
use gidd_engine::{CollectiveExecutor, Data, HostTensor};
use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender};

impl WgpuExecutor {
    /// The words of each (buffer, bytes), copied out in one submission and one wait.
    pub(crate) fn read_words(
        &self,
        bufs: &[(&wgpu::Buffer, u64)],
        doing: &str,
    ) -> Result<Vec<Vec<u32>>> {
        let gpu = &self.gpu;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let staging: Vec<Option<wgpu::Buffer>> = bufs
            .iter()
            .map(|&(b, bytes)| {
                (bytes > 0).then(|| {
                    let s = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("download"),
                        size: alloc_bytes(bytes),
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    enc.copy_buffer_to_buffer(b, 0, &s, 0, bytes);
                    s
                })
            })
            .collect();
        gpu.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        for (k, s) in staging.iter().enumerate() {
            if let Some(s) = s {
                let tx = tx.clone();
                s.slice(..bufs[k].1)
                    .map_async(wgpu::MapMode::Read, move |r| {
                        let _ = tx.send(r);
                    });
            }
        }
        drop(tx);
        gpu.wait(doing)?;
        for r in rx {
            r.map_err(|e| WgpuError::Api {
                doing: format!("mapping ({doing})"),
                msg: e.to_string(),
            })?;
        }
        staging
            .iter()
            .zip(bufs)
            .map(|(s, &(_, bytes))| {
                let Some(s) = s else { return Ok(vec![]) };
                let w = {
                    let view = s.get_mapped_range(..bytes).map_err(|e| WgpuError::Api {
                        doing: format!("reading ({doing})"),
                        msg: e.to_string(),
                    })?;
                    bytemuck::pod_collect_to_vec(&view)
                };
                s.unmap();
                Ok(w)
            })
            .collect()
    }

    /// The host data of collective node `ni`'s operands (after the dispatches submitted
    /// so far).
    fn operands(&self, lp: &WgpuProgram, inputs: &[&WgpuBuffer], ni: usize) -> Result<Vec<Data>> {
        let p = &lp.program;
        let vals = &p.nodes[ni].inputs;
        let mut reads = vec![];
        for &v in vals {
            let ty = &p.values[v].ty;
            let bytes = value_bytes(&ty.shape, ty.dtype);
            match &p.loc[v] {
                Loc::Slot(s) => reads.push((&lp.slots[*s], bytes)),
                Loc::Input(i) => reads.push((&*inputs[*i].buf, bytes)),
                Loc::Splat(_) | Loc::Const(_) => {}
            }
        }
        let mut words = self
            .read_words(&reads, "reading a collective's operands")?
            .into_iter();
        vals.iter()
            .map(|&v| {
                let ty = &p.values[v].ty;
                let w = match &p.loc[v] {
                    Loc::Const(c) => return Ok(c.data.materialize().into_owned()),
                    Loc::Splat(x) => splat_words(*x, ty.dtype, ty.numel()),
                    Loc::Slot(_) | Loc::Input(_) => words.next().unwrap_or_default(),
                };
                Ok(decode(&w, ty.shape.clone(), ty.dtype)?.data)
            })
            .collect()
    }

    /// Writes the outputs of the next finished collective (which must be the oldest in
    /// flight) into their planned buffers.
    fn finish_one(
        &self,
        lp: &WgpuProgram,
        done: &Receiver<Done>,
        pending: &mut VecDeque<usize>,
        read: &[bool],
    ) -> gidd_engine::Result<()> {
        let (ni, r) = nodes::next_done(done, pending)?;
        let p = &lp.program;
        for (&v, d) in p.nodes[ni].outputs.iter().zip(r) {
            // an output no node reads was planned dead at its node: its buffer may hold a
            // live value by now (nodes::read_values)
            if !read[v] {
                continue;
            }
            let Loc::Slot(s) = p.loc[v] else {
                return Err(gidd_engine::Error::Msg(format!(
                    "output {v} of {} has no buffer",
                    p.nodes[ni].op.name()
                )));
            };
            let ty = &p.values[v].ty;
            let w = encode(&HostTensor::new(ty.shape.clone(), d)?)?;
            if !w.is_empty() {
                self.gpu
                    .queue
                    .write_buffer(&lp.slots[s], 0, bytemuck::cast_slice(&w));
            }
        }
        Ok(())
    }

    /// The stages of one run: dispatches submitted in runs between the points where a
    /// collective is issued or waited for.
    fn staged(
        &self,
        lp: &mut WgpuProgram,
        inputs: &[&WgpuBuffer],
        donated: usize,
        jobs: &Sender<Job>,
        done: &Receiver<Done>,
    ) -> gidd_engine::Result<Vec<WgpuBuffer>> {
        let plan = nodes::staging_plan(&lp.program, &lp.node_start, lp.dispatches.len());
        let read = nodes::read_values(&lp.program);
        self.bind_inputs(lp, inputs);
        let gpu = &self.gpu;
        let submit = |lp: &WgpuProgram, from: usize, to: usize| {
            if from < to {
                let mut enc = gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run") });
                record(lp, &mut enc, from..to);
                gpu.queue.submit([enc.finish()]);
            }
        };
        let (mut at, mut pending) = (0, VecDeque::new());
        for &(k, stage) in &plan {
            submit(lp, at, k);
            at = k;
            match stage {
                Stage::Issue(ni) => {
                    let ops = self.operands(lp, inputs, ni)?;
                    let j = nodes::job(&lp.program, ni, &ops)?;
                    if jobs.send(j).is_err() {
                        return Err(nodes::stopped(done));
                    }
                    pending.push_back(ni);
                }
                Stage::Wait(ni) => {
                    while pending.contains(&ni) {
                        self.finish_one(lp, done, &mut pending, &read)?;
                    }
                }
            }
        }
        submit(lp, at, lp.dispatches.len());
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        let outs = self.collect_outputs(lp, inputs, donated, &mut enc)?;
        gpu.queue.submit([enc.finish()]);
        Ok(outs)
    }

    fn execute_with(
        &self,
        lp: &mut WgpuProgram,
        comm: Comm,
        inputs: &[&WgpuBuffer],
        donated: usize,
    ) -> gidd_engine::Result<Vec<WgpuBuffer>> {
        self.check_inputs(lp, inputs)?;
        if lp.profile.is_some() {
            return Err(gidd_engine::Error::Msg(
                "profiling a program with collectives is not supported on wgpu".into(),
            ));
        }
        let outs = std::thread::scope(|s| {
            let (jobs, jr) = std::sync::mpsc::channel();
            let (dt, done) = std::sync::mpsc::channel();
            s.spawn(move || nodes::serve(comm, jr, dt));
            let r = self
                .gpu
                .scoped("running a program", || {
                    self.staged(lp, inputs, donated, &jobs, &done)
                })
                .map_err(gidd_engine::Error::from)
                .and_then(|r| r);
            if let Err(e) = &r {
                // the other ranks must not wait for this one: the group fails
                comm.abort(&e.to_string());
            }
            drop(jobs);
            r
        })?;
        self.gpu.take_uncaptured("running a program")?;
        Ok(outs)
    }
}

impl CollectiveExecutor for WgpuExecutor {
    /// Collectives staged through host memory, overlapping the dispatches that do not
    /// read them.
    fn run_donating_with(
        &self,
        lp: &mut WgpuProgram,
        comm: Comm,
        donated: Vec<WgpuBuffer>,
        rest: &[&WgpuBuffer],
    ) -> gidd_engine::Result<Vec<WgpuBuffer>> {
        let mut ins: Vec<&WgpuBuffer> = donated.iter().collect();
        ins.extend_from_slice(rest);
        let n = donated.len();
        self.execute_with(lp, comm, &ins, n)
    }
}
