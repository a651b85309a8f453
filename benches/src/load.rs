//! `gidd bench load`: a released-size model (synthetic bf16 weights, `gidd_train::synthetic`)
//! loaded by mmap as `gidd generate` and `gidd serve` load it, and what that costs: create
//! time (when the checkpoint had to be written), load time, resident memory split into
//! file-backed pages (the mapped weights, which the OS may drop and re-read) and anonymous
//! memory (heap: activations, packed GEMM panels, anything copied), time to the first block
//! of generation and tokens/s.
//!
//! The generation: one prompt of `--prompt_len` tokens (bos and random ids), one block of
//! `--block_length` tokens with `--steps` denoising steps (ancestral, the default sampler),
//! activations in `--dtype` (bf16: the weights are used as stored). The canvas holds the
//! prompt and the block only (not `max_position_embeddings`, 2048, which would run 2048
//! positions through the model every step).

use anyhow::{bail, Result};
use gidd_engine::rng::HostRng;
use gidd_model::generate::{generate, Canvas, GenOpts};
use gidd_train::backend::Precision;
use gidd_train::model_dir::load_checkpoint_mapped;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct LoadBenchArgs {
    /// 3b (gidd-unif-3b: 19 layers, d 3072, 24 heads), 10b (gidd-unif-10b: 34, 4608, 36)
    /// or tiny; vocab 131072, bf16.
    #[arg(long, default_value = "3b")]
    pub config: String,
    /// The checkpoint directory: used when it holds a checkpoint, else created there
    /// (default: gidd-synthetic-CONFIG in the current directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Remove the checkpoint directory after measuring (the files are large).
    #[arg(long)]
    pub delete: bool,
    /// Largest shard, in GB (1e9 bytes).
    #[arg(long, default_value_t = 2.0)]
    pub shard_gb: f64,
    #[arg(long, default_value_t = 16)]
    pub prompt_len: usize,
    #[arg(long, default_value_t = 32)]
    pub block_length: usize,
    /// Denoising steps of the block.
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Activation dtype; bf16 uses the bf16 weights as they are stored.
    #[arg(long, value_enum, default_value_t = Precision::Bf16)]
    pub dtype: Precision,
    /// Generations after the first (which also pages the weights in), for tokens/s.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// One JSON line instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Resident memory of this process from /proc/self/status, in bytes: (VmRSS, RssAnon,
/// RssFile, VmHWM). None where there is no /proc (not Linux).
pub fn rss() -> Option<[u64; 4]> {
    let field = |k: &str| gidd_ports::procfs::status_bytes(None, k);
    Some([
        field("VmRSS")?,
        field("RssAnon")?,
        field("RssFile")?,
        field("VmHWM")?,
    ])
}

fn gb(x: u64) -> f64 {
    x as f64 / 1e9
}

pub fn run(a: &LoadBenchArgs) -> Result<()> {
    let dtype = a.dtype.activations("bench load")?;
    if a.prompt_len == 0 || a.block_length == 0 || a.steps == 0 {
        bail!("--prompt_len, --block_length and --steps must be positive");
    }
    if !(a.shard_gb > 0.0) {
        bail!("--shard_gb {}: use a positive size", a.shard_gb);
    }
    let cfg = gidd_train::synthetic::preset(&a.config)?;
    if a.prompt_len + a.block_length > cfg.max_position_embeddings {
        bail!(
            "--prompt_len + --block_length must be at most {} (max_position_embeddings)",
            cfg.max_position_embeddings
        );
    }
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("gidd-synthetic-{}", a.config)));
    let rss0 = rss();

    let created = if dir.join("config.json").is_file() {
        None
    } else {
        let t = Instant::now();
        let c = gidd_train::synthetic::create(&dir, &cfg, a.seed, (a.shard_gb * 1e9) as usize)?;
        Some((c, t.elapsed().as_secs_f64()))
    };
    let rss1 = rss();

    let t = Instant::now();
    let (m, stats) = load_checkpoint_mapped(&dir)?;
    let load_s = t.elapsed().as_secs_f64();
    let rss2 = rss();
    if m.cfg.vocab_size != cfg.vocab_size || m.cfg.num_params() != cfg.num_params() {
        bail!(
            "{} holds a different model than --config {} (remove it or give another --dir)",
            dir.display(),
            a.config
        );
    }

    let len = a.prompt_len + a.block_length;
    let mut canvas = Canvas::new(&m.cfg, &m.params, 1, len, dtype)?;
    let mut rng = HostRng::new(a.seed ^ 0x10ad);
    let mut prompt = vec![0u32];
    prompt.extend((1..a.prompt_len).map(|_| 4 + rng.below(cfg.vocab_size as u32 - 4)));
    let o = GenOpts::ancestral(a.block_length, a.block_length, a.steps, a.seed);
    // The first generation compiles the programs and pages the weights in.
    let t = Instant::now();
    let mut first_block = None;
    generate(&mut canvas, &m.cfg, &[prompt.clone()], &o, None, |_, _| {
        first_block.get_or_insert(t.elapsed().as_secs_f64());
    })?;
    let first_s = first_block.unwrap_or(t.elapsed().as_secs_f64());
    let rss3 = rss();
    let mut warm = vec![];
    for r in 0..a.repeats {
        let t = Instant::now();
        let or = GenOpts {
            seed: a.seed + 1 + r as u64,
            ..o.clone()
        };
        generate(&mut canvas, &m.cfg, &[prompt.clone()], &or, None, |_, _| {})?;
        warm.push(t.elapsed().as_secs_f64());
    }
    let rss4 = rss();
    let best = warm.iter().copied().fold(f64::INFINITY, f64::min);
    let tok_s = a.block_length as f64 / if warm.is_empty() { first_s } else { best };
    let weights = stats.in_place_bytes + stats.copied_bytes;

    let create_s = created.as_ref().map(|c| c.1);
    let (create_files, create_bytes) = created
        .as_ref()
        .map(|(c, _)| (c.files.len(), c.bytes))
        .unwrap_or_default();
    let r = |x: Option<[u64; 4]>, i: usize| x.map(|v| v[i]).unwrap_or(0);
    if a.json {
        let j = serde_json::json!({
            "config": a.config,
            "dir": dir.display().to_string(),
            "params": m.cfg.num_params(),
            "weight_bytes": weights,
            "files": stats.files,
            "in_place_tensors": stats.in_place,
            "copied_tensors": stats.copied,
            "create_s": create_s,
            "created_files": create_files,
            "created_bytes": create_bytes,
            "load_s": load_s,
            "rss_after_load": r(rss2, 0),
            "rss_anon_after_load": r(rss2, 1),
            "rss_file_after_load": r(rss2, 2),
            "rss_after_first_block": r(rss3, 0),
            "rss_anon_after_first_block": r(rss3, 1),
            "rss_file_after_first_block": r(rss3, 2),
            "rss_anon_before": r(rss0, 1),
            "rss_anon_after_create": r(rss1, 1),
            "peak_rss": r(rss4, 3),
            "first_block_s": first_s,
            "warm_block_s": warm,
            "tokens_per_s": tok_s,
            "prompt_len": a.prompt_len,
            "block_length": a.block_length,
            "steps": a.steps,
            "dtype": format!("{dtype:?}"),
            "threads": rayon::current_num_threads(),
        });
        println!("{j}");
    } else {
        println!(
            "{}: {} ({:.3}B parameters, {:.2} GB of bf16 weights in {} files; {} tensors read in place, {} copied)",
            a.config,
            dir.display(),
            m.cfg.num_params() as f64 / 1e9,
            gb(weights),
            stats.files,
            stats.in_place,
            stats.copied
        );
        if let Some(s) = create_s {
            println!(
                "create            {s:8.1} s   ({create_files} files, {:.2} GB)",
                gb(create_bytes)
            );
        }
        println!("load              {load_s:8.3} s");
        let show = |what: &str, x: Option<[u64; 4]>| match x {
            Some([all, anon, file, _]) => println!(
                "RSS {what:<14} {:8.2} GB   (anonymous {:.2} GB, file-backed {:.2} GB)",
                gb(all),
                gb(anon),
                gb(file)
            ),
            None => println!("RSS {what:<14} unavailable (no /proc/self/status)"),
        };
        show("after load", rss2);
        show("after block 1", rss3);
        println!(
            "first block       {first_s:8.2} s   (prompt {} + block {} tokens, {} steps, {dtype:?}, {} threads; compiles and pages the weights in)",
            a.prompt_len,
            a.block_length,
            a.steps,
            rayon::current_num_threads()
        );
        if !warm.is_empty() {
            println!(
                "warm block        {best:8.2} s   ({tok_s:.2} tokens/s; best of {})",
                warm.len()
            );
        }
        if let Some(v) = rss4 {
            println!("peak RSS          {:8.2} GB", gb(v[3]));
        }
    }
    drop(canvas);
    drop(m);
    if a.delete {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
