//! The register-blocked microkernel every attention matmul runs on, and helpers.
//!
//! One shape serves all five products: `acc[r][v] += sum_t vec(t)[v] * bc(r, t)` where
//! `vec(t)` is `NV` consecutive SIMD vectors at `vp + t * vs` and `bc(r, t)` is one f32
//! broadcast from `bp + r * brs + t * bts`. With queries in lanes (`vec` = a packed `q^T`,
//! `do^T` or `p^T` panel) it gives `s^T`, `dp^T` and `o^T`; with the head dimension in lanes
//! (`vec` = padded rows of `do`, `q` or `k`) it gives `dv`, `dk` and `dq`.

use crate::simd::vector::Simd;

/// `acc[r][v] += sum_{t < tn} load(vp + t vs + v LANES) * bp[r brs + t bts]`.
#[inline(always)]
pub(super) unsafe fn mk<S: Simd, const NV: usize, const R: usize>(
    vp: *const f32,
    vs: usize,
    bp: *const f32,
    brs: usize,
    bts: usize,
    tn: usize,
    acc: &mut [[S::V; NV]; R],
) {
    let l = S::LANES;
    let mut a = [S::splat(0.0); NV];
    for t in 0..tn {
        let (vt, bt) = (vp.add(t * vs), bp.add(t * bts));
        for (v, av) in a.iter_mut().enumerate() {
            *av = S::load(vt.add(v * l));
        }
        for (r, accr) in acc.iter_mut().enumerate() {
            let b = S::splat(*bt.add(r * brs));
            for v in 0..NV {
                accr[v] = S::fma(a[v], b, accr[v]);
            }
        }
    }
}

/// Runs `$body` with `const $R: usize` equal to the runtime `$r` (1..=6).
macro_rules! with_r {
    ($r:expr, $R:ident => $body:expr) => {
        match $r {
            1 => {
                const $R: usize = 1;
                $body
            }
            2 => {
                const $R: usize = 2;
                $body
            }
            3 => {
                const $R: usize = 3;
                $body
            }
            4 => {
                const $R: usize = 4;
                $body
            }
            5 => {
                const $R: usize = 5;
                $body
            }
            _ => {
                const $R: usize = 6;
                $body
            }
        }
    };
}
pub(super) use with_r;

/// Runs `$body` with `const $N: usize` equal to the runtime `$n` (1..=4).
macro_rules! with_nv {
    ($n:expr, $N:ident => $body:expr) => {
        match $n {
            1 => {
                const $N: usize = 1;
                $body
            }
            2 => {
                const $N: usize = 2;
                $body
            }
            3 => {
                const $N: usize = 3;
                $body
            }
            _ => {
                const $N: usize = 4;
                $body
            }
        }
    };
}
pub(super) use with_nv;

/// A zeroed f32 buffer aligned to 64 bytes (whole SIMD vectors never straddle cache lines).
pub(super) struct Buf(Vec<Align64>);

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Align64([f32; 16]);

impl Buf {
    pub(super) fn new(n: usize) -> Self {
        Buf(vec![Align64([0.0; 16]); n.div_ceil(16)])
    }
    pub(super) fn ptr(&mut self) -> *mut f32 {
        self.0.as_mut_ptr() as *mut f32
    }
}

/// Vector `v` of an NV-vector accumulator row stored at `p` (stride LANES).
#[inline(always)]
pub(super) unsafe fn load_row<S: Simd, const NV: usize>(p: *const f32) -> [S::V; NV] {
    let mut a = [S::splat(0.0); NV];
    for (v, x) in a.iter_mut().enumerate() {
        *x = S::load(p.add(v * S::LANES));
    }
    a
}

#[inline(always)]
pub(super) unsafe fn store_row<S: Simd, const NV: usize>(p: *mut f32, a: &[S::V; NV]) {
    for (v, x) in a.iter().enumerate() {
        S::store(p.add(v * S::LANES), *x);
    }
}
