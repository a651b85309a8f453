//! dot_general's emission, apart because XLA's CPU runtime needs some dots rewritten.

use super::*;
use crate::hlo_text::dot_attrs;
use gidd_engine::op::DotDims;

impl Emitter<'_> {
    /// dot_general, bf16 operands accumulating into an f32 result rounded once. XLA's CPU
    /// runtime has no bf16 kernel for a dot whose batch dims do not lead or that has more
    /// than one free or contracted dim per operand ("Unsupported element type for
    /// DotThunk", found by `gidd check --backend xla`): such a dot is emitted in the form
    /// XLA itself reduces dots to, its operands transposed to [batch.., M, K] and
    /// [batch.., K, N] and reshaped to merge the free and the contracted dims, and its
    /// result reshaped back. Every other dot (the model's: batch leading, one free and one
    /// contracted dim per operand, either side transposed) is emitted as it is.
    pub(super) fn dot_general(
        &mut self,
        l: &str,
        lt: &TensorType,
        r: &str,
        rt: &TensorType,
        dd: &DotDims,
        ot: &TensorType,
    ) -> String {
        let d = ot.dtype;
        let acc = if d.is_half() { DType::F32 } else { d };
        let free = |t: &TensorType, batch: &[usize], contract: &[usize]| -> Vec<usize> {
            (0..t.shape.len())
                .filter(|x| !batch.contains(x) && !contract.contains(x))
                .collect()
        };
        let (lf, rf) = (
            free(lt, &dd.lhs_batch, &dd.lhs_contract),
            free(rt, &dd.rhs_batch, &dd.rhs_contract),
        );
        let leading = |b: &[usize]| b.iter().enumerate().all(|(i, &x)| i == x);
        let as_is = leading(&dd.lhs_batch)
            && leading(&dd.rhs_batch)
            && dd.lhs_contract.len() <= 1
            && lf.len() <= 1
            && rf.len() <= 1;
        let res = if as_is {
            self.op(
                "dot_general",
                &[l, r],
                &dot_attrs(dd, d),
                &[tty(lt), tty(rt)],
                &tensor_type(&ot.shape, acc),
            )
        } else {
            let size = |t: &TensorType, dims: &[usize]| dims.iter().map(|&x| t.shape[x]).product();
            let nb = dd.lhs_batch.len();
            let mut bshape: Vec<usize> = dd.lhs_batch.iter().map(|&x| lt.shape[x]).collect();
            let (m, k, n) = (size(lt, &lf), size(lt, &dd.lhs_contract), size(rt, &rf));
            let lhs = self.permute_reshape(
                l,
                lt,
                &[&dd.lhs_batch[..], &lf, &dd.lhs_contract].concat(),
                &[&bshape[..], &[m, k]].concat(),
            );
            let rhs = self.permute_reshape(
                r,
                rt,
                &[&dd.rhs_batch[..], &dd.rhs_contract, &rf].concat(),
                &[&bshape[..], &[k, n]].concat(),
            );
            let canon = DotDims {
                lhs_batch: (0..nb).collect(),
                rhs_batch: (0..nb).collect(),
                lhs_contract: vec![nb + 1],
                rhs_contract: vec![nb],
            };
            let lt3 = TensorType::new([&bshape[..], &[m, k]].concat(), d);
            let rt3 = TensorType::new([&bshape[..], &[k, n]].concat(), d);
            bshape.extend([m, n]);
            let y = self.op(
                "dot_general",
                &[&lhs, &rhs],
                &dot_attrs(&canon, d),
                &[tty(&lt3), tty(&rt3)],
                &tensor_type(&bshape, acc),
            );
            self.op(
                "reshape",
                &[&y],
                "",
                &[tensor_type(&bshape, acc)],
                &tensor_type(&ot.shape, acc),
            )
        };
        if acc != d {
            self.convert(&res, &ot.shape, acc, d)
        } else {
            res
        }
    }

    /// `v` (of type `t`) transposed by `perm` (where it is not the identity), then
    /// reshaped to `shape` (where that differs).
    fn permute_reshape(
        &mut self,
        v: &str,
        t: &TensorType,
        perm: &[usize],
        shape: &[usize],
    ) -> String {
        let mut v = v.to_string();
        let permuted: Vec<usize> = perm.iter().map(|&x| t.shape[x]).collect();
        if perm.iter().enumerate().any(|(i, &x)| i != x) {
            v = self.op(
                "transpose",
                &[&v],
                &format!("permutation = {}", i64_array(perm)),
                &[tty(t)],
                &tensor_type(&permuted, t.dtype),
            );
        }
        if permuted != shape {
            v = self.op(
                "reshape",
                &[&v],
                "",
                &[tensor_type(&permuted, t.dtype)],
                &tensor_type(shape, t.dtype),
            );
        }
        v
    }
}
