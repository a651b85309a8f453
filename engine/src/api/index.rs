//! Gather and scatter-add along one axis, embedding lookup, one-hot.

use crate::dtype::DType;
use crate::error::Result;
use crate::graph::Tensor;
use crate::op::Op;

impl Tensor {
    /// out[pre.., idx.., post..] = self[pre.., indices[idx..], post..]
    pub fn gather(&self, axis: usize, indices: &Tensor) -> Result<Tensor> {
        self.graph().apply1(Op::Gather { axis }, &[self, indices])
    }

    /// Rows of an embedding table [V, d] for ids of any shape: [ids.., d].
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        self.gather(0, ids)
    }

    /// The adjoint of `gather`: zeros of `shape`, updates (self) added at the indices.
    pub fn scatter_add(&self, axis: usize, indices: &Tensor, shape: &[usize]) -> Result<Tensor> {
        self.graph().apply1(
            Op::ScatterAdd {
                axis,
                shape: shape.to_vec(),
            },
            &[self, indices],
        )
    }

    /// Picks self[.., ids[..]] along the last axis where ids has self's shape without the last dim.
    pub fn take_last(&self, ids: &Tensor) -> Result<Tensor> {
        // Compare-with-iota and sum keeps this a plain primitive composition with a simple VJP.
        let v = self.dim(-1);
        let oh = ids.one_hot(v, self.dtype())?;
        self.mul(&oh)?.sum_last(false)
    }

    /// One-hot over a new last dim of size n, in `dtype`.
    pub fn one_hot(&self, n: usize, dtype: DType) -> Result<Tensor> {
        let mut shape = self.shape().to_vec();
        shape.push(n);
        let iota = self.graph().iota(&shape, shape.len() - 1, self.dtype())?;
        let ids = self.reshape(&[self.shape(), &[1]].concat())?;
        let hit = iota.eq(&ids)?;
        hit.to(dtype)
    }
}
