//! Describes a PJRT plugin and runs one tiny program on it:
//! `cargo run --release -p gidd-xla --example pjrt_info [PLUGIN.so]`
//! (default: $GIDD_PJRT_PLUGIN, else .xla-plugin/ from engine/xla/install-plugin.sh).

use gidd_engine::{DType, Executor, Graph, HostTensor, Program};
use gidd_xla::{find_plugin, load_plugin, Client, XlaExecutor};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1).map(PathBuf::from);
    let path = find_plugin(arg.as_deref())?;
    let api = load_plugin(&path)?;
    println!("plugin: {api:?}");
    for (k, v) in api.attributes()? {
        println!("  {k} = {v}");
    }
    let client = Client::new(api)?;
    println!(
        "client: platform {} ({}), {} addressable devices",
        client.platform(),
        client.platform_version(),
        client.device_count()
    );
    let g = Graph::new();
    let a = g.input("a", &[4], DType::F32);
    let b = g.input("b", &[4], DType::F32);
    let p = Program::compile(&[a.add(&b)?.tanh()?], &["a", "b"])?;
    println!("module:\n{}", gidd_xla::emit_module(&p)?);
    let x = XlaExecutor::with_client(client);
    let mut lp = x.load(&p)?;
    let ins = [
        x.upload(&HostTensor::f32(vec![4], vec![0.1, 0.2, 0.3, 0.4])?)?,
        x.upload(&HostTensor::f32(vec![4], vec![1.0, -1.0, 0.5, -0.5])?)?,
    ];
    let out = x.run(&mut lp, &[&ins[0], &ins[1]])?;
    println!(
        "tanh(a + b) = {:?} (compiled in {:.0} ms on {})",
        x.download(&out[0])?.to_f32_vec(),
        lp.compile_time().as_secs_f64() * 1e3,
        x.name()
    );
    Ok(())
}
