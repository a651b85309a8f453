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
}
