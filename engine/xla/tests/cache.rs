//! The persistent compile cache: a second load of the same program comes from disk and
//! computes the same results; another program, a damaged entry or no cache compile anew.

mod common;

use common::{rng, uniform};
use gidd_engine::{DType, Executor, Graph, HostTensor, Program, Result};
use gidd_xla::{fsdp_layout, CompileCache, Origin, SpmdExecutor};
use std::path::PathBuf;

fn program(scale: f64) -> Result<Program> {
    let g = Graph::new();
    let x = g.input("x", &[12, 7], DType::F32);
    let w = g.input("w", &[7, 5], DType::F32);
    let y = x.matmul(&w)?.tanh()?.mul_scalar(scale)?;
    Program::compile(&[y.sum_all()?, y], &["x", "w"])
}

fn tmp_cache(tag: &str) -> (PathBuf, CompileCache) {
    let d = std::env::temp_dir().join(format!("gidd-xla-cache-{}-{tag}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    (d.clone(), CompileCache::new(d))
}

fn entries(d: &PathBuf) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "pjrt"));
    v.sort();
    v
}

#[test]
fn second_load_comes_from_the_cache_and_computes_the_same() -> Result<()> {
    let Some(x) = common::xla() else {
        return Ok(());
    };
    let (dir, cache) = tmp_cache("one");
    let x = x.clone().with_cache(Some(cache));
    let mut r = rng(rand::random());
    let ins = [
        uniform(&mut r, &[12, 7], DType::F32, -1.0, 1.0),
        uniform(&mut r, &[7, 5], DType::F32, -1.0, 1.0),
    ];
    let dev: Vec<_> = ins.iter().map(|t| x.upload(t)).collect::<Result<_>>()?;
    let refs: Vec<_> = dev.iter().collect();
    let p = program(1.5)?;
    let mut first = x.load(&p)?;
    assert_eq!(first.origin(), Origin::CompiledAndStored);
    assert_eq!(entries(&dir).len(), 1);
    let mut again = x.load(&p)?;
    assert_eq!(again.origin(), Origin::Cached);
    let (a, b) = (x.run(&mut first, &refs)?, x.run(&mut again, &refs)?);
    for (u, v) in a.iter().zip(&b) {
        assert_eq!(x.download(u)?.to_f32_vec(), x.download(v)?.to_f32_vec());
    }

    // Another program is another entry, never the first one's executable.
    let mut other = x.load(&program(-2.0)?)?;
    assert_eq!(other.origin(), Origin::CompiledAndStored);
    assert_eq!(entries(&dir).len(), 2);
    let o = x.download(&x.run(&mut other, &refs)?[0])?.to_f32_vec()[0];
    let f = x.download(&a[0])?.to_f32_vec()[0];
    assert!(
        (o + f * 2.0 / 1.5).abs() <= 1e-4 * f.abs().max(1.0),
        "{o} vs {f}"
    );

    // A damaged entry is recompiled and rewritten.
    for e in entries(&dir) {
        let bytes = std::fs::read(&e).unwrap();
        std::fs::write(&e, &bytes[..bytes.len() / 2]).unwrap();
    }
    assert_eq!(x.load(&p)?.origin(), Origin::CompiledAndStored);
    assert_eq!(x.load(&p)?.origin(), Origin::Cached);

    // No cache: always compiled, nothing written.
    let plain = x.clone().with_cache(None);
    assert_eq!(plain.load(&p)?.origin(), Origin::Compiled);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn sharded_programs_are_cached_per_layout() -> Result<()> {
    let Some(x) = common::xla() else {
        return Ok(());
    };
    if x.client().device_count() < 4 {
        eprintln!("SKIPPED: the plugin has fewer than 4 devices");
        return Ok(());
    }
    let (dir, cache) = tmp_cache("spmd");
    let s = SpmdExecutor::new(x.client().clone(), 4)
        .map_err(|e| gidd_engine::Error::Msg(e.to_string()))?
        .with_cache(Some(cache));
    let p = program(0.5)?;
    let ty: Vec<_> = p.input_types().into_iter().map(|(_, t)| t).collect();
    let ins = fsdp_layout(&ty, 4);
    let outs = fsdp_layout(&p.output_types(), 4);
    let load = |o: &[Option<usize>]| {
        s.load(&p, &ins, o)
            .unwrap_or_else(|e| panic!("{e}"))
            .origin()
    };
    assert_eq!(load(&outs), Origin::CompiledAndStored);
    assert_eq!(load(&outs), Origin::Cached);
    // The same program with its result replicated is a different module.
    assert_eq!(load(&[None, None]), Origin::CompiledAndStored);
    assert_eq!(entries(&dir).len(), 2);
    let mut r = rng(3);
    let hx = uniform(&mut r, &[12, 7], DType::F32, -1.0, 1.0);
    let hw = uniform(&mut r, &[7, 5], DType::F32, -1.0, 1.0);
    let lp = s.load(&p, &ins, &outs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(lp.origin(), Origin::Cached);
    let bx = s.upload(&hx, ins[0]).unwrap_or_else(|e| panic!("{e}"));
    let bw = s.upload(&hw, ins[1]).unwrap_or_else(|e| panic!("{e}"));
    let y = s.run(&lp, &[&bx, &bw]).unwrap_or_else(|e| panic!("{e}"));
    let want =
        gidd_engine::CpuExecutor.run(&mut gidd_engine::CpuExecutor.load(&p)?, &[&hx, &hw])?;
    for (i, w) in want.iter().enumerate() {
        let got: HostTensor = s.download(&y[i]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.shape, w.shape);
        for (a, b) in got.to_f32_vec().iter().zip(w.to_f32_vec()) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "output {i}: {a} vs cpu {b}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
