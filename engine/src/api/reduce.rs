//! Reductions.

use crate::error::{Error, Result};
use crate::graph::Tensor;
use crate::op::{Op, ReduceOp};

impl Tensor {
    fn reduce(&self, op: ReduceOp, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let mut d = dims.to_vec();
        d.sort_unstable();
        d.dedup();
        if d.iter().any(|&x| x >= self.rank()) {
            return Err(Error::shape(
                "reduce",
                format!("dims {dims:?} out of range"),
                &[self.shape()],
            ));
        }
        let r = self.graph().apply1(
            Op::Reduce {
                op,
                dims: d.clone(),
            },
            &[self],
        )?;
        if keepdim {
            let shape: Vec<usize> = (0..self.rank())
                .map(|i| if d.contains(&i) { 1 } else { self.shape()[i] })
                .collect();
            r.reshape(&shape)
        } else {
            Ok(r)
        }
    }
    pub fn sum(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, dims, keepdim)
    }
    pub fn max(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, dims, keepdim)
    }
    pub fn sum_all(&self) -> Result<Tensor> {
        let all: Vec<usize> = (0..self.rank()).collect();
        self.sum(&all, false)
    }
    pub fn mean(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let n: usize = dims.iter().map(|&d| self.shape()[d]).product();
        self.sum(dims, keepdim)?.mul_scalar(1.0 / n as f64)
    }
    /// Sum over the last dim.
    pub fn sum_last(&self, keepdim: bool) -> Result<Tensor> {
        self.sum(&[self.rank() - 1], keepdim)
    }
}
