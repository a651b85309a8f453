//! What the likelihood tests share: a tiny config, seeded parameters, the requests.

#![allow(dead_code, clippy::unwrap_used)]

use gidd_engine::rng::HostRng;
use gidd_engine::HostTensor;
use gidd_model::likelihood::{Request, Score};
use gidd_model::GiddConfig;

pub fn tiny_cfg(vocab: usize, noise_type: f64, max_pos: usize, bias: bool) -> GiddConfig {
    GiddConfig::from_json(serde_json::json!({
        "vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": max_pos,
        "attention_bias": bias, "mlp_bias": bias, "noise_type": noise_type,
        "min_log_snr": -9.0, "max_log_snr": 9.0,
    }))
    .unwrap()
}

/// Random parameters of every shape (norms and biases too, so none is a no-op).
pub fn random_params(cfg: &GiddConfig, seed: u64) -> Vec<(String, HostTensor)> {
    let mut rng = HostRng::new(seed);
    cfg.param_shapes()
        .into_iter()
        .map(|(n, s)| {
            let sd = if n.contains("norm") || n.contains("bias") {
                0.3
            } else {
                1.0
            };
            let v: Vec<f32> = (0..s.iter().product::<usize>())
                .map(|_| (rng.normal() * sd) as f32)
                .collect();
            (n, HostTensor::f32(s, v).unwrap())
        })
        .collect()
}

pub fn requests() -> Vec<Request> {
    vec![
        Request {
            prompt: vec![0, 17, 5, 9],
            completion: vec![22, 8, 31, 1],
        },
        Request {
            prompt: vec![],
            completion: vec![4, 4, 12],
        },
        Request {
            prompt: vec![0, 30, 29, 28, 27, 26, 25, 24, 23],
            completion: vec![11],
        },
    ]
}

pub fn totals(s: &[Score]) -> Vec<f64> {
    s.iter().map(|x| x.total_nll).collect()
}
