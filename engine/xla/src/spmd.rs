//! SPMD over several devices of one client: program arguments and results carry
//! `mhlo.sharding` annotations (each either split evenly along one dimension
//! across the devices, or replicated), XLA's SPMD partitioner splits the
//! program, and every device runs its part on its own shards.
//!
//! Either partitioner takes the same layouts: GSPMD reads `mhlo.sharding`, Shardy
//! (`Partitioner::Shardy`) reads an `sdy.mesh` of one axis over the devices and
//! `sdy.sharding` per argument and result.
//!
//! The FSDP layout ([`fsdp_layout`]): every tensor whose first dimension divides
//! evenly is split on it (parameters, optimizer state, the batch), the rest is
//! replicated. A training step whose new parameters come out with the layout the
//! parameters went in with keeps its state sharded on the devices between steps.

use crate::cache::{CompileCache, Origin};
use crate::emit::{emit_module_with, Sharding};
use crate::error::{Result, XlaError};
use crate::pjrt::{Client, CompileOptions, DeviceBuffer, Executable};
use gidd_engine::op::TensorType;
use gidd_engine::{DType, Data, HostTensor, Program};

/// How one tensor lies over the devices: split evenly along a dimension, or replicated.
pub type Split = Option<usize>;

/// XLA's HloSharding text for `split` of a rank-`rank` tensor over `n` devices.
pub fn sharding_text(split: Split, rank: usize, n: usize) -> String {
    match split {
        None => "{replicated}".into(),
        Some(d) => {
            let tiles: Vec<String> = (0..rank)
                .map(|i| if i == d { n.to_string() } else { "1".into() })
                .collect();
            let devs: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("{{devices=[{}]{}}}", tiles.join(","), devs.join(","))
        }
    }
}

/// Shardy's `sdy.sharding` for `split` of a rank-`rank` tensor over the one-axis mesh
/// `@mesh` (axis "d"). Every dimension is closed: the layout is the one asked for, as
/// with GSPMD's explicit shardings.
pub fn sdy_sharding_text(split: Split, rank: usize) -> String {
    let dims: Vec<&str> = (0..rank)
        .map(|i| if split == Some(i) { "{\"d\"}" } else { "{}" })
        .collect();
    format!("#sdy.sharding<@mesh, [{}]>", dims.join(", "))
}

/// Which of XLA's SPMD partitioners splits the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// `mhlo.sharding` annotations, the GSPMD partitioner
    #[default]
    Gspmd,
    /// `sdy.mesh` / `sdy.sharding` annotations, the Shardy partitioner (JAX's default)
    Shardy,
}

/// The annotations that give `inputs` / `outputs` (one layout per tensor) over `n`
/// devices, in the form `part` reads.
pub fn annotations(
    in_types: &[TensorType],
    inputs: &[Split],
    out_types: &[TensorType],
    outputs: &[Split],
    n: usize,
    part: Partitioner,
) -> Sharding {
    let shardy = part == Partitioner::Shardy;
    let text = |t: &TensorType, s: &Split| {
        Some(if shardy {
            sdy_sharding_text(*s, t.shape.len())
        } else {
            sharding_text(*s, t.shape.len(), n)
        })
    };
    Sharding {
        num_partitions: n,
        mesh: shardy.then(|| format!("sdy.mesh @mesh = <[\"d\"={n}]>")),
        args: in_types
            .iter()
            .zip(inputs)
            .map(|(t, s)| text(t, s))
            .collect(),
        results: out_types
            .iter()
            .zip(outputs)
            .map(|(t, s)| text(t, s))
            .collect(),
    }
}

/// Split on the first dimension when it divides evenly over `n` devices, else replicate.
pub fn fsdp_layout(types: &[&TensorType], n: usize) -> Vec<Split> {
    types
        .iter()
        .map(|t| match t.shape.first() {
            Some(&d0) if n > 1 && d0 >= n && d0.is_multiple_of(n) => Some(0),
            _ => None,
        })
        .collect()
}

/// A tensor as per-device shards (or per-device replicas).
pub struct ShardedBuffer {
    shards: Vec<DeviceBuffer>,
    split: Split,
    shape: Vec<usize>,
    dtype: DType,
}

impl ShardedBuffer {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn split(&self) -> Split {
        self.split
    }
    pub fn shards(&self) -> &[DeviceBuffer] {
        &self.shards
    }
}

/// A program compiled for `n` devices, with the layout of every input and output.
pub struct SpmdProgram {
    exe: Executable,
    inputs: Vec<(TensorType, Split)>,
    outputs: Vec<(TensorType, Split)>,
    aliased: crate::executor::Aliased,
    module: String,
    origin: Origin,
}

impl SpmdProgram {
    pub fn module(&self) -> &str {
        &self.module
    }
    pub fn executable(&self) -> &Executable {
        &self.exe
    }
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// Runs programs partitioned over the first `n` addressable devices of a client.
#[derive(Clone)]
pub struct SpmdExecutor {
    client: Client,
    n: usize,
    partitioner: Partitioner,
    cache: Option<CompileCache>,
}

impl SpmdExecutor {
    pub fn new(client: Client, n: usize) -> Result<SpmdExecutor> {
        if n == 0 || n > client.device_count() {
            return Err(XlaError::Invalid(format!(
                "SPMD over {n} devices: the {} client has {}",
                client.platform(),
                client.device_count()
            )));
        }
        Ok(SpmdExecutor {
            client,
            n,
            partitioner: Partitioner::default(),
            cache: CompileCache::from_env(),
        })
    }

    /// The same executor with another compile cache (None: always compile).
    pub fn with_cache(mut self, cache: Option<CompileCache>) -> SpmdExecutor {
        self.cache = cache;
        self
    }

    pub fn cache(&self) -> Option<&CompileCache> {
        self.cache.as_ref()
    }

    /// The same devices, partitioned by `p`.
    pub fn with_partitioner(mut self, p: Partitioner) -> SpmdExecutor {
        self.partitioner = p;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn partitioner(&self) -> Partitioner {
        self.partitioner
    }

    pub fn devices(&self) -> usize {
        self.n
    }

    /// Compiles `p` with the given input and output layouts.
    pub fn load(&self, p: &Program, inputs: &[Split], outputs: &[Split]) -> Result<SpmdProgram> {
        let in_types: Vec<TensorType> = p
            .input_types()
            .into_iter()
            .map(|(_, t)| t.clone())
            .collect();
        let out_types: Vec<TensorType> = p.output_types().into_iter().cloned().collect();
        if inputs.len() != in_types.len() || outputs.len() != out_types.len() {
            return Err(XlaError::Invalid(format!(
                "layouts for {} inputs and {} outputs, the program has {} and {}",
                inputs.len(),
                outputs.len(),
                in_types.len(),
                out_types.len()
            )));
        }
        for (t, s) in in_types
            .iter()
            .zip(inputs)
            .chain(out_types.iter().zip(outputs))
        {
            self.check_split(&t.shape, *s)?;
        }
        let shardy = self.partitioner == Partitioner::Shardy;
        let sharding = annotations(
            &in_types,
            inputs,
            &out_types,
            outputs,
            self.n,
            self.partitioner,
        );
        let module = emit_module_with(p, Some(&sharding))?;
        let (exe, origin) = crate::executor::compile(
            &self.client,
            self.cache.as_ref(),
            &module,
            &CompileOptions {
                num_partitions: self.n,
                shardy,
            },
        )?;
        if exe.num_partitions() != self.n {
            return Err(XlaError::Invalid(format!(
                "asked for {} partitions, the plugin compiled {}",
                self.n,
                exe.num_partitions()
            )));
        }
        Ok(SpmdProgram {
            exe,
            inputs: in_types.into_iter().zip(inputs.iter().copied()).collect(),
            outputs: out_types.into_iter().zip(outputs.iter().copied()).collect(),
            aliased: crate::executor::Aliased::of(p),
            module,
            origin,
        })
    }

    fn check_split(&self, shape: &[usize], s: Split) -> Result<()> {
        match s {
            Some(d) if d >= shape.len() || !shape[d].is_multiple_of(self.n) => {
                Err(XlaError::Invalid(format!(
                    "cannot split {shape:?} on dim {d} over {} devices",
                    self.n
                )))
            }
            _ => Ok(()),
        }
    }

    /// Splits a host tensor (or replicates it) onto the devices.
    pub fn upload(&self, t: &HostTensor, split: Split) -> Result<ShardedBuffer> {
        self.check_split(&t.shape, split)?;
        let parts = match split {
            None => vec![t.clone(); self.n],
            Some(d) => split_host(t, d, self.n)?,
        };
        let shards = parts
            .iter()
            .enumerate()
            .map(|(i, p)| self.client.upload(p, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(ShardedBuffer {
            shards,
            split,
            shape: t.shape.clone(),
            dtype: t.dtype(),
        })
    }

    /// Gathers the shards (or reads device 0's replica).
    pub fn download(&self, b: &ShardedBuffer) -> Result<HostTensor> {
        match b.split {
            None => b
                .shards
                .first()
                .ok_or_else(|| XlaError::Invalid("a sharded buffer without shards".into()))?
                .download(),
            Some(d) => {
                let parts = b
                    .shards
                    .iter()
                    .map(DeviceBuffer::download)
                    .collect::<Result<Vec<_>>>()?;
                join_host(&parts, d, &b.shape, b.dtype)
            }
        }
    }

    /// Runs on every device; outputs come back with the layouts the program was loaded with.
    pub fn run(&self, lp: &SpmdProgram, inputs: &[&ShardedBuffer]) -> Result<Vec<ShardedBuffer>> {
        self.execute(lp, inputs, 0)
    }

    /// Like `run`, with the first `donated.len()` inputs given up: the outputs the program
    /// aliases to them take their shards' memory (the FSDP state is updated in place).
    pub fn run_donating(
        &self,
        lp: &SpmdProgram,
        donated: Vec<ShardedBuffer>,
        rest: &[&ShardedBuffer],
    ) -> Result<Vec<ShardedBuffer>> {
        let n = donated.len();
        let mut ins: Vec<&ShardedBuffer> = donated.iter().collect();
        ins.extend_from_slice(rest);
        self.execute(lp, &ins, n)
    }

    fn execute(
        &self,
        lp: &SpmdProgram,
        inputs: &[&ShardedBuffer],
        donated: usize,
    ) -> Result<Vec<ShardedBuffer>> {
        if inputs.len() != lp.inputs.len() {
            return Err(XlaError::Invalid(format!(
                "program expects {} inputs, got {}",
                lp.inputs.len(),
                inputs.len()
            )));
        }
        for (i, ((t, s), b)) in lp.inputs.iter().zip(inputs).enumerate() {
            if b.shape != t.shape || b.dtype != t.dtype || b.split != *s {
                return Err(XlaError::Invalid(format!(
                    "input {i}: expected {t} split {s:?}, got {:?}{} split {:?}",
                    b.shape, b.dtype, b.split
                )));
            }
        }
        let args: Vec<Vec<&DeviceBuffer>> = (0..self.n)
            .map(|dev| inputs.iter().map(|b| &b.shards[dev]).collect())
            .collect();
        let per_device = lp.exe.execute(&args, lp.aliased.kept(donated))?;
        let mut outs: Vec<Vec<DeviceBuffer>> = (0..lp.outputs.len()).map(|_| vec![]).collect();
        for dev_outs in per_device {
            for (o, b) in dev_outs.into_iter().enumerate() {
                if let Some(v) = outs.get_mut(o) {
                    v.push(b);
                }
            }
        }
        Ok(outs
            .into_iter()
            .zip(&lp.outputs)
            .map(|(shards, (t, s))| ShardedBuffer {
                shards,
                split: *s,
                shape: t.shape.clone(),
                dtype: t.dtype,
            })
            .collect())
    }
}

/// Row-major (outer, dim, inner-bytes) view of splitting `shape` on `d`.
fn geometry(shape: &[usize], d: usize, dtype: DType) -> (usize, usize, usize) {
    let outer: usize = shape[..d].iter().product();
    let inner: usize = shape[d + 1..].iter().product::<usize>() * dtype.size();
    (outer, shape[d], inner)
}

fn pod_vec<T: bytemuck::Pod>(b: &[u8]) -> Vec<T> {
    let mut v = vec![T::zeroed(); b.len() / std::mem::size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(b);
    v
}

fn data_from_bytes(dtype: DType, b: &[u8]) -> Data {
    match dtype {
        DType::F32 => Data::F32(pod_vec(b)),
        DType::F64 => Data::F64(pod_vec(b)),
        DType::BF16 => Data::BF16(pod_vec(b)),
        DType::F16 => Data::F16(pod_vec(b)),
        DType::I32 => Data::I32(pod_vec(b)),
        DType::U32 => Data::U32(pod_vec(b)),
        DType::I64 => Data::I64(pod_vec(b)),
        DType::Bool => Data::Bool(b.to_vec()),
    }
}

fn split_host(t: &HostTensor, d: usize, n: usize) -> Result<Vec<HostTensor>> {
    let (outer, len, inner) = geometry(&t.shape, d, t.dtype());
    let chunk = len / n;
    let src = t.data.as_bytes();
    let mut shape = t.shape.clone();
    shape[d] = chunk;
    (0..n)
        .map(|s| {
            let mut b = Vec::with_capacity(outer * chunk * inner);
            for o in 0..outer {
                let start = (o * len + s * chunk) * inner;
                b.extend_from_slice(&src[start..start + chunk * inner]);
            }
            Ok(HostTensor::new(
                shape.clone(),
                data_from_bytes(t.dtype(), &b),
            )?)
        })
        .collect()
}

fn join_host(parts: &[HostTensor], d: usize, shape: &[usize], dtype: DType) -> Result<HostTensor> {
    let (outer, len, inner) = geometry(shape, d, dtype);
    let chunk = len / parts.len().max(1);
    let mut b = vec![0u8; outer * len * inner];
    for (s, p) in parts.iter().enumerate() {
        let src = p.data.as_bytes();
        if src.len() != outer * chunk * inner {
            return Err(XlaError::Invalid(format!(
                "shard {s} has shape {:?}, expected a 1/{} slice of {shape:?}",
                p.shape,
                parts.len()
            )));
        }
        for o in 0..outer {
            let dst = (o * len + s * chunk) * inner;
            let from = o * chunk * inner;
            b[dst..dst + chunk * inner].copy_from_slice(&src[from..from + chunk * inner]);
        }
    }
    Ok(HostTensor::new(shape.to_vec(), data_from_bytes(dtype, &b))?)
}
