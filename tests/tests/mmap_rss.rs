//! A mapped load makes no anonymous copy of the weights, measured: RssAnon of this process
//! (from /proc/self/status) across loading a ~160 MB bf16 checkpoint by mmap and generating
//! from it grows by less than half the weights (a bf16 copy would add all of them), where the ordinary load (f32 copies)
//! grows by twice their size. One test in its own binary, so that no other test's
//! allocations run beside it.

use gidd_engine::DType;
use gidd_model::generate::{generate, Canvas, GenOpts};
use gidd_model::GiddConfig;
use gidd_tests::TempDir;
use gidd_train::model_dir::{load_checkpoint, load_checkpoint_mapped};

/// RssAnon in bytes.
fn rss_anon() -> Option<u64> {
    gidd_ports::procfs::status_bytes(None, "RssAnon")
}

#[test]
fn a_mapped_load_makes_no_anonymous_copy_of_the_weights() {
    if rss_anon().is_none() {
        gidd_tests::note_skip(
            "a_mapped_load_makes_no_anonymous_copy_of_the_weights",
            "no RssAnon in /proc/self/status (not Linux)",
        );
        return;
    }
    let tmp = TempDir::new("mmap-rss");
    let mut cfg: GiddConfig = gidd_train::synthetic::preset("tiny").expect("tiny");
    // ~80M parameters, 160 MB in bf16, mostly the embedding and the head
    cfg.vocab_size = 65536;
    cfg.hidden_size = 512;
    cfg.intermediate_size = 2048;
    cfg.num_attention_heads = 4;
    cfg.num_hidden_layers = 4;
    cfg.head_scaling = 1.0;
    cfg.validate().expect("config");
    let dir = tmp.join("ckpt");
    let created = gidd_train::synthetic::create(&dir, &cfg, 3, 64 << 20).expect("create");
    let weights = created.bytes;
    assert!(weights > 150_000_000, "{weights} bytes");

    let o = GenOpts::ancestral(16, 16, 2, 0);
    let prompt = vec![vec![0u32, 5, 77, 901, 4000, 12, 9, 60000]];

    let a0 = rss_anon().expect("rss");
    {
        let (m, stats) = load_checkpoint_mapped(&dir).expect("load mapped");
        assert_eq!(stats.copied, 0);
        let mut c = Canvas::new(&cfg, &m.params, 1, 24, DType::BF16).expect("canvas");
        let out = generate(&mut c, &cfg, &prompt, &o, None, |_, _| {}).expect("generate");
        assert_eq!(out[0].len(), 24);
        let grew = rss_anon().expect("rss").saturating_sub(a0);
        assert!(
            // a bf16 copy would add 1x the weights, an f32 one 2x
            grew < weights / 2,
            "RssAnon grew by {grew} bytes over a mapped load and generation of {weights} bytes \
             of weights: they were copied"
        );
    }

    // The control: the ordinary load holds f32 copies, and the measure sees them.
    let b0 = rss_anon().expect("rss");
    let m = load_checkpoint(&dir).expect("load");
    let grew = rss_anon().expect("rss").saturating_sub(b0);
    assert!(
        grew > weights,
        "RssAnon grew by only {grew} bytes over an owned f32 load of {weights} bytes of bf16 \
         weights: the measure does not see copies"
    );
    drop(m);
}
