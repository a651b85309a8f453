//! Reductions: the op and dtype matched to `gidd_kernels::reduce` (f64 accumulation).

use super::elem::{with_dtype, Arg, Elem};
use crate::host::Data;
use crate::op::ReduceOp;
use gidd_kernels::reduce as kr;

pub fn reduce(op: ReduceOp, dims: &[usize], x: Arg, shape: &[usize], out: &mut Data) {
    let n: usize = shape.iter().product();
    with_dtype!(out.dtype(), T, {
        let o = T::vec_mut(out).expect("slot dtype");
        kr::reduce::<T>(op, dims, &x.slice::<T>(n), shape, o);
    })
}
