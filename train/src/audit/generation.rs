//! The golden greedy generation, token for token.

use super::Row;
use anyhow::Result;
use gidd_engine::{DType, Executor, HostTensor};
use gidd_model::generate::{generate, Canvas, GenOpts, Method, NoiseSchedule};
use gidd_model::GiddConfig;
use gidd_ports::TensorStore;

/// Reproduces the golden greedy generation (`generate.*` in a golden file) and compares token for token.
pub fn audit_generation<E: Executor + Clone>(
    exec: &E,
    cfg: &GiddConfig,
    params: &[(String, HostTensor)],
    gold: &TensorStore,
) -> Result<Row> {
    let prompt: Vec<u32> = gold
        .get("generate.prompt")?
        .to_f64_vec()
        .iter()
        .map(|&x| x as u32)
        .collect();
    let want: Vec<f64> = gold.get("generate.output")?.to_f64_vec();
    let prior = gold.get("generate.prior").ok().map(|t| {
        vec![t
            .to_f64_vec()
            .iter()
            .map(|&x| x as u32)
            .collect::<Vec<u32>>()]
    });
    let steps = gold
        .info("generate.step_log_snr")
        .map(|(_, s)| s[0])
        .unwrap_or(want.len());
    let block = gold
        .info("generate.trace")
        .map(|(_, s)| s[1])
        .unwrap_or(want.len() - prompt.len());
    let o = GenOpts {
        max_length: want.len() - prompt.len(),
        min_length: 0,
        block_length: block,
        steps,
        method: Method::Adaptive,
        schedule: NoiseSchedule::Linear,
        temperature: 0.0,
        top_k: None,
        top_p: None,
        tokens_per_step: 1,
        seed: 0,
    };
    let mut canvas = Canvas::with_executor(
        exec.clone(),
        cfg,
        params,
        1,
        cfg.max_position_embeddings,
        DType::F32,
    )?;
    let got = generate(&mut canvas, cfg, &[prompt], &o, prior, |_, _| {})?;
    let got: Vec<f64> = got[0].iter().map(|&x| x as f64).collect();
    let mismatches =
        got.iter().zip(&want).filter(|(a, b)| a != b).count() + got.len().abs_diff(want.len());
    Ok(Row {
        quantity: "generate.output".into(),
        max_abs: if mismatches == 0 { 0.0 } else { 1.0 },
        rel_l2: mismatches as f64,
        tol: 0.0,
        pass: mismatches == 0,
        note: if mismatches == 0 {
            "token for token".into()
        } else {
            format!("{mismatches} tokens differ: got {got:?}")
        },
    })
}
