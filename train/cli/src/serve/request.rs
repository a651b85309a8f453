//! `POST /v1/completions` bodies: the OpenAI fields plus the GIDD ones, parsed and checked
//! against the model and the server's limits before anything is queued, so that every
//! refusal is a 4xx naming the field or limit and the engine sees only valid work.

use super::errors::ApiError;
use crate::generate::{check_opts, check_prompt, text_prompt};
use clap::ValueEnum;
use gidd_model::generate::{GenOpts, Method, NoiseSchedule};
use gidd_model::GiddConfig;
use gidd_ports::data::Tok;
use serde::Deserialize;

/// The server's size limits (flags of `gidd serve`).
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_tokens: usize,
    pub max_n: usize,
    pub max_prompts: usize,
    pub max_logprobs: usize,
    /// Largest `steps` (per block) and `num_denoising_steps`: the work of one request.
    pub max_steps: usize,
    /// Most likelihood rows of one scoring request (a row per scored split: a prompt's
    /// scored tokens without `context_tokens`, one with it).
    pub max_score_rows: usize,
    /// Noise levels of a scoring request without `num_denoising_steps`.
    pub default_levels: usize,
}

/// The body as sent. Unknown fields are accepted and ignored (clients send `user`,
/// `logit_bias`, `best_of`...); a known field of the wrong type is a 400 naming it.
#[derive(Deserialize)]
struct Body {
    prompt: Option<serde_json::Value>,
    max_tokens: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<serde_json::Value>,
    n: Option<usize>,
    seed: Option<u64>,
    stream: Option<bool>,
    echo: Option<bool>,
    logprobs: Option<usize>,
    // GIDD extras, as `gidd generate`'s flags
    top_k: Option<usize>,
    min_length: Option<usize>,
    steps: Option<usize>,
    block_length: Option<usize>,
    sampling_method: Option<String>,
    noise_schedule: Option<String>,
    tokens_per_step: Option<usize>,
    // GIDD extras for scoring, as `gidd eval --requests`' flags
    context_tokens: Option<usize>,
    num_denoising_steps: Option<usize>,
}

/// Generation of `n` completions per prompt.
pub struct GenWork {
    pub prompts: Vec<Vec<u32>>,
    pub n: usize,
    pub opts: GenOpts,
    pub stop: Vec<String>,
    pub stream: bool,
}

/// A prompt to score: the ids the model sees, of which the first `hidden` (the bos put in
/// front of a text prompt) are not echoed.
pub struct ScorePrompt {
    pub ids: Vec<u32>,
    pub hidden: usize,
}

/// Echo scoring (see `serve::score`): every split of each prompt (`context` None) or the
/// one after its first `context` echoed tokens; the scored part ends with `eos`.
pub struct ScoreWork {
    pub prompts: Vec<ScorePrompt>,
    pub context: Option<usize>,
    pub top: usize,
    pub levels: usize,
    pub schedule: NoiseSchedule,
    pub seed: u64,
    pub eos: u32,
    /// max_tokens 1: one more entry after the prompt's, the eos the scoring appended
    pub echo_eos: bool,
}

pub enum Work {
    Generate(GenWork),
    Score(ScoreWork),
}

/// serde_json's message without its "at line 1 column N" (the column is kept apart).
pub(super) fn json_error(e: &serde_json::Error) -> ApiError {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    let code = if e.is_data() {
        "invalid_type"
    } else {
        "invalid_json"
    };
    ApiError::bad(
        code,
        format!("request body, column {}: {msg}", e.column().max(1)),
    )
}

fn token_ids(v: &[serde_json::Value]) -> Option<Vec<u32>> {
    v.iter()
        .map(|t| {
            t.as_u64()
                .filter(|&x| x <= u32::MAX as u64)
                .map(|x| x as u32)
        })
        .collect()
}

/// A prompt as OpenAI allows it: text, a list of texts, token ids, or lists of token ids.
/// Text gets bos in front, as `gidd generate --prompt` does; ids are used as given.
fn prompts(
    v: Option<&serde_json::Value>,
    tok: Option<&Tok>,
) -> Result<Vec<(Vec<u32>, bool)>, ApiError> {
    use serde_json::Value;
    let shape = || {
        ApiError::bad(
            "invalid_prompt",
            "\"prompt\" must be a string, a list of strings, a list of token ids or a list of lists of token ids",
        )
    };
    let text = |t: &str| -> Result<Vec<u32>, ApiError> {
        let tok = tok.ok_or_else(|| {
            ApiError::bad(
                "no_tokenizer",
                "text prompts need a tokenizer and this checkpoint has none (no tokenizer.json, no --tokenizer): send token ids",
            )
        })?;
        text_prompt(tok, t).map_err(|e| ApiError::bad("invalid_prompt", format!("{e:#}")))
    };
    let out = match v {
        None | Some(Value::Null) => {
            return Err(ApiError::bad("missing_prompt", "\"prompt\" is required"))
        }
        Some(Value::String(s)) => vec![(text(s)?, true)],
        Some(Value::Array(a)) if a.is_empty() => return Err(shape()),
        Some(Value::Array(a)) => match &a[0] {
            Value::String(_) => a
                .iter()
                .map(|t| {
                    t.as_str()
                        .ok_or_else(shape)
                        .and_then(text)
                        .map(|p| (p, true))
                })
                .collect::<Result<_, _>>()?,
            Value::Number(_) => vec![(token_ids(a).ok_or_else(shape)?, false)],
            Value::Array(_) => a
                .iter()
                .map(|r| {
                    r.as_array()
                        .and_then(|r| token_ids(r))
                        .map(|p| (p, false))
                        .ok_or_else(shape)
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(shape()),
        },
        Some(_) => return Err(shape()),
    };
    Ok(out)
}

fn stops(v: Option<&serde_json::Value>) -> Result<Vec<String>, ApiError> {
    use serde_json::Value;
    let bad = || {
        ApiError::bad(
            "invalid_stop",
            "\"stop\" must be a string or a list of strings",
        )
    };
    let out: Vec<String> = match v {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if out.iter().any(|s| s.is_empty()) {
        return Err(ApiError::bad(
            "invalid_stop",
            "\"stop\" strings must not be empty",
        ));
    }
    Ok(out)
}

/// A clap value name ("ancestral", "cosine") of one of `gidd generate`'s enums.
fn choice<T: ValueEnum>(field: &str, v: Option<&str>, default: T) -> Result<T, ApiError> {
    match v {
        None => Ok(default),
        Some(s) => T::from_str(s, true).map_err(|_| {
            let names: Vec<String> = T::value_variants()
                .iter()
                .filter_map(|x| x.to_possible_value().map(|p| p.get_name().to_string()))
                .collect();
            ApiError::bad(
                "invalid_value",
                format!("\"{field}\": {s:?} is not one of {}", names.join(", ")),
            )
        }),
    }
}

/// Parses and checks a completions body against the model and the limits.
pub fn parse(
    bytes: &[u8],
    cfg: &GiddConfig,
    tok: Option<&Tok>,
    lim: &Limits,
) -> Result<Work, ApiError> {
    let b: Body = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
    let prompts = prompts(b.prompt.as_ref(), tok)?;
    if prompts.len() > lim.max_prompts {
        return Err(ApiError::bad(
            "too_many_prompts",
            format!(
                "{} prompts exceed the limit of {} per request (--max_prompts)",
                prompts.len(),
                lim.max_prompts
            ),
        ));
    }
    let n = b.n.unwrap_or(1);
    if n == 0 || n > lim.max_n {
        return Err(ApiError::bad(
            "n_out_of_range",
            format!("n {n}: the server takes 1..={} (--max_n)", lim.max_n),
        ));
    }
    let max_tokens = b.max_tokens.unwrap_or(16);
    let echo = b.echo.unwrap_or(false);
    let seed = b.seed.unwrap_or_else(clock_seed);
    let schedule_name = b.noise_schedule.as_deref();
    if echo {
        let max_tokens = b.max_tokens.unwrap_or(0);
        return score_work(&b, prompts, max_tokens, n, cfg, tok, lim).map(Work::Score);
    }
    if max_tokens == 0 {
        return Err(ApiError::bad(
            "unsupported",
            "max_tokens 0 generates nothing: to score the prompt send echo true (with max_tokens 0 or 1 and logprobs k)",
        ));
    }
    let prompts: Vec<Vec<u32>> = prompts.into_iter().map(|(p, _)| p).collect();
    if b.logprobs.is_some_and(|k| k > 0) {
        return Err(ApiError::bad(
            "unsupported",
            "logprobs of generated tokens are not defined for diffusion sampling (tokens are not drawn left to right); score a text with echo true, max_tokens 0",
        ));
    }
    if max_tokens > lim.max_tokens {
        return Err(ApiError::bad(
            "max_tokens_too_large",
            format!(
                "max_tokens {max_tokens} exceeds the limit of {} (--max_tokens)",
                lim.max_tokens
            ),
        ));
    }
    let t = cfg.max_position_embeddings;
    for (i, p) in prompts.iter().enumerate() {
        check_prompt(cfg, i, p).map_err(|e| ApiError::bad("invalid_prompt", format!("{e:#}")))?;
        if p.len() + max_tokens > t {
            return Err(ApiError::bad(
                "context_length_exceeded",
                format!(
                    "prompt {i} ({} tokens) + max_tokens ({max_tokens}) exceed the model's context of {t} tokens (max_position_embeddings)",
                    p.len()
                ),
            ));
        }
    }
    let stop = stops(b.stop.as_ref())?;
    if !stop.is_empty() && tok.is_none() {
        return Err(ApiError::bad(
            "no_tokenizer",
            "\"stop\" matches text and this checkpoint has no tokenizer",
        ));
    }
    let opts = GenOpts {
        max_length: max_tokens,
        min_length: b.min_length.unwrap_or(0),
        block_length: b.block_length.unwrap_or(64),
        steps: b.steps.unwrap_or(64),
        method: choice(
            "sampling_method",
            b.sampling_method.as_deref(),
            Method::Ancestral,
        )?,
        schedule: choice("noise_schedule", schedule_name, NoiseSchedule::Cosine)?,
        temperature: b.temperature.unwrap_or(1.0),
        top_k: b.top_k,
        // OpenAI's top_p 1 is "no nucleus cut", as top_p absent
        top_p: b.top_p.filter(|&p| p != 1.0),
        tokens_per_step: b.tokens_per_step.unwrap_or(1),
        seed,
    };
    check_opts(&opts, "").map_err(|e| ApiError::bad("invalid_value", format!("{e:#}")))?;
    if opts.steps > lim.max_steps {
        return Err(ApiError::bad(
            "steps_out_of_range",
            format!(
                "steps {}: the server takes at most {} per block (--max_steps)",
                opts.steps, lim.max_steps
            ),
        ));
    }
    Ok(Work::Generate(GenWork {
        prompts,
        n,
        opts,
        stop,
        stream: b.stream.unwrap_or(false),
    }))
}

/// The scoring request of `echo: true` (see `serve::score` for what is computed).
fn score_work(
    b: &Body,
    prompts: Vec<(Vec<u32>, bool)>,
    max_tokens: usize,
    n: usize,
    cfg: &GiddConfig,
    tok: Option<&Tok>,
    lim: &Limits,
) -> Result<ScoreWork, ApiError> {
    if max_tokens > 1 {
        return Err(ApiError::bad(
            "unsupported",
            "echo scores the prompt and generates nothing: max_tokens must be 0 or 1 (with 1 the entry after the prompt's is the eos the scoring appends, as lm-eval expects)",
        ));
    }
    if b.stream.unwrap_or(false) || n != 1 {
        return Err(ApiError::bad(
            "unsupported",
            "scoring (echo true) takes neither stream nor n > 1",
        ));
    }
    let top = b.logprobs.unwrap_or(0);
    if top > lim.max_logprobs {
        return Err(ApiError::bad(
            "logprobs_out_of_range",
            format!("logprobs {top}: at most {}", lim.max_logprobs),
        ));
    }
    let levels = b.num_denoising_steps.unwrap_or(lim.default_levels);
    if levels == 0 || levels > lim.max_steps {
        return Err(ApiError::bad(
            "steps_out_of_range",
            format!(
                "num_denoising_steps {levels}: the server takes 1..={} (--max_steps)",
                lim.max_steps
            ),
        ));
    }
    let (bos, eos) = crate::requests::bos_eos(tok);
    let t = cfg.max_position_embeddings;
    let mut out = vec![];
    let mut rows = 0;
    for (i, (ids, text)) in prompts.into_iter().enumerate() {
        // a text prompt gets bos in front (not echoed), unless its text starts with it
        let hidden = usize::from(text && ids.get(1) != Some(&bos));
        let ids = if text && hidden == 0 {
            ids[1..].to_vec()
        } else {
            ids
        };
        let echoed = ids.len() - hidden;
        if let Some(bad) = ids.iter().find(|&&x| x as usize >= cfg.vocab_size) {
            return Err(ApiError::bad(
                "invalid_prompt",
                format!(
                    "prompt {i}: token id {bad} is outside the model's vocabulary of {}",
                    cfg.vocab_size
                ),
            ));
        }
        let with_eos = ids.len() + usize::from(ids.last() != Some(&eos));
        if with_eos > t {
            return Err(ApiError::bad(
                "prompt_too_long",
                format!("prompt {i} has {} tokens with the bos and eos scoring adds: the model's context is {t} (max_position_embeddings)", with_eos),
            ));
        }
        // the first scored position: after the context (at least one clean token)
        let first = match b.context_tokens {
            Some(c) => hidden + c,
            None => hidden.max(1),
        };
        if first == 0 || first >= ids.len() {
            return Err(ApiError::bad(
                "invalid_context_tokens",
                format!(
                    "prompt {i} has {echoed} echoed tokens and its context is {} of them: at least one token must be context and one scored",
                    first - hidden.min(first)
                ),
            ));
        }
        rows += if b.context_tokens.is_some() {
            1
        } else {
            ids.len() - first
        };
        out.push(ScorePrompt { ids, hidden });
    }
    if rows > lim.max_score_rows {
        return Err(ApiError::bad(
            "score_too_large",
            format!(
                "scoring this request takes {rows} likelihood rows (one per scored token and prompt; one per prompt with context_tokens), over the limit of {} (--max_score_rows): send fewer or shorter prompts, or context_tokens",
                lim.max_score_rows
            ),
        ));
    }
    Ok(ScoreWork {
        prompts: out,
        context: b.context_tokens,
        top,
        levels,
        schedule: choice(
            "noise_schedule",
            b.noise_schedule.as_deref(),
            NoiseSchedule::Linear,
        )?,
        seed: b.seed.unwrap_or(0),
        eos,
        echo_eos: max_tokens == 1,
    })
}

/// OpenAI's default when no seed is given: a different sample each time.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
