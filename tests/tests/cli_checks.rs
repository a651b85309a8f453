//! What the CLI checks before it runs: `gidd info` refuses every malformed checkpoint that
//! `gidd generate` refuses (and names the problem), `gidd eval` with no data flag evaluates
//! the held-out split a checkpoint was trained on (or says which flag to give), and
//! `gidd generate --max_length` beyond the model's positions says so.

#![allow(clippy::unwrap_used)] // tests may unwrap

use gidd_engine::HostTensor;
use gidd_tests::{gidd, golden_case, TempDir};
use std::path::Path;
use std::process::Output;

fn run(args: &[&str], dir: &Path) -> Output {
    gidd()
        .args(args)
        .arg("--checkpoint")
        .arg(dir)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A copy of the golden mask-small checkpoint with `edit` applied to its parameters.
fn checkpoint_with(
    tmp: &TempDir,
    name: &str,
    edit: impl FnOnce(&mut Vec<(String, HostTensor)>),
) -> std::path::PathBuf {
    let src = golden_case("mask-small");
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let store = gidd_ports::TensorStore::open(&src).unwrap();
    let mut params: Vec<(String, HostTensor)> = store
        .names()
        .iter()
        .map(|n| (n.to_string(), store.get(n).unwrap()))
        .collect();
    edit(&mut params);
    gidd_ports::save_tensors(&dir, &params, None).unwrap();
    dir
}

#[test]
fn info_refuses_what_generate_refuses() {
    let tmp = TempDir::new("info");
    let good = checkpoint_with(&tmp, "good", |_| {});
    let o = run(&["info"], &good);
    assert!(
        o.status.success(),
        "info on a good checkpoint: {}",
        stderr(&o)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("parameters:"));

    let mut bad: Vec<(&str, std::path::PathBuf, &str)> = vec![
        (
            "missing tensor",
            checkpoint_with(&tmp, "missing", |p| {
                p.retain(|(n, _)| n != "model.norm.weight");
            }),
            "model.norm.weight",
        ),
        (
            "extra tensor",
            checkpoint_with(&tmp, "extra", |p| {
                p.push((
                    "model.extra.weight".into(),
                    HostTensor::f32(vec![2], vec![1.0, 2.0]).unwrap(),
                ));
            }),
            "model.extra.weight",
        ),
        (
            "wrong shape",
            checkpoint_with(&tmp, "shape", |p| {
                let t = &mut p
                    .iter_mut()
                    .find(|(n, _)| n == "model.norm.weight")
                    .unwrap()
                    .1;
                let v = t.to_f64_vec();
                *t = HostTensor::f32(vec![v.len() - 1], vec![0.0; v.len() - 1]).unwrap();
            }),
            "model.norm.weight",
        ),
        (
            "integer dtype",
            checkpoint_with(&tmp, "dtype", |p| {
                let t = &mut p
                    .iter_mut()
                    .find(|(n, _)| n == "model.norm.weight")
                    .unwrap()
                    .1;
                let n = t.numel();
                *t = HostTensor::i32(t.shape.clone(), vec![0; n]).unwrap();
            }),
            "model.norm.weight",
        ),
    ];
    // A file shorter than its header says.
    let trunc = checkpoint_with(&tmp, "truncated", |_| {});
    let f = trunc.join("model.safetensors");
    let len = std::fs::metadata(&f).unwrap().len();
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..(len as usize - 16)]).unwrap();
    bad.push(("truncated file", trunc, "model.safetensors"));
    // A tokenizer.json that is not one.
    let tok = checkpoint_with(&tmp, "tokenizer", |_| {});
    std::fs::write(tok.join("tokenizer.json"), "{not json").unwrap();
    bad.push(("broken tokenizer.json", tok, "tokenizer"));
    // No config.json.
    let nocfg = checkpoint_with(&tmp, "noconfig", |_| {});
    std::fs::remove_file(nocfg.join("config.json")).unwrap();
    bad.push(("no config.json", nocfg, "config.json"));

    for (what, dir, named) in &bad {
        let g = run(
            &[
                "generate",
                "--prompt_ids",
                "0,5",
                "--max_length",
                "4",
                "--steps",
                "2",
            ],
            dir,
        );
        assert!(!g.status.success(), "{what}: generate accepted it");
        let i = run(&["info"], dir);
        assert!(
            !i.status.success(),
            "{what}: info accepted what generate refuses"
        );
        assert!(
            stderr(&i).contains(named),
            "{what}: the error should name {named}: {}",
            stderr(&i)
        );
    }
}

#[test]
fn eval_without_a_data_flag_uses_the_trained_on_split_or_says_what_to_give() {
    let tmp = TempDir::new("eval-default");
    let cache = TempDir::new("eval-default-cache");
    let o = gidd()
        .env("GIDD_CACHE", cache.path())
        .args(gidd_tests::SMALL_TRAIN)
        .args([
            "512",
            "--batch_size",
            "4",
            "--max_training_steps",
            "2",
            "--save_directory",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "train: {}", stderr(&o));
    let ck = tmp.join("checkpoint-2");
    let o = gidd()
        .env("GIDD_CACHE", cache.path())
        .args([
            "eval",
            "--max_rows",
            "8",
            "--draws",
            "2",
            "--batch_size",
            "4",
        ])
        .arg("--checkpoint")
        .arg(&ck)
        .output()
        .unwrap();
    assert!(o.status.success(), "eval: {}", stderr(&o));
    assert!(stderr(&o).contains("held-out split"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = v["elbo_nats_per_token"].as_f64().unwrap();
    assert!(e.is_finite() && e > 0.0, "{v}");

    // A checkpoint with no record of its data: the error says which flag to give.
    let o = run(&["eval"], &golden_case("mask-small"));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--data_files") && stderr(&o).contains("--requests"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn generate_past_the_models_positions_says_so() {
    let dir = golden_case("mask-small");
    let o = run(
        &[
            "generate",
            "--prompt_ids",
            "0,5,6",
            "--max_length",
            "100000",
            "--steps",
            "2",
            "--block_length",
            "8",
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: --max_length 100000"),
        "{}",
        stderr(&o)
    );
}
