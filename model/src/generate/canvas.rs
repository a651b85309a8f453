//! Forward programs over a generation canvas on any executor, with the clean prefix
//! held in a KV cache per block (SPEC.md section 6).

use crate::transformer::{forward, forward_cached, ForwardOpts, KvCache};
use crate::{GiddConfig, Params};
use anyhow::{bail, Result};
use gidd_engine::op::SampleSpec;
use gidd_engine::{CpuExecutor, DType, Executor, Graph, HostTensor, Op, Program};
use std::collections::HashMap;

/// Forward programs over a canvas of `batch` rows of `len` tokens on one executor,
/// compiled once per shape and run every step; parameters are uploaded once.
///
/// Block-wise generation encodes the clean prefix once per block into a KV cache
/// (`begin_block`) and then runs each step on the positions from the window start only
/// (`block_logits`), computing the lm_head for the block's rows only. With `kv_cache`
/// off, every step runs the whole canvas (the reference's arithmetic, for comparison).
pub struct Canvas<E: Executor = CpuExecutor> {
    cfg: GiddConfig,
    exec: E,
    names: Vec<String>,
    params: Vec<E::Buffer>,
    /// each parameter's dtype as given (bf16 weights mapped from a checkpoint stay bf16)
    param_dtypes: std::collections::BTreeMap<String, DType>,
    dtype: DType,
    full: Option<Loaded<E>>,
    /// step programs by (window start, window end, cached, rows)
    steps: HashMap<(usize, usize, bool, usize), Loaded<E>>,
    prefixes: HashMap<usize, Loaded<E>>,
    /// the current block's prefix keys/values: (window start, [k0, v0, k1, v1, ..])
    cache: Option<(usize, Vec<E::Buffer>)>,
    pub batch: usize,
    pub len: usize,
    pub kv_cache: bool,
    /// reuse the last logits when a step changed nothing (the reference does)
    pub reuse_logits: bool,
    /// sample with the executor's fused step where it has one (off: always on the host)
    pub sample_on_device: bool,
    /// fused sampling programs by shape and step constants
    samplers: HashMap<String, E::Loaded>,
    pub stats: CanvasStats,
}

/// A step's logits left on the device by [`Canvas::block_logits_device`].
pub struct DeviceLogits<E: Executor> {
    pub buf: E::Buffer,
    /// positions per row in `buf`
    pub len: usize,
    /// where the window starts in each row
    pub offset: usize,
}

/// What the canvas computed, in token positions through the model.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CanvasStats {
    /// model calls for denoising steps
    pub step_calls: usize,
    /// prefix encodings into the KV cache
    pub prefix_calls: usize,
    /// query positions run through the transformer, summed over calls and rows
    pub positions: usize,
    /// positions whose logits (the lm_head) were computed
    pub logit_positions: usize,
    /// forward FLOPs of those calls (matmuls and attention, 2 per multiply-add)
    pub flops: f64,
    /// wall seconds in those calls, uploads and downloads included
    pub model_s: f64,
    /// wall seconds building and loading programs (not in `model_s`)
    pub compile_s: f64,
    /// bytes denoising steps brought back to the host: whole logits where the host
    /// samples, tokens and scores where the executor's fused sampling step does
    pub step_download_bytes: usize,
}

impl CanvasStats {
    /// Accounts one call: `rows` x `queries` positions attending to `keys` keys, of which
    /// `rows` x `last_rows` go through the whole last layer (the others only through its
    /// key and value projections), and `rows` x `logit_rows` through the lm_head.
    fn add(
        &mut self,
        cfg: &GiddConfig,
        rows: usize,
        queries: usize,
        keys: usize,
        last_rows: usize,
        logit_rows: usize,
    ) {
        let (d, hd) = (
            cfg.hidden_size as f64,
            (cfg.num_attention_heads * cfg.head_dim()) as f64,
        );
        let head = 2.0 * d * cfg.vocab_size as f64;
        let body = cfg.flops_per_token(keys) - head;
        let layer = body / cfg.num_hidden_layers.max(1) as f64;
        let kv_only = if cfg.num_hidden_layers > 0 {
            2.0 * 2.0 * d * hd
        } else {
            0.0
        };
        self.positions += rows * queries;
        self.logit_positions += rows * logit_rows;
        self.flops += (rows * queries) as f64 * body
            - (rows * (queries - last_rows)) as f64 * (layer - kv_only)
            + (rows * logit_rows) as f64 * head;
    }
}

/// A loaded program and which of the canvas's parameters it takes (pruned programs take fewer).
struct Loaded<E: Executor> {
    prog: E::Loaded,
    param_idx: Vec<usize>,
}

impl Canvas<CpuExecutor> {
    pub fn new(
        cfg: &GiddConfig,
        params: &[(String, HostTensor)],
        batch: usize,
        len: usize,
        dtype: DType,
    ) -> Result<Canvas> {
        Canvas::with_executor(CpuExecutor, cfg, params, batch, len, dtype)
    }
}

impl<E: Executor> Canvas<E> {
    /// Forward programs over a [batch, len] canvas on `exec`; parameters are uploaded once.
    pub fn with_executor(
        exec: E,
        cfg: &GiddConfig,
        params: &[(String, HostTensor)],
        batch: usize,
        len: usize,
        dtype: DType,
    ) -> Result<Canvas<E>> {
        if len == 0 || len > cfg.max_position_embeddings {
            bail!(
                "canvas of {len} tokens: the model takes 1..={} (max_position_embeddings)",
                cfg.max_position_embeddings
            );
        }
        let uploaded = params
            .iter()
            .map(|(_, t)| exec.upload(t))
            .collect::<gidd_engine::Result<_>>()?;
        Ok(Canvas {
            cfg: cfg.clone(),
            exec,
            names: params.iter().map(|(n, _)| n.clone()).collect(),
            params: uploaded,
            param_dtypes: params.iter().map(|(n, t)| (n.clone(), t.dtype())).collect(),
            dtype,
            full: None,
            steps: HashMap::new(),
            prefixes: HashMap::new(),
            cache: None,
            batch,
            len,
            kv_cache: true,
            reuse_logits: true,
            sample_on_device: true,
            samplers: HashMap::new(),
            stats: CanvasStats::default(),
        })
    }

    /// Compiles `outputs` over the parameters plus `extra` inputs (in that order), keeping
    /// only the parameters the outputs use.
    fn load(&self, outputs: &[gidd_engine::Tensor], extra: &[String]) -> Result<Loaded<E>> {
        let mut order: Vec<&str> = self.names.iter().map(|n| n.as_str()).collect();
        order.extend(extra.iter().map(|n| n.as_str()));
        let prog = Program::compile_pruned(outputs, &order)?;
        let missing: Vec<&String> = extra
            .iter()
            .filter(|n| !prog.inputs.iter().any(|(m, _)| m == *n))
            .collect();
        if !missing.is_empty() {
            bail!("internal: canvas program does not use its inputs {missing:?}");
        }
        let param_idx = prog
            .inputs
            .iter()
            .filter_map(|(n, _)| self.names.iter().position(|m| m == n))
            .collect();
        Ok(Loaded {
            prog: self.exec.load(&prog)?,
            param_idx,
        })
    }

    /// The parameters as graph inputs of the dtypes they were given in.
    fn declare(&self, g: &Graph) -> Params {
        Params::declare_each(g, &self.cfg, |n| {
            self.param_dtypes.get(n).copied().unwrap_or(DType::F32)
        })
    }

    fn opts(&self) -> ForwardOpts {
        ForwardOpts {
            dtype: self.dtype,
            attentions: false,
        }
    }

    /// Tokens [from, to) of the given rows as an i32 [rows, to - from] buffer.
    fn ids_buffer(
        &self,
        ids: &[Vec<u32>],
        rows: &[usize],
        from: usize,
        to: usize,
    ) -> Result<E::Buffer> {
        if ids.len() != self.batch || ids.iter().any(|r| r.len() != self.len) {
            bail!(
                "canvas takes {} rows of {} tokens, got {} rows",
                self.batch,
                self.len,
                ids.len()
            );
        }
        let flat: Vec<i32> = rows
            .iter()
            .flat_map(|&r| ids[r][from..to].iter().map(|&x| x as i32))
            .collect();
        Ok(self
            .exec
            .upload(&HostTensor::i32(vec![rows.len(), to - from], flat)?)?)
    }

    fn run(
        exec: &E,
        params: &[E::Buffer],
        l: &mut Loaded<E>,
        extra: &[&E::Buffer],
    ) -> Result<Vec<E::Buffer>> {
        let mut ins: Vec<&E::Buffer> = l.param_idx.iter().map(|&i| &params[i]).collect();
        ins.extend_from_slice(extra);
        Ok(exec.run(&mut l.prog, &ins)?)
    }

    /// Logits [B, L, V] for ids [B, L] under a [B, L, L] mask, the whole canvas.
    pub fn logits(&mut self, ids: &[Vec<u32>], mask: &[bool]) -> Result<Vec<f32>> {
        let (b, t) = (self.batch, self.len);
        if self.full.is_none() {
            let g = Graph::new();
            let p = self.declare(&g);
            let x = g.input("ids", &[b, t], DType::I32);
            let m = g.input("mask", &[b, t, t], DType::Bool);
            let pos = g.iota(&[b, t], 1, DType::I32)?;
            let out = forward(&self.cfg, &p, &x, &m, &pos, self.opts())?;
            self.full = Some(self.load(&[out.logits], &["ids".into(), "mask".into()])?);
        }
        let t0 = std::time::Instant::now();
        let ids_t = self.ids_buffer(ids, &(0..b).collect::<Vec<_>>(), 0, t)?;
        let mask_t = self
            .exec
            .upload(&HostTensor::bool(vec![b, t, t], mask.to_vec())?)?;
        let l = self.full.as_mut().expect("compiled above");
        let out = Self::run(&self.exec, &self.params, l, &[&ids_t, &mask_t])?;
        self.stats.step_calls += 1;
        self.stats.add(&self.cfg, b, t, t, t, t);
        let logits = self.exec.download(&out[0])?.as_f32()?.to_vec();
        self.stats.model_s += t0.elapsed().as_secs_f64();
        Ok(logits)
    }

    /// Starts a block whose window begins at `ws`: positions before it must be clean, and
    /// with `kv_cache` on they are encoded once into the KV cache here.
    pub fn begin_block(&mut self, ids: &[Vec<u32>], ws: usize) -> Result<()> {
        self.cache = None;
        if !self.kv_cache || ws == 0 {
            return Ok(());
        }
        let b = self.batch;
        if !self.prefixes.contains_key(&ws) {
            let g = Graph::new();
            let p = self.declare(&g);
            let x = g.input("ids", &[b, ws], DType::I32);
            // a clean prefix attends to itself only (noise[q] >= noise[k] with both false)
            let m = g.splat(1.0, &[b, ws, ws], DType::Bool);
            let pos = g.iota(&[b, ws], 1, DType::I32)?;
            let (_, kv) = forward_cached(&self.cfg, &p, &x, &m, &pos, None, None, self.opts())?;
            let outs: Vec<gidd_engine::Tensor> = kv.into_iter().flat_map(|(k, v)| [k, v]).collect();
            let l = self.load(&outs, &["ids".into()])?;
            self.prefixes.insert(ws, l);
        }
        let t0 = std::time::Instant::now();
        let ids_t = self.ids_buffer(ids, &(0..b).collect::<Vec<_>>(), 0, ws)?;
        let l = self.prefixes.get_mut(&ws).expect("compiled above");
        let kv = Self::run(&self.exec, &self.params, l, &[&ids_t])?;
        self.stats.prefix_calls += 1;
        // the program outputs keys and values only: its last layer past them is pruned
        self.stats.add(&self.cfg, b, ws, ws, 0, 0);
        self.stats.model_s += t0.elapsed().as_secs_f64();
        self.cache = Some((ws, kv));
        Ok(())
    }

    /// Logits [B, we - ws, V] of the window [ws, we) under generation's attention
    /// (att[q, k] = noise[q] >= noise[k]); the model runs on everything from `ws` on,
    /// after the prefix held in the KV cache when `begin_block(ws)` made one.
    pub fn block_logits(
        &mut self,
        ids: &[Vec<u32>],
        noise: &[Vec<bool>],
        ws: usize,
        we: usize,
    ) -> Result<Vec<f32>> {
        let all: Vec<usize> = (0..self.batch).collect();
        self.block_logits_rows(ids, noise, ws, we, &all)
    }

    /// `block_logits` for some rows of the canvas only (`rows` ascending, distinct):
    /// [rows.len(), we - ws, V]. Rows never interact in the model, so a row's logits are
    /// the same whichever other rows run with it; generation recomputes only the rows
    /// whose tokens changed.
    pub fn block_logits_rows(
        &mut self,
        ids: &[Vec<u32>],
        noise: &[Vec<bool>],
        ws: usize,
        we: usize,
        rows: &[usize],
    ) -> Result<Vec<f32>> {
        let d = self.block_logits_device(ids, noise, ws, we, rows)?;
        // (the model's time is counted inside block_logits_device; this is the download)
        let t0 = std::time::Instant::now();
        let logits = self.exec.download(&d.buf)?;
        let logits = logits.as_f32()?;
        self.stats.step_download_bytes += logits.len() * 4;
        let (v, blk, nr) = (self.cfg.vocab_size, we - ws, rows.len());
        let out = if d.len == blk {
            logits.to_vec()
        } else {
            (0..nr)
                .flat_map(|r| {
                    logits[(r * d.len + d.offset) * v..(r * d.len + d.offset + blk) * v]
                        .iter()
                        .copied()
                })
                .collect()
        };
        self.stats.model_s += t0.elapsed().as_secs_f64();
        Ok(out)
    }

    /// `block_logits_rows` left on the device: the model's logits [rows, len, V], of which
    /// positions [offset, offset + we - ws) are the window's.
    pub fn block_logits_device(
        &mut self,
        ids: &[Vec<u32>],
        noise: &[Vec<bool>],
        ws: usize,
        we: usize,
        rows: &[usize],
    ) -> Result<DeviceLogits<E>> {
        let (b, t) = (self.batch, self.len);
        if !(ws < we && we <= t) || noise.len() != b {
            bail!("block [{ws}, {we}) does not fit a canvas of {b} rows of {t} tokens");
        }
        if rows.is_empty() || rows.windows(2).any(|w| w[0] >= w[1]) || rows[rows.len() - 1] >= b {
            bail!("rows {rows:?}: want distinct ascending rows of a {b}-row canvas");
        }
        let nr = rows.len();
        let cached = matches!(&self.cache, Some((w, _)) if *w == ws);
        // The cache is exact only when the prefix attends to nothing after it: every
        // position before ws clean, every position from ws on still noisy.
        if cached
            && noise
                .iter()
                .any(|n| n[..ws].iter().any(|&x| x) || n[ws..].iter().any(|&x| !x))
        {
            bail!("internal: a KV-cached prefix must be clean and everything after it noisy");
        }
        let q0 = if cached { ws } else { 0 };
        let lq = t - q0;
        // the cache holds every row: a subset of rows gathers its own
        let pick = cached && nr < b;
        // Without the cache the program is the whole canvas whatever the window: one for all.
        let key = if cached {
            (ws, we, true, nr)
        } else {
            (0, 0, false, nr)
        };
        if !self.steps.contains_key(&key) {
            let t_compile = std::time::Instant::now();
            let g = Graph::new();
            let p = self.declare(&g);
            let x = g.input("ids", &[nr, lq], DType::I32);
            let m = g.input("mask", &[nr, lq, t], DType::Bool);
            let pos = g.iota(&[nr, lq], 1, DType::I32)?.add_scalar(q0 as f64)?;
            let (h, hd, dt) = (
                self.cfg.num_attention_heads,
                self.cfg.head_dim(),
                self.dtype,
            );
            let mut extra = vec!["ids".to_string(), "mask".to_string()];
            let picked = pick.then(|| g.input("rows", &[nr], DType::I32));
            if picked.is_some() {
                extra.push("rows".into());
            }
            let past: Option<KvCache> = if cached {
                let mut layers = vec![];
                for i in 0..self.cfg.num_hidden_layers {
                    let (kn, vn) = (format!("past.{i}.k"), format!("past.{i}.v"));
                    let mut k = g.input(&kn, &[b, h, ws, hd], dt);
                    let mut v = g.input(&vn, &[b, h, ws, hd], dt);
                    if let Some(r) = &picked {
                        k = k.gather(0, r)?;
                        v = v.gather(0, r)?;
                    }
                    extra.push(kn);
                    extra.push(vn);
                    layers.push((k, v));
                }
                Some(layers)
            } else {
                None
            };
            // With the cache, the lm_head runs on the block's rows only; without it, on the
            // whole canvas as the reference does (the baseline the cache is measured against).
            let head_rows = cached.then_some((ws - q0, we - q0));
            let (out, _) = forward_cached(
                &self.cfg,
                &p,
                &x,
                &m,
                &pos,
                past.as_ref(),
                head_rows,
                self.opts(),
            )?;
            let l = self.load(&[out.logits], &extra)?;
            self.steps.insert(key, l);
            self.stats.compile_s += t_compile.elapsed().as_secs_f64();
        }
        let t0 = std::time::Instant::now();
        let mask: Vec<bool> = rows
            .iter()
            .map(|&r| &noise[r])
            .flat_map(|n| (q0..t).flat_map(move |q| (0..t).map(move |k| n[q] >= n[k])))
            .collect();
        let ids_t = self.ids_buffer(ids, rows, q0, t)?;
        let mask_t = self
            .exec
            .upload(&HostTensor::bool(vec![nr, lq, t], mask)?)?;
        let rows_t = if pick {
            let r: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
            Some(self.exec.upload(&HostTensor::i32(vec![nr], r)?)?)
        } else {
            None
        };
        let mut extra: Vec<&E::Buffer> = vec![&ids_t, &mask_t];
        extra.extend(rows_t.as_ref());
        if let (true, Some((_, kv))) = (cached, &self.cache) {
            extra.extend(kv.iter());
        }
        let l = self.steps.get_mut(&key).expect("compiled above");
        let mut out = Self::run(&self.exec, &self.params, l, &extra)?;
        self.stats.step_calls += 1;
        // With the cache the lm_head ran on the window only; else on the whole canvas.
        let (len, offset) = if cached { (we - ws, 0) } else { (t, ws) };
        // with the cache the last layer ran on the window's rows only (`forward_cached`)
        let last = if cached { len } else { lq };
        self.stats.add(&self.cfg, nr, lq, t, last, len);
        self.stats.model_s += t0.elapsed().as_secs_f64();
        Ok(DeviceLogits {
            buf: out.swap_remove(0),
            len,
            offset,
        })
    }

    /// One fused sampling step (`Op::SampleStep`) over window positions of logits held on
    /// the device: `rows` [R, 4] per position (R = rows of `d` x `blk`, row-major) as the op
    /// takes them; returns its [R, 3] output, all that comes back to the host.
    pub fn sample_device(
        &mut self,
        d: &DeviceLogits<E>,
        blk: usize,
        spec: SampleSpec,
        rows: Vec<i32>,
    ) -> Result<Vec<i32>> {
        let v = self.cfg.vocab_size;
        let nr = rows.len() / 4 / blk;
        // one program per shape and step constants: blocks repeat the same steps
        let key = format!("{nr} {blk} {} {} {spec:?}", d.len, d.offset);
        if !self.samplers.contains_key(&key) {
            let t_compile = std::time::Instant::now();
            let g = Graph::new();
            let mut lg = g.input("logits", &[nr, d.len, v], DType::F32);
            if d.len != blk {
                lg = lg.slice(&[0, d.offset, 0], &[nr, d.offset + blk, v])?;
            }
            let r = g.input("rows", &[nr * blk, 4], DType::I32);
            let lg = lg.reshape(&[nr * blk, v])?;
            let out = g.apply1(Op::SampleStep(spec), &[&lg, &r])?;
            let prog = Program::compile(&[out], &["logits", "rows"])?;
            let loaded = self.exec.load(&prog)?;
            self.samplers.insert(key.clone(), loaded);
            self.stats.compile_s += t_compile.elapsed().as_secs_f64();
        }
        let rows_t = self
            .exec
            .upload(&HostTensor::i32(vec![nr * blk, 4], rows)?)?;
        let l = self.samplers.get_mut(&key).expect("compiled above");
        let out = self.exec.run(l, &[&d.buf, &rows_t])?;
        let out = self.exec.download(&out[0])?;
        let out = out.as_i32()?.to_vec();
        // (sampling time, not the model's: outside `model_s`, as host sampling is)
        self.stats.step_download_bytes += out.len() * 4;
        Ok(out)
    }

    /// Whether this canvas's executor runs the fused sampling step (else generation
    /// downloads the logits and samples on the host).
    pub fn samples_on_device(&self) -> bool {
        let probe = SampleSpec {
            mask_id: 0,
            temperature: 1.0,
            top_k: None,
            top_p: None,
            mode: gidd_engine::op::SampleMode::Adaptive,
        };
        self.sample_on_device && self.exec.supports_fused(&Op::SampleStep(probe), DType::F32)
    }

    pub fn vocab(&self) -> usize {
        self.cfg.vocab_size
    }

    /// Every program compiled so far (e.g. to turn on an executor's per-op profile).
    pub fn programs_mut(&mut self) -> impl Iterator<Item = &mut E::Loaded> {
        self.full
            .iter_mut()
            .chain(self.steps.values_mut())
            .chain(self.prefixes.values_mut())
            .map(|l| &mut l.prog)
    }
}
