//! Tests of packing: rows as the reference packs them, resumable positions, held-out splits.

use super::*;
use gidd_ports::data::{DataError, DocSource, MemSource, EOS_ID};
use std::sync::Arc;

/// Documents whose tokens identify them: doc i = [base+i*10, base+i*10+1, ...] of length len(i).
fn tagged_docs(n: usize, len: impl Fn(usize) -> usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| (0..len(i)).map(|k| 100 + (i * 1000 + k) as u32).collect())
        .collect()
}

fn doc_of(token: u32) -> Option<usize> {
    (token >= 100).then(|| (token as usize - 100) / 1000)
}

fn mem(docs: Vec<Vec<u32>>) -> Arc<dyn DocSource> {
    Arc::new(MemSource::from_docs(docs, "test"))
}

/// The reference's packing, written independently: a buffer of whole documents,
/// eos appended unless the buffer length is a multiple of seq_len, rows popped.
fn reference_rows(docs: &[Vec<u32>], order: &[usize], seq_len: usize) -> Vec<Vec<u32>> {
    let mut buf: Vec<u32> = Vec::new();
    let mut rows = Vec::new();
    for &i in order {
        buf.extend(&docs[i]);
        if !buf.len().is_multiple_of(seq_len) {
            buf.push(EOS_ID);
        }
        while buf.len() >= seq_len {
            rows.push(buf.drain(..seq_len).collect());
        }
    }
    rows
}

#[test]
fn packer_rows_match_the_reference_packing() {
    let docs = tagged_docs(12, |i| [5, 0, 7, 1, 16, 3, 8, 2, 0, 9, 4, 6][i]);
    for seq_len in [1, 4, 7, 8, 16, 33] {
        let cfg = PackerConfig {
            shuffle: false,
            ..PackerConfig::train(seq_len, 0, HeldOut::None)
        };
        let mut p = Packer::new(mem(docs.clone()), cfg).expect("packer");
        let order: Vec<usize> = (0..docs.len())
            .chain(0..docs.len())
            .chain(0..docs.len())
            .collect();
        let want = reference_rows(&docs, &order, seq_len);
        let got = p.next_batch(want.len()).expect("rows");
        assert_eq!(got, want, "seq_len {seq_len}");
        assert!(got.iter().all(|r| r.len() == seq_len));
    }
}

#[test]
fn packer_eos_between_documents_and_shuffled_epochs() {
    let docs = tagged_docs(20, |i| 3 + i % 5);
    let mut p = Packer::new(
        mem(docs.clone()),
        PackerConfig::train(16, 42, HeldOut::None),
    )
    .expect("packer");
    let rows = p.next_batch(40).expect("rows");
    let stream: Vec<u32> = rows.concat();
    // Every document appears whole and is followed by eos or a row boundary.
    let mut seen = Vec::new();
    let mut k = 0;
    while k < stream.len() {
        let d = doc_of(stream[k]).expect("starts with a document token");
        let n = docs[d].len();
        if k + n > stream.len() {
            break;
        }
        assert_eq!(&stream[k..k + n], &docs[d][..]);
        k += n;
        seen.push(d);
        if k % 16 != 0 {
            if k >= stream.len() {
                break;
            }
            assert_eq!(stream[k], EOS_ID, "eos after document {d}");
            k += 1;
        }
    }
    // Each epoch is a permutation, and epochs differ.
    let mut e0 = seen[..20].to_vec();
    let e1 = seen[20..40].to_vec();
    assert_ne!(e0, (0..20).collect::<Vec<_>>());
    assert_ne!(e0, e1);
    e0.sort();
    assert_eq!(e0, (0..20).collect::<Vec<_>>());
    assert!(p.epoch() >= 2);
}

#[test]
fn packer_resumes_from_json_state_identically() {
    let docs = tagged_docs(15, |i| 1 + (i * 7) % 23);
    let src = mem(docs);
    let cfg = PackerConfig::train(10, 7, HeldOut::EveryK(5));
    let mut a = Packer::new(src.clone(), cfg.clone()).expect("packer");
    for step in 0..25 {
        let state = a.state();
        let json = serde_json::to_string(&state).expect("json");
        let back: PackerState = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, state);
        let mut b = Packer::from_state(src.clone(), &back).expect("resume");
        let want = a.next_batch(3).expect("a");
        assert_eq!(b.next_batch(3).expect("b"), want, "step {step}");
        assert_eq!(b.state(), a.state());
    }
    // A position for other data, or past the end, is refused.
    let mut st = a.state();
    st.n_docs += 1;
    assert!(matches!(
        Packer::from_state(src.clone(), &st),
        Err(DataError::BadState { .. })
    ));
    let mut st = a.state();
    st.cursor = 1000;
    assert!(matches!(
        Packer::from_state(src.clone(), &st),
        Err(DataError::BadState { .. })
    ));
    let mut st = a.state();
    st.offset = 10_000;
    assert!(matches!(
        Packer::from_state(src, &st),
        Err(DataError::BadState { .. })
    ));
}

#[test]
fn held_out_and_train_documents_are_disjoint() {
    for heldout in [
        HeldOut::EveryK(4),
        HeldOut::Fraction(0.1),
        HeldOut::Fraction(0.5),
    ] {
        let n = 400;
        let train = split_indices(n, heldout, Split::Train);
        let held = split_indices(n, heldout, Split::HeldOut);
        assert_eq!(train.len() + held.len(), n);
        assert!(train.iter().all(|i| !held.contains(i)));
        if let HeldOut::Fraction(f) = heldout {
            let got = held.len() as f64 / n as f64;
            assert!((got - f).abs() < 0.08, "{got} vs {f}");
        }
        let docs = tagged_docs(n, |_| 3);
        let src = mem(docs);
        let mut tp = Packer::new(src.clone(), PackerConfig::train(8, 1, heldout)).expect("train");
        let mut hp = Packer::new(
            src.clone(),
            PackerConfig {
                split: Split::HeldOut,
                ..PackerConfig::train(8, 1, heldout)
            },
        )
        .expect("held-out");
        let in_train: std::collections::HashSet<usize> = tp
            .next_batch(300)
            .expect("rows")
            .concat()
            .into_iter()
            .filter_map(doc_of)
            .collect();
        let in_held: std::collections::HashSet<usize> = hp
            .next_batch(100)
            .expect("rows")
            .concat()
            .into_iter()
            .filter_map(doc_of)
            .collect();
        assert!(in_train.is_disjoint(&in_held));
        assert!(in_held.iter().all(|&d| heldout.contains(d)));
        assert_eq!(in_train.len(), train.len()); // 300 rows cover every training document
    }
    assert!(split_indices(10, HeldOut::None, Split::HeldOut).is_empty());
    assert!(matches!(
        Packer::new(
            mem(tagged_docs(3, |_| 2)),
            PackerConfig {
                split: Split::HeldOut,
                ..PackerConfig::train(8, 1, HeldOut::None)
            }
        ),
        Err(DataError::Empty { .. })
    ));
}

#[test]
fn packer_bad_inputs() {
    // All documents empty: an error, not an endless loop.
    let mut p = Packer::new(
        mem(vec![vec![], vec![]]),
        PackerConfig::train(4, 0, HeldOut::None),
    )
    .expect("packer");
    assert!(matches!(p.next_row(), Err(DataError::Empty { .. })));
    assert!(matches!(
        Packer::new(mem(vec![vec![1]]), PackerConfig::train(0, 0, HeldOut::None)),
        Err(DataError::Config { .. })
    ));
    // Token ids beyond the model's vocabulary.
    let cfg = PackerConfig {
        model_vocab: Some(50),
        ..PackerConfig::train(4, 0, HeldOut::None)
    };
    let mut p = Packer::new(mem(vec![vec![5, 6], vec![7, 99]]), cfg).expect("packer");
    match p.next_batch(4) {
        Err(DataError::VocabMismatch {
            id: 99,
            model_vocab: 50,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn eval_set_packs_whole_held_out_documents() {
    let docs = tagged_docs(30, |i| 2 + i % 7);
    let src = MemSource::from_docs(docs.clone(), "eval");
    let e = EvalSet::build(&src, HeldOut::EveryK(3), 8, 4).expect("eval");
    assert_eq!(e.rows.len(), e.lens.len());
    assert!(e.rows.iter().all(|r| r.len() == 8));
    assert_eq!(e.lens.iter().sum::<usize>(), e.n_tokens);
    assert!(e.n_tokens <= 32);
    assert!(e.docs.iter().all(|&d| d % 3 == 2));
    assert_eq!(
        e.n_tokens,
        e.docs.iter().map(|&d| docs[d].len() + 1).sum::<usize>()
    );
    let stream: Vec<u32> = e
        .rows
        .iter()
        .zip(&e.lens)
        .flat_map(|(r, &n)| r[..n].to_vec())
        .collect();
    let want: Vec<u32> = e
        .docs
        .iter()
        .flat_map(|&d| docs[d].iter().copied().chain([EOS_ID]))
        .collect();
    assert_eq!(stream, want);
    let last = e.rows.last().expect("rows");
    assert!(last[*e.lens.last().unwrap_or(&0)..]
        .iter()
        .all(|&t| t == PAD_ID));
    assert!(matches!(
        EvalSet::build(&src, HeldOut::None, 8, 4),
        Err(DataError::Empty { .. })
    ));
}
