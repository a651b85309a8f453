//! User-facing tensor methods. Each validates through `infer` and records ops;
//! composites are written here as functions of primitives and fused ops.

mod elementwise;
mod index;
mod movement;
mod nn;
mod random;
mod reduce;

pub use nn::{attention, attention_with_bias_slot, diffusion_kl};
pub use random::{bernoulli, philox4x32, randint, uniform_f32, uniform_rows, uniform_rows_at};

use crate::error::{Error, Result};

/// numpy-style broadcast of two shapes (right-aligned, size 1 stretches).
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(Error::shape(op, "shapes do not broadcast", &[a, b])),
        };
    }
    Ok(out)
}
