//! `gidd generate`: prompts from flags or a JSONL file, batched by length, blocks shown
//! as they finish, a progress bar on a terminal, and the HF `generate` flag names.

use anyhow::{bail, Context, Result};
use gidd_engine::{DType, Executor};
use gidd_model::generate::{
    generate_with, max_blocks, Canvas, GenEvent, GenOpts, Method, NoiseSchedule,
};
use gidd_model::GiddConfig;
use gidd_ports::data::Tok;
use gidd_train::backend::{BackendArgs, Precision};
use gidd_train::model_dir::{load_checkpoint_mapped, load_tokenizer, Loaded};
use gidd_train::progress::Progress;
use gidd_train::with_executor;
use std::collections::hash_map::{Entry, HashMap};
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug)]
#[command(rename_all = "snake_case")]
pub struct GenArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prompt text (needs tokenizer.json in the checkpoint or --tokenizer); repeat the flag
    /// for a batch; none: unconditional from bos.
    #[arg(long)]
    pub prompt: Vec<String>,
    /// Prompt as comma-separated token ids (bos included if wanted).
    #[arg(long)]
    pub prompt_ids: Option<String>,
    /// A JSONL file of prompts, one object a line: {"prompt": TEXT} or {"prompt_ids": [..]};
    /// the output is one JSON line per prompt, in input order.
    #[arg(long)]
    pub prompts_file: Option<PathBuf>,
    /// Prompts of equal length generate together, this many at a time.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    #[arg(long, default_value_t = 0)]
    pub min_length: usize,
    #[arg(long, default_value_t = 64)]
    pub block_length: usize,
    #[arg(long, default_value_t = 64)]
    pub steps: usize,
    #[arg(long, value_enum, default_value_t = Method::Ancestral)]
    pub sampling_method: Method,
    #[arg(long, value_enum, default_value_t = NoiseSchedule::Cosine)]
    pub noise_schedule: NoiseSchedule,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub tokens_per_step: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub dtype: Precision,
    /// Recompute the whole canvas every step instead of encoding the clean prefix once per block.
    #[arg(long)]
    pub no_kv_cache: bool,
    /// Run the model even when the previous step changed nothing.
    #[arg(long)]
    pub no_logits_reuse: bool,
    /// Print nothing while generating (no progress bar, no blocks).
    #[arg(long)]
    pub quiet: bool,
    /// cpu or xla
    #[command(flatten)]
    pub exec: BackendArgs,
}

impl GenArgs {
    pub fn opts(&self) -> Result<GenOpts> {
        if self.batch_size == 0 {
            bail!("--batch_size must be positive");
        }
        let o = GenOpts {
            max_length: self.max_length,
            min_length: self.min_length,
            block_length: self.block_length,
            steps: self.steps,
            method: self.sampling_method,
            schedule: self.noise_schedule,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            tokens_per_step: self.tokens_per_step,
            seed: self.seed,
        };
        check_opts(&o, "--")?;
        Ok(o)
    }
}

/// Checks sampling options before any work; `dash` prefixes the names ("--" for flags,
/// "" for `gidd serve`'s JSON fields) so that the message names what the user wrote.
pub fn check_opts(o: &GenOpts, dash: &str) -> Result<()> {
    if !(o.temperature >= 0.0 && o.temperature.is_finite()) {
        bail!(
            "{dash}temperature {}: use a finite value >= 0 (0 = argmax)",
            o.temperature
        );
    }
    if let Some(p) = o.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
        bail!("{dash}top_p {p}: use a value in (0, 1]");
    }
    if o.tokens_per_step == 0 {
        bail!("{dash}tokens_per_step must be positive");
    }
    if o.block_length == 0 || o.steps == 0 {
        bail!("{dash}block_length and {dash}steps must be positive");
    }
    Ok(())
}

/// One prompt as given: its text (if any) and its ids.
struct Prompt {
    text: Option<String>,
    ids: Vec<u32>,
}

fn need_tok<'a>(tok: Option<&'a Tok>, what: &str) -> Result<&'a Tok> {
    tok.ok_or_else(|| {
        anyhow::anyhow!(
            "{what} needs a tokenizer: put tokenizer.json in the checkpoint directory or pass --tokenizer"
        )
    })
}

pub fn text_prompt(tok: &Tok, text: &str) -> Result<Vec<u32>> {
    let mut ids = vec![0u32]; // bos
    ids.extend(tok.encode(text)?);
    Ok(ids)
}

fn read_prompts(a: &GenArgs, tok: Option<&Tok>) -> Result<Vec<Prompt>> {
    let given = [
        !a.prompt.is_empty(),
        a.prompt_ids.is_some(),
        a.prompts_file.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        bail!("give one of --prompt, --prompt_ids, --prompts_file");
    }
    if let Some(ids) = &a.prompt_ids {
        let ids = ids
            .split(',')
            .map(|s| s.trim().parse::<u32>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow::anyhow!("--prompt_ids {ids:?}: {e}: use comma-separated token ids")
            })?;
        return Ok(vec![Prompt { text: None, ids }]);
    }
    if !a.prompt.is_empty() {
        let t = need_tok(tok, "--prompt")?;
        return a
            .prompt
            .iter()
            .map(|p| {
                Ok(Prompt {
                    text: Some(p.clone()),
                    ids: text_prompt(t, p)?,
                })
            })
            .collect();
    }
    let Some(path) = &a.prompts_file else {
        return Ok(vec![Prompt {
            text: None,
            ids: vec![0],
        }]);
    };
    let f = std::fs::File::open(path)
        .with_context(|| format!("--prompts_file {}: cannot open", path.display()))?;
    let mut out = vec![];
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}: not a JSON object", at()))?;
        if let Some(t) = v.get("prompt").and_then(|t| t.as_str()) {
            let ids = text_prompt(need_tok(tok, "a text prompt")?, t)?;
            out.push(Prompt {
                text: Some(t.to_string()),
                ids,
            });
        } else if let Some(ids) = v.get("prompt_ids").and_then(|t| t.as_array()) {
            let ids = ids
                .iter()
                .map(|x| {
                    x.as_u64()
                        .filter(|&x| x <= u32::MAX as u64)
                        .map(|x| x as u32)
                        .ok_or_else(|| {
                            anyhow::anyhow!("{}: prompt_ids holds {x}, not a token id", at())
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(Prompt { text: None, ids });
        } else {
            bail!(
                "{}: expected {{\"prompt\": TEXT}} or {{\"prompt_ids\": [ids]}}",
                at()
            );
        }
    }
    if out.is_empty() {
        bail!("--prompts_file {}: no prompts in it", path.display());
    }
    Ok(out)
}

pub fn check_prompt(cfg: &GiddConfig, i: usize, p: &[u32]) -> Result<()> {
    let t = cfg.max_position_embeddings;
    if p.is_empty() {
        bail!("prompt {i} is empty: start it with bos (id 0)");
    }
    if p.len() >= t {
        bail!(
            "prompt {i} has {} tokens: the model's context is {t} (max_position_embeddings), leaving no room to generate",
            p.len()
        );
    }
    if let Some(bad) = p.iter().find(|&&x| x as usize >= cfg.vocab_size) {
        bail!(
            "prompt {i}: token id {bad} is outside the model's vocabulary of {}",
            cfg.vocab_size
        );
    }
    Ok(())
}

pub fn run(a: &GenArgs) -> Result<()> {
    // flags first: a bad one is reported before a large checkpoint is read
    let dtype = a.dtype.activations("generate")?;
    a.exec.check("generating")?;
    // weights stay in the mapped files (bf16 as bf16): a large model is not copied
    let (m, _) = load_checkpoint_mapped(&a.checkpoint)?;
    let tok = load_tokenizer(&a.checkpoint, a.tokenizer.as_deref())?;
    let o = a.opts()?;
    let prompts = read_prompts(a, tok.as_ref())?;
    for (i, p) in prompts.iter().enumerate() {
        check_prompt(&m.cfg, i, &p.ids)?;
    }
    let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let room = m.cfg.max_position_embeddings.saturating_sub(longest);
    if o.max_length > room {
        eprintln!(
            "warning: --max_length {}: the model has {} positions and the longest prompt takes {longest}, so at most {room} tokens are generated",
            o.max_length, m.cfg.max_position_embeddings
        );
    }
    with_executor!(a.exec.open("generating")?, exec => {
        run_on(exec, a, &m, &o, &prompts, tok.as_ref(), dtype)
    })
}

fn run_on<E: Executor + Clone>(
    exec: E,
    a: &GenArgs,
    m: &Loaded,
    o: &GenOpts,
    prompts: &[Prompt],
    tok: Option<&Tok>,
    dtype: DType,
) -> Result<()> {
    let cfg = &m.cfg;
    let t = cfg.max_position_embeddings;
    // Batches of equal-length prompts, each batch in input order.
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| (prompts[i].ids.len(), i));
    let mut batches: Vec<Vec<usize>> = vec![];
    for i in order {
        match batches.last_mut() {
            Some(b)
                if b.len() < a.batch_size && prompts[b[0]].ids.len() == prompts[i].ids.len() =>
            {
                b.push(i)
            }
            _ => batches.push(vec![i]),
        }
    }
    let total_steps: usize = batches
        .iter()
        .map(|b| max_blocks(o, prompts[b[0]].ids.len(), t) * o.steps)
        .sum();
    let bar = if a.quiet {
        Progress::Lines // no bar; a quiet run says nothing through it
    } else {
        Progress::new(
            0,
            total_steps,
            "{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}",
        )
    };
    let file_mode = a.prompts_file.is_some();
    // blocks as they finish: for a single prompt (a batch prints its texts at the end)
    let show_blocks = !a.quiet && !file_mode && prompts.len() == 1;
    let mut results: Vec<Option<Vec<u32>>> = vec![None; prompts.len()];
    let t0 = std::time::Instant::now();
    let mut new_tokens = 0usize;
    // One canvas per batch size: its programs (per block shape) and uploaded parameters
    // serve every batch of that size.
    let mut canvases: HashMap<usize, Canvas<E>> = HashMap::new();
    for (bi, batch) in batches.iter().enumerate() {
        let canvas = match canvases.entry(batch.len()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let mut c =
                    Canvas::with_executor(exec.clone(), cfg, &m.params, batch.len(), t, dtype)?;
                c.kv_cache = !a.no_kv_cache;
                c.reuse_logits = !a.no_logits_reuse;
                e.insert(c)
            }
        };
        let ids: Vec<Vec<u32>> = batch.iter().map(|&i| prompts[i].ids.clone()).collect();
        // the seed is per batch so that batches differ and a rerun repeats them
        let ob = GenOpts {
            seed: o.seed.wrapping_add(bi as u64),
            ..o.clone()
        };
        let out = generate_with(canvas, cfg, &ids, &ob, None, |e| match e {
            GenEvent::Step { .. } => bar.inc(),
            GenEvent::Block {
                x,
                block,
                start,
                end,
            } => {
                if !show_blocks {
                    return;
                }
                let text = match tok {
                    Some(tk) => tk.decode(&x[0][start..end]).unwrap_or_default(),
                    None => format!("{:?}", &x[0][start..end]),
                };
                bar.say(&format!("[block {block}: positions {start}..{end}] {text}"));
            }
        })?;
        for (&i, row) in batch.iter().zip(out) {
            new_tokens += row.len() - prompts[i].ids.len();
            results[i] = Some(row);
        }
        bar.message(format!("{}/{} prompts", bi + 1, batches.len()));
    }
    bar.clear();
    let secs = t0.elapsed().as_secs_f64();
    if !a.quiet {
        eprintln!(
            "generated {new_tokens} tokens for {} prompt(s) in {secs:.2}s ({:.1} tokens/s)",
            prompts.len(),
            new_tokens as f64 / secs.max(1e-9)
        );
    }
    let mut stdout = std::io::stdout().lock();
    for (p, row) in prompts.iter().zip(results) {
        let row = row.expect("every prompt is in one batch");
        let gen = &row[p.ids.len()..];
        if file_mode {
            let mut j = serde_json::json!({ "prompt_ids": p.ids, "output_ids": gen });
            if let Some(tk) = tok {
                j["completion"] = tk.decode(gen)?.into();
            }
            if let Some(text) = &p.text {
                j["prompt"] = text.clone().into();
            }
            writeln!(stdout, "{j}")?;
        } else {
            match tok {
                Some(tk) => writeln!(stdout, "{}", tk.decode(&row)?)?,
                None => writeln!(stdout, "{row:?}")?,
            }
        }
    }
    Ok(())
}
