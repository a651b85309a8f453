//! The tokenizer endpoints of vLLM's server, which lm-eval's `tokenizer_backend=remote`
//! (and its `auto`) uses to count context tokens exactly as the server tokenizes:
//! `GET /tokenizer_info`, `POST /tokenize {"prompt", "add_special_tokens"}` and
//! `POST /detokenize {"tokens"}`. `add_special_tokens` (default true, as vLLM) puts bos in
//! front, as a text prompt gets it; detokenizing keeps special tokens, so a round trip
//! through both is lossless (lm-eval decodes its token lists to send them as text).

use super::errors::{body_rejection, ApiError};
use super::request::json_error;
use super::routes::St;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gidd_ports::data::Tok;
use serde::Deserialize;
use serde_json::{json, Value};

fn tokenizer(tok: Option<&Tok>) -> Result<&Tok, ApiError> {
    tok.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_tokenizer",
            "this checkpoint has no tokenizer (no tokenizer.json, no --tokenizer): send and read token ids",
        )
    })
}

fn body<T: for<'a> Deserialize<'a>>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| body_rejection(r, limit))?;
    serde_json::from_slice(&bytes).map_err(|e| json_error(&e))
}

/// The special tokens' strings: the name the tokenizer has for each role's id.
pub async fn info(State(st): St) -> Result<Json<Value>, ApiError> {
    let tok = tokenizer(st.tok.as_deref())?;
    let sp = tok.special_ids();
    let name = |id: Option<u32>| id.and_then(|i| tok.inner().id_to_token(i));
    Ok(Json(json!({
        "bos_token": name(sp.bos),
        "eos_token": name(sp.eos),
        "pad_token": name(sp.pad),
        "model_max_length": st.cfg.max_position_embeddings,
        "vocab_size": st.cfg.vocab_size,
        "chat_template": st.chat_template,
    })))
}

#[derive(Deserialize)]
struct TokenizeBody {
    prompt: String,
    add_special_tokens: Option<bool>,
}

pub async fn tokenize(
    State(st): St,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tok = tokenizer(st.tok.as_deref())?;
    let b: TokenizeBody = body(b, st.body_limit)?;
    let mut ids = vec![];
    if b.add_special_tokens.unwrap_or(true) {
        ids.push(crate::requests::bos_eos(Some(tok)).0);
    }
    ids.extend(
        tok.encode(&b.prompt)
            .map_err(|e| ApiError::bad("invalid_prompt", e.to_string()))?,
    );
    Ok(Json(json!({
        "count": ids.len(),
        "max_model_len": st.cfg.max_position_embeddings,
        "tokens": ids,
    })))
}

#[derive(Deserialize)]
struct DetokenizeBody {
    tokens: Vec<u32>,
}

pub async fn detokenize(
    State(st): St,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let tok = tokenizer(st.tok.as_deref())?;
    let b: DetokenizeBody = body(b, st.body_limit)?;
    let v = tok.vocab_size();
    if let Some(bad) = b.tokens.iter().find(|&&t| t as usize >= v) {
        return Err(ApiError::bad(
            "invalid_tokens",
            format!("token id {bad} is outside the tokenizer's vocabulary of {v}"),
        ));
    }
    let text = tok
        .inner()
        .decode(&b.tokens, false)
        .map_err(|e| ApiError::bad("invalid_tokens", e.to_string()))?;
    Ok(Json(json!({"prompt": text})))
}
