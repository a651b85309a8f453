//! (no kernels yet: the ops run as their decompositions)

use super::no_kernel;
use crate::error::Result;
use crate::plan::Builder;
use gidd_engine::op::Op;
use gidd_engine::DType;

pub fn supports(_op: &Op, _dtype: DType) -> bool {
    false
}

pub fn lower(_b: &mut Builder, op: &Op, _ins: &[usize], _outs: &[usize]) -> Result<()> {
    Err(no_kernel(op))
}
