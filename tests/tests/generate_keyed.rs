//! Generation with per-row keys (`generate_keyed`, what `gidd serve` batches clients with):
//! a row gives the same tokens alone or beside other rows, wherever it sits in the batch.

#![allow(clippy::unwrap_used)] // tests may unwrap (STYLE: denied outside tests)

mod likelihood_support;
use likelihood_support::{random_params, tiny_cfg};

use gidd_engine::DType;
use gidd_model::generate::{generate_keyed, Canvas, GenOpts, Method, RowSeed};
use std::ops::ControlFlow;

const T: usize = 16;

fn run(
    cfg: &gidd_model::GiddConfig,
    params: &[(String, gidd_engine::HostTensor)],
    prompts: &[Vec<u32>],
    keys: &[RowSeed],
    o: &GenOpts,
) -> Vec<Vec<u32>> {
    let mut c = Canvas::new(cfg, params, prompts.len(), T, DType::F32).unwrap();
    generate_keyed(&mut c, cfg, prompts, keys, o, |_| ControlFlow::Continue(())).unwrap()
}

#[test]
fn a_keyed_row_generates_the_same_alone_or_batched() {
    let key = |seed, row| RowSeed { seed, row };
    // mask and uniform noise (the prior canvas is drawn in the second), both samplers
    for (shift, method) in [
        (0.0, Method::Ancestral),
        (1000.0, Method::Ancestral),
        (0.0, Method::Adaptive),
        (1000.0, Method::Adaptive),
    ] {
        let cfg = tiny_cfg(40, shift, T, true);
        let params = random_params(&cfg, 31);
        let o = GenOpts {
            method,
            temperature: 0.8,
            top_p: Some(0.95),
            tokens_per_step: 2,
            ..GenOpts::ancestral(9, 4, 3, 0)
        };
        let prompts = vec![vec![0, 7, 9], vec![0, 7, 9], vec![0, 11, 2], vec![0, 7, 9]];
        let keys = [key(5, 0), key(5, 1), key(u64::MAX, 3), key(6, 0)];
        let batched = run(&cfg, &params, &prompts, &keys, &o);
        // reversed order: the rows move, their tokens do not
        let (mut rp, mut rk) = (prompts.clone(), keys.to_vec());
        rp.reverse();
        rk.reverse();
        let reversed = run(&cfg, &params, &rp, &rk, &o);
        for i in 0..prompts.len() {
            let alone = run(&cfg, &params, &prompts[i..i + 1], &keys[i..i + 1], &o);
            let what = format!("row {i}, shift {shift}, {method:?}");
            assert_eq!(batched[i], alone[0], "{what}: batched vs alone");
            assert_eq!(
                reversed[prompts.len() - 1 - i],
                alone[0],
                "{what}: reversed"
            );
            assert_eq!(batched[i][..3], prompts[i][..], "{what}: the prompt stays");
        }
        // the key is what draws: same prompt, other seed or other row, other tokens
        assert_ne!(batched[0], batched[1], "shift {shift}, {method:?}");
        assert_ne!(batched[0], batched[3], "shift {shift}, {method:?}");
    }
    // a key per prompt, or a clear error
    let cfg = tiny_cfg(40, 0.0, T, true);
    let params = random_params(&cfg, 31);
    let mut c = Canvas::new(&cfg, &params, 2, T, DType::F32).unwrap();
    let e = generate_keyed(
        &mut c,
        &cfg,
        &[vec![0], vec![0]],
        &[key(1, 0)],
        &GenOpts::ancestral(4, 4, 2, 0),
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("1 row keys for 2 prompts"), "{e}");
}
