//! `gidd generate` end to end on the golden mask-small checkpoint (written by the
//! reference): the greedy generation through the CLI is the reference's token for
//! token, a JSONL batch of prompts comes back in order and repeatably, the KV cache
//! changes nothing in the output, and bad prompts are refused clearly.

use std::process::Output;

fn tmp(name: &str) -> gidd_tests::TempDir {
    gidd_tests::TempDir::new(&format!("gencli-{name}"))
}

fn gidd(args: &[&str]) -> Output {
    gidd_tests::gidd().args(args).output().expect("run gidd")
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn golden_ids(dir: &std::path::Path, name: &str) -> Vec<u32> {
    let s = gidd_ports::TensorStore::open(&dir.join("golden.safetensors")).expect("golden");
    s.get(name)
        .expect(name)
        .to_f64_vec()
        .iter()
        .map(|&x| x as u32)
        .collect()
}

#[test]
fn greedy_generation_through_the_cli_is_the_references() {
    let dir = gidd_tests::golden_case("mask-small");
    let prompt = golden_ids(&dir, "generate.prompt");
    let want = golden_ids(&dir, "generate.output");
    let ids = prompt
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let n = (want.len() - prompt.len()).to_string();
    let ck = dir.to_str().expect("utf-8 path");
    for cache in [true, false] {
        let mut args = vec![
            "generate",
            "--checkpoint",
            ck,
            "--prompt_ids",
            &ids,
            "--max_length",
            &n,
            "--block_length",
            &n,
            "--steps",
            &n,
            "--sampling_method",
            "adaptive",
            "--temperature",
            "0",
            "--noise_schedule",
            "linear",
            "--tokens_per_step",
            "1",
        ];
        if !cache {
            args.push("--no_kv_cache");
        }
        let out = ok(&gidd(&args), "generate");
        assert_eq!(
            out.trim(),
            format!("{want:?}"),
            "kv cache {cache}: not the reference's greedy generation"
        );
    }
}

#[test]
fn a_jsonl_batch_comes_back_in_order_repeatably_and_the_cache_changes_nothing() {
    let dir = gidd_tests::golden_case("mask-small");
    let f_dir = tmp("prompts");
    let f = f_dir.join("p.jsonl");
    // two lengths, interleaved, so batching by length must restore the input order
    std::fs::write(
        &f,
        "{\"prompt_ids\": [0, 17, 23]}\n{\"prompt_ids\": [0, 5]}\n\n{\"prompt_ids\": [0, 40, 41]}\n",
    )
    .expect("write prompts");
    let ck = dir.to_str().expect("utf-8 path");
    let fp = f.to_str().expect("utf-8 path");
    let base = [
        "generate",
        "--checkpoint",
        ck,
        "--prompts_file",
        fp,
        "--max_length",
        "12",
        "--block_length",
        "5",
        "--steps",
        "6",
        "--batch_size",
        "2",
    ];
    let run = |extra: &[&str]| {
        let mut a = base.to_vec();
        if !extra.contains(&"--seed") {
            a.extend_from_slice(&["--seed", "11"]);
        }
        a.extend_from_slice(extra);
        ok(&gidd(&a), "generate --prompts_file")
    };
    let out = run(&[]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (l, p) in lines
        .iter()
        .zip([vec![0, 17, 23], vec![0, 5], vec![0, 40, 41]])
    {
        let got: Vec<u64> = serde_json::from_value(l["prompt_ids"].clone()).expect("ids");
        assert_eq!(got, p, "out of order: {out}");
        let gen = l["output_ids"].as_array().expect("output_ids");
        assert!(!gen.is_empty() && gen.len() <= 12, "{l}");
        assert!(
            gen.iter().all(|x| x.as_u64().is_some_and(|x| x < 100)),
            "{l}"
        );
    }
    assert_eq!(out, run(&[]), "same seed, same output");
    assert_eq!(
        out,
        run(&["--no_kv_cache"]),
        "the KV cache changed the output"
    );
    assert_eq!(
        out,
        run(&["--no_logits_reuse"]),
        "logits reuse changed the output"
    );
    assert_ne!(out, run(&["--seed", "12"]), "another seed, the same output");
}

#[test]
fn bad_prompts_are_refused_with_what_is_wrong() {
    let dir = gidd_tests::golden_case("mask-small");
    let ck = dir.to_str().expect("utf-8 path");
    let long: String = (0..30)
        .map(|i| (4 + i).to_string())
        .collect::<Vec<_>>()
        .join(",");
    let bad_file_dir = tmp("bad");
    let bad_file = bad_file_dir.join("bad.jsonl");
    std::fs::write(
        &bad_file,
        "{\"prompt_ids\": [0, 5]}\n{\"prompt_ids\": [0, 5\n",
    )
    .expect("write");
    let wrong_key_dir = tmp("bad");
    let wrong_key = wrong_key_dir.join("key.jsonl");
    std::fs::write(&wrong_key, "{\"text\": [0, 5]}\n").expect("write");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--prompt_ids", &long], "context"),
        (vec!["--prompt_ids", "0,100"], "vocabulary"),
        (vec!["--prompt_ids", "0,x"], "--prompt_ids"),
        (vec!["--prompt", "hello"], "tokenizer"),
        (vec!["--prompt", "a", "--prompt_ids", "0,5"], "one of"),
        (
            vec!["--prompts_file", bad_file.to_str().expect("path")],
            "bad.jsonl:2",
        ),
        (
            vec!["--prompts_file", wrong_key.to_str().expect("path")],
            "prompt_ids",
        ),
        (
            vec!["--prompts_file", "/nonexistent/p.jsonl"],
            "cannot open",
        ),
        (
            vec!["--sampling_method", "greedy"],
            "[possible values: adaptive, ancestral]",
        ),
        (vec!["--top_p", "1.5"], "--top_p"),
    ];
    for (extra, needle) in cases {
        let mut a = vec!["generate", "--checkpoint", ck];
        a.extend_from_slice(&extra);
        let o = gidd(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(needle),
            "{extra:?}: expected a failure naming {needle:?}, got {:?}: {err}",
            o.status.code()
        );
    }
}
