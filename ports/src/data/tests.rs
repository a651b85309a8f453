//! Tests of tokenizers and data formats.

use super::*;
use crate::corpus::{generate_corpus, Language, DEFAULT_SEED};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn temp_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("gidd-data-{name}-{}-{k}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn corpus(n: usize) -> Vec<String> {
    generate_corpus(&Language::new(DEFAULT_SEED), 1, n)
}

fn small_tok(dir: &Path) -> Tok {
    Tok::train_bpe(&corpus(200), 320, &dir.join("tok/tokenizer.json")).expect("train")
}

/// Documents whose tokens identify them: doc i = [100 + 1000 i, 100 + 1000 i + 1, ...].
fn tagged_docs(n: usize, len: impl Fn(usize) -> usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| (0..len(i)).map(|k| 100 + (i * 1000 + k) as u32).collect())
        .collect()
}

// ---------------------------------------------------------------- tokenizer

#[test]
fn bpe_special_ids_round_trip_and_determinism() {
    let dir = temp_dir("bpe");
    let texts = corpus(200);
    let a = Tok::train_bpe(&texts, 320, &dir.join("a/tokenizer.json")).expect("train a");
    let b = Tok::train_bpe(&texts, 320, &dir.join("b/tokenizer.json")).expect("train b");
    for (k, name) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(a.token_to_id(name), Some(k as u32));
    }
    assert_eq!(
        a.special_ids(),
        SpecialIds {
            bos: Some(0),
            eos: Some(1),
            pad: Some(2),
            mask: Some(3)
        }
    );
    assert_eq!(a.vocab_size(), 320);
    for t in &texts {
        let ids = a.encode(t).expect("encode");
        assert_eq!(&a.decode(&ids).expect("decode"), t);
        assert_eq!(b.encode(t).ok(), Some(ids));
    }
    // Any text round-trips through the byte-level alphabet.
    let odd = "ünïcode ∑ text\twith  spaces\n";
    assert_eq!(
        a.decode(&a.encode(odd).expect("encode")).ok().as_deref(),
        Some(odd)
    );
    // Specials are skipped when decoding.
    let mut ids = vec![0];
    ids.extend(a.encode("Hello").expect("encode"));
    ids.push(1);
    assert_eq!(a.decode(&ids).ok().as_deref(), Some("Hello"));
    assert_eq!(
        std::fs::read(dir.join("a/tokenizer.json")).ok(),
        std::fs::read(dir.join("b/tokenizer.json")).ok()
    );
    // from_file loads it back.
    let c = Tok::from_file(&dir.join("a/tokenizer.json")).expect("load");
    assert_eq!(c.encode(&texts[0]).ok(), a.encode(&texts[0]).ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tokenizer_errors() {
    let dir = temp_dir("tokerr");
    assert!(matches!(
        Tok::from_file(&dir.join("missing.json")),
        Err(DataError::Tokenizer { .. })
    ));
    std::fs::write(dir.join("bad.json"), "{}").expect("write");
    assert!(matches!(
        Tok::from_file(&dir.join("bad.json")),
        Err(DataError::Tokenizer { .. })
    ));
    assert!(matches!(
        Tok::train_bpe(&corpus(3), 100, &dir.join("t.json")),
        Err(DataError::Config { .. })
    ));
    assert!(matches!(
        Tok::train_bpe(&[String::new()], 300, &dir.join("t.json")),
        Err(DataError::Empty { .. })
    ));
    let tok = small_tok(&dir);
    assert!(check_vocab(&tok, 320).is_ok());
    let err = check_vocab(&tok, 256).expect_err("too small");
    assert!(matches!(
        err,
        DataError::VocabMismatch {
            model_vocab: 256,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains("320") && msg.contains("256"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- formats

fn all_docs(src: &dyn DocSource) -> Vec<Vec<u32>> {
    (0..src.len()).map(|i| src.doc(i).expect("doc")).collect()
}

#[test]
fn text_files_blank_line_paragraphs_or_lines() {
    let dir = temp_dir("txt");
    let tok = small_tok(&dir);
    let texts = corpus(4);
    std::fs::write(
        dir.join("para.txt"),
        format!(
            "{}\n{}\n\n\n{}\n\n{}\n",
            texts[0], texts[1], texts[2], texts[3]
        ),
    )
    .expect("write");
    let src = open_source(&dir.join("para.txt"), Some(&tok)).expect("open");
    let want: Vec<Vec<u32>> = [
        format!("{}\n{}", texts[0], texts[1]),
        texts[2].clone(),
        texts[3].clone(),
    ]
    .iter()
    .map(|t| tok.encode(t).expect("encode"))
    .collect();
    assert_eq!(all_docs(&*src), want);
    std::fs::write(dir.join("lines.txt"), texts.join("\n")).expect("write");
    let src = open_source(&dir.join("lines.txt"), Some(&tok)).expect("open");
    assert_eq!(src.len(), 4);
    assert_eq!(src.doc(2).ok(), tok.encode(&texts[2]).ok());
    assert!(matches!(
        open_source(&dir.join("lines.txt"), None),
        Err(DataError::NeedTokenizer { .. })
    ));
    std::fs::write(dir.join("empty.txt"), "\n \n").expect("write");
    assert!(matches!(
        open_source(&dir.join("empty.txt"), Some(&tok)),
        Err(DataError::Empty { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn jsonl_text_and_tokens_and_bad_lines() {
    let dir = temp_dir("jsonl");
    let tok = small_tok(&dir);
    let texts = corpus(3);
    let mut lines: Vec<String> = texts
        .iter()
        .map(|t| serde_json::json!({ "text": t, "id": 5 }).to_string())
        .collect();
    lines.push(String::new());
    lines.push(r#"{"tokens": [5, 6, 7]}"#.into());
    std::fs::write(dir.join("d.jsonl"), lines.join("\n")).expect("write");
    let src = open_source(&dir.join("d.jsonl"), Some(&tok)).expect("open");
    assert_eq!(src.len(), 4);
    assert_eq!(src.doc(1).ok(), tok.encode(&texts[1]).ok());
    assert_eq!(src.doc(3).ok(), Some(vec![5, 6, 7]));
    assert!(src.doc(4).is_err());
    // Token-only jsonl needs no tokenizer.
    std::fs::write(
        dir.join("t.jsonl"),
        "{\"tokens\": [1, 2]}\n{\"tokens\": []}\n",
    )
    .expect("write");
    assert_eq!(
        all_docs(&*open_source(&dir.join("t.jsonl"), None).expect("open")),
        vec![vec![1, 2], vec![]]
    );
    assert!(matches!(
        open_source(&dir.join("d.jsonl"), None),
        Err(DataError::NeedTokenizer { .. })
    ));
    for (bad, line) in [
        ("{\"text\": \"a\"}\n{\"text\": 3}\n", 2),
        ("{\"text\": \"a\"}\n\n{\"txt\": \"b\"}\n", 3),
        ("not json\n", 1),
        ("{\"tokens\": [1, -2]}\n", 1),
        ("[1, 2]\n", 1),
    ] {
        std::fs::write(dir.join("bad.jsonl"), bad).expect("write");
        match open_source(&dir.join("bad.jsonl"), Some(&tok)) {
            Err(DataError::BadJsonLine {
                line: l, ref path, ..
            }) => {
                assert_eq!(l, line, "{bad}");
                assert!(path.ends_with("bad.jsonl"));
            }
            Err(e) => panic!("{bad}: wrong error {e}"),
            Ok(_) => panic!("{bad}: accepted"),
        }
    }
    let msg = open_source(&dir.join("bad.jsonl"), Some(&tok))
        .err()
        .map(|e| e.to_string());
    assert!(msg.is_some_and(|m| m.contains("bad.jsonl:1")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn parquet_file_and_bucket_layout() {
    let dir = temp_dir("parquet");
    let docs = tagged_docs(9, |i| i % 4 * 3); // includes empty documents
    write_parquet_tokens(&dir.join("one.parquet"), &docs).expect("write");
    assert_eq!(
        read_parquet_tokens(&dir.join("one.parquet")).ok(),
        Some(docs.clone())
    );
    let src = open_source(&dir.join("one.parquet"), None).expect("open");
    assert_eq!(all_docs(&*src), docs);
    // DATA_FILES/bucket=*/*.parquet: buckets in name order, files in name order.
    let root = dir.join("DATA_FILES");
    write_parquet_tokens(&root.join("bucket=0/part-1.parquet"), &docs[3..5]).expect("write");
    write_parquet_tokens(&root.join("bucket=0/part-0.parquet"), &docs[0..3]).expect("write");
    write_parquet_tokens(&root.join("bucket=1/part-0.parquet"), &docs[5..9]).expect("write");
    std::fs::write(root.join("bucket=1/_SUCCESS"), "").expect("write");
    std::fs::write(root.join("README.txt"), "not data in the bucket layout").expect("write");
    let src = open_source(&root, None).expect("open buckets");
    assert_eq!(all_docs(&*src), docs);
    // Not parquet, or no tokens column.
    std::fs::write(dir.join("fake.parquet"), "PAR1 nonsense").expect("write");
    assert!(matches!(
        open_source(&dir.join("fake.parquet"), None),
        Err(DataError::Parquet { .. })
    ));
    let empty_buckets = dir.join("EMPTY");
    std::fs::create_dir_all(empty_buckets.join("bucket=0")).expect("mkdir");
    assert!(matches!(
        open_source(&empty_buckets, None),
        Err(DataError::NotFound { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn parquet_without_tokens_column_is_refused() {
    use parquet::data_type::Int32Type;
    use parquet::file::writer::SerializedFileWriter;
    let dir = temp_dir("pqcol");
    let path = dir.join("x.parquet");
    let schema =
        parquet::schema::parser::parse_message_type("message schema { required INT32 ids; }")
            .expect("schema");
    let file = std::fs::File::create(&path).expect("create");
    let mut w =
        SerializedFileWriter::new(file, Arc::new(schema), Default::default()).expect("writer");
    let mut rg = w.next_row_group().expect("rg");
    while let Some(mut col) = rg.next_column().expect("col") {
        col.typed::<Int32Type>()
            .write_batch(&[1, 2], None, None)
            .expect("write");
        col.close().expect("close");
    }
    rg.close().expect("close");
    w.close().expect("close");
    match open_source(&path, None) {
        Err(DataError::Parquet { msg, .. }) => {
            assert!(msg.contains("tokens") && msg.contains("ids"), "{msg}")
        }
        other => panic!("{:?}", other.err()),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn token_shards_u16_u32_and_bad_shards() {
    let dir = temp_dir("shard");
    let docs = tagged_docs(6, |i| i * 2 + 1);
    for (name, dtype) in [("a.bin", ShardDtype::U16), ("b.bin", ShardDtype::U32)] {
        let meta = write_shard(&dir.join(name), &docs, dtype).expect("write");
        assert_eq!(
            meta.n_tokens as usize,
            docs.iter().map(|d| d.len() + 1).sum::<usize>()
        );
        let bytes = std::fs::metadata(dir.join(name))
            .map(|m| m.len())
            .unwrap_or(0);
        assert_eq!(bytes, meta.n_tokens * dtype.bytes() as u64);
        let src = open_source(&dir.join(name), None).expect("open");
        assert_eq!(all_docs(&*src), docs);
    }
    // One document when there is no separator.
    std::fs::write(
        dir.join("c.json"),
        r#"{"dtype": "u32", "n_tokens": 3, "separator": null}"#,
    )
    .expect("w");
    std::fs::write(
        dir.join("c.bin"),
        [7u32, 1, 9]
            .iter()
            .flat_map(|t| t.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .expect("w");
    assert_eq!(
        all_docs(&*open_source(&dir.join("c.bin"), None).expect("open")),
        vec![vec![7, 1, 9]]
    );
    // Size disagreeing with the sidecar; missing or bad sidecar; id too large for u16.
    std::fs::write(dir.join("c.json"), r#"{"dtype": "u32", "n_tokens": 4}"#).expect("w");
    assert!(matches!(
        open_source(&dir.join("c.bin"), None),
        Err(DataError::BadShard { .. })
    ));
    std::fs::write(dir.join("c.json"), r#"{"dtype": "i8", "n_tokens": 3}"#).expect("w");
    assert!(matches!(
        open_source(&dir.join("c.bin"), None),
        Err(DataError::BadShard { .. })
    ));
    std::fs::remove_file(dir.join("c.json")).expect("rm");
    assert!(matches!(
        open_source(&dir.join("c.bin"), None),
        Err(DataError::BadShard { .. })
    ));
    assert!(matches!(
        write_shard(&dir.join("d.bin"), &[vec![70_000]], ShardDtype::U16),
        Err(DataError::BadShard { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn directories_and_missing_or_unknown_paths() {
    let dir = temp_dir("dir");
    let tok = small_tok(&dir);
    let data = dir.join("data");
    let texts = corpus(3);
    std::fs::create_dir_all(data.join("sub")).expect("mkdir");
    std::fs::write(data.join("a.txt"), texts[0].as_str()).expect("w");
    std::fs::write(
        data.join("b.jsonl"),
        format!("{}\n", serde_json::json!({ "text": texts[1] })),
    )
    .expect("w");
    write_shard(
        &data.join("sub/c.bin"),
        &[vec![5, 6], vec![7]],
        ShardDtype::U16,
    )
    .expect("w");
    write_parquet_tokens(&data.join("sub/d.parquet"), &[vec![8, 9]]).expect("w");
    std::fs::write(data.join("notes.md"), "ignored").expect("w");
    std::fs::write(data.join(".hidden.txt"), "ignored").expect("w");
    let src = open_source(&data, Some(&tok)).expect("open dir");
    let want = vec![
        tok.encode(&texts[0]).expect("enc"),
        tok.encode(&texts[1]).expect("enc"),
        vec![5, 6],
        vec![7],
        vec![8, 9],
    ];
    assert_eq!(all_docs(&*src), want);
    assert!(matches!(
        open_source(&data, None),
        Err(DataError::NeedTokenizer { .. })
    ));
    let missing = open_source(&dir.join("nope"), None).err().expect("missing");
    assert!(matches!(missing, DataError::NotFound { .. }));
    let msg = missing.to_string();
    assert!(
        msg.contains("nope") && msg.contains(".jsonl") && msg.contains("bucket="),
        "{msg}"
    );
    std::fs::create_dir_all(dir.join("void")).expect("mkdir");
    assert!(matches!(
        open_source(&dir.join("void"), None),
        Err(DataError::NotFound { .. })
    ));
    std::fs::write(dir.join("x.csv"), "a,b").expect("w");
    assert!(matches!(
        open_source(&dir.join("x.csv"), None),
        Err(DataError::UnknownFormat { .. })
    ));
    std::fs::write(dir.join("empty.jsonl"), "\n").expect("w");
    assert!(matches!(
        open_source(&dir.join("empty.jsonl"), None),
        Err(DataError::Empty { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn token_unigram_entropy_of_known_frequencies() {
    // Tokens 5,5,6,eos | 6,eos: frequencies 2/6, 2/6, 2/6 -> ln 3.
    let src = MemSource::from_docs(vec![vec![5, 5, 6], vec![6]], "h");
    let h = token_unigram_entropy(&src, &[0, 1], EOS_ID).expect("entropy");
    assert!((h - 3f64.ln()).abs() < 1e-12, "{h}");
    let h0 = token_unigram_entropy(&src, &[1], EOS_ID).expect("entropy");
    assert!((h0 - 2f64.ln()).abs() < 1e-12, "{h0}");
}
