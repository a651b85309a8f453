//! Gather and scatter-add: indices of any integer dtype widened to i64, operands matched
//! to typed slices for `gidd_kernels::index` (which clamps out-of-range indices).

use super::elem::{with_dtype, Arg, Elem};
use crate::host::Data;
use gidd_kernels::index as ki;

fn indices(idx: Arg, n: usize) -> Vec<i64> {
    match idx {
        Arg::Data(d) => (0..n).map(|i| d.get_f64(i) as i64).collect(),
        Arg::Splat(x, _) => vec![x as i64; n],
    }
}

/// x [pre, len, post] gathered by idx [m] -> out [pre, m, post].
pub fn gather(x: Arg, xs: &[usize], axis: usize, idx: Arg, n_idx: usize, out: &mut Data) {
    let ids = indices(idx, n_idx);
    let nx: usize = xs.iter().product();
    let (pre, _, post) = ki::split_at_axis(xs, axis);
    with_dtype!(out.dtype(), T, {
        let o = &mut T::vec_mut(out).expect("slot dtype")[..pre * n_idx * post];
        ki::gather(&x.slice::<T>(nx), xs, axis, &ids, o);
    })
}

/// Zeros of `shape` [pre, len, post] plus updates [pre, m, post] added at idx along `axis`.
pub fn scatter_add(upd: Arg, shape: &[usize], axis: usize, idx: Arg, n_idx: usize, out: &mut Data) {
    let ids = indices(idx, n_idx);
    let (pre, _, post) = ki::split_at_axis(shape, axis);
    let m = pre * n_idx * post;
    match out {
        Data::F32(o) => ki::scatter_add_f32(&upd.slice::<f32>(m), shape, axis, &ids, o),
        o => {
            // Rare (bf16/int updates): accumulated in f64 through the generic path.
            let u: Vec<f64> = match upd {
                Arg::Data(d) => (0..m).map(|i| d.get_f64(i)).collect(),
                Arg::Splat(x, _) => vec![x; m],
            };
            with_dtype!(o.dtype(), T, {
                ki::scatter_add_wide(&u, shape, axis, &ids, T::vec_mut(o).expect("slot dtype"));
            })
        }
    }
}
