//! `gidd check --dump-ptx DIR`: every PTX module the cuda executor can load, as files anyone
//! can assemble (`ptxas -arch=sm_90a FILE`): the hand-written modules
//! (gidd_cuda::MODULES) and the elementwise-chain kernels generated for the model's
//! real programs (the tiny preset's training step in f32 and bf16, its noise draws alone,
//! and a generation step's forward), planned as on a GPU without one. Also the cuda
//! executor's launch counts of those programs, one launch per op against fused chains.

use anyhow::{Context, Result};
use gidd_cuda::chain::Generated;
use gidd_engine::{rewrite, DType, Program};
use std::path::Path;

/// One program's plan on the cuda executor.
pub struct ProgramPtx {
    pub name: String,
    /// Kernel launches per run with one launch per op (GIDD_CUDA_CHAINS=0).
    pub unfused: usize,
    /// Kernel launches per run with chains fused, and how many of them are chains.
    pub fused: usize,
    pub chains: usize,
    /// The generated modules the fused plan uses.
    pub modules: Vec<&'static Generated>,
}

#[derive(clap::Parser)]
struct TrainFlags {
    #[command(flatten)]
    a: crate::trainer::TrainArgs,
}

fn train_args(dtype: &str) -> Result<crate::trainer::TrainArgs> {
    use clap::Parser;
    Ok(TrainFlags::try_parse_from(["gidd", "--dtype", dtype])?.a)
}

/// A generation step of the tiny synthetic model: the forward to logits over a canvas of
/// 4 rows of 64 tokens (the sampler draws from them on the host).
fn generation_step() -> Result<Program> {
    use gidd_model::transformer::{forward, ForwardOpts, Params};
    let cfg = crate::synthetic::preset("tiny")?;
    let g = gidd_engine::Graph::new();
    let p = Params::declare(&g, &cfg);
    let (batch, len) = (4, 64);
    let z = g.input("canvas", &[batch, len], DType::I32);
    let mask = g.splat(1.0, &[batch, len], DType::Bool);
    let pos = g.iota(&[batch, len], 1, DType::I32)?;
    let opts = ForwardOpts {
        dtype: DType::F32,
        attentions: false,
    };
    let logits = forward(&cfg, &p, &z, &mask, &pos, opts)?.logits;
    let mut order = p.names();
    order.push("canvas".into());
    let refs: Vec<&str> = order.iter().map(String::as_str).collect();
    Ok(Program::compile(&[logits], &refs)?)
}

/// The representative programs, by name.
pub fn programs() -> Result<Vec<(String, Program)>> {
    let (f32a, bf16a) = (train_args("f32")?, train_args("bf16")?);
    Ok(vec![
        (
            "train-tiny-f32".into(),
            crate::trainer::step_program(&f32a)?,
        ),
        (
            "train-tiny-bf16".into(),
            crate::trainer::step_program(&bf16a)?,
        ),
        ("noise-tiny".into(), crate::trainer::noise_program(&f32a)?),
        ("generate-tiny".into(), generation_step()?),
    ])
}

/// `p` planned for the cuda executor (on a Hopper GPU, as the device check runs it) with
/// one launch per op and with chains fused.
pub fn plan(name: &str, p: &Program) -> Result<ProgramPtx> {
    let low = rewrite::lower_for(p, &gidd_cuda::fused::supports)?;
    let count = |chains: bool| -> Result<gidd_cuda::plan::Plan> {
        gidd_cuda::lower::plan_with(&low, true, chains)
            .with_context(|| format!("planning {name} for the cuda executor"))
    };
    let launches = |pl: &gidd_cuda::plan::Plan| {
        pl.steps
            .iter()
            .filter(|s| matches!(s, gidd_cuda::plan::Step::Launch(_)))
            .count()
    };
    let (one, fused) = (count(false)?, count(true)?);
    let modules = gidd_cuda::chain::modules_of(&fused);
    let chains = fused
        .steps
        .iter()
        .filter(|s| match s {
            gidd_cuda::plan::Step::Launch(l) => gidd_cuda::chain::generated(l.entry).is_some(),
            _ => false,
        })
        .count();
    Ok(ProgramPtx {
        name: name.to_string(),
        unfused: launches(&one),
        fused: launches(&fused),
        chains,
        modules,
    })
}

/// Writes every module into `dir` (created if missing) and returns the programs' plans.
pub fn dump(dir: &Path) -> Result<Vec<ProgramPtx>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: &str| -> Result<()> {
        let path = dir.join(name);
        gidd_ports::fsio::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    };
    for m in gidd_cuda::MODULES {
        write(&m.file_name(), m.source)?;
    }
    let mut out = vec![];
    for (name, p) in programs()? {
        let pp = plan(&name, &p)?;
        for g in &pp.modules {
            write(&format!("{}.ptx", g.entry), &g.text)?;
        }
        out.push(pp);
    }
    Ok(out)
}

/// `gidd check --dump-ptx DIR`: writes the modules and prints what was written.
pub fn main(dir: &Path) -> Result<()> {
    let plans = dump(dir)?;
    let generated: std::collections::BTreeSet<&str> = plans
        .iter()
        .flat_map(|p| p.modules.iter().map(|g| g.entry))
        .collect();
    println!(
        "wrote {} hand-written and {} generated PTX modules to {} (assemble: ptxas -arch=sm_90a FILE; sm_80 modules also -arch=sm_80)",
        gidd_cuda::MODULES.len(),
        generated.len(),
        dir.display()
    );
    println!("cuda launches per run: program, one per op, with chains fused (of which chains)");
    for p in &plans {
        println!(
            "  {:<16} {:>6} {:>6} ({})",
            p.name, p.unfused, p.fused, p.chains
        );
    }
    Ok(())
}
