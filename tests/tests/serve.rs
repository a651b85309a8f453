//! `gidd serve` end to end over real HTTP: the endpoints, generation (plain and streamed),
//! scoring against `gidd eval --requests`, refusals in the OpenAI error shape, and
//! back-pressure under a burst of concurrent clients.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE: denied outside tests)

mod serve_support;
use serde_json::{json, Value};
use serve_support::{ids, Server};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

#[test]
fn health_models_and_generation() {
    let s = Server::start(&[]);
    assert_eq!(s.get("/health"), (200, json!({"status": "ok"})));
    let (st, m) = s.get("/v1/models");
    assert_eq!(st, 200);
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "mask-small");

    // min_length = max_tokens: no early eos, so exactly max_tokens tokens come back
    let req = json!({"prompt": [0, 5, 6], "max_tokens": 8, "min_length": 8, "seed": 7,
                     "n": 2, "steps": 4, "block_length": 4, "temperature": 0.9});
    let (st, a) = s.post("/v1/completions", &req);
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["object"], "text_completion");
    assert_eq!(a["choices"].as_array().unwrap().len(), 2);
    for c in a["choices"].as_array().unwrap() {
        assert_eq!(ids(&c["token_ids"]).len(), 8);
        assert_eq!(c["finish_reason"], "length");
        assert!(c["logprobs"].is_null());
    }
    assert_eq!(
        a["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 16, "total_tokens": 19})
    );
    let (_, b) = s.post("/v1/completions", &req);
    assert_eq!(a["choices"], b["choices"], "same seed, same completions");

    // streamed: chunks per block, the same tokens as unstreamed, then [DONE]
    let mut sreq = req.clone();
    sreq["stream"] = json!(true);
    let (st, text) = s.post_raw("/v1/completions", &sreq.to_string());
    assert_eq!(st, 200);
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap())
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let mut streamed = [vec![], vec![]];
    let (mut finished, mut block_chunks) = (0, 0);
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        let c = &v["choices"][0];
        let i = c["index"].as_u64().unwrap() as usize;
        streamed[i].extend(ids(&c["token_ids"]));
        finished += usize::from(!c["finish_reason"].is_null());
        block_chunks += usize::from(c["finish_reason"].is_null());
    }
    assert_eq!(finished, 2);
    // 8 tokens in blocks of 4: two chunks per choice
    assert_eq!(block_chunks, 4, "a chunk per block and choice: {events:?}");
    for (i, got) in streamed.iter().enumerate() {
        assert_eq!(*got, ids(&a["choices"][i]["token_ids"]));
    }
}

#[test]
fn scoring_sums_to_the_eval_likelihood() {
    let (ctx, cont) = (vec![0u32, 5, 6], vec![7u32, 8, 9, 1]);
    let dir = gidd_tests::TempDir::new("serve-score");
    let req_path = dir.join("requests.jsonl");
    std::fs::write(
        &req_path,
        json!({"prompt_ids": ctx, "completion_ids": cont}).to_string(),
    )
    .unwrap();
    let out = gidd_tests::gidd()
        .args(["eval", "--checkpoint"])
        .arg(gidd_tests::golden_case("mask-small"))
        .arg("--requests")
        .arg(&req_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = eval["logprob"].as_f64().unwrap();

    let s = Server::start(&[]);
    let prompt: Vec<u32> = ctx.iter().chain(&cont).copied().collect();
    let (st, r) = s.post(
        "/v1/completions",
        &json!({"prompt": prompt, "echo": true, "max_tokens": 0, "logprobs": 1,
                "context_tokens": ctx.len()}),
    );
    assert_eq!(st, 200, "{r}");
    let lp = &r["choices"][0]["logprobs"];
    let token_lp = lp["token_logprobs"].as_array().unwrap();
    assert_eq!(token_lp.len(), prompt.len());
    assert!(token_lp[..ctx.len()].iter().all(Value::is_null));
    let got: f64 = token_lp[ctx.len()..]
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    eprintln!(
        "scoring vs eval --requests: {got} vs {want}, diff {:e}",
        (got - want).abs()
    );
    assert!((got - want).abs() < 1e-5, "served {got}, eval {want}");
    // one top entry per scored token; never above the token's own value unless it is
    // another token (the greedy check's reading)
    let top = lp["top_logprobs"].as_array().unwrap();
    for (j, t) in top.iter().enumerate().skip(ctx.len()) {
        let m = t.as_object().unwrap();
        assert_eq!(m.len(), 1);
        let best = m.values().next().unwrap().as_f64().unwrap();
        let own = token_lp[j].as_f64().unwrap();
        let is_own = m.contains_key(&prompt[j].to_string());
        assert!(
            if is_own { best == own } else { best > own },
            "{t} vs {own}"
        );
    }
    assert_eq!(lp["text_offset"].as_array().unwrap().len(), prompt.len());
}

/// `gidd eval --requests` on one (prompt_ids, completion_ids) pair, as the only line of
/// its file (so it draws as request 0), with `seed`.
fn eval_logprob(prompt: &[u32], completion: &[u32], seed: u64) -> f64 {
    let dir = gidd_tests::TempDir::new("serve-eval");
    let req_path = dir.join("requests.jsonl");
    std::fs::write(
        &req_path,
        json!({"prompt_ids": prompt, "completion_ids": completion}).to_string(),
    )
    .unwrap();
    let out = gidd_tests::gidd()
        .args(["eval", "--seed", &seed.to_string(), "--checkpoint"])
        .arg(gidd_tests::golden_case("mask-small"))
        .arg("--requests")
        .arg(&req_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    eval["logprob"].as_f64().unwrap()
}

/// lm-eval's stock local-completions: context+continuation in one prompt, echo, max_tokens
/// 1, logprobs 1, and the sum of token_logprobs[ctxlen:-1] taken by the client.
#[test]
fn echo_scoring_sums_to_the_eval_likelihood_from_every_boundary() {
    let s = Server::start(&[]);
    let prompt: Vec<u32> = vec![0, 5, 6, 7, 8, 9, 10];
    let (st, r) = s.post(
        "/v1/completions",
        &json!({"prompt": [prompt.clone()], "echo": true, "max_tokens": 1, "logprobs": 1,
                "seed": 1234, "temperature": 0}),
    );
    assert_eq!(st, 200, "{r}");
    let lp = &r["choices"][0]["logprobs"];
    let values = lp["token_logprobs"].as_array().unwrap();
    let tokens = lp["tokens"].as_array().unwrap();
    // the prompt's entries, then the eos the scoring appended (null: its term is in the
    // last prompt token's value), which lm-eval's [:-1] drops
    assert_eq!(values.len(), prompt.len() + 1);
    assert_eq!(tokens.len(), prompt.len() + 1);
    assert_eq!(tokens.last().unwrap(), "1", "the appended eos");
    assert!(values[0].is_null() && values.last().unwrap().is_null());
    let v: Vec<f64> = values[1..prompt.len()]
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    for ctxlen in [1, 3, prompt.len() - 1] {
        let served: f64 = v[ctxlen - 1..].iter().sum();
        let mut completion = prompt[ctxlen..].to_vec();
        completion.push(1); // eos, as the reference scores a completion
        let want = eval_logprob(&prompt[..ctxlen], &completion, 1234);
        eprintln!(
            "ctxlen {ctxlen}: served {served} vs eval {want}, diff {:e}",
            (served - want).abs()
        );
        // only f64 rounding of the telescoped re-summation separates the two
        assert!(
            (served - want).abs() < 1e-9,
            "ctxlen {ctxlen}: {served} vs {want}"
        );
    }
    // greedy check: an entry's own token is the top entry iff its value is the top value
    let top = lp["top_logprobs"].as_array().unwrap();
    assert!(top[0].is_null() && top.last().unwrap().is_null());
    for j in 1..prompt.len() {
        let m = top[j].as_object().unwrap();
        assert_eq!(m.len(), 1);
        let best = m.values().next().unwrap().as_f64().unwrap();
        let own = values[j].as_f64().unwrap();
        let is_own = m.contains_key(&prompt[j].to_string());
        assert!(
            if is_own { best == own } else { best > own },
            "position {j}: {} vs {own}",
            top[j]
        );
    }
    // max_tokens 0: the same values, without the appended entry
    let (_, r0) = s.post(
        "/v1/completions",
        &json!({"prompt": prompt, "echo": true, "max_tokens": 0, "seed": 1234}),
    );
    let v0 = r0["choices"][0]["logprobs"]["token_logprobs"].clone();
    assert_eq!(v0.as_array().unwrap()[..], values[..prompt.len()]);
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_keeps_serving() {
    let s = Server::start(&["--max_body_bytes", "2000", "--max_score_rows", "5"]);
    let big = format!("{{\"prompt\": [0], \"pad\": \"{}\"}}", "x".repeat(4000));
    let cases: Vec<(String, u16, &str)> = vec![
        ("{\"prompt\": [0, 5".into(), 400, "invalid_json"),
        (
            "{\"prompt\": [0], \"max_tokens\": \"many\"}".into(),
            400,
            "invalid_type",
        ),
        ("{\"prompt\": {\"a\": 1}}".into(), 400, "invalid_prompt"),
        ("{\"prompt\": [0], \"n\": 9}".into(), 400, "n_out_of_range"),
        (
            "{\"prompt\": [0], \"steps\": 5000}".into(),
            400,
            "steps_out_of_range",
        ),
        (
            "{\"prompt\": [0], \"max_tokens\": 30}".into(),
            400,
            "max_tokens_too_large",
        ),
        (
            "{\"prompt\": [0, 1, 2], \"max_tokens\": 22}".into(),
            400,
            "context_length_exceeded",
        ),
        ("{\"prompt\": \"hello\"}".into(), 400, "no_tokenizer"),
        ("{\"prompt\": [0, 500]}".into(), 400, "invalid_prompt"),
        (
            "{\"prompt\": [0], \"sampling_method\": \"beam\"}".into(),
            400,
            "invalid_value",
        ),
        (big, 413, "body_too_large"),
        (
            "{\"prompt\": [0, 5], \"echo\": true, \"max_tokens\": 2}".into(),
            400,
            "unsupported",
        ),
        (
            "{\"prompt\": [0], \"echo\": true}".into(),
            400,
            "invalid_context_tokens",
        ),
        (
            format!("{{\"prompt\": {:?}, \"echo\": true}}", [0u32; 24]),
            400,
            "prompt_too_long",
        ),
        (
            "{\"prompt\": [[0, 5, 6, 7], [0, 5, 6, 7]], \"echo\": true}".into(),
            400,
            "score_too_large",
        ),
    ];
    for (body, status, code) in &cases {
        let (st, text) = s.post_raw("/v1/completions", body);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{v}"
        );
        assert!(v["error"]["message"].as_str().unwrap().len() > 10);
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let (st, v) = s.post("/v1/chat/completions", &json!({"messages": []}));
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("no_chat_template"))
    );
    // no tokenizer in this checkpoint: the tokenizer endpoints say so (lm-eval's `auto`
    // then falls back to its own tokenizer)
    let (st, v) = s.get("/tokenizer_info");
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("no_tokenizer"))
    );
    assert_eq!(s.get("/health").0, 200);
}

#[test]
fn a_burst_is_answered_or_refused_never_lost() {
    let s = Server::start(&["--queue", "2"]);
    let body = json!({"prompt": [0, 5, 6], "max_tokens": 16, "steps": 16, "seed": 1}).to_string();
    let statuses: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..32)
            .map(|_| sc.spawn(|| s.post_raw("/v1/completions", &body)))
            .collect();
        hs.into_iter()
            .map(|h| {
                let (st, text) = h.join().unwrap();
                let v: Value = serde_json::from_str(&text).unwrap();
                if st == 429 {
                    assert_eq!(v["error"]["code"], "queue_full");
                }
                st
            })
            .collect()
    });
    let ok = statuses.iter().filter(|&&x| x == 200).count();
    let refused = statuses.iter().filter(|&&x| x == 429).count();
    eprintln!("burst of 32 with --queue 2: {ok} answered, {refused} refused");
    assert_eq!(ok + refused, 32, "{statuses:?}");
    assert!(ok >= 1);
    assert_eq!(s.get("/health").0, 200);
}

#[test]
fn a_client_that_leaves_stops_its_generation() {
    let dir = gidd_tests::TempDir::new("serve-cancel");
    let log = dir.join("stderr.log");
    let s = Server::start_logging(
        &["--max_steps", "50000"],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    // one token a block, many steps a block: ~1 s a block here, 23 blocks
    let body = json!({"prompt": [0], "max_tokens": 23, "block_length": 1, "steps": 50000,
                      "stream": true, "seed": 3, "temperature": 1.0});
    let mut r = Server::agent()
        .post(format!("{}/v1/completions", s.base))
        .content_type("application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut first = String::new();
    BufReader::new(r.body_mut().as_reader())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("data: {"), "{first}");
    drop(r); // the connection closes with the stream unread
    let t0 = std::time::Instant::now();
    let said = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("generation stopped: its client went away") {
            break true;
        }
        if t0.elapsed().as_secs() > 20 {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(said, "the engine did not stop the generation");
    // and it serves the next one
    let (st, _) = s.post(
        "/v1/completions",
        &json!({"prompt": [0], "max_tokens": 4, "steps": 2}),
    );
    assert_eq!(st, 200);
}

/// Resident memory of a process in KiB (/proc/PID/status VmRSS; Linux).
fn rss_kib(pid: u32) -> u64 {
    gidd_ports::procfs::status_bytes(Some(pid), "VmRSS").expect("VmRSS of the server") / 1024
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn sixty_four_clients_are_answered_or_refused_and_memory_stays_bounded() {
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 12;
    let s = Server::start(&["--queue", "4"]);
    let pid = s.child.id();
    // Half generate, half score (lm-eval's shape: echo, max_tokens 1, logprobs 1).
    let body = |k: usize| {
        if k.is_multiple_of(2) {
            json!({"prompt": [0, 5, 6], "max_tokens": 8, "steps": 4, "block_length": 8,
                   "seed": k})
        } else {
            json!({"prompt": [0, 5, 6, 7, 8], "echo": true, "max_tokens": 1, "logprobs": 1,
                   "num_denoising_steps": 8, "seed": k})
        }
        .to_string()
    };
    // warm: every program and canvas the load uses exists before memory is measured
    for k in 0..2 {
        assert_eq!(s.post_raw("/v1/completions", &body(k)).0, 200);
    }
    let before = rss_kib(pid);
    let done = std::sync::atomic::AtomicBool::new(false);
    let (results, peak) = std::thread::scope(|sc| {
        let sampler = sc.spawn(|| {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            peak
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (s, body) = (&s, &body);
                sc.spawn(move || {
                    let agent = Server::agent();
                    let mut out = vec![];
                    for r in 0..ROUNDS {
                        let t0 = std::time::Instant::now();
                        let sent = agent
                            .post(format!("{}/v1/completions", s.base))
                            .content_type("application/json")
                            .send(body(c * ROUNDS + r));
                        // a transport error (no HTTP answer at all) is a lost request
                        let got = sent.ok().map(|mut resp| {
                            let st = resp.status().as_u16();
                            let text = resp.body_mut().read_to_string().unwrap_or_default();
                            (st, text)
                        });
                        out.push((got, t0.elapsed().as_secs_f64()));
                    }
                    out
                })
            })
            .collect();
        let results: Vec<_> = clients
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (results, sampler.join().unwrap())
    });
    let after = rss_kib(pid);
    let lost = results.iter().filter(|(g, _)| g.is_none()).count();
    let count = |code: u16| {
        results
            .iter()
            .filter(|(g, _)| g.as_ref().is_some_and(|(st, _)| *st == code))
            .count()
    };
    let (ok, busy, unavailable) = (count(200), count(429), count(503));
    let lat = |code: u16| {
        let mut v: Vec<f64> = results
            .iter()
            .filter(|(g, _)| g.as_ref().is_some_and(|(st, _)| *st == code))
            .map(|(_, t)| t * 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        (percentile(&v, 0.5), percentile(&v, 0.99))
    };
    let (ok50, ok99) = lat(200);
    let (busy50, busy99) = lat(429);
    eprintln!(
        "load: {CLIENTS} clients x {ROUNDS} requests = {} sent, {ok} answered 200, {busy} refused 429, {unavailable} refused 503, {lost} lost; latency ms 200 p50 {ok50:.1} p99 {ok99:.1}, 429 p50 {busy50:.1} p99 {busy99:.1}; server RSS KiB before {before}, peak {peak}, after {after}",
        results.len()
    );
    assert_eq!(lost, 0, "requests without an HTTP answer");
    assert_eq!(results.len(), CLIENTS * ROUNDS);
    for (g, _) in &results {
        let (st, text) = g.as_ref().unwrap();
        assert!([200, 429, 503].contains(st), "{st}: {text}");
        if *st != 200 {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["error"]["type"], "rate_limit_error", "{text}");
        }
    }
    assert_eq!(ok + busy + unavailable, CLIENTS * ROUNDS);
    assert!(ok >= 2, "the queue moved: {ok} answered");
    // bounded: at most --queue jobs wait, each small; 64 MiB is far above what they hold
    // and far below what keeping every refused request's work would take
    assert!(
        peak.max(after) < before + 64 * 1024,
        "RSS grew from {before} KiB to {peak} KiB under load"
    );
    assert_eq!(s.get("/health").0, 200);
}

#[test]
fn a_shutdown_finishes_what_it_has_and_refuses_new_work_with_503() {
    let mut s = Server::start(&["--max_steps", "50000"]);
    // ten one-token blocks of many steps: long enough to probe the server while it drains
    let body = json!({"prompt": [0], "max_tokens": 10, "block_length": 1, "steps": 20000,
                      "min_length": 10, "stream": true, "seed": 5});
    let mut r = Server::agent()
        .post(format!("{}/v1/completions", s.base))
        .content_type("application/json")
        .send(body.to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut reader = BufReader::new(r.body_mut().as_reader());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("data: {"), "{first}");
    let st = std::process::Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    // /health turns 503 once the signal is handled (polled: it never waits on the engine);
    // then new work is refused with 503 while the stream goes on
    while s.get("/health").0 != 503 {}
    let (st, refused) = s.post("/v1/completions", &json!({"prompt": [0], "max_tokens": 2}));
    assert_eq!(st, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "shutting_down", "{refused}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let tokens: usize = format!("{first}{rest}")
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .filter(|e| *e != "[DONE]")
        .map(|e| {
            let v: Value = serde_json::from_str(e).unwrap();
            v["choices"][0]["token_ids"].as_array().unwrap().len()
        })
        .sum();
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
    assert_eq!(tokens, 10, "the stream in flight was finished");
    // then the server exits by itself, successfully
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed().as_secs() < 60,
            "the server did not exit after draining"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
