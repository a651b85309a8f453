//! The reference's own checkpoints and fixtures in ../shared/golden open, match the SPEC's
//! parameter names exactly, and read back as the independent `safetensors` crate reads them.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE: denied outside tests)

mod common;

use common::{expected_params, shared_dir, TempDir, CASES};
use gidd_engine::{DType, Data};
use gidd_ports::{
    check_names, read_json_object, write_json_pretty, PortError, StoredDType, TensorStore,
};
use serde_json::Value;

#[test]
fn golden_models_have_exactly_the_spec_parameters() {
    let Some(shared) = shared_dir("golden_models_have_exactly_the_spec_parameters") else {
        return;
    };
    for case in CASES {
        let dir = shared.join("golden").join(case);
        let cfg = read_json_object(&dir.join("config.json")).unwrap();
        let expected = expected_params(&cfg);
        // Opening the directory finds model.safetensors.
        let store = TensorStore::open(&dir).unwrap();
        let names: Vec<&str> = store.names();
        let want: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names, want,
            "{case}: parameter names differ from SPEC section 1"
        );
        check_names(&store, &expected).unwrap();
        assert_eq!(
            store.metadata().get("format").map(String::as_str),
            Some("pt"),
            "{case}"
        );

        // Every tensor reads, with the config's shape, as f32 both ways, matching the
        // independent reader bit for bit.
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), expected.len());
        for (name, shape) in &expected {
            let (dtype, found) = store.info(name).unwrap();
            assert_eq!(dtype, StoredDType::F32, "{case} {name}");
            assert_eq!(found, shape.as_slice(), "{case} {name}");
            let t = store.get(name).unwrap();
            assert_eq!(t.dtype(), DType::F32);
            assert_eq!(&t.shape, shape);
            assert_eq!(store.get_f32(name).unwrap(), t);
            let view = st.tensor(name).unwrap();
            assert_eq!(view.shape(), shape.as_slice());
            assert_eq!(store.raw_bytes(name).unwrap(), view.data(), "{case} {name}");
            let Data::F32(v) = &t.data else {
                unreachable!()
            };
            let from_view: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_eq!(v, &from_view, "{case} {name}");
            // The fixtures are randn * std: finite and not all zero.
            assert!(v.iter().all(|x| x.is_finite()), "{case} {name}");
            assert!(v.iter().any(|&x| x != 0.0), "{case} {name} is all zero");
        }
    }
}

#[test]
fn golden_fixtures_match_their_manifest() {
    let Some(shared) = shared_dir("golden_fixtures_match_their_manifest") else {
        return;
    };
    for case in CASES {
        let dir = shared.join("golden").join(case);
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.join("MANIFEST.json")).unwrap()).unwrap();
        let entries = manifest["tensors"].as_object().unwrap();
        let store = TensorStore::open(&dir.join("golden.safetensors")).unwrap();
        let mut listed: Vec<&str> = entries.keys().map(String::as_str).collect();
        listed.sort();
        assert_eq!(
            store.names(),
            listed,
            "{case}: golden.safetensors vs MANIFEST"
        );

        let mut seen_i64 = 0;
        let mut seen_u8 = 0;
        for (name, e) in entries {
            let shape: Vec<usize> = e["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let want = match e["dtype"].as_str().unwrap() {
                "float32" => StoredDType::F32,
                "int64" => StoredDType::I64,
                "uint8" => StoredDType::U8,
                other => panic!("{case} {name}: MANIFEST dtype {other} not covered"),
            };
            let (dtype, found) = store.info(name).unwrap();
            assert_eq!((dtype, found), (want, shape.as_slice()), "{case} {name}");
            let t = store.get(name).unwrap();
            assert_eq!(t.shape, shape, "{case} {name}");
            let expect_dtype = match want {
                StoredDType::I64 => DType::I64,
                _ => DType::F32, // F32 stays, U8 widens to F32
            };
            assert_eq!(t.dtype(), expect_dtype, "{case} {name}");
            let f = store.get_f32(name).unwrap();
            assert_eq!(f.dtype(), DType::F32);
            assert_eq!(f.to_f32_vec(), t.to_f32_vec(), "{case} {name}");
            match want {
                StoredDType::I64 => seen_i64 += 1,
                StoredDType::U8 => {
                    seen_u8 += 1;
                    // attention_mask and noise_mask are booleans stored as uint8.
                    assert!(
                        t.to_f32_vec().iter().all(|&x| x == 0.0 || x == 1.0),
                        "{case} {name}"
                    );
                }
                _ => {}
            }
        }
        assert!(
            seen_i64 >= 5 && seen_u8 >= 2,
            "{case}: {seen_i64} int64, {seen_u8} uint8"
        );

        // Spot values the MANIFEST describes: labels start with bos 0 and never hold mask 3;
        // generate.prompt starts with bos 0.
        let cfg = read_json_object(&dir.join("config.json")).unwrap();
        let seq_len = manifest["seq_len"].as_u64().unwrap() as usize;
        let batch = manifest["batch"].as_u64().unwrap() as usize;
        let labels = store.get("labels").unwrap();
        assert_eq!(labels.shape, vec![batch, seq_len]);
        let Data::I64(l) = &labels.data else {
            panic!("labels not I64")
        };
        let vocab = cfg["vocab_size"].as_i64().unwrap();
        assert!(
            l.iter().all(|&x| (0..vocab).contains(&x) && x != 3),
            "{case}"
        );
        for b in 0..batch {
            assert_eq!(l[b * seq_len], 0, "{case}: labels[{b},0] is not bos");
        }
        let prompt = store.get("generate.prompt").unwrap();
        assert_eq!(prompt.to_f32_vec()[0], 0.0);
        let logits = store.info("logits").map(|(_, s)| s.to_vec());
        if let Some(s) = logits {
            assert_eq!(
                s.last().copied(),
                Some(vocab as usize),
                "{case}: logits width"
            );
        }
        // Golden fixtures carry no __metadata__.
        assert!(store.metadata().is_empty() || store.metadata().contains_key("format"));
    }
}

#[test]
fn check_names_on_golden_lists_every_difference() {
    let Some(shared) = shared_dir("check_names_on_golden_lists_every_difference") else {
        return;
    };
    let dir = shared.join("golden/unif-small");
    let store = TensorStore::open(&dir).unwrap();
    let mut cfg = read_json_object(&dir.join("config.json")).unwrap();
    // As if config.json said attention_bias false: the 4 bias slots become unexpected.
    cfg.insert("attention_bias".into(), Value::Bool(false));
    let mut expected = expected_params(&cfg);
    // Two parameters the checkpoint lacks, one with the wrong shape.
    expected.push(("model.layers.2.attn_layernorm.weight".into(), vec![64]));
    expected.push(("model.extra.weight".into(), vec![1]));
    for (name, shape) in expected.iter_mut() {
        if name == "lm_head.weight" {
            *shape = vec![64, 128];
        }
    }
    let err = check_names(&store, &expected).unwrap_err();
    let msg = err.to_string();
    let PortError::Mismatch {
        missing,
        unexpected,
        misshaped,
    } = err
    else {
        panic!("expected Mismatch, got {msg}")
    };
    assert_eq!(
        missing,
        vec!["model.extra.weight", "model.layers.2.attn_layernorm.weight"]
    );
    assert_eq!(
        unexpected,
        vec![
            "model.layers.0.self_attn.k_bias",
            "model.layers.0.self_attn.v_bias",
            "model.layers.1.self_attn.k_bias",
            "model.layers.1.self_attn.v_bias",
        ]
    );
    assert_eq!(
        misshaped,
        vec![("lm_head.weight".to_string(), vec![64, 128], vec![128, 64])]
    );
    for needle in [
        "2 missing, 4 unexpected, 1 mis-shaped",
        "model.extra.weight",
        "model.layers.2.attn_layernorm.weight",
        "model.layers.1.self_attn.v_bias",
        "lm_head.weight: expected [64, 128], found [128, 64]",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in:\n{msg}");
    }
}

#[test]
fn golden_config_json_round_trips_with_unknown_keys_in_order() {
    let Some(shared) = shared_dir("golden_config_json_round_trips_with_unknown_keys_in_order")
    else {
        return;
    };
    let tmp = TempDir::new("config");
    for case in CASES {
        let src = shared.join("golden").join(case).join("config.json");
        let cfg = read_json_object(&src).unwrap();
        // Keys the model has no field for survive (attn_performer, transformers_version, dtype).
        for k in [
            "attn_performer",
            "transformers_version",
            "dtype",
            "architectures",
        ] {
            assert!(cfg.contains_key(k), "{case}: {k}");
        }
        let text = std::fs::read_to_string(&src).unwrap();
        let file_order: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  \""))
            .filter_map(|l| l.split('"').next())
            .map(String::from)
            .collect();
        let keys: Vec<String> = cfg.keys().cloned().collect();
        assert_eq!(keys, file_order, "{case}: key order not kept");

        let out = tmp.join(&format!("{case}.json"));
        write_json_pretty(&out, &Value::Object(cfg.clone())).unwrap();
        let again = read_json_object(&out).unwrap();
        assert_eq!(again, cfg);
        assert_eq!(
            again.keys().collect::<Vec<_>>(),
            cfg.keys().collect::<Vec<_>>()
        );
        assert!(std::fs::read_to_string(&out).unwrap().ends_with("}\n"));
    }
}
