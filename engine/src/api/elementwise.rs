//! Elementwise math with numpy broadcasting and scalar helpers.

use super::broadcast_shapes;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::graph::Tensor;
use crate::op::{BinaryOp, CmpOp, Op, UnaryOp};

impl Tensor {
    pub(crate) fn unary(&self, u: UnaryOp) -> Result<Tensor> {
        self.graph().apply1(Op::Unary(u), &[self])
    }

    fn binary_bcast(&self, o: &Tensor, op: Op, name: &'static str) -> Result<Tensor> {
        let shape = broadcast_shapes(name, self.shape(), o.shape())?;
        let a = self.broadcast_to(&shape)?;
        let b = o.broadcast_to(&shape)?;
        self.graph().apply1(op, &[&a, &b])
    }

    pub fn binary(&self, o: &Tensor, b: BinaryOp) -> Result<Tensor> {
        self.binary_bcast(o, Op::Binary(b), "binary")
    }

    pub fn add(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, BinaryOp::Add)
    }
    pub fn sub(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, BinaryOp::Sub)
    }
    pub fn mul(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, BinaryOp::Mul)
    }
    pub fn div(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, BinaryOp::Div)
    }
    pub fn maximum(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, BinaryOp::Max)
    }
    pub fn minimum(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, BinaryOp::Min)
    }
    pub fn pow(&self, o: &Tensor) -> Result<Tensor> {
        self.binary(o, BinaryOp::Pow)
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Logistic)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    pub fn rsqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Rsqrt)
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs)
    }
    pub fn sin(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sin)
    }
    pub fn cos(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Cos)
    }
    pub fn floor(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Floor)
    }
    pub fn not(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Not)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.maximum(&self.full_like(0.0))
    }
    pub fn square(&self) -> Result<Tensor> {
        self.mul(self)
    }

    /// A tensor of this one's shape and dtype filled with `x`.
    pub fn full_like(&self, x: f64) -> Tensor {
        self.graph().splat(x, self.shape(), self.dtype())
    }
    fn scalar_like(&self, x: f64) -> Tensor {
        self.graph().scalar(x, self.dtype())
    }
    pub fn add_scalar(&self, x: f64) -> Result<Tensor> {
        self.add(&self.scalar_like(x))
    }
    pub fn mul_scalar(&self, x: f64) -> Result<Tensor> {
        self.mul(&self.scalar_like(x))
    }
    /// x - self
    pub fn rsub_scalar(&self, x: f64) -> Result<Tensor> {
        self.scalar_like(x).sub(self)
    }
    pub fn max_scalar(&self, x: f64) -> Result<Tensor> {
        self.maximum(&self.scalar_like(x))
    }
    pub fn min_scalar(&self, x: f64) -> Result<Tensor> {
        self.minimum(&self.scalar_like(x))
    }
    pub fn clip(&self, lo: f64, hi: f64) -> Result<Tensor> {
        self.max_scalar(lo)?.min_scalar(hi)
    }

    pub fn compare(&self, o: &Tensor, c: CmpOp) -> Result<Tensor> {
        self.binary_bcast(o, Op::Compare(c), "compare")
    }
    pub fn eq(&self, o: &Tensor) -> Result<Tensor> {
        self.compare(o, CmpOp::Eq)
    }
    pub fn lt(&self, o: &Tensor) -> Result<Tensor> {
        self.compare(o, CmpOp::Lt)
    }
    pub fn ge(&self, o: &Tensor) -> Result<Tensor> {
        self.compare(o, CmpOp::Ge)
    }
    pub fn eq_scalar(&self, x: f64) -> Result<Tensor> {
        self.eq(&self.scalar_like(x))
    }
    pub fn lt_scalar(&self, x: f64) -> Result<Tensor> {
        self.lt(&self.scalar_like(x))
    }

    /// where(self, a, b) with broadcasting of all three.
    pub fn select(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if self.dtype() != DType::Bool {
            return Err(Error::dtype(
                "select",
                "predicate must be bool",
                &[self.dtype()],
            ));
        }
        let s = broadcast_shapes("select", self.shape(), a.shape())?;
        let s = broadcast_shapes("select", &s, b.shape())?;
        let (p, a, b) = (
            self.broadcast_to(&s)?,
            a.broadcast_to(&s)?,
            b.broadcast_to(&s)?,
        );
        self.graph().apply1(Op::Select, &[&p, &a, &b])
    }

    /// Element type conversion (a no-op when the dtype already matches).
    pub fn to(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        self.graph().apply1(Op::Convert { to: dtype }, &[self])
    }
}
