//! The `Executor` trait for [`WgpuExecutor`]: load, run (with donation), upload, download.

use crate::buffer::{decode, elems_bytes, encode, next_id, no_f64, WgpuBuffer};
use crate::error::{Result, WgpuError};
use crate::executor::{AttentionStrategy, WgpuExecutor, WgpuProgram};
use crate::lower::{binds_input, lower};
use crate::plan::Builder;
use gidd_engine::{DType, Executor, HostTensor, Op, Program};
use std::sync::Arc;

impl WgpuExecutor {
    fn load_program(&self, p: &Program) -> Result<WgpuProgram> {
        if let Some(v) = p.values.iter().find(|v| v.ty.dtype == DType::F64) {
            return Err(WgpuError::Unsupported(format!(
                "the program has an f64 value ({}): {}",
                v.ty,
                no_f64()
            )));
        }
        let p = gidd_engine::rewrite::lower_for(p, &|op, d| self.supports_fused(op, d))
            .map_err(|e| WgpuError::Unsupported(format!("decomposing fused ops: {e}")))?;
        let (dispatches, params, consts, scratch, node_start) = {
            let mut pipes = self
                .pipes
                .lock()
                .map_err(|_| WgpuError::Unsupported("the pipeline cache was poisoned".into()))?;
            let max = self.max_binding_bytes();
            let mut b = Builder::new(&p, &self.gpu, self.gemm, &mut pipes, max);
            b.attention_rows = match self.attention {
                AttentionStrategy::Auto => self.gpu.info.device_type == wgpu::DeviceType::Cpu,
                AttentionStrategy::Tiled => false,
                AttentionStrategy::RowStream => true,
            };
            lower(&mut b, self.fuse)?;
            // scratch buffers are bound whole (but those of Builder::scratch_in_windows)
            if let Some(s) = b.scratch.iter().find(|&&s| s > max) {
                return Err(WgpuError::Unsupported(format!(
                    "a scratch buffer of {:.1} MiB (an operand copied or widened for a kernel) is \
                     more than one storage binding ({:.1} MiB)",
                    *s as f64 / 1048576.0,
                    max as f64 / 1048576.0
                )));
            }
            let mut scratch = b.scratch;
            scratch.resize(scratch.len().max(b.windowed_scratch.len()), 0);
            for (s, &w) in scratch.iter_mut().zip(&b.windowed_scratch) {
                *s = w.max(*s);
            }
            (b.dispatches, b.params, b.consts, scratch, b.node_start)
        };
        let slots = p
            .slots
            .iter()
            .map(|&(d, n)| self.storage(elems_bytes(n, d), "a planned buffer"))
            .collect::<Result<Vec<_>>>()?;
        let consts = consts
            .iter()
            .map(|w| self.storage_with(w, "a constant"))
            .collect::<Result<Vec<_>>>()?;
        let scratch = scratch
            .iter()
            .map(|&b| self.storage(b, "a scratch buffer"))
            .collect::<Result<Vec<_>>>()?;
        let bytes = [
            slots.iter().map(|b| b.size()).sum(),
            consts.iter().map(|b| b.size()).sum(),
            scratch.iter().map(|b| b.size()).sum(),
        ];
        let mut lp = WgpuProgram {
            params: self.storage_with(&params, "the parameter blocks")?,
            dummy: self.storage(16, "a placeholder")?,
            fixed: vec![],
            cached: (0..dispatches.len()).map(|_| None).collect(),
            dispatches,
            program: p,
            slots,
            consts,
            scratch,
            bytes,
            profile: None,
            node_start,
        };
        lp.fixed = lp
            .dispatches
            .iter()
            .map(|d| (!binds_input(&d.binds)).then(|| self.bind_group(&lp, d, &[])))
            .collect();
        Ok(lp)
    }
}

impl Executor for WgpuExecutor {
    type Buffer = WgpuBuffer;
    type Loaded = WgpuProgram;

    fn name(&self) -> String {
        let i = &self.gpu.info;
        format!("wgpu ({}, {:?}, {:?})", i.name, i.backend, i.device_type)
    }

    /// The fused ops with a WGSL kernel (`crate::fused::supports`); the rest decompose
    /// (the sampling step, which has no decomposition, is refused without f64 shaders).
    fn supports_fused(&self, op: &Op, dtype: DType) -> bool {
        let f64_ok = !matches!(op, Op::SampleStep(_)) || self.gpu.f64_shaders;
        f64_ok && crate::fused::supports(op, dtype)
    }

    /// The f32 FMA peak, measured once (bf16 and f16 compute in f32 here, so it is the same).
    fn peak_flops(&self, dtype: DType) -> Option<f64> {
        match dtype {
            DType::F32 | DType::BF16 | DType::F16 => self.measured_peak(),
            _ => None,
        }
    }

    fn synchronize(&self) -> gidd_engine::Result<()> {
        Ok(self.gpu.wait("synchronizing")?)
    }

    fn upload(&self, t: &HostTensor) -> gidd_engine::Result<WgpuBuffer> {
        let w = encode(t)?;
        let buf = self
            .gpu
            .scoped("uploading a tensor", || self.storage_with(&w, "an input"))??;
        Ok(WgpuBuffer::new(
            Arc::new(buf),
            next_id(),
            t.shape.clone(),
            t.dtype(),
        ))
    }

    fn download(&self, b: &WgpuBuffer) -> gidd_engine::Result<HostTensor> {
        let bytes = b.bytes();
        if bytes == 0 {
            return Ok(decode(&[], b.shape().to_vec(), b.dtype())?);
        }
        let w = self
            .read_words(&[(&*b.buf, bytes)], "downloading a tensor")?
            .remove(0);
        Ok(decode(&w, b.shape().to_vec(), b.dtype())?)
    }

    fn load(&self, p: &Program) -> gidd_engine::Result<WgpuProgram> {
        Ok(self
            .gpu
            .scoped("loading a program", || self.load_program(p))??)
    }

    fn run(
        &self,
        lp: &mut WgpuProgram,
        inputs: &[&WgpuBuffer],
    ) -> gidd_engine::Result<Vec<WgpuBuffer>> {
        self.execute(lp, inputs, 0)
    }

    /// Outputs aliased to donated inputs are written into their storage (when the caller
    /// held the last handle), so a training step keeps one copy of its state.
    fn run_donating(
        &self,
        lp: &mut WgpuProgram,
        donated: Vec<WgpuBuffer>,
        rest: &[&WgpuBuffer],
    ) -> gidd_engine::Result<Vec<WgpuBuffer>> {
        let mut ins: Vec<&WgpuBuffer> = donated.iter().collect();
        ins.extend_from_slice(rest);
        let n = donated.len();
        self.execute(lp, &ins, n)
    }

    fn memory_plan(&self, lp: &WgpuProgram) -> Option<String> {
        let mib = |b: u64| b as f64 / 1048576.0;
        Some(format!(
            "wgpu memory plan: {} planned buffers {:.1} MiB, constants {:.1} MiB, scratch {:.1} MiB; {} dispatches per run",
            lp.slots_len(),
            mib(lp.bytes[0]),
            mib(lp.bytes[1]),
            mib(lp.bytes[2]),
            lp.dispatch_count()
        ))
    }
}
