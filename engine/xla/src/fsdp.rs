//! FSDP behind the engine's `Executor` trait, so the trainer's step loop runs unchanged
//! over several devices: every tensor's layout follows from its shape alone
//! ([`fsdp_layout`]: split on dim 0 when it divides over the devices, else replicated),
//! so a buffer uploaded for one input, or returned by one run, has the layout every
//! program expects of a tensor of that type. Parameters and optimizer state live in
//! shards between steps; the batch is split across devices; XLA inserts the gathers
//! and reductions.

use crate::emit::emit_module_with;
use crate::pjrt::Client;
use crate::spmd::{
    annotations, fsdp_layout, Partitioner, ShardedBuffer, Split, SpmdExecutor, SpmdProgram,
};
use gidd_engine::op::TensorType;
use gidd_engine::{DType, Executor, HostTensor, Program};

#[derive(Clone)]
pub struct FsdpExecutor {
    spmd: SpmdExecutor,
}

impl FsdpExecutor {
    /// FSDP over the first `n` addressable devices of `client`, partitioned by `part`.
    pub fn new(client: Client, n: usize, part: Partitioner) -> crate::Result<FsdpExecutor> {
        Ok(FsdpExecutor {
            spmd: SpmdExecutor::new(client, n)?.with_partitioner(part),
        })
    }

    pub fn spmd(&self) -> &SpmdExecutor {
        &self.spmd
    }

    fn layout(&self, types: &[&TensorType]) -> Vec<Split> {
        fsdp_layout(types, self.spmd.devices())
    }
}

/// The StableHLO module FSDP over `n` devices compiles: `p` with the shape-rule layout
/// of every argument and result, as `part` reads it (for `gidd export-hlo --devices`).
pub fn fsdp_module(p: &Program, n: usize, part: Partitioner) -> crate::Result<String> {
    let ins: Vec<TensorType> = p
        .input_types()
        .into_iter()
        .map(|(_, t)| t.clone())
        .collect();
    let outs: Vec<TensorType> = p.output_types().into_iter().cloned().collect();
    let (ri, ro): (Vec<&TensorType>, Vec<&TensorType>) =
        (ins.iter().collect(), outs.iter().collect());
    let sh = annotations(
        &ins,
        &fsdp_layout(&ri, n),
        &outs,
        &fsdp_layout(&ro, n),
        n,
        part,
    );
    emit_module_with(p, Some(&sh))
}

impl Executor for FsdpExecutor {
    type Buffer = ShardedBuffer;
    type Loaded = SpmdProgram;

    /// The XLA CPU plugin computes on this host's cores (all of its "devices" share them),
    /// so its peak is the host's; other platforms' peaks are not known here.
    fn peak_flops(&self, dtype: DType) -> Option<f64> {
        (self.spmd.client().platform() == "cpu")
            .then(|| gidd_engine::CpuExecutor.peak_flops(dtype))
            .flatten()
    }

    fn name(&self) -> String {
        let c = self.spmd.client();
        let (major, minor) = c.api().version();
        format!(
            "xla FSDP over {} of {} devices, {:?} partitioner ({} {}, PJRT C API {major}.{minor})",
            self.spmd.devices(),
            c.device_count(),
            self.spmd.partitioner(),
            c.platform(),
            c.platform_version(),
        )
    }

    fn upload(&self, t: &HostTensor) -> gidd_engine::Result<ShardedBuffer> {
        let ty = TensorType {
            shape: t.shape.clone(),
            dtype: t.dtype(),
        };
        let split = self.layout(&[&ty])[0];
        Ok(self.spmd.upload(t, split)?)
    }

    fn download(&self, b: &ShardedBuffer) -> gidd_engine::Result<HostTensor> {
        Ok(self.spmd.download(b)?)
    }

    fn load(&self, p: &Program) -> gidd_engine::Result<SpmdProgram> {
        let ins: Vec<&TensorType> = p.input_types().into_iter().map(|(_, t)| t).collect();
        let outs = p.output_types();
        Ok(self.spmd.load(p, &self.layout(&ins), &self.layout(&outs))?)
    }

    fn run(
        &self,
        lp: &mut SpmdProgram,
        inputs: &[&ShardedBuffer],
    ) -> gidd_engine::Result<Vec<ShardedBuffer>> {
        Ok(self.spmd.run(lp, inputs)?)
    }

    fn run_donating(
        &self,
        lp: &mut SpmdProgram,
        donated: Vec<ShardedBuffer>,
        rest: &[&ShardedBuffer],
    ) -> gidd_engine::Result<Vec<ShardedBuffer>> {
        Ok(self.spmd.run_donating(lp, donated, rest)?)
    }

    fn memory_plan(&self, lp: &SpmdProgram) -> Option<String> {
        let plan = crate::executor::plan_note(lp.executable(), lp.origin(), self.spmd.cache())?;
        Some(format!("per device: {plan}"))
    }
}
