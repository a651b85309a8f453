//! Buffer donation: a program that aliases an input to an output (`Program::with_aliases`)
//! writes that output into the input's memory when the caller donates the input, and
//! copies when it does not; the results are the same either way.

mod common;

use common::{rng, uniform};
use gidd_engine::{CpuExecutor, DType, Executor, Graph, HostTensor, Program, Result};

/// An SGD step on odd shapes: (loss, w - lr g, v + g) with w -> output 1, v -> output 2.
fn sgd_program() -> Result<Program> {
    let g = Graph::new();
    let w = g.input("w", &[33, 17], DType::F32);
    let v = g.input("v", &[33, 17], DType::F32);
    let gr = g.input("g", &[33, 17], DType::F32);
    let lr = g.input("lr", &[], DType::F32);
    let loss = w.mul(&gr)?.sum_all()?;
    let w2 = w.sub(&gr.mul(&lr)?)?;
    let v2 = v.add(&gr)?;
    Program::compile(&[loss, w2, v2], &["w", "v", "g", "lr"])?.with_aliases(&[(0, 1), (1, 2)])
}

fn inputs() -> Vec<HostTensor> {
    let mut r = rng(rand::random());
    vec![
        uniform(&mut r, &[33, 17], DType::F32, -1.0, 1.0),
        uniform(&mut r, &[33, 17], DType::F32, -1.0, 1.0),
        uniform(&mut r, &[33, 17], DType::F32, -1.0, 1.0),
        HostTensor::f32(vec![], vec![0.125]).unwrap(),
    ]
}

#[test]
fn aliases_are_checked() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", &[3, 4], DType::F32);
    let b = g.input("b", &[4], DType::F32);
    let p = Program::compile(&[a.exp()?, b.exp()?], &["a", "b"])?;
    let bad = [
        (vec![(0, 1)], "types differ"),
        (vec![(2, 0)], "out of range"),
        (vec![(0, 0), (0, 0)], "aliased twice"),
    ];
    for (pairs, want) in bad {
        let e = p.clone().with_aliases(&pairs).unwrap_err().to_string();
        assert!(e.contains(want), "{pairs:?}: '{e}' should say '{want}'");
    }
    assert_eq!(p.with_aliases(&[(0, 0), (1, 1)])?.aliases.len(), 2);
    Ok(())
}

#[test]
fn donated_inputs_hold_the_outputs_and_kept_inputs_survive() -> Result<()> {
    let Some(x) = common::xla() else {
        return Ok(());
    };
    let p = sgd_program()?;
    let host = inputs();
    let want = {
        let mut lp = CpuExecutor.load(&p)?;
        let r: Vec<&HostTensor> = host.iter().collect();
        CpuExecutor.run(&mut lp, &r)?
    };
    let mut lp = x.load(&p)?;
    assert!(lp.module().contains("tf.aliasing_output = 1 : i32"));
    assert!(lp.module().contains("tf.aliasing_output = 2 : i32"));
    let bytes = (33 * 17 * 4) as u64;
    let stats = lp.executable().memory_stats()?;
    eprintln!("memory plan: {stats:?}");
    assert_eq!(
        stats.alias_bytes,
        2 * bytes,
        "both aliases planned: {stats:?}"
    );

    // `run` keeps every input: aliased ones are copied, not donated.
    let dev: Vec<_> = host.iter().map(|t| x.upload(t)).collect::<Result<_>>()?;
    let refs: Vec<_> = dev.iter().collect();
    let kept = x.run(&mut lp, &refs)?;
    for (i, (d, h)) in dev.iter().zip(&host).enumerate() {
        assert!(!d
            .is_deleted()
            .map_err(|e| gidd_engine::Error::Msg(e.to_string()))?);
        assert_eq!(
            x.download(d)?.to_f32_vec(),
            h.to_f32_vec(),
            "input {i} kept"
        );
    }

    // At the PJRT level: donating deletes exactly the aliased arguments not kept.
    let exe = lp.executable();
    let outs = exe
        .execute(&[refs.clone()], &[1])
        .map_err(|e| gidd_engine::Error::Msg(e.to_string()))?;
    let deleted: Vec<bool> = dev.iter().map(|d| d.is_deleted().unwrap()).collect();
    assert_eq!(deleted, [true, false, false, false], "only w is donated");
    for (o, k) in outs[0].iter().zip(&kept) {
        assert_eq!(x.download(o)?.to_f32_vec(), x.download(k)?.to_f32_vec());
    }

    // `run_donating` with fresh uploads: same results as the copying run, and the cpu's.
    let mut dev: Vec<_> = host.iter().map(|t| x.upload(t)).collect::<Result<_>>()?;
    let rest = dev.split_off(2);
    let rest_refs: Vec<_> = rest.iter().collect();
    let donated = x.run_donating(&mut lp, dev, &rest_refs)?;
    for (i, ((d, k), w)) in donated.iter().zip(&kept).zip(&want).enumerate() {
        let (d, k) = (x.download(d)?.to_f32_vec(), x.download(k)?.to_f32_vec());
        assert_eq!(d, k, "output {i}: donated and copying runs differ");
        let w = w.to_f32_vec();
        for (a, b) in d.iter().zip(&w) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "output {i}: {a} vs cpu {b}"
            );
        }
    }
    // The cpu executor's default donation is a plain run.
    let mut cl = CpuExecutor.load(&p)?;
    let own: Vec<HostTensor> = host[..2].to_vec();
    let r: Vec<&HostTensor> = host[2..].iter().collect();
    let c = CpuExecutor.run_donating(&mut cl, own, &r)?;
    assert_eq!(c[1].to_f32_vec(), want[1].to_f32_vec());
    Ok(())
}
