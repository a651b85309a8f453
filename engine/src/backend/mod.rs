//! Executors run compiled programs. The trait assumes nothing about where
//! buffers live: a device executor keeps them in device memory between runs.

pub mod cpu;

use crate::error::Result;
use crate::host::HostTensor;
use crate::program::Program;

pub trait Executor {
    /// A tensor resident wherever this executor computes.
    type Buffer;
    /// A program prepared for this executor (kernels chosen, memory reserved).
    type Loaded;

    fn name(&self) -> String;
    fn upload(&self, t: &HostTensor) -> Result<Self::Buffer>;
    fn download(&self, b: &Self::Buffer) -> Result<HostTensor>;
    fn load(&self, p: &Program) -> Result<Self::Loaded>;
    /// Runs a loaded program on inputs in the program's input order.
    fn run(&self, p: &mut Self::Loaded, inputs: &[&Self::Buffer]) -> Result<Vec<Self::Buffer>>;
    /// A line on the device memory one run of `p` takes, where the executor plans it.
    fn memory_plan(&self, _p: &Self::Loaded) -> Option<String> {
        None
    }
    /// Like `run`, with the first `donated.len()` inputs given up: an executor may write
    /// the outputs the program aliases to them (`Program::aliases`) into their storage
    /// instead of new memory. `rest` are the remaining inputs, in order. The default
    /// keeps nothing in place; the donated buffers are freed when the run returns.
    fn run_donating(
        &self,
        p: &mut Self::Loaded,
        donated: Vec<Self::Buffer>,
        rest: &[&Self::Buffer],
    ) -> Result<Vec<Self::Buffer>> {
        let mut ins: Vec<&Self::Buffer> = donated.iter().collect();
        ins.extend_from_slice(rest);
        self.run(p, &ins)
    }
}
