//! Every kind of broken input gives its own typed error that names the file and the problem.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE: denied outside tests)

mod common;

use common::{raw_file, shared_dir, write, TempDir};
use gidd_engine::HostTensor;
use gidd_ports::{read_json_object, save_tensors, PortError, TensorStore};

fn open_err(path: &std::path::Path) -> PortError {
    match TensorStore::open(path) {
        Ok(s) => panic!("{} opened: {s:?}", path.display()),
        Err(e) => e,
    }
}

/// Opens a file made from a literal header and data and returns the error.
fn raw_err(header: &str, data: &[u8]) -> PortError {
    let tmp = TempDir::new("raw");
    let p = write(&tmp, "x.safetensors", &raw_file(header, data));
    let e = open_err(&p);
    assert!(
        e.to_string().contains("x.safetensors"),
        "error does not name the file: {e}"
    );
    e
}

fn bad_header_msg(e: PortError) -> String {
    match e {
        PortError::BadHeader { msg, .. } => msg,
        other => panic!("expected BadHeader, got {other:?}"),
    }
}

const ONE: &str = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

#[test]
fn a_well_formed_literal_file_opens() {
    // The baseline for the cases below: the same construction without the defect opens.
    let tmp = TempDir::new("ok");
    let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let p = write(&tmp, "x.safetensors", &raw_file(ONE, &data));
    let s = TensorStore::open(&p).unwrap();
    assert_eq!(s.get("a").unwrap().to_f32_vec(), vec![1.0, 2.0]);
    assert!(s.metadata().is_empty());
}

#[test]
fn short_and_empty_files_are_truncated() {
    let tmp = TempDir::new("short");
    for (name, bytes) in [
        ("empty.safetensors", &b""[..]),
        ("three.safetensors", &b"abc"[..]),
    ] {
        let p = write(&tmp, name, bytes);
        match open_err(&p) {
            PortError::Truncated {
                path,
                tensor,
                need,
                have,
            } => {
                assert_eq!(path, p);
                assert!(tensor.contains("header length"), "{tensor}");
                assert_eq!((need, have), (8, bytes.len() as u64));
            }
            other => panic!("{name}: expected Truncated, got {other:?}"),
        }
    }
}

#[test]
fn header_length_beyond_the_file() {
    // Plausible length, file too short: truncated inside the header.
    let mut b = raw_file(ONE, &[0u8; 8]);
    let claimed = b.len() as u64; // 8 + claimed > file length
    b[..8].copy_from_slice(&claimed.to_le_bytes());
    let tmp = TempDir::new("hlen");
    let p = write(&tmp, "x.safetensors", &b);
    match open_err(&p) {
        PortError::Truncated {
            tensor, need, have, ..
        } => {
            assert_eq!(tensor, "the header");
            assert_eq!((need, have), (8 + claimed, b.len() as u64));
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    // Implausible length (what a non-safetensors file looks like): BadHeader saying so.
    let mut b = raw_file(ONE, &[0u8; 8]);
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let p = write(&tmp, "y.safetensors", &b);
    let msg = bad_header_msg(open_err(&p));
    assert!(msg.contains("exceeds the format's limit"), "{msg}");
}

#[test]
fn header_not_json_or_not_an_object() {
    let msg = bad_header_msg(raw_err(r#"{"a": {"dtype": "F32", "shape": [2], "#, &[0; 8]));
    assert!(msg.contains("not valid JSON"), "{msg}");
    let msg = bad_header_msg(raw_err("[1, 2, 3]", &[]));
    assert!(msg.contains("not a JSON object"), "{msg}");
    let msg = bad_header_msg(raw_err("{\"\u{0}\u{ff}", &[]));
    assert!(msg.contains("JSON"), "{msg}");
    // Not UTF-8 at all.
    let tmp = TempDir::new("utf8");
    let mut b = 4u64.to_le_bytes().to_vec();
    b.extend_from_slice(&[b'{', 0xff, 0xfe, b'}']);
    let msg = bad_header_msg(open_err(&write(&tmp, "x.safetensors", &b)));
    assert!(msg.contains("UTF-8"), "{msg}");
    // A git-lfs pointer checked out instead of the weights.
    let lfs = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n";
    let msg = bad_header_msg(open_err(&write(&tmp, "lfs.safetensors", lfs)));
    assert!(msg.contains("git lfs pull"), "{msg}");
}

#[test]
fn bad_entries_are_named() {
    let cases = [
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            "appears twice",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
            "non-negative integers",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#,
            "non-negative integers",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#,
            "unexpected field \"x\"",
        ),
        (r#"{"a":{"dtype":"F32","shape":[2]}}"#, "no data_offsets"),
        (r#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, "no dtype"),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#,
            "data_offsets must be [begin, end]",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            "shape [3] of F32 needs 12 bytes but data_offsets [0, 8] span 8",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
            "end before they begin",
        ),
        (r#"{"a":[1]}"#, "entry must be an object"),
        (
            r#"{"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            "must be a string",
        ),
        (
            r#"{"__metadata__":[],"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            "__metadata__ must be an object",
        ),
        (
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
            "overflows",
        ),
    ];
    for (header, want) in cases {
        let msg = bad_header_msg(raw_err(header, &[0u8; 8]));
        assert!(
            msg.contains(want),
            "{header}\n  -> {msg}\n  wanted {want:?}"
        );
        if !want.contains("twice") && !header.contains("__metadata__") {
            assert!(
                msg.contains("tensor \"a\""),
                "entry errors name the tensor: {msg}"
            );
        }
    }
}

#[test]
fn unknown_dtype() {
    let h = r#"{"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}"#;
    match raw_err(h, &[0u8; 8]) {
        PortError::UnknownDType { tensor, dtype, .. } => {
            assert_eq!((tensor.as_str(), dtype.as_str()), ("w", "F8_E4M3"))
        }
        other => panic!("expected UnknownDType, got {other:?}"),
    }
    let e = raw_err(
        r#"{"w":{"dtype":7,"shape":[8],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    assert!(bad_header_msg(e).contains("dtype must be a string"));
}

#[test]
fn offsets_out_of_bounds_overlapping_gapped_or_short() {
    // Out of bounds: the data region is shorter than the header claims.
    match raw_err(ONE, &[0u8; 4]) {
        PortError::Truncated {
            tensor, need, have, ..
        } => {
            assert!(
                tensor.contains("\"a\"") && tensor.contains("[0, 8]"),
                "{tensor}"
            );
            let header_end = 8 + ONE.len() as u64;
            assert_eq!((need, have), (header_end + 8, header_end + 4));
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let far = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[1000,1004]}}"#;
    assert!(
        matches!(raw_err(far, &[0u8; 12]), PortError::Truncated { tensor, .. } if tensor.contains("\"b\""))
    );

    let overlap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let msg = bad_header_msg(raw_err(overlap, &[0u8; 12]));
    assert!(
        msg.contains("\"b\"") && msg.contains("overlaps") && msg.contains("\"a\""),
        "{msg}"
    );
    let same = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    assert!(bad_header_msg(raw_err(same, &[0u8; 8])).contains("overlaps"));

    let gap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#;
    let msg = bad_header_msg(raw_err(gap, &[0u8; 20]));
    assert!(msg.contains("4 unused bytes before tensor \"b\""), "{msg}");
    let late = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    assert!(bad_header_msg(raw_err(late, &[0u8; 12])).contains("unused bytes"));

    let msg = bad_header_msg(raw_err(ONE, &[0u8; 11]));
    assert!(msg.contains("3 trailing bytes"), "{msg}");
}

#[test]
fn truncated_checkpoint_names_the_cut_tensor() {
    let tmp = TempDir::new("trunc");
    let t: Vec<(String, HostTensor)> = (0..4)
        .map(|i| {
            (
                format!("t{i}"),
                HostTensor::f32(vec![16], vec![i as f32; 16]).unwrap(),
            )
        })
        .collect();
    save_tensors(tmp.path(), &t, None).unwrap();
    let p = tmp.join("model.safetensors");
    let full = std::fs::read(&p).unwrap();
    std::fs::write(&p, &full[..full.len() - 10]).unwrap();
    let e = open_err(tmp.path());
    let shown = e.to_string();
    match e {
        PortError::Truncated {
            path,
            tensor,
            need,
            have,
        } => {
            assert_eq!(path, p);
            assert!(tensor.contains("\"t3\""), "{tensor}");
            assert_eq!((need, have), (full.len() as u64, full.len() as u64 - 10));
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert!(
        shown.contains("interrupted") && shown.contains("model.safetensors"),
        "{shown}"
    );

    // The same on a reference checkpoint, when ../shared is there.
    let Some(shared) = shared_dir("truncated_checkpoint_names_the_cut_tensor (golden part)") else {
        return;
    };
    let golden = std::fs::read(shared.join("golden/mask-small/model.safetensors")).unwrap();
    let cut = write(&tmp, "cut.safetensors", &golden[..golden.len() / 2]);
    assert!(
        matches!(open_err(&cut), PortError::Truncated { have, .. } if have == golden.len() as u64 / 2)
    );
}

/// Three shards of two 16-byte tensors each: t0 t1 | t2 t3 | t4 t5.
fn sharded(tmp: &TempDir) {
    let t: Vec<(String, HostTensor)> = (0..6)
        .map(|i| {
            (
                format!("t{i}"),
                HostTensor::f32(vec![4], vec![i as f32; 4]).unwrap(),
            )
        })
        .collect();
    save_tensors(tmp.path(), &t, Some(32)).unwrap();
    assert!(tmp.join("model-00003-of-00003.safetensors").is_file());
    assert!(!tmp.join("model-00004-of-00004.safetensors").is_file());
}

#[test]
fn index_pointing_at_a_missing_shard() {
    let tmp = TempDir::new("noshard");
    sharded(&tmp);
    let shard = tmp.join("model-00002-of-00003.safetensors");
    std::fs::remove_file(&shard).unwrap();
    match open_err(tmp.path()) {
        PortError::NotFound { path, hint } => {
            assert_eq!(path, shard);
            assert!(
                hint.contains("model.safetensors.index.json") && hint.contains("2 tensors"),
                "{hint}"
            );
            assert!(hint.contains("\"t2\""), "{hint}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn index_that_disagrees_with_its_shards() {
    let edit = |f: &dyn Fn(&mut serde_json::Value)| -> PortError {
        let tmp = TempDir::new("badindex");
        sharded(&tmp);
        let p = tmp.join("model.safetensors.index.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        f(&mut v);
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        open_err(tmp.path())
    };
    let msg_of = |e: PortError| match e {
        PortError::BadIndex { msg, .. } => msg,
        other => panic!("expected BadIndex, got {other:?}"),
    };
    let m = msg_of(edit(&|v| {
        v["weight_map"]["t0"] = "model-00002-of-00003.safetensors".into();
    }));
    assert!(
        m.contains("\"t0\"") && m.contains("stored in model-00001-of-00003"),
        "{m}"
    );
    // A shard holding a tensor the index does not list.
    let m = msg_of(edit(&|v| {
        v["weight_map"].as_object_mut().unwrap().remove("t2");
    }));
    assert!(m.contains("\"t2\"") && m.contains("not listed"), "{m}");
    let m = msg_of(edit(&|v| {
        v["weight_map"]["ghost"] = "model-00001-of-00003.safetensors".into();
    }));
    assert!(
        m.contains("\"ghost\"") && m.contains("holds no such tensor"),
        "{m}"
    );
    let m = msg_of(edit(&|v| {
        v["weight_map"]["t0"] = "../model-00001-of-00003.safetensors".into();
    }));
    assert!(m.contains("not a file name"), "{m}");
    let m = msg_of(edit(&|v| {
        v.as_object_mut().unwrap().remove("weight_map");
    }));
    assert!(m.contains("no \"weight_map\""), "{m}");
    let m = msg_of(edit(&|v| {
        v["weight_map"] = serde_json::json!({});
    }));
    assert!(m.contains("empty"), "{m}");

    // Not JSON at all: a Json error with the position.
    let tmp = TempDir::new("indexjson");
    sharded(&tmp);
    std::fs::write(
        tmp.join("model.safetensors.index.json"),
        "{\"weight_map\": {,}}",
    )
    .unwrap();
    assert!(matches!(
        open_err(tmp.path()),
        PortError::Json {
            line: 1,
            column: 17,
            ..
        }
    ));
}

#[test]
fn non_json_config_names_line_and_column() {
    let tmp = TempDir::new("cfg");
    let p = write(
        &tmp,
        "config.json",
        b"{\n  \"hidden_size\": 48,\n  \"vocab_size\": 1OO\n}\n",
    );
    let e = read_json_object(&p).unwrap_err();
    let shown = e.to_string();
    match e {
        PortError::Json {
            path,
            line,
            column,
            msg,
        } => {
            assert_eq!(path, p);
            assert_eq!((line, column), (3, 18), "{msg}");
            assert!(
                !msg.contains("at line"),
                "position is not repeated in msg: {msg}"
            );
        }
        other => panic!("expected Json, got {other:?}"),
    }
    assert!(shown.contains("config.json:3:18"), "{shown}");

    let p = write(&tmp, "trailing.json", b"{\"a\": 1,}");
    assert!(matches!(
        read_json_object(&p),
        Err(PortError::Json {
            line: 1,
            column: 9,
            ..
        })
    ));
    let p = write(&tmp, "list.json", b"\n  [1, 2]");
    match read_json_object(&p).unwrap_err() {
        PortError::Json {
            line, column, msg, ..
        } => {
            assert_eq!((line, column), (2, 3));
            assert!(msg.contains("found a list"), "{msg}");
        }
        other => panic!("expected Json, got {other:?}"),
    }
    let p = write(&tmp, "bom.json", b"\xEF\xBB\xBF{\"a\": 1}");
    assert_eq!(read_json_object(&p).unwrap()["a"], 1);
    assert!(matches!(
        read_json_object(&tmp.join("absent.json")),
        Err(PortError::NotFound { .. })
    ));
}

#[test]
fn missing_or_empty_checkpoint_dir_says_what_was_expected() {
    let tmp = TempDir::new("missing");
    let gone = tmp.join("no-such-model");
    let e = open_err(&gone);
    let shown = e.to_string();
    match e {
        PortError::NotFound { path, hint } => {
            assert_eq!(path, gone);
            assert!(
                hint.contains("model.safetensors") && hint.contains("index.json"),
                "{hint}"
            );
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(shown.contains("no-such-model"), "{shown}");

    let empty = tmp.join("empty");
    std::fs::create_dir(&empty).unwrap();
    match open_err(&empty) {
        PortError::NotFound { hint, .. } => assert!(hint.contains("directory is empty"), "{hint}"),
        other => panic!("expected NotFound, got {other:?}"),
    }

    // Shards without their index, and PyTorch pickles, each get a specific hint.
    let s = tmp.join("s2");
    std::fs::create_dir(&s).unwrap();
    std::fs::write(s.join("model-00001-of-00002.safetensors"), b"x").unwrap();
    match open_err(&s) {
        PortError::NotFound { hint, .. } => assert!(
            hint.contains("restore model.safetensors.index.json"),
            "{hint}"
        ),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let b = tmp.join("bin");
    std::fs::create_dir(&b).unwrap();
    std::fs::write(b.join("pytorch_model.bin"), b"x").unwrap();
    match open_err(&b) {
        PortError::NotFound { hint, .. } => assert!(
            hint.contains("pytorch_model.bin") && hint.contains("convert"),
            "{hint}"
        ),
        other => panic!("expected NotFound, got {other:?}"),
    }
}
