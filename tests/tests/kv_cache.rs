//! Block-wise generation with the clean prefix in a KV cache computes what the whole
//! canvas computes: the block's logits agree with the full forward's rows, and
//! generations are token for token those of the uncached canvas, with fewer positions
//! through the model.

use gidd_engine::rng::HostRng;
use gidd_engine::{DType, HostTensor};
use gidd_model::generate::{generate, Canvas, GenOpts, Method, NoiseSchedule};
use gidd_model::GiddConfig;

const T: usize = 40;
const V: usize = 64;

fn seed() -> u64 {
    std::env::var("GIDD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7);
            eprintln!("kv_cache: GIDD_TEST_SEED={s}");
            s
        })
}

fn config(bias: bool) -> GiddConfig {
    GiddConfig::from_json(serde_json::json!({
        "vocab_size": V, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": T, "attention_bias": bias,
        "mlp_bias": bias, "weight_scaling": 1.0, "head_scaling": 1.0, "attn_soft_cap": 30.0,
        "noise_type": -1000.0
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn normal(rng: &mut HostRng) -> f32 {
    let (u, v) = (rng.next_f64().max(1e-300), rng.next_f64());
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn random_params(cfg: &GiddConfig, rng: &mut HostRng) -> Vec<(String, HostTensor)> {
    cfg.param_shapes()
        .into_iter()
        .map(|(n, s)| {
            let k: usize = s.iter().product();
            let data = (0..k).map(|_| 0.3 * normal(rng)).collect();
            (n, HostTensor::f32(s, data).expect("shape"))
        })
        .collect()
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

#[test]
fn cached_block_logits_equal_the_full_canvas_rows() {
    let mut rng = HostRng::new(seed());
    for bias in [true, false] {
        let cfg = config(bias);
        let params = random_params(&cfg, &mut rng);
        let b = 2;
        let mut on = Canvas::new(&cfg, &params, b, T, DType::F32).expect("canvas");
        let mut off = Canvas::new(&cfg, &params, b, T, DType::F32).expect("canvas");
        off.kv_cache = false;
        // windows at odd offsets, including one that ends at the canvas end
        for (ws, we) in [(5, 12), (1, 2), (17, 30), (33, 40)] {
            let x: Vec<Vec<u32>> = (0..b)
                .map(|_| (0..T).map(|_| rng.below(V as u32)).collect())
                .collect();
            // as in generation: the prefix clean, everything from the window start noisy
            let noise: Vec<Vec<bool>> = (0..b).map(|_| (0..T).map(|i| i >= ws).collect()).collect();
            on.begin_block(&x, ws).expect("prefix");
            off.begin_block(&x, ws).expect("prefix");
            let got = on.block_logits(&x, &noise, ws, we).expect("cached");
            let plain = off.block_logits(&x, &noise, ws, we).expect("uncached");
            let mask: Vec<bool> = noise
                .iter()
                .flat_map(|n| (0..T).flat_map(move |q| (0..T).map(move |k| n[q] >= n[k])))
                .collect();
            let full = on.logits(&x, &mask).expect("full");
            let rows: Vec<f32> = (0..b)
                .flat_map(|r| full[(r * T + ws) * V..(r * T + we) * V].to_vec())
                .collect();
            assert_eq!(got.len(), b * (we - ws) * V);
            let (e1, e2) = (rel_l2(&got, &rows), rel_l2(&plain, &rows));
            assert!(
                e1 <= 1e-5 && e2 <= 1e-5,
                "bias {bias} window [{ws}, {we}): cached rel err {e1:.2e}, uncached {e2:.2e}"
            );
        }
        assert!(on.stats.prefix_calls == 4 && off.stats.prefix_calls == 0);
        // a clean position after the prefix would make the cache inexact: refused
        let x = vec![vec![4u32; T]; b];
        let mut noise: Vec<Vec<bool>> = (0..b).map(|_| (0..T).map(|i| i >= 9).collect()).collect();
        noise[1][20] = false;
        on.begin_block(&x, 9).expect("prefix");
        assert!(on.block_logits(&x, &noise, 9, 15).is_err());
    }
}

#[test]
fn cached_generation_is_token_for_token_the_uncached_one() {
    let mut rng = HostRng::new(seed());
    let cfg = config(true);
    let params = random_params(&cfg, &mut rng);
    let prompts: Vec<Vec<u32>> = (0..2)
        .map(|_| {
            let mut p = vec![0];
            p.extend((0..4).map(|_| 4 + rng.below(V as u32 - 4)));
            p
        })
        .collect();
    for method in [Method::Ancestral, Method::Adaptive] {
        let o = GenOpts {
            max_length: 30,
            min_length: 10,
            block_length: 7,
            steps: 5,
            method,
            schedule: NoiseSchedule::Cosine,
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.95),
            tokens_per_step: 2,
            seed: rng.next_f64().to_bits(),
        };
        let run = |kv: bool| {
            let mut c = Canvas::new(&cfg, &params, 2, T, DType::F32).expect("canvas");
            c.kv_cache = kv;
            let mut blocks = 0;
            let out =
                generate(&mut c, &cfg, &prompts, &o, None, |_, _| blocks += 1).expect("generate");
            (out, c.stats, blocks)
        };
        let (a, sa, na) = run(true);
        let (b, sb, nb) = run(false);
        assert_eq!(a, b, "{method:?}: cached and uncached generations differ");
        assert_eq!(na, nb);
        assert!(na >= 2, "expected several blocks, got {na}");
        assert_eq!(sa.step_calls, sb.step_calls, "logits reuse differs");
        assert!(
            sa.positions < sb.positions,
            "the cache saves no work: {sa:?} vs {sb:?}"
        );
    }
}

#[test]
fn golden_greedy_generation_with_small_blocks_is_the_same_cached_or_not() {
    let dir = gidd_tests::golden_case("mask-small");
    let m = gidd_train::model_dir::load_checkpoint(&dir).expect("golden checkpoint");
    let gold = gidd_ports::TensorStore::open(&dir.join("golden.safetensors")).expect("golden");
    let prompt: Vec<u32> = gold
        .get("generate.prompt")
        .expect("prompt")
        .to_f64_vec()
        .iter()
        .map(|&x| x as u32)
        .collect();
    let t = m.cfg.max_position_embeddings;
    let o = GenOpts {
        max_length: t - prompt.len(),
        min_length: 0,
        block_length: 4,
        steps: 4,
        method: Method::Adaptive,
        schedule: NoiseSchedule::Linear,
        temperature: 0.0,
        top_k: None,
        top_p: None,
        tokens_per_step: 1,
        seed: 0,
    };
    let run = |kv: bool| {
        let mut c = Canvas::new(&m.cfg, &m.params, 1, t, DType::F32).expect("canvas");
        c.kv_cache = kv;
        let out = generate(
            &mut c,
            &m.cfg,
            std::slice::from_ref(&prompt),
            &o,
            None,
            |_, _| {},
        )
        .expect("gen");
        (out, c.stats)
    };
    let ((a, sa), (b, sb)) = (run(true), run(false));
    assert_eq!(a, b);
    assert!(sa.prefix_calls >= 4, "{sa:?}");
    assert!(sa.positions < sb.positions);
}
