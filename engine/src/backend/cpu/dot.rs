//! dot_general on the CPU: bring operands to [batch, m, k] x [batch, k, n]
//! (absorbing plain transposes into the GEMM's flags, copying otherwise) and call the packed GEMM.

use super::elem::{Arg, Elem};
use crate::host::Data;
use crate::op::DotDims;
use gidd_kernels::element::Half;
use gidd_kernels::elementwise::round_to_half;
use gidd_kernels::matmul::{gemm_bf16_to_bf16, gemm_f16, gemm_f32, gemm_f64, GemmShape};
use gidd_kernels::movement::transpose;
use std::borrow::Cow;

fn is_identity(p: &[usize]) -> bool {
    p.iter().enumerate().all(|(i, &d)| i == d)
}

/// An operand as a [batch, rows, cols] matrix stack, with `trans` set when
/// it is stored as [batch, cols, rows].
fn canonical<'a, T: Elem>(
    x: Cow<'a, [T]>,
    shape: &[usize],
    batch: &[usize],
    first: &[usize],
    second: &[usize],
) -> (Cow<'a, [T]>, bool) {
    let order: Vec<usize> = batch.iter().chain(first).chain(second).copied().collect();
    if is_identity(&order) {
        return (x, false);
    }
    let swapped: Vec<usize> = batch.iter().chain(second).chain(first).copied().collect();
    if is_identity(&swapped) {
        return (x, true);
    }
    let mut out = vec![T::default(); x.len()];
    transpose(&mut out, &x, shape, &order);
    (Cow::Owned(out), false)
}

/// A GEMM whose output has its operands' element type (f32, f64; bf16, rounded in the GEMM).
#[allow(clippy::too_many_arguments)]
fn same_type_gemm<T: Elem>(
    dd: &DotDims,
    l: Arg,
    ls: &[usize],
    r: Arg,
    rs: &[usize],
    lf: &[usize],
    rf: &[usize],
    shape: GemmShape,
    o: &mut [T],
    gemm: fn(&GemmShape, &[T], &[T], &mut [T]),
) {
    let (nl, nr) = (ls.iter().product::<usize>(), rs.iter().product::<usize>());
    let (a, ta) = canonical(l.slice::<T>(nl), ls, &dd.lhs_batch, lf, &dd.lhs_contract);
    let (b, tb) = canonical(r.slice::<T>(nr), rs, &dd.rhs_batch, &dd.rhs_contract, rf);
    let s = GemmShape {
        trans_a: ta,
        trans_b: tb,
        ..shape
    };
    gemm(&s, &a, &b, o);
}

/// A GEMM over half operands (f16): f32 accumulation into a per-thread f32 staging
/// buffer, rounded once to the output's type.
#[allow(clippy::too_many_arguments)]
fn half_gemm<H: Elem + Half>(
    dd: &DotDims,
    l: Arg,
    ls: &[usize],
    r: Arg,
    rs: &[usize],
    lf: &[usize],
    rf: &[usize],
    shape: GemmShape,
    o: &mut [H],
    gemm: fn(&GemmShape, &[H], &[H], &mut [f32]),
) {
    let (nl, nr) = (ls.iter().product::<usize>(), rs.iter().product::<usize>());
    let (a, ta) = canonical(l.slice::<H>(nl), ls, &dd.lhs_batch, lf, &dd.lhs_contract);
    let (b, tb) = canonical(r.slice::<H>(nr), rs, &dd.rhs_batch, &dd.rhs_contract, rf);
    // f32 staging for the GEMM's output, kept per thread: a fresh multi-MiB
    // allocation every call is mostly page faults.
    thread_local! {
        static STAGE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let n_out = o.len();
    let mut c = STAGE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if c.len() < n_out {
        c.resize(n_out, 0.0);
    }
    let c_out = &mut c[..n_out];
    let s = GemmShape {
        trans_a: ta,
        trans_b: tb,
        ..shape
    };
    gemm(&s, &a, &b, c_out);
    // the rounding is a pass over the whole output, split across threads too
    round_to_half(c_out, o);
    STAGE.with(|s| *s.borrow_mut() = c);
}

pub fn dot_general(
    dd: &DotDims,
    l: Arg,
    ls: &[usize],
    r: Arg,
    rs: &[usize],
    out: &mut Data,
    n_out: usize,
) {
    let lf: Vec<usize> = (0..ls.len())
        .filter(|d| !dd.lhs_batch.contains(d) && !dd.lhs_contract.contains(d))
        .collect();
    let rf: Vec<usize> = (0..rs.len())
        .filter(|d| !dd.rhs_batch.contains(d) && !dd.rhs_contract.contains(d))
        .collect();
    let prod = |s: &[usize], ds: &[usize]| ds.iter().map(|&d| s[d]).product::<usize>();
    let shape = GemmShape {
        batch: prod(ls, &dd.lhs_batch),
        m: prod(ls, &lf),
        n: prod(rs, &rf),
        k: prod(ls, &dd.lhs_contract),
        trans_a: false,
        trans_b: false,
        b_broadcast: false,
    };
    match out {
        Data::F32(o) => {
            same_type_gemm(dd, l, ls, r, rs, &lf, &rf, shape, &mut o[..n_out], gemm_f32)
        }
        Data::F64(o) => {
            same_type_gemm(dd, l, ls, r, rs, &lf, &rf, shape, &mut o[..n_out], gemm_f64)
        }
        // rounded to bf16 by the GEMM itself (bit for bit the f32 product rounded): no f32
        // matrix written and read back where the depth is one cache block
        Data::BF16(o) => same_type_gemm(
            dd,
            l,
            ls,
            r,
            rs,
            &lf,
            &rf,
            shape,
            &mut o[..n_out],
            gemm_bf16_to_bf16,
        ),
        Data::F16(o) => half_gemm(dd, l, ls, r, rs, &lf, &rf, shape, &mut o[..n_out], gemm_f16),
        _ => unreachable!("infer admits only float dot_general"),
    }
}
