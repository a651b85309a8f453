//! `gidd eval --requests` end to end: one JSON line per request, text requests wrapped as
//! the reference wraps them, and bad input refused with what is wrong.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE: denied outside tests)

mod likelihood_support;
use gidd_engine::{CpuExecutor, HostTensor};
use gidd_model::likelihood::{likelihood, LikelihoodOpts, Request};
use gidd_model::GiddConfig;
use likelihood_support::{random_params, requests, tiny_cfg, totals};
use std::path::Path;

fn tmp(name: &str) -> gidd_tests::TempDir {
    gidd_tests::TempDir::new(&format!("likelihood-{name}"))
}

fn write_checkpoint(dir: &Path, cfg: &GiddConfig, params: &[(String, HostTensor)]) {
    gidd_ports::write_json_pretty(&dir.join("config.json"), &cfg.to_json()).unwrap();
    gidd_ports::save_tensors(dir, params, None).unwrap();
}

fn gidd_eval(ck: &Path, args: &[&str]) -> std::process::Output {
    gidd_tests::gidd()
        .args(["eval", "--checkpoint"])
        .arg(ck)
        .args(args)
        .output()
        .unwrap()
}

fn ids_line(r: &Request) -> String {
    serde_json::json!({"prompt_ids": r.prompt, "completion_ids": r.completion}).to_string()
}

#[test]
fn cli_writes_one_json_line_per_request() {
    let dir = tmp("cli");
    let ck = dir.join("ck");
    std::fs::create_dir_all(&ck).unwrap();
    let cfg = tiny_cfg(40, -1000.0, 16, true);
    let params = random_params(&cfg, 31);
    write_checkpoint(&ck, &cfg, &params);
    let reqs = requests();
    let req_path = dir.join("requests.jsonl");
    let text: Vec<String> = reqs.iter().map(ids_line).collect();
    // A blank line is skipped.
    std::fs::write(
        &req_path,
        format!("{}\n\n{}\n{}\n", text[0], text[1], text[2]),
    )
    .unwrap();
    let out_path = dir.join("out.jsonl");
    let out = gidd_eval(
        &ck,
        &[
            "--requests",
            req_path.to_str().unwrap(),
            "--output",
            out_path.to_str().unwrap(),
            "--num_denoising_steps",
            "3",
            "--seed",
            "7",
            "--batch_size",
            "2",
            "--effective_log_snr",
            "false",
        ],
    );
    assert!(
        out.status.success(),
        "gidd eval --requests: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = LikelihoodOpts {
        num_denoising_steps: 3,
        seed: 7,
        batch_size: 2,
        effective_log_snr: false,
        ..LikelihoodOpts::for_model(&cfg)
    };
    let want = likelihood(&CpuExecutor, &cfg, &params, &reqs, &o, None).unwrap();
    let want_level = want.clone();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), reqs.len(), "one line per request");
    // serde_json writes the shortest round-trip digits but parses them to within an ulp.
    let same = |a: f64, b: f64| (a - b).abs() <= 4.0 * f64::EPSILON * b.abs();
    for (v, w) in lines.iter().zip(&want) {
        let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
        assert!(same(f("total_nll"), w.total_nll), "{v} vs {}", w.total_nll);
        assert!(same(f("mean_nll"), w.mean_nll), "{v}");
        // exp(mean) past f64's range is inf, which JSON writes as null.
        match v["ppl"].as_f64() {
            Some(p) => assert!(same(p, w.ppl), "{v}"),
            None => assert!(v["ppl"].is_null() && w.ppl.is_infinite(), "{v}"),
        }
        assert!(same(f("logprob"), -w.total_nll), "{v}");
        assert_eq!(v["num_tokens"].as_u64(), Some(w.num_tokens as u64));
        assert_eq!(v["is_greedy"].as_bool(), Some(false));
    }
    // The default (effective log-SNR on) differs, and stdout is the default output.
    let out = gidd_eval(
        &ck,
        &[
            "--requests",
            req_path.to_str().unwrap(),
            "--num_denoising_steps",
            "3",
            "--seed",
            "7",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o_eff = LikelihoodOpts {
        effective_log_snr: true,
        batch_size: 8,
        ..o.clone()
    };
    let want = likelihood(&CpuExecutor, &cfg, &params, &reqs, &o_eff, None).unwrap();
    let got: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["total_nll"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for ((g, w), w_level) in got.iter().zip(totals(&want)).zip(totals(&want_level)) {
        assert!(same(*g, w), "{g} vs {w}");
        assert_ne!(w, w_level, "the effective log-SNR changes the result");
    }
}

#[test]
fn cli_text_requests_are_bos_prompt_and_completion_eos() {
    let dir = tmp("text");
    let ck = dir.join("ck");
    let texts: Vec<String> = (0..40)
        .map(|i| format!("the cat {i} sat on the mat and the dog ran {}", i * 7))
        .collect();
    let tok = gidd_ports::data::Tok::train_bpe(&texts, 300, &ck.join("tokenizer.json")).unwrap();
    let cfg = tiny_cfg(300, 0.0, 32, true);
    write_checkpoint(&ck, &cfg, &random_params(&cfg, 41));
    let (prompt, completion) = ("the cat sat", " on the mat");
    let text_req = dir.join("text.jsonl");
    std::fs::write(
        &text_req,
        serde_json::json!({"prompt": prompt, "completion": completion}).to_string(),
    )
    .unwrap();
    let mut p = vec![0u32];
    p.extend(tok.encode(prompt).unwrap());
    let mut c = tok.encode(completion).unwrap();
    c.push(1);
    let ids_req = dir.join("ids.jsonl");
    std::fs::write(
        &ids_req,
        ids_line(&Request {
            prompt: p,
            completion: c.clone(),
        }),
    )
    .unwrap();
    let run = |f: &Path| {
        let out = gidd_eval(
            &ck,
            &[
                "--requests",
                f.to_str().unwrap(),
                "--num_denoising_steps",
                "2",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (a, b) = (run(&text_req), run(&ids_req));
    assert_eq!(a, b, "text request = bos + prompt, completion + eos");
    assert_eq!(a["num_tokens"].as_u64(), Some(c.len() as u64));
}

#[test]
fn cli_bad_inputs_fail_clearly() {
    let dir = tmp("bad");
    let ck = dir.join("ck");
    std::fs::create_dir_all(&ck).unwrap();
    let cfg = tiny_cfg(40, -1000.0, 16, false);
    write_checkpoint(&ck, &cfg, &random_params(&cfg, 51));
    let good = ids_line(&requests()[0]);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "malformed",
            format!("{good}\n{{\"prompt_ids\": [0, 1\n"),
            vec!["line 2", "not valid JSON"],
        ),
        (
            "missing",
            format!("{good}\n{{\"prompt_ids\": [0]}}\n"),
            vec!["line 2", "completion_ids"],
        ),
        (
            "not ids",
            "{\"prompt_ids\": [0], \"completion_ids\": [5, -1]}\n".into(),
            vec!["line 1", "-1"],
        ),
        (
            "too long",
            ids_line(&Request {
                prompt: vec![0; 10],
                completion: vec![5; 7],
            }),
            vec!["line 1", "17 tokens", "16"],
        ),
        (
            "vocab",
            ids_line(&Request {
                prompt: vec![0],
                completion: vec![5, 99999],
            }),
            vec!["line 1", "99999", "vocabulary"],
        ),
        (
            "empty completion",
            format!(
                "{good}\n{good}\n{}",
                ids_line(&Request {
                    prompt: vec![0],
                    completion: vec![]
                })
            ),
            vec!["line 3", "empty completion"],
        ),
        (
            "text without tokenizer",
            "{\"prompt\": \"a\", \"completion\": \"b\"}".into(),
            vec!["line 1", "tokenizer"],
        ),
        ("empty file", "\n".into(), vec!["no requests"]),
    ];
    for (what, body, needles) in cases {
        let f = dir.join(format!("{}.jsonl", what.replace(' ', "_")));
        std::fs::write(&f, body).unwrap();
        let out = gidd_eval(
            &ck,
            &[
                "--requests",
                f.to_str().unwrap(),
                "--num_denoising_steps",
                "2",
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: should fail");
        for n in needles {
            assert!(
                err.contains(n),
                "{what}: the error should name {n:?}: {err}"
            );
        }
    }
    let f = dir.join("ok.jsonl");
    std::fs::write(&f, &good).unwrap();
    for (what, args, needle) in [
        ("neither", vec![], "--requests"),
        (
            "both",
            vec![
                "--requests",
                f.to_str().unwrap(),
                "--data_files",
                f.to_str().unwrap(),
            ],
            "not both",
        ),
        (
            "schedule",
            vec![
                "--requests",
                f.to_str().unwrap(),
                "--noise_schedule",
                "square",
            ],
            "square",
        ),
        (
            "canvas",
            vec![
                "--requests",
                f.to_str().unwrap(),
                "--max_sequence_length",
                "17",
            ],
            "17",
        ),
        (
            "steps",
            vec![
                "--requests",
                f.to_str().unwrap(),
                "--num_denoising_steps",
                "0",
            ],
            "num_denoising_steps",
        ),
        (
            "prior",
            vec!["--requests", f.to_str().unwrap(), "--prior", "gauss"],
            "gauss",
        ),
    ] {
        let out = gidd_eval(&ck, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{what}: {err}"
        );
    }
}
