//! The request files of `gidd eval --requests` (lm-eval's `loglikelihood` requests, one
//! JSON object a line) and the JSON line written per scored request.

use anyhow::{bail, Context, Result};
use gidd_model::likelihood::{Request, Score};
use gidd_model::schedule::{BOS, EOS};
use gidd_ports::data::Tok;
use std::path::Path;

/// Special ids a text request is wrapped in: the reference tokenizes with
/// `add_special_tokens=True` (bos ... eos) and drops the prompt's last token (eos) and
/// the completion's first (bos), so prompt = bos + text, completion = text + eos.
/// Without a tokenizer (token-id requests): the model's own ids.
pub fn bos_eos(tok: Option<&Tok>) -> (u32, u32) {
    let sp = tok.map(|t| t.special_ids());
    (
        sp.as_ref().and_then(|s| s.bos).unwrap_or(BOS),
        sp.as_ref().and_then(|s| s.eos).unwrap_or(EOS),
    )
}

fn ids_field(v: &serde_json::Value, name: &str, line: usize) -> Result<Vec<u32>> {
    let arr = v
        .as_array()
        .with_context(|| format!("line {line}: \"{name}\" must be an array of token ids"))?;
    arr.iter()
        .map(|t| {
            t.as_u64()
                .filter(|&x| x <= u32::MAX as u64)
                .map(|x| x as u32)
                .with_context(|| {
                    format!(
                        "line {line}: \"{name}\" holds {t}, not a non-negative integer token id"
                    )
                })
        })
        .collect()
}

/// Parses one request line: {"prompt", "completion"} (text; needs a tokenizer) or
/// {"prompt_ids", "completion_ids"} (ids used as given). `line` is 1-based, for errors.
pub fn parse_request(text: &str, line: usize, tok: Option<&Tok>) -> Result<Request> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        // serde's message ends "at line 1 column N": the line is ours, keep the column.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        anyhow::anyhow!("line {line}, column {}: not valid JSON: {msg}", e.column())
    })?;
    let obj = v
        .as_object()
        .with_context(|| format!("line {line}: expected a JSON object"))?;
    if let (Some(p), Some(c)) = (obj.get("prompt_ids"), obj.get("completion_ids")) {
        return Ok(Request {
            prompt: ids_field(p, "prompt_ids", line)?,
            completion: ids_field(c, "completion_ids", line)?,
        });
    }
    match (obj.get("prompt"), obj.get("completion")) {
        (Some(p), Some(c)) => {
            let (Some(p), Some(c)) = (p.as_str(), c.as_str()) else {
                bail!("line {line}: \"prompt\" and \"completion\" must be strings");
            };
            let Some(tok) = tok else {
                bail!("line {line}: text requests need a tokenizer: put tokenizer.json in the checkpoint directory or pass --tokenizer (or give prompt_ids/completion_ids)");
            };
            let (bos, eos) = bos_eos(Some(tok));
            let mut prompt = vec![bos];
            prompt.extend(tok.encode(p)?);
            let mut completion = tok.encode(c)?;
            completion.push(eos);
            Ok(Request { prompt, completion })
        }
        _ => bail!(
            "line {line}: a request needs \"prompt\" and \"completion\" (text) or \"prompt_ids\" and \"completion_ids\""
        ),
    }
}

/// Reads a requests file, one JSON object a line (blank lines skipped): the requests
/// and their 1-based line numbers.
pub fn read_requests(path: &Path, tok: Option<&Tok>) -> Result<Vec<(usize, Request)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read requests file {}", path.display()))?;
    let mut out = vec![];
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let r = parse_request(l, i + 1, tok).with_context(|| format!("{}", path.display()))?;
        out.push((i + 1, r));
    }
    if out.is_empty() {
        bail!("{}: no requests", path.display());
    }
    Ok(out)
}

/// One output line: the score, plus what an lm-eval `loglikelihood` request returns,
/// (logprob, is_greedy). logprob = -total_nll, an ELBO bound on log p(completion | prompt).
/// is_greedy is not defined for a diffusion model (there is no left-to-right argmax to
/// compare with); like the reference's lm-eval fork we always report false.
/// A ppl past f64's range (mean NLL above ~709 nats) is written as null.
pub fn score_json(s: &Score) -> serde_json::Value {
    serde_json::json!({
        "total_nll": s.total_nll,
        "mean_nll": s.mean_nll,
        "ppl": s.ppl,
        "num_tokens": s.num_tokens,
        "logprob": -s.total_nll,
        "is_greedy": false,
    })
}
