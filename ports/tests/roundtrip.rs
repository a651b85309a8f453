//! save_tensors -> TensorStore::open is lossless: f32, bf16, every engine dtype, single file
//! and HF-style shards; what we write, the independent `safetensors` crate reads, and the reverse.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE: denied outside tests)

mod common;

use std::collections::HashMap;

use common::{shared_dir, TempDir, CASES};
use gidd_engine::{DType, Data, HostTensor};
use gidd_ports::{save_tensors, PortError, StoredDType, TensorStore};
use half::{bf16, f16};
use rand::{Rng, SeedableRng};
use serde_json::Value;

fn load_all(store: &TensorStore) -> Vec<(String, HostTensor)> {
    store
        .names()
        .into_iter()
        .map(|n| (n.to_string(), store.get(n).unwrap()))
        .collect()
}

/// Same names, dtypes, shapes and bytes.
fn assert_same(a: &TensorStore, b: &TensorStore) {
    assert_eq!(a.names(), b.names());
    for n in a.names() {
        assert_eq!(a.info(n), b.info(n), "{n}");
        assert_eq!(a.raw_bytes(n), b.raw_bytes(n), "{n}");
    }
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn golden_model_round_trips_f32_bf16_and_sharded() {
    let Some(shared) = shared_dir("golden_model_round_trips_f32_bf16_and_sharded") else {
        return;
    };
    for case in CASES {
        let src = TensorStore::open(&shared.join("golden").join(case)).unwrap();
        let tensors = load_all(&src);
        let total: usize = tensors.iter().map(|(_, t)| t.numel() * 4).sum();

        // f32, one file: identical bytes.
        let tmp = TempDir::new("rt-f32");
        save_tensors(tmp.path(), &tensors, None).unwrap();
        assert_eq!(files_in(tmp.path()), vec!["model.safetensors"]);
        let back = TensorStore::open(tmp.path()).unwrap();
        assert_same(&src, &back);
        assert_eq!(
            back.metadata().get("format").map(String::as_str),
            Some("pt")
        );
        // A limit above the total still writes one file.
        let tmp_big = TempDir::new("rt-f32-big");
        save_tensors(tmp_big.path(), &tensors, Some(total)).unwrap();
        assert_eq!(files_in(tmp_big.path()), vec!["model.safetensors"]);

        // bf16: every value is the round-to-nearest bf16 of the original, and get_f32 widens it exactly.
        let bf: Vec<(String, HostTensor)> = tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.convert(DType::BF16)))
            .collect();
        let tmp_bf = TempDir::new("rt-bf16");
        save_tensors(tmp_bf.path(), &bf, None).unwrap();
        let back_bf = TensorStore::open(tmp_bf.path()).unwrap();
        assert_eq!(back_bf.names(), src.names());
        for (n, t) in &bf {
            assert_eq!(back_bf.info(n).unwrap().0, StoredDType::BF16);
            let got = back_bf.get(n).unwrap();
            assert_eq!(got.dtype(), DType::BF16);
            assert_eq!(&got, t, "{n}");
            let orig = src.get_f32(n).unwrap().to_f32_vec();
            let wide = back_bf.get_f32(n).unwrap().to_f32_vec();
            for (o, w) in orig.iter().zip(&wide) {
                assert_eq!(*w, bf16::from_f32(*o).to_f32(), "{n}");
                assert!((o - w).abs() <= o.abs() * 2f32.powi(-8), "{n}: {o} vs {w}");
            }
        }

        // Forced sharding: ~5 shards with HF names and an index; reloads identically.
        let tmp_sh = TempDir::new("rt-shard");
        let max = total / 5;
        save_tensors(tmp_sh.path(), &tensors, Some(max)).unwrap();
        let files = files_in(tmp_sh.path());
        let shards: Vec<&String> = files.iter().filter(|f| f.starts_with("model-")).collect();
        let n = shards.len();
        assert!(n >= 5, "{case}: {files:?}");
        for (i, f) in shards.iter().enumerate() {
            assert_eq!(**f, format!("model-{:05}-of-{n:05}.safetensors", i + 1));
            let size = std::fs::metadata(tmp_sh.join(f)).unwrap().len() as usize;
            let one = TensorStore::open(&tmp_sh.join(f)).unwrap();
            let data: usize = one
                .names()
                .iter()
                .map(|x| one.raw_bytes(x).unwrap().len())
                .sum();
            assert!(data <= max || one.names().len() == 1, "{f}: {data} > {max}");
            assert!(size > data);
        }
        assert!(files.contains(&"model.safetensors.index.json".to_string()));
        assert!(!files.contains(&"model.safetensors".to_string()));
        let index: Value = serde_json::from_slice(
            &std::fs::read(tmp_sh.join("model.safetensors.index.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(index["metadata"]["total_size"].as_u64(), Some(total as u64));
        let wm = index["weight_map"].as_object().unwrap();
        assert_eq!(wm.len(), tensors.len());
        let back_sh = TensorStore::open(tmp_sh.path()).unwrap();
        assert_same(&src, &back_sh);
        // Opening the index file itself works too.
        let via_index = TensorStore::open(&tmp_sh.join("model.safetensors.index.json")).unwrap();
        assert_same(&src, &via_index);
        assert_eq!(
            via_index.metadata().get("format").map(String::as_str),
            Some("pt")
        );

        // A limit smaller than any tensor: one tensor per shard.
        let tmp_tiny = TempDir::new("rt-tiny");
        save_tensors(tmp_tiny.path(), &tensors, Some(1)).unwrap();
        assert_eq!(files_in(tmp_tiny.path()).len(), tensors.len() + 1);
        assert_same(&src, &TensorStore::open(tmp_tiny.path()).unwrap());
    }
}

fn random_tensors(seed: u64) -> Vec<(String, HostTensor)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut f = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect() };
    let f32s = f(3 * 5 * 7);
    let bfs: Vec<bf16> = f(11).into_iter().map(bf16::from_f32).collect();
    vec![
        (
            "a.f32".into(),
            HostTensor::f32(vec![3, 5, 7], f32s).unwrap(),
        ),
        (
            "b.bf16".into(),
            HostTensor::new(vec![11], Data::BF16(bfs)).unwrap(),
        ),
        (
            "c.i32".into(),
            HostTensor::i32(vec![2, 2], vec![-1, 0, i32::MAX, i32::MIN]).unwrap(),
        ),
        (
            "d.u32".into(),
            HostTensor::u32(vec![3], vec![0, 7, u32::MAX]).unwrap(),
        ),
        (
            "e.i64".into(),
            HostTensor::new(vec![2], Data::I64(vec![i64::MIN, 1 << 40])).unwrap(),
        ),
        (
            "f.bool".into(),
            HostTensor::bool(vec![5], vec![true, false, true, true, false]).unwrap(),
        ),
        ("g.scalar".into(), HostTensor::scalar_f32(-0.5)),
        (
            "h.empty".into(),
            HostTensor::f32(vec![0, 4], vec![]).unwrap(),
        ),
        (
            // the low bits f32 cannot hold must survive
            "j.f64".into(),
            HostTensor::f64(vec![3], vec![1.0 / 3.0, -1e-300, 1e300]).unwrap(),
        ),
        (
            "i.odd_bf16".into(),
            HostTensor::new(vec![1], Data::BF16(vec![bf16::from_f32(1.5)])).unwrap(),
        ),
    ]
}

#[test]
fn every_engine_dtype_round_trips_and_the_safetensors_crate_agrees() {
    let tensors = random_tensors(7);
    for max in [None, Some(64)] {
        let tmp = TempDir::new("dtypes");
        save_tensors(tmp.path(), &tensors, max).unwrap();
        let store = TensorStore::open(tmp.path()).unwrap();
        assert_eq!(store.names().len(), tensors.len());
        for (n, t) in &tensors {
            assert_eq!(&store.get(n).unwrap(), t, "{n} (max {max:?})");
            assert_eq!(
                store.get_f32(n).unwrap().to_f32_vec(),
                t.to_f32_vec(),
                "{n}"
            );
            assert_eq!(store.raw_bytes(n).unwrap(), t.data.as_bytes(), "{n}");
        }
        assert_eq!(store.info("d.u32").unwrap().0, StoredDType::U32);
        assert_eq!(store.info("j.f64").unwrap().0, StoredDType::F64);
        assert_eq!(store.info("f.bool").unwrap().0, StoredDType::Bool);
        assert_eq!(store.info("g.scalar").unwrap().1, &[] as &[usize]);
    }

    // Our single file, read by the safetensors crate. Names of 8 different lengths make the
    // unpadded header length take every residue mod 8.
    for k in 0..8 {
        let mut tensors = tensors.clone();
        tensors.push(("x".repeat(k + 1), HostTensor::scalar_f32(k as f32)));
        let tmp = TempDir::new("xcheck");
        save_tensors(tmp.path(), &tensors, None).unwrap();
        let bytes = std::fs::read(tmp.join("model.safetensors")).unwrap();
        let (n, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!((8 + n) % 8, 0, "header not padded to 8 bytes");
        assert_eq!(
            meta.metadata()
                .as_ref()
                .and_then(|m| m.get("format"))
                .map(String::as_str),
            Some("pt")
        );
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), tensors.len());
        for (name, t) in &tensors {
            let v = st.tensor(name).unwrap();
            assert_eq!(v.shape(), t.shape.as_slice());
            assert_eq!(v.data(), t.data.as_bytes(), "{name}");
            // Every tensor is aligned to its element size inside the file.
            let offset = v.data().as_ptr() as usize - bytes.as_ptr() as usize;
            assert_eq!(
                offset % v.dtype().bitsize().div_ceil(8),
                0,
                "{name} (k {k})"
            );
        }
    }
}

#[test]
fn files_from_the_safetensors_crate_read_with_conversions() {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let halves: Vec<f16> = [1.0f32, -2.5, 65504.0, 6e-8]
        .iter()
        .map(|&x| f16::from_f32(x))
        .collect();
    let h_bytes: Vec<u8> = halves
        .iter()
        .flat_map(|x| x.to_bits().to_le_bytes())
        .collect();
    let doubles = [1.0f64, 1.0 / 3.0, -1e30];
    let d_bytes: Vec<u8> = doubles.iter().flat_map(|x| x.to_le_bytes()).collect();
    let u8s = [0u8, 1, 200];
    let bools = [0u8, 1, 1];
    let mut views = HashMap::new();
    views.insert(
        "half".to_string(),
        TensorView::new(Dtype::F16, vec![2, 2], &h_bytes).unwrap(),
    );
    views.insert(
        "double".to_string(),
        TensorView::new(Dtype::F64, vec![3], &d_bytes).unwrap(),
    );
    views.insert(
        "bytes".to_string(),
        TensorView::new(Dtype::U8, vec![3], &u8s).unwrap(),
    );
    views.insert(
        "flags".to_string(),
        TensorView::new(Dtype::BOOL, vec![3], &bools).unwrap(),
    );
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("k".to_string(), "v".to_string()),
    ]);
    let bytes = safetensors::serialize(views, Some(meta)).unwrap();
    let tmp = TempDir::new("fromcrate");
    let p = common::write(&tmp, "x.safetensors", &bytes);
    let store = TensorStore::open(&p).unwrap();
    assert_eq!(store.names(), vec!["bytes", "double", "flags", "half"]);
    assert_eq!(store.metadata().get("k").map(String::as_str), Some("v"));

    // get keeps F16 bit for bit (an HF checkpoint saved in f16), get_f32 widens exactly
    let half = store.get("half").unwrap();
    assert_eq!(half.dtype(), DType::F16);
    assert_eq!(half.shape, vec![2, 2]);
    assert_eq!(half.data, gidd_engine::host::Data::F16(halves.to_vec()));
    let want: Vec<f32> = halves.iter().map(|x| x.to_f32()).collect();
    assert_eq!(
        store.get_f32("half").unwrap().to_f32_vec(),
        want,
        "f16 must widen exactly"
    );
    let (mapped, _) = store.get_mapped("half").unwrap();
    assert_eq!(mapped.dtype(), DType::F16);
    assert_eq!(mapped.to_f32_vec(), want);
    assert_eq!(store.info("half").unwrap().0, StoredDType::F16);

    let dbl = store.get_f32("double").unwrap();
    assert_eq!(dbl.to_f32_vec(), vec![1.0, (1.0f64 / 3.0) as f32, -1e30]);
    // get keeps F64 exactly (the engine has f64: the audit precision)
    let exact = store.get("double").unwrap();
    assert_eq!(exact.dtype(), DType::F64);
    assert_eq!(exact.to_f64_vec(), vec![1.0, 1.0 / 3.0, -1e30]);

    assert_eq!(
        store.get("bytes").unwrap().to_f32_vec(),
        vec![0.0, 1.0, 200.0]
    );
    let flags = store.get("flags").unwrap();
    assert_eq!(flags.data, Data::Bool(vec![0, 1, 1]));
    assert_eq!(
        store.get_f32("flags").unwrap().to_f32_vec(),
        vec![0.0, 1.0, 1.0]
    );

    assert!(matches!(store.get("nope"), Err(PortError::MissingTensor { name }) if name == "nope"));
    assert!(store.info("nope").is_none() && store.raw_bytes("nope").is_none());
}

#[test]
fn resaving_switches_layout_without_stale_files() {
    let tensors = random_tensors(3);
    let tmp = TempDir::new("relayout");
    save_tensors(tmp.path(), &tensors, Some(64)).unwrap();
    assert!(files_in(tmp.path()).len() > 2);
    // Now one file: index and shards go away, so open() cannot see the old set.
    let fewer = &tensors[..3];
    save_tensors(tmp.path(), fewer, None).unwrap();
    assert_eq!(files_in(tmp.path()), vec!["model.safetensors"]);
    assert_eq!(TensorStore::open(tmp.path()).unwrap().names().len(), 3);
    // And back to shards: model.safetensors goes away (it would win over the index).
    save_tensors(tmp.path(), &tensors, Some(20)).unwrap();
    let before = files_in(tmp.path()).len();
    assert!(before >= 6, "{before}");
    let files = files_in(tmp.path());
    assert!(
        !files.contains(&"model.safetensors".to_string()),
        "{files:?}"
    );
    assert!(
        files.iter().all(|f| !f.contains(".tmp")),
        "temp files left: {files:?}"
    );
    let store = TensorStore::open(tmp.path()).unwrap();
    assert_eq!(store.names().len(), tensors.len());
    // Fewer shards than before: the old higher-numbered ones are gone.
    save_tensors(tmp.path(), &tensors, Some(450)).unwrap();
    let files = files_in(tmp.path());
    let n = files.iter().filter(|f| f.starts_with("model-")).count();
    assert_eq!(n, 2, "{files:?}");
    assert!(
        files
            .iter()
            .filter(|f| f.starts_with("model-"))
            .all(|f| f.ends_with(&format!("-of-{n:05}.safetensors"))),
        "{files:?}"
    );
    assert_eq!(
        TensorStore::open(tmp.path()).unwrap().names().len(),
        tensors.len()
    );
}

#[test]
fn save_rejects_bad_tensors_before_writing() {
    let tmp = TempDir::new("badsave");
    let t = HostTensor::scalar_f32(1.0);
    let dup = vec![("x".to_string(), t.clone()), ("x".to_string(), t.clone())];
    let e = save_tensors(tmp.path(), &dup, None).unwrap_err();
    assert!(
        matches!(&e, PortError::BadTensor { name, msg } if name == "x" && msg.contains("twice")),
        "{e}"
    );
    let reserved = vec![("__metadata__".to_string(), t.clone())];
    assert!(matches!(
        save_tensors(tmp.path(), &reserved, None),
        Err(PortError::BadTensor { .. })
    ));
    let ragged = HostTensor {
        shape: vec![2, 3],
        data: Data::F32(vec![0.0; 5]),
    };
    let e = save_tensors(tmp.path(), &[("r".to_string(), ragged)], None).unwrap_err();
    assert!(
        e.to_string()
            .contains("5 elements do not fill shape [2, 3]"),
        "{e}"
    );
    assert!(
        files_in(tmp.path()).is_empty(),
        "nothing may be written on error"
    );
}

#[test]
fn write_atomic_replaces_and_leaves_no_temp_files() {
    let tmp = TempDir::new("atomic");
    let p = tmp.join("state.json");
    gidd_ports::write_atomic(&p, b"one").unwrap();
    gidd_ports::write_atomic(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert_eq!(files_in(tmp.path()), vec!["state.json"]);
    // A missing parent directory is an Io error naming the temp path's directory.
    let e = gidd_ports::write_atomic(&tmp.join("no/such/file"), b"x").unwrap_err();
    assert!(
        matches!(&e, PortError::Io { path, .. } if path.starts_with(tmp.join("no/such"))),
        "{e}"
    );
}
