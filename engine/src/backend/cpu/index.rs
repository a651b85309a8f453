//! Gather and scatter-add along one axis. Out-of-range indices are clamped
//! (as StableHLO gather does), so a bad id never reads outside a buffer.

use super::elem::{with_dtype, Arg, Elem};
use crate::host::Data;

fn indices(idx: Arg, n: usize) -> Vec<i64> {
    match idx {
        Arg::Data(d) => (0..n).map(|i| d.get_f64(i) as i64).collect(),
        Arg::Splat(x, _) => vec![x as i64; n],
    }
}

/// x [pre, len, post] gathered by idx [m] -> out [pre, m, post].
pub fn gather(x: Arg, xs: &[usize], axis: usize, idx: Arg, n_idx: usize, out: &mut Data) {
    let pre: usize = xs[..axis].iter().product();
    let len = xs[axis];
    let post: usize = xs[axis + 1..].iter().product();
    let ids = indices(idx, n_idx);
    let nx: usize = xs.iter().product();
    with_dtype!(out.dtype(), T, {
        let src = x.slice::<T>(nx);
        let o = T::vec_mut(out).expect("slot dtype");
        for p in 0..pre {
            for (j, &id) in ids.iter().enumerate() {
                let id = id.clamp(0, len as i64 - 1) as usize;
                let s = (p * len + id) * post;
                let d = (p * n_idx + j) * post;
                o[d..d + post].copy_from_slice(&src[s..s + post]);
            }
        }
    })
}

/// Zeros of `shape` [pre, len, post] plus updates [pre, m, post] added at idx along `axis`.
pub fn scatter_add(upd: Arg, shape: &[usize], axis: usize, idx: Arg, n_idx: usize, out: &mut Data) {
    let pre: usize = shape[..axis].iter().product();
    let len = shape[axis];
    let post: usize = shape[axis + 1..].iter().product();
    let ids = indices(idx, n_idx);
    let n: usize = shape.iter().product();
    match out {
        Data::F32(o) => {
            let u = upd.slice::<f32>(pre * n_idx * post);
            let o = &mut o[..n];
            o.fill(0.0);
            for p in 0..pre {
                for (j, &id) in ids.iter().enumerate() {
                    let id = id.clamp(0, len as i64 - 1) as usize;
                    let d = (p * len + id) * post;
                    let s = (p * n_idx + j) * post;
                    o[d..d + post]
                        .iter_mut()
                        .zip(&u[s..s + post])
                        .for_each(|(y, &v)| *y += v);
                }
            }
        }
        other => {
            // Rare (bf16/int updates): accumulate in f64 through the generic path.
            let mut acc = vec![0f64; n];
            let u = match upd {
                Arg::Data(d) => (0..pre * n_idx * post)
                    .map(|i| d.get_f64(i))
                    .collect::<Vec<_>>(),
                Arg::Splat(x, _) => vec![x; pre * n_idx * post],
            };
            for p in 0..pre {
                for (j, &id) in ids.iter().enumerate() {
                    let id = id.clamp(0, len as i64 - 1) as usize;
                    for q in 0..post {
                        acc[(p * len + id) * post + q] += u[(p * n_idx + j) * post + q];
                    }
                }
            }
            with_dtype!(other.dtype(), T, {
                let o = T::vec_mut(other).expect("slot dtype");
                o[..n]
                    .iter_mut()
                    .zip(&acc)
                    .for_each(|(y, &v)| *y = T::from_f64(v));
            })
        }
    }
}
