//! Block-wise diffusion generation (SPEC.md section 6), the HF `generate` loop:
//! the model runs on the canvas, sampling happens on the host in f64.

use crate::audit::Row;
use anyhow::{bail, Result};
use gidd_engine::rng::HostRng;
use gidd_engine::{CpuExecutor, DType, Executor, Graph, HostTensor, Program};
use gidd_model::sample::pi_vec;
use gidd_model::schedule::{EOS, MASK, PAD};
use gidd_model::transformer::{forward, forward_cached, ForwardOpts, KvCache};
use gidd_model::{GiddConfig, Params};
use gidd_ports::TensorStore;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Adaptive,
    Ancestral,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseSchedule {
    Linear,
    Cosine,
}

#[derive(Clone, Debug)]
pub struct GenOpts {
    pub max_length: usize,
    pub min_length: usize,
    pub block_length: usize,
    pub steps: usize,
    pub method: Method,
    pub schedule: NoiseSchedule,
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub tokens_per_step: usize,
    pub seed: u64,
}

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
    dtype: DType,
    full: Option<Loaded<E>>,
    steps: HashMap<(usize, usize, bool), Loaded<E>>,
    prefixes: HashMap<usize, Loaded<E>>,
    /// the current block's prefix keys/values: (window start, [k0, v0, k1, v1, ..])
    cache: Option<(usize, Vec<E::Buffer>)>,
    pub batch: usize,
    pub len: usize,
    pub kv_cache: bool,
    /// reuse the last logits when a step changed nothing (the reference does)
    pub reuse_logits: bool,
    pub stats: CanvasStats,
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
}

impl CanvasStats {
    /// Accounts one call: `rows` x `queries` positions attending to `keys` keys, and
    /// `rows` x `logit_rows` positions through the lm_head.
    fn add(
        &mut self,
        cfg: &GiddConfig,
        rows: usize,
        queries: usize,
        keys: usize,
        logit_rows: usize,
    ) {
        let head = 2.0 * (cfg.hidden_size * cfg.vocab_size) as f64;
        let body = cfg.flops_per_token(keys) - head;
        self.positions += rows * queries;
        self.logit_positions += rows * logit_rows;
        self.flops += (rows * queries) as f64 * body + (rows * logit_rows) as f64 * head;
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
            dtype,
            full: None,
            steps: HashMap::new(),
            prefixes: HashMap::new(),
            cache: None,
            batch,
            len,
            kv_cache: true,
            reuse_logits: true,
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

    fn opts(&self) -> ForwardOpts {
        ForwardOpts {
            dtype: self.dtype,
            attentions: false,
        }
    }

    fn ids_buffer(&self, ids: &[Vec<u32>], from: usize, to: usize) -> Result<E::Buffer> {
        if ids.len() != self.batch || ids.iter().any(|r| r.len() != self.len) {
            bail!(
                "canvas takes {} rows of {} tokens, got {} rows",
                self.batch,
                self.len,
                ids.len()
            );
        }
        let flat: Vec<i32> = ids
            .iter()
            .flat_map(|r| r[from..to].iter().map(|&x| x as i32))
            .collect();
        Ok(self
            .exec
            .upload(&HostTensor::i32(vec![self.batch, to - from], flat)?)?)
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
            let p = Params::declare(&g, &self.cfg);
            let x = g.input("ids", &[b, t], DType::I32);
            let m = g.input("mask", &[b, t, t], DType::Bool);
            let pos = g.iota(&[b, t], 1, DType::I32)?;
            let out = forward(&self.cfg, &p, &x, &m, &pos, self.opts())?;
            self.full = Some(self.load(&[out.logits], &["ids".into(), "mask".into()])?);
        }
        let ids_t = self.ids_buffer(ids, 0, t)?;
        let mask_t = self
            .exec
            .upload(&HostTensor::bool(vec![b, t, t], mask.to_vec())?)?;
        let l = self.full.as_mut().expect("compiled above");
        let out = Self::run(&self.exec, &self.params, l, &[&ids_t, &mask_t])?;
        self.stats.step_calls += 1;
        self.stats.add(&self.cfg, b, t, t, t);
        Ok(self.exec.download(&out[0])?.as_f32()?.to_vec())
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
            let p = Params::declare(&g, &self.cfg);
            let x = g.input("ids", &[b, ws], DType::I32);
            // a clean prefix attends to itself only (noise[q] >= noise[k] with both false)
            let m = g.splat(1.0, &[b, ws, ws], DType::Bool);
            let pos = g.iota(&[b, ws], 1, DType::I32)?;
            let (_, kv) = forward_cached(&self.cfg, &p, &x, &m, &pos, None, None, self.opts())?;
            let outs: Vec<gidd_engine::Tensor> = kv.into_iter().flat_map(|(k, v)| [k, v]).collect();
            let l = self.load(&outs, &["ids".into()])?;
            self.prefixes.insert(ws, l);
        }
        let ids_t = self.ids_buffer(ids, 0, ws)?;
        let l = self.prefixes.get_mut(&ws).expect("compiled above");
        let kv = Self::run(&self.exec, &self.params, l, &[&ids_t])?;
        self.stats.prefix_calls += 1;
        self.stats.add(&self.cfg, b, ws, ws, 0);
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
        let (b, t) = (self.batch, self.len);
        if !(ws < we && we <= t) || noise.len() != b {
            bail!("block [{ws}, {we}) does not fit a canvas of {b} rows of {t} tokens");
        }
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
        let key = (ws, we, cached);
        if !self.steps.contains_key(&key) {
            let g = Graph::new();
            let p = Params::declare(&g, &self.cfg);
            let x = g.input("ids", &[b, lq], DType::I32);
            let m = g.input("mask", &[b, lq, t], DType::Bool);
            let pos = g.iota(&[b, lq], 1, DType::I32)?.add_scalar(q0 as f64)?;
            let (h, hd, dt) = (
                self.cfg.num_attention_heads,
                self.cfg.head_dim(),
                self.dtype,
            );
            let mut extra = vec!["ids".to_string(), "mask".to_string()];
            let past: Option<KvCache> = cached.then(|| {
                (0..self.cfg.num_hidden_layers)
                    .map(|i| {
                        let (kn, vn) = (format!("past.{i}.k"), format!("past.{i}.v"));
                        let k = g.input(&kn, &[b, h, ws, hd], dt);
                        let v = g.input(&vn, &[b, h, ws, hd], dt);
                        extra.push(kn);
                        extra.push(vn);
                        (k, v)
                    })
                    .collect()
            });
            // With the cache, the lm_head runs on the block's rows only; without it, on the
            // whole canvas as the reference does (the baseline the cache is measured against).
            let rows = cached.then_some((ws - q0, we - q0));
            let (out, _) = forward_cached(
                &self.cfg,
                &p,
                &x,
                &m,
                &pos,
                past.as_ref(),
                rows,
                self.opts(),
            )?;
            let l = self.load(&[out.logits], &extra)?;
            self.steps.insert(key, l);
        }
        let mask: Vec<bool> = noise
            .iter()
            .flat_map(|n| (q0..t).flat_map(move |q| (0..t).map(move |k| n[q] >= n[k])))
            .collect();
        let ids_t = self.ids_buffer(ids, q0, t)?;
        let mask_t = self.exec.upload(&HostTensor::bool(vec![b, lq, t], mask)?)?;
        let mut extra: Vec<&E::Buffer> = vec![&ids_t, &mask_t];
        if let (true, Some((_, kv))) = (cached, &self.cache) {
            extra.extend(kv.iter());
        }
        let l = self.steps.get_mut(&key).expect("compiled above");
        let out = Self::run(&self.exec, &self.params, l, &extra)?;
        self.stats.step_calls += 1;
        let logits = self.exec.download(&out[0])?;
        let logits = logits.as_f32()?;
        if cached {
            self.stats.add(&self.cfg, b, lq, t, we - ws);
            return Ok(logits.to_vec());
        }
        self.stats.add(&self.cfg, b, lq, t, t);
        let v = self.cfg.vocab_size;
        Ok((0..b)
            .flat_map(|r| logits[(r * t + ws) * v..(r * t + we) * v].iter().copied())
            .collect())
    }

    pub fn vocab(&self) -> usize {
        self.cfg.vocab_size
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Tempered, top-k/top-p filtered probabilities in f64 (one-hot argmax at temperature 0).
pub fn probs_with_topk_topp(
    logits: &[f64],
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
) -> Vec<f64> {
    let v = logits.len();
    if temperature == 0.0 {
        let mut best = 0;
        for i in 1..v {
            if logits[i] > logits[best] {
                best = i;
            }
        }
        let mut p = vec![0.0; v];
        p[best] = 1.0;
        return p;
    }
    let mut x: Vec<f64> = logits.iter().map(|l| l / temperature).collect();
    if let Some(k) = top_k.filter(|&k| k > 0 && k < v) {
        let mut s = x.clone();
        s.sort_by(|a, b| b.total_cmp(a));
        let kth = s[k - 1];
        x.iter_mut().for_each(|y| {
            if *y < kth {
                *y = f64::NEG_INFINITY
            }
        });
    }
    let softmax = |x: &[f64]| -> Vec<f64> {
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = x.iter().map(|y| (y - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|y| y / z).collect()
    };
    if let Some(p) = top_p.filter(|&p| p > 0.0 && p < 1.0) {
        let mut idx: Vec<usize> = (0..v).collect();
        idx.sort_by(|&a, &b| x[b].total_cmp(&x[a]));
        let sorted: Vec<f64> = idx.iter().map(|&i| x[i]).collect();
        let sp = softmax(&sorted);
        let mut cum = 0.0;
        let mut keep = vec![true; v];
        for r in 0..v {
            // A token is removed when the mass before it already exceeds p (the first always stays).
            if r > 0 && cum > p {
                keep[r] = false;
            }
            cum += sp[r];
        }
        for r in 0..v {
            if !keep[r] {
                x[idx[r]] = f64::NEG_INFINITY;
            }
        }
    }
    softmax(&x)
}

/// A categorical draw in f64 (f32 draws would lower the effective temperature).
pub fn draw(p: &[f64], rng: &mut HostRng) -> usize {
    let total: f64 = p.iter().sum();
    let mut u = rng.next_f64() * total;
    for (i, &q) in p.iter().enumerate() {
        if u < q {
            return i;
        }
        u -= q;
    }
    p.iter().rposition(|&q| q > 0.0).unwrap_or(0)
}

/// What generation reports while it runs.
pub enum GenEvent<'a> {
    /// a denoising step ran (`step` counts down from `steps` to 1 in each block)
    Step { block: usize, step: usize },
    /// block `block` is final: `x` is the canvas, [start, end) the block's positions
    Block {
        x: &'a [Vec<u32>],
        block: usize,
        start: usize,
        end: usize,
    },
}

/// Generates from one batch of equal-length prompts. `prior` replaces the sampled prior
/// canvas when given; `on_block(canvas, end)` is called as each block becomes final.
pub fn generate<E: Executor>(
    canvas: &mut Canvas<E>,
    cfg: &GiddConfig,
    prompts: &[Vec<u32>],
    o: &GenOpts,
    prior: Option<Vec<Vec<u32>>>,
    mut on_block: impl FnMut(&[Vec<u32>], usize),
) -> Result<Vec<Vec<u32>>> {
    generate_with(canvas, cfg, prompts, o, prior, |e| {
        if let GenEvent::Block { x, end, .. } = e {
            on_block(x, end)
        }
    })
}

/// The number of blocks a generation of `o` from a `p_len`-token prompt runs at most
/// on a `t`-token canvas (fewer when every row reaches eos).
pub fn max_blocks(o: &GenOpts, p_len: usize, t: usize) -> usize {
    let span = o.max_length.min(t.saturating_sub(p_len));
    span.div_ceil(o.block_length.max(1)).max(1)
}

/// `generate`, reporting every step and block to `on_event`.
pub fn generate_with<E: Executor>(
    canvas: &mut Canvas<E>,
    cfg: &GiddConfig,
    prompts: &[Vec<u32>],
    o: &GenOpts,
    prior: Option<Vec<Vec<u32>>>,
    mut on_event: impl FnMut(GenEvent<'_>),
) -> Result<Vec<Vec<u32>>> {
    let b = prompts.len();
    let t = canvas.len;
    let v = canvas.vocab();
    let p_len = prompts.first().map(|p| p.len()).unwrap_or(0);
    if prompts.iter().any(|p| p.len() != p_len) {
        bail!("prompts in one batch must have equal length");
    }
    if p_len >= t {
        bail!("prompt of {p_len} tokens leaves no room in a {t}-token context (max_position_embeddings)");
    }
    if let Some(bad) = prompts.iter().flatten().find(|&&x| x as usize >= v) {
        bail!("prompt token id {bad} is outside the model's vocabulary of {v}");
    }
    if o.block_length == 0 || o.steps == 0 {
        bail!("block_length and steps must be positive");
    }
    let mut rng = HostRng::new(o.seed);
    let mut x: Vec<Vec<u32>> = match prior {
        Some(p) => p,
        None => {
            let pu = sigmoid(cfg.min_log_snr + cfg.noise_type);
            (0..b)
                .map(|_| {
                    (0..t)
                        .map(|_| {
                            if rng.next_f64() < pu {
                                rng.below(v as u32)
                            } else {
                                MASK
                            }
                        })
                        .collect()
                })
                .collect()
        }
    };
    for (row, p) in x.iter_mut().zip(prompts) {
        row[..p_len].copy_from_slice(p);
    }
    let mut noise = vec![vec![true; t]; b];
    for row in noise.iter_mut() {
        row[..p_len].fill(false);
    }
    let (amin, amax) = (
        sigmoid(cfg.min_log_snr) as f32 as f64,
        sigmoid(cfg.max_log_snr) as f32 as f64,
    );
    let log_snrs: Vec<f64> = (0..=o.steps)
        .map(|i| {
            let ts = i as f64 / o.steps as f64;
            let f = match o.schedule {
                NoiseSchedule::Linear => 1.0 - ts,
                NoiseSchedule::Cosine => 0.5 + 0.5 * (ts * std::f64::consts::PI).cos(),
            };
            let a = (amax - amin) * f + amin;
            (a / (1.0 - a)).ln().clamp(cfg.min_log_snr, cfg.max_log_snr)
        })
        .collect();
    let mut nb = 0;
    loop {
        let ws = p_len + nb * o.block_length;
        let we = (ws + o.block_length).min(t);
        let blk = we - ws;
        canvas.begin_block(&x, ws)?;
        let mut logits: Vec<f32> = vec![];
        let mut keep = false;
        for step in (1..=o.steps).rev() {
            if !keep {
                logits = canvas.block_logits(&x, &noise, ws, we)?;
            }
            on_event(GenEvent::Step { block: nb, step });
            let min_eos = (o.min_length + p_len).saturating_sub(ws);
            let mut changed = false;
            for r in 0..b {
                let row_logits = |j: usize| -> Vec<f64> {
                    let base = (r * blk + j) * v;
                    let mut l: Vec<f64> =
                        logits[base..base + v].iter().map(|&y| y as f64).collect();
                    l[MASK as usize] = f64::NEG_INFINITY;
                    if j < min_eos {
                        l[EOS as usize] = f64::NEG_INFINITY;
                    }
                    l
                };
                let z: Vec<u32> = x[r][ws..we].to_vec();
                let mut z_next = z.clone();
                match o.method {
                    Method::Adaptive => {
                        let pi = pi_vec(cfg, log_snrs[step], MASK as usize);
                        let pn: Vec<f64> = z.iter().map(|&id| pi[id as usize] as f64).collect();
                        let sum: f64 = pn.iter().sum();
                        let mut delta = vec![0.0; blk];
                        let mut drawn = vec![0u32; blk];
                        for j in 0..blk {
                            let l = row_logits(j);
                            let xh = probs_with_topk_topp(&l, 1.0, None, None);
                            let pmax = xh.iter().cloned().fold(0.0, f64::max);
                            delta[j] = (pmax - xh[z[j] as usize]) * pn[j] / sum;
                            drawn[j] = draw(
                                &probs_with_topk_topp(&l, o.temperature, o.top_k, o.top_p),
                                &mut rng,
                            ) as u32;
                        }
                        let mut order: Vec<usize> = (0..blk).collect();
                        order.sort_by(|&a, &c| delta[c].total_cmp(&delta[a]));
                        for &j in order.iter().take(o.tokens_per_step) {
                            z_next[j] = drawn[j];
                        }
                    }
                    Method::Ancestral => {
                        let (lt, ls) = (log_snrs[step], log_snrs[step - 1]);
                        let (a_t, a_s) = (sigmoid(lt), sigmoid(ls));
                        let (pi_t, pi_s) = (
                            pi_vec(cfg, lt, MASK as usize),
                            pi_vec(cfg, ls, MASK as usize),
                        );
                        for j in 0..blk {
                            let xh = probs_with_topk_topp(
                                &row_logits(j),
                                o.temperature,
                                o.top_k,
                                o.top_p,
                            );
                            let zt = z[j] as usize;
                            let bpz = (1.0 - a_t) * pi_t[zt] as f64
                                - (a_t / a_s) * (1.0 - a_s) * pi_s[zt] as f64;
                            let qtz = a_t * xh[zt] + (1.0 - a_t) * pi_t[zt] as f64;
                            let p: Vec<f64> = (0..v)
                                .map(|k| {
                                    let qs = a_s * xh[k] + (1.0 - a_s) * pi_s[k] as f64;
                                    let qts = if k == zt { a_t / a_s } else { 0.0 } + bpz;
                                    (qs * qts / qtz).max(0.0)
                                })
                                .collect();
                            z_next[j] = draw(&p, &mut rng) as u32;
                        }
                    }
                }
                changed |= z_next != z;
                x[r][ws..we].copy_from_slice(&z_next);
            }
            keep = !changed && canvas.reuse_logits;
        }
        for row in noise.iter_mut() {
            row[..we].fill(false);
        }
        on_event(GenEvent::Block {
            x: &x,
            block: nb,
            start: ws,
            end: we,
        });
        nb += 1;
        let has_eos = x.iter().all(|row| row.contains(&EOS));
        if ws + o.block_length >= o.max_length + p_len || has_eos || we >= t {
            break;
        }
    }
    let end = (o.max_length + p_len).min(t);
    Ok(x.into_iter()
        .map(|mut row| {
            row.truncate(end);
            if let Some(i) = row.iter().position(|&y| y == EOS).filter(|&i| i > 0) {
                row[i..].fill(PAD);
            }
            row
        })
        .collect())
}

/// Reproduces the golden greedy generation (`generate.*` in a golden file) and compares token for token.
pub fn audit_generation(
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    gold: &TensorStore,
) -> Result<Row> {
    let prompt: Vec<u32> = gold
        .get("generate.prompt")?
        .to_f64_vec()
        .iter()
        .map(|&x| x as u32)
        .collect();
    let want: Vec<f64> = gold.get("generate.output")?.to_f64_vec();
    let prior = gold.get("generate.prior").ok().map(|t| {
        vec![t
            .to_f64_vec()
            .iter()
            .map(|&x| x as u32)
            .collect::<Vec<u32>>()]
    });
    let steps = gold
        .info("generate.step_log_snr")
        .map(|(_, s)| s[0])
        .unwrap_or(want.len());
    let block = gold
        .info("generate.trace")
        .map(|(_, s)| s[1])
        .unwrap_or(want.len() - prompt.len());
    let o = GenOpts {
        max_length: want.len() - prompt.len(),
        min_length: 0,
        block_length: block,
        steps,
        method: Method::Adaptive,
        schedule: NoiseSchedule::Linear,
        temperature: 0.0,
        top_k: None,
        top_p: None,
        tokens_per_step: 1,
        seed: 0,
    };
    let mut canvas = Canvas::new(cfg, params, 1, cfg.max_position_embeddings, DType::F32)?;
    let got = generate(&mut canvas, cfg, &[prompt], &o, prior, |_, _| {})?;
    let got: Vec<f64> = got[0].iter().map(|&x| x as f64).collect();
    let mismatches =
        got.iter().zip(&want).filter(|(a, b)| a != b).count() + got.len().abs_diff(want.len());
    Ok(Row {
        quantity: "generate.output".into(),
        max_abs: if mismatches == 0 { 0.0 } else { 1.0 },
        rel_l2: mismatches as f64,
        tol: 0.0,
        pass: mismatches == 0,
        note: if mismatches == 0 {
            "token for token".into()
        } else {
            format!("{mismatches} tokens differ: got {got:?}")
        },
    })
}
