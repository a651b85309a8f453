//! `gidd serve` batching the requests of concurrent clients: a batch carries several
//! requests (`/metrics` says so), every answer is bitwise the one the same request gets
//! alone, and a client that leaves does not disturb the others.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE: denied outside tests)

mod serve_support;
use serde_json::{json, Value};
use serve_support::{ids, Server};
use std::io::{BufRead, BufReader};

/// Sends every body at once, one client thread each; the (status, response) in order.
fn concurrently(s: &Server, bodies: &[Value]) -> Vec<(u16, Value)> {
    std::thread::scope(|sc| {
        let hs: Vec<_> = bodies
            .iter()
            .map(|b| sc.spawn(move || s.post("/v1/completions", b)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Each body alone, one after another, on a server that does not wait to batch.
fn alone(bodies: &[Value]) -> Vec<Value> {
    let s = Server::start(&["--batch_wait_ms", "0"]);
    bodies
        .iter()
        .map(|b| {
            let (st, v) = s.post("/v1/completions", b);
            assert_eq!(st, 200, "{v}");
            v
        })
        .collect()
}

/// A server that waits up to 5 s for `rows` rows before it starts a batch: the wait ends
/// as soon as a test's concurrent requests are all queued, so they share a batch.
fn batching_server(rows: usize) -> Server {
    Server::start(&[
        "--batch_wait_ms",
        "5000",
        "--max_batch_rows",
        &rows.to_string(),
    ])
}

fn metrics(s: &Server) -> Value {
    let (st, m) = s.get("/metrics");
    assert_eq!(st, 200);
    m
}

#[test]
fn concurrent_generations_share_a_batch_and_answer_as_alone() {
    // one canvas program (prompt length 3, the same options), other seeds, prompts, n:
    // 1 + 2 + 3 + 2 = 8 rows, one streamed
    let common = json!({"max_tokens": 8, "steps": 3, "block_length": 4, "temperature": 0.9,
                        "top_p": 0.95});
    let body = |prompt: Value, seed: u64, n: usize| {
        let mut b = common.clone();
        b["prompt"] = prompt;
        b["seed"] = json!(seed);
        b["n"] = json!(n);
        b
    };
    let bodies = vec![
        body(json!([0, 5, 6]), 1, 1),
        body(json!([0, 5, 6]), 2, 2),
        body(json!([[0, 9, 4], [0, 5, 6], [0, 1, 2]]), 1, 1),
        body(json!([0, 5, 6]), 1, 2),
    ];
    let want = alone(&bodies);
    let s = batching_server(8);
    let got = concurrently(&s, &bodies);
    let m = metrics(&s);
    eprintln!("batched generation: {m}");
    assert!(
        m["max_requests_per_batch"].as_u64().unwrap() > 1,
        "the concurrent requests ran one by one: {m}"
    );
    assert_eq!(m["queued"], 0);
    for (i, ((st, g), w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(*st, 200, "{g}");
        assert_eq!(g["choices"], w["choices"], "request {i}: batched vs alone");
        assert_eq!(g["usage"], w["usage"]);
    }
    // the seed draws: request 3 repeats request 0 (seed 1, same prompt) in its first row
    let first = |v: &Value| ids(&v["choices"][0]["token_ids"]);
    assert_eq!(first(&got[3].1), first(&got[0].1));
    assert_ne!(first(&got[1].1), first(&got[0].1), "seed 2 vs seed 1");

    // streamed, batched with another: the same tokens as alone
    let mut streamed = bodies[1].clone();
    streamed["stream"] = json!(true);
    let other = bodies[2].clone();
    let text = std::thread::scope(|sc| {
        let h = sc.spawn(|| s.post("/v1/completions", &other));
        let (st, text) = s.post_raw("/v1/completions", &streamed.to_string());
        assert_eq!(st, 200);
        assert_eq!(h.join().unwrap().1["choices"], want[2]["choices"]);
        text
    });
    let mut tokens = [vec![], vec![]];
    for e in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data = e.strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        let c = &v["choices"][0];
        tokens[c["index"].as_u64().unwrap() as usize].extend(ids(&c["token_ids"]));
    }
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(
            *t,
            ids(&want[1]["choices"][i]["token_ids"]),
            "streamed choice {i}"
        );
    }
}

#[test]
fn concurrent_scoring_shares_a_likelihood_and_answers_as_alone() {
    // lm-eval's shape (echo, max_tokens 1, logprobs 1) and context_tokens, other seeds
    let bodies = vec![
        json!({"prompt": [0, 5, 6, 7, 8], "echo": true, "max_tokens": 1, "logprobs": 1,
               "seed": 1234, "num_denoising_steps": 4}),
        json!({"prompt": [0, 9, 9, 3], "echo": true, "max_tokens": 0, "logprobs": 2,
               "seed": 7, "num_denoising_steps": 4}),
        json!({"prompt": [[0, 5, 6, 7, 8], [0, 4]], "echo": true, "max_tokens": 0,
               "logprobs": 0, "seed": 1234, "num_denoising_steps": 4}),
        json!({"prompt": [0, 5, 6, 7, 8], "echo": true, "max_tokens": 0, "logprobs": 1,
               "context_tokens": 2, "seed": 3, "num_denoising_steps": 4}),
    ];
    let want = alone(&bodies);
    // rows: 4 + 3 + (4 + 1) + 1 = 13 likelihood rows, a batch's bound; 4 a forward
    let s = Server::start(&[
        "--batch_wait_ms",
        "5000",
        "--max_batch_rows",
        "4",
        "--max_score_rows",
        "13",
    ]);
    let got = concurrently(&s, &bodies);
    let m = metrics(&s);
    eprintln!("batched scoring: {m}");
    assert!(
        m["max_requests_per_batch"].as_u64().unwrap() > 1,
        "the concurrent requests ran one by one: {m}"
    );
    for (i, ((st, g), w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(*st, 200, "{g}");
        // serde_json writes the shortest text that reads back as the same f64: equal
        // text is equal bits
        assert_eq!(g["choices"], w["choices"], "request {i}: batched vs alone");
    }
    // the same prompt and seed in two requests scores the same
    assert_eq!(
        got[0].1["choices"][0]["logprobs"]["token_logprobs"]
            .as_array()
            .unwrap()[..4],
        got[2].1["choices"][0]["logprobs"]["token_logprobs"]
            .as_array()
            .unwrap()[..4]
    );
}

#[test]
fn a_client_that_leaves_does_not_disturb_its_batch() {
    let s = batching_server(2);
    // two rows of one canvas program; many steps a block, so the batch is still running
    // when the streamed client leaves after its first block
    let common = json!({"prompt": [0, 5], "max_tokens": 12, "block_length": 2,
                        "steps": 400, "seed": 5});
    let mut leaving = common.clone();
    leaving["stream"] = json!(true);
    let mut staying = common.clone();
    staying["seed"] = json!(6);
    let stays = std::thread::scope(|sc| {
        let h = sc.spawn(|| s.post("/v1/completions", &staying));
        let mut r = Server::agent()
            .post(format!("{}/v1/completions", s.base))
            .content_type("application/json")
            .send(leaving.to_string())
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let mut first = String::new();
        BufReader::new(r.body_mut().as_reader())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("data: {"), "{first}");
        drop(r); // gone, its rows mid-batch
        h.join().unwrap()
    });
    assert_eq!(stays.0, 200, "{}", stays.1);
    let m = metrics(&s);
    assert!(m["max_requests_per_batch"].as_u64().unwrap() > 1, "{m}");
    // the one that stayed got what it gets alone
    let want = alone(std::slice::from_ref(&staying));
    assert_eq!(stays.1["choices"], want[0]["choices"]);
    // and the server goes on
    assert_eq!(s.get("/health").0, 200);
    let (st, v) = s.post(
        "/v1/completions",
        &json!({"prompt": [0], "max_tokens": 2, "steps": 1, "n": 2}),
    );
    assert_eq!(st, 200, "{v}");
}
