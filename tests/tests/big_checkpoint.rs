//! Big checkpoints at test size: the synthetic sharded bf16 checkpoint `gidd bench load`
//! writes, loaded by mmap as `gidd generate` and `gidd serve` load it.

use gidd_engine::{CpuExecutor, DType, Data, Executor, HostTensor};
use gidd_model::generate::{generate, Canvas, GenOpts};
use gidd_model::GiddConfig;
use gidd_tests::TempDir;
use gidd_train::model_dir::{load_checkpoint, load_checkpoint_mapped};
use gidd_train::synthetic;
use std::path::Path;

const SEED: u64 = 7;
/// Small enough that the tiny model (about 1.6 MB in bf16) spans several shards.
const SHARD_BYTES: usize = 400_000;

fn tiny() -> GiddConfig {
    synthetic::preset("tiny").expect("tiny preset")
}

/// The tiny synthetic checkpoint, sharded.
fn sharded(tmp: &TempDir, cfg: &GiddConfig) -> std::path::PathBuf {
    let dir = tmp.join("sharded");
    let c = synthetic::create(&dir, cfg, SEED, SHARD_BYTES).expect("create");
    assert!(
        c.files.len() >= 3,
        "expected several shards, got {:?}",
        c.files
    );
    dir
}

fn shard_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("model-"))
        .collect();
    v.sort();
    v
}

/// The streamed, sharded checkpoint holds exactly what the in-memory init gives, saved as
/// one file by `save_tensors`: same names, shapes and bf16 values, whether read owned
/// (`load_checkpoint`, f32) or mapped (`load_checkpoint_mapped`, bf16 in place).
#[test]
fn sharded_streamed_checkpoint_equals_the_single_file() {
    let tmp = TempDir::new("big-roundtrip");
    let cfg = tiny();
    let dir = sharded(&tmp, &cfg);
    let names = shard_names(&dir);
    let n = names.len();
    for (i, f) in names.iter().enumerate() {
        assert_eq!(*f, format!("model-{:05}-of-{n:05}.safetensors", i + 1));
    }
    assert!(dir.join("model.safetensors.index.json").is_file());
    assert!(!dir.join("model.safetensors").exists());

    // The same tensors written in one file by the crate's serializer (save_tensors).
    let b = load_checkpoint(&dir).expect("load sharded");
    let want: Vec<(String, HostTensor)> = b
        .params
        .iter()
        .map(|(n, t)| (n.clone(), t.convert(DType::BF16)))
        .collect();
    let single = tmp.join("single");
    gidd_ports::save_tensors(&single, &want, None).expect("save");
    gidd_ports::write_json_pretty(&single.join("config.json"), &cfg.to_json()).expect("config");
    assert!(single.join("model.safetensors").is_file());
    let a = load_checkpoint(&single).expect("load single");
    assert_eq!(a.params, b.params);
    assert_eq!(
        a.params.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        cfg.param_shapes()
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    );

    // the init's distributions: weights N(0, (0.4/sqrt d)^2), embedding N(0, 0.02^2), the
    // head drawn like the weights (not zero: generation depends on it), norms zero
    let std_of = |name: &str| {
        let v = b
            .params
            .iter()
            .find(|(n, _)| n == name)
            .expect(name)
            .1
            .to_f64_vec();
        (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
    };
    let w = 0.4 / (cfg.hidden_size as f64).sqrt();
    for (name, want_std) in [
        ("model.layers.1.mlp.up_proj.weight", w),
        ("lm_head.weight", w),
        ("model.embed_tokens.weight", 0.02),
        ("model.norm.weight", 0.0),
    ] {
        let got = std_of(name);
        assert!(
            (got - want_std).abs() <= 0.02 * want_std,
            "{name}: std {got} vs {want_std}"
        );
    }

    let (m, stats) = load_checkpoint_mapped(&dir).expect("load mapped");
    assert_eq!(stats.files, n);
    assert_eq!(stats.in_place, want.len());
    assert_eq!(stats.copied, 0);
    for ((na, ta), (nm, tm)) in want.iter().zip(&m.params) {
        assert_eq!(na, nm);
        assert!(matches!(tm.data, Data::Mapped(_)), "{nm} was copied");
        assert_eq!(ta, tm, "{nm}");
    }
}

/// The CPU executor takes a mapped weight as it is: uploading shares the mapping (no copy)
/// and a program reading it computes what it computes from an owned copy.
#[test]
fn the_cpu_executor_reads_mapped_weights_in_place() {
    let tmp = TempDir::new("big-inplace");
    let cfg = tiny();
    let dir = sharded(&tmp, &cfg);
    let (m, _) = load_checkpoint_mapped(&dir).expect("load mapped");
    let (_, w) = m
        .params
        .iter()
        .find(|(n, _)| n == "model.layers.0.mlp.up_proj.weight")
        .expect("up_proj");
    let up = CpuExecutor.upload(w).expect("upload");
    match (&w.data, &up.data) {
        (Data::Mapped(a), Data::Mapped(b)) => {
            assert!(a.shares_backing(b));
            assert_eq!(a.bytes().as_ptr(), b.bytes().as_ptr());
        }
        _ => panic!("the weight or its upload is not mapped"),
    }
    // y = x W^T with W [I, d] mapped, against the same with W owned
    let (i, d) = (w.shape[0], w.shape[1]);
    let g = gidd_engine::Graph::new();
    let x = g.input("x", &[3, d], DType::BF16);
    let wt = g.input("w", &[i, d], DType::BF16);
    let y = x.linear(&wt).expect("linear");
    let p = gidd_engine::Program::compile(&[y], &["x", "w"]).expect("compile");
    let mut lp = CpuExecutor.load(&p).expect("load");
    let xs = HostTensor::f32(
        vec![3, d],
        (0..3 * d).map(|k| (k % 7) as f32 - 3.0).collect(),
    )
    .expect("x")
    .convert(DType::BF16);
    let owned = HostTensor::new(w.shape.clone(), w.data.materialize().into_owned()).expect("w");
    assert!(matches!(owned.data, Data::BF16(_)));
    let a = CpuExecutor.run(&mut lp, &[&xs, &up]).expect("run mapped");
    let b = CpuExecutor.run(&mut lp, &[&xs, &owned]).expect("run owned");
    assert_eq!(a, b);
    assert!(a[0].to_f32_vec().iter().any(|&v| v != 0.0));
}

fn gen_opts(seed: u64) -> GenOpts {
    GenOpts::ancestral(24, 8, 4, seed)
}

/// Generation from the mapped sharded checkpoint (bf16 weights in place) gives the same
/// tokens as from the ordinary load (f32 copies of the same values), in f32 and in bf16
/// activations: the program widens or keeps the weights where the ordinary one converts
/// them, exactly either way.
#[test]
fn generation_from_the_mapped_checkpoint_equals_the_ordinary_load() {
    let tmp = TempDir::new("big-generate");
    let cfg = tiny();
    let dir = sharded(&tmp, &cfg);
    let owned = load_checkpoint(&dir).expect("load");
    let (mapped, _) = load_checkpoint_mapped(&dir).expect("load mapped");
    let prompts = vec![vec![0, 17, 400, 9, 33, 5], vec![0, 8, 8, 1000, 71, 6]];
    for dtype in [DType::F32, DType::BF16] {
        let len = 6 + 24;
        let mut a = Canvas::new(&cfg, &owned.params, 2, len, dtype).expect("canvas");
        let mut b = Canvas::new(&cfg, &mapped.params, 2, len, dtype).expect("canvas");
        for seed in [1, 2] {
            let o = gen_opts(seed);
            let ta = generate(&mut a, &cfg, &prompts, &o, None, |_, _| {}).expect("gen");
            let tb = generate(&mut b, &cfg, &prompts, &o, None, |_, _| {}).expect("gen");
            assert_eq!(ta, tb, "{dtype:?} seed {seed}");
            assert!(ta.iter().all(|r| r.len() > 6));
        }
    }
}

fn index_path(dir: &Path) -> std::path::PathBuf {
    dir.join("model.safetensors.index.json")
}

fn edit_index(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = index_path(dir);
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).expect("read index")).expect("json");
    f(v["weight_map"].as_object_mut().expect("weight_map"));
    std::fs::write(&p, serde_json::to_vec(&v).expect("json")).expect("write index");
}

fn load_err(dir: &Path) -> String {
    match load_checkpoint_mapped(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

fn contains_all(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "{n:?} not in:\n{msg}");
    }
}

/// A broken sharded checkpoint is refused with a message naming the file and the tensor.
#[test]
fn a_bad_index_names_the_file_and_the_tensor() {
    let tmp = TempDir::new("big-badindex");
    let cfg = tiny();
    let base = sharded(&tmp, &cfg);
    let names = shard_names(&base);
    let copy = |tag: &str| {
        let d = tmp.join(tag);
        std::fs::create_dir_all(&d).expect("mkdir");
        for e in std::fs::read_dir(&base).expect("list") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), d.join(e.file_name())).expect("copy");
        }
        d
    };

    // a shard the index lists is missing
    let d = copy("missing-shard");
    std::fs::remove_file(d.join(&names[1])).expect("rm");
    let msg = load_err(&d);
    contains_all(
        &msg,
        &[&names[1], "not found", "model.safetensors.index.json"],
    );
    assert!(msg.contains("\"model."), "no tensor named in:\n{msg}");

    // the index maps a tensor to a shard that does not hold it
    let d = copy("tensor-in-no-shard");
    edit_index(&d, |w| {
        w.insert(
            "model.layers.9.extra.weight".into(),
            names[0].clone().into(),
        );
    });
    let msg = load_err(&d);
    contains_all(
        &msg,
        &[
            "model.layers.9.extra.weight",
            &names[0],
            "index.json",
            "holds no such tensor",
        ],
    );

    // a shard holds a tensor the index does not list
    let d = copy("tensor-not-listed");
    edit_index(&d, |w| {
        w.remove("model.norm.weight");
    });
    let msg = load_err(&d);
    contains_all(&msg, &["model.norm.weight", "not listed in weight_map"]);

    // the config disagrees with a stored shape: the tensor and its shard are named
    let d = copy("shape-mismatch");
    let mut c = cfg.to_json();
    c["intermediate_size"] = (cfg.intermediate_size + 2).into();
    gidd_ports::write_json_pretty(&d.join("config.json"), &c).expect("config");
    let msg = load_err(&d);
    let file = names.iter().find(|f| {
        let line = format!(
            "model.layers.0.mlp.up_proj.weight is stored in {}",
            d.join(f).display()
        );
        msg.contains(&line)
    });
    assert!(
        file.is_some(),
        "the shard of up_proj is not named in:\n{msg}"
    );
    contains_all(
        &msg,
        &[
            "mis-shaped",
            "model.layers.0.mlp.up_proj.weight",
            "expected",
        ],
    );
}
