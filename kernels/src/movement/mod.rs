//! Data movement: broadcast_in_dim, transpose, slice (all one strided copy) and concatenate.
//!
//! $$y_i = x_{o + \sum_d i_d s_d}$$
//! over the output's row-major multi-index $i$, with source strides $s$ (0 along broadcast
//! dims) and an offset $o$ (a slice's start).
//!
//! # Shapes
//! Every buffer is row-major. `broadcast_in_dim`: source dim `k` maps to output dim
//! `dims[k]` and has the output's size or 1. `transpose`: output dim `k` is source dim
//! `perm[k]`. `slice`: `start[d] <= limit[d] <= shape[d]`. `concatenate`: parts equal except
//! along `dim`. `out` is at least the output's element count long.
//!
//! # Strategy
//! [`cpu`]: one copy per output row (the last dim): `copy_from_slice` when the source row is
//! contiguous, a fill when it is broadcast, a strided gather otherwise; rows split over rayon
//! once the output reaches 64K elements. Pure copies: bit patterns (NaN payloads, -0) survive.
//! [`reference`](mod@reference): the source index of every output element from its
//! multi-index.

pub mod cpu;
pub mod reference;

#[cfg(test)]
mod tests;

pub use cpu::{broadcast_in_dim, concatenate, slice, strided_copy, transpose};
