//! Reshape, broadcast, transpose, slice, concatenate, matmul.

use crate::error::{Error, Result};
use crate::graph::Tensor;
use crate::op::{DotDims, Op};

impl Tensor {
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        self.graph().apply1(
            Op::Reshape {
                shape: shape.to_vec(),
            },
            &[self],
        )
    }

    /// numpy-style broadcast to `shape` (right-aligned).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        if self.rank() > shape.len() {
            return Err(Error::shape(
                "broadcast_to",
                format!("cannot broadcast to {shape:?}"),
                &[self.shape()],
            ));
        }
        let off = shape.len() - self.rank();
        let dims = (off..shape.len()).collect();
        self.broadcast_in_dim(shape, dims)
    }

    pub fn broadcast_in_dim(&self, shape: &[usize], dims: Vec<usize>) -> Result<Tensor> {
        self.graph().apply1(
            Op::BroadcastInDim {
                shape: shape.to_vec(),
                dims,
            },
            &[self],
        )
    }

    pub fn transpose(&self, perm: &[usize]) -> Result<Tensor> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == self.rank() {
            return Ok(self.clone());
        }
        self.graph().apply1(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[self],
        )
    }

    /// Swaps the last two dims.
    pub fn t(&self) -> Result<Tensor> {
        let r = self.rank();
        if r < 2 {
            return Err(Error::shape("t", "needs rank >= 2", &[self.shape()]));
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.transpose(&perm)
    }

    /// Elements [start, end) of dim `dim`.
    pub fn narrow(&self, dim: usize, start: usize, end: usize) -> Result<Tensor> {
        if dim >= self.rank() {
            return Err(Error::shape(
                "narrow",
                format!("dim {dim} out of range"),
                &[self.shape()],
            ));
        }
        let mut s = vec![0; self.rank()];
        let mut l = self.shape().to_vec();
        s[dim] = start;
        l[dim] = end;
        self.slice(&s, &l)
    }

    pub fn slice(&self, start: &[usize], limit: &[usize]) -> Result<Tensor> {
        self.graph().apply1(
            Op::Slice {
                start: start.to_vec(),
                limit: limit.to_vec(),
            },
            &[self],
        )
    }

    pub fn concat(parts: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| Error::Msg("concat of nothing".into()))?;
        first.graph().apply1(Op::Concatenate { dim }, parts)
    }

    pub fn dot_general(&self, o: &Tensor, dims: DotDims) -> Result<Tensor> {
        self.graph().apply1(Op::DotGeneral(dims), &[self, o])
    }

    /// [..., m, k] x [k, n] -> [..., m, n] (a shared right operand, like a weight),
    /// or [b.., m, k] x [b.., k, n] with equal leading (batch) dims.
    pub fn matmul(&self, o: &Tensor) -> Result<Tensor> {
        let (ra, rb) = (self.rank(), o.rank());
        if ra < 2 || rb < 2 {
            return Err(Error::shape(
                "matmul",
                "operands need rank >= 2",
                &[self.shape(), o.shape()],
            ));
        }
        if rb == 2 {
            // Flatten leading dims into m: one GEMM against the shared matrix.
            let k = self.dim(-1);
            let lead: Vec<usize> = self.shape()[..ra - 1].to_vec();
            let m: usize = lead.iter().product();
            let y = self.reshape(&[m, k])?.dot_general(
                o,
                DotDims {
                    lhs_batch: vec![],
                    rhs_batch: vec![],
                    lhs_contract: vec![1],
                    rhs_contract: vec![0],
                },
            )?;
            let mut shape = lead;
            shape.push(o.dim(-1));
            return y.reshape(&shape);
        }
        if ra != rb {
            return Err(Error::shape(
                "matmul",
                "batched operands need equal rank",
                &[self.shape(), o.shape()],
            ));
        }
        let batch: Vec<usize> = (0..ra - 2).collect();
        self.dot_general(
            o,
            DotDims {
                lhs_batch: batch.clone(),
                rhs_batch: batch,
                lhs_contract: vec![ra - 1],
                rhs_contract: vec![ra - 2],
            },
        )
    }

    /// x W^T for a weight W [out, in] stored as nn.Linear does.
    pub fn linear(&self, w: &Tensor) -> Result<Tensor> {
        let k = self.dim(-1);
        let lead: Vec<usize> = self.shape()[..self.rank() - 1].to_vec();
        let m: usize = lead.iter().product();
        let y = self.reshape(&[m, k])?.dot_general(
            w,
            DotDims {
                lhs_batch: vec![],
                rhs_batch: vec![],
                lhs_contract: vec![1],
                rhs_contract: vec![1],
            },
        )?;
        let mut shape = lead;
        shape.push(w.dim(0));
        y.reshape(&shape)
    }
}
