//! The Hopper GEMM's plans, run through the host model of its kernel (crate::emulate_hopper)
//! and compared with the cpu executor: every transpose, batched and shared operands, ragged
//! m, n and k (TMA's zero fill), several CTAs and more k tiles than stages; and the choice
//! between it and the sm_80 kernels.

#![allow(clippy::unwrap_used)]

use crate::plan::Step;
use crate::tests::{check_on, rand_f32};
use gidd_engine::op::DotDims;
use gidd_engine::{DType, Graph};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn dd(lb: &[usize], rb: &[usize], lc: &[usize], rc: &[usize]) -> DotDims {
    DotDims {
        lhs_batch: lb.to_vec(),
        rhs_batch: rb.to_vec(),
        lhs_contract: lc.to_vec(),
        rhs_contract: rc.to_vec(),
    }
}

fn entries(pl: &crate::plan::Plan) -> Vec<&'static str> {
    pl.steps
        .iter()
        .filter_map(|s| match s {
            Step::Launch(l) if l.entry.starts_with("gemm_") => Some(l.entry),
            _ => None,
        })
        .collect()
}

/// Random shapes: the contiguous extents multiples of 8 (16-byte TMA strides), the others
/// odd; each of the four layouts, plain and batched (with B shared or batched).
#[test]
fn wgmma_plans_match_the_cpu_on_odd_shapes() {
    let mut r = StdRng::seed_from_u64(13);
    let dt = DType::BF16;
    for round in 0..4 {
        let odd = |r: &mut StdRng, lo: usize, hi: usize| r.random_range(lo..hi) | 1;
        let m8 = 8 * r.random_range(1..34);
        let n8 = 8 * r.random_range(1..34);
        let k8 = 8 * r.random_range(1..90);
        let (mo, no, ko) = (
            odd(&mut r, 1, 260),
            odd(&mut r, 1, 260),
            odd(&mut r, 1, 700),
        );
        let g = Graph::new();
        // A [m, k] k-contiguous (m odd), B [n, k] (n odd): _kk
        let a = g.input("a", &[mo, k8], dt);
        let bt = g.input("bt", &[no, k8], dt);
        // A [k, m] m-contiguous (k odd), B [k, n] n-contiguous: _mm
        let at = g.input("at", &[ko, m8], dt);
        let b = g.input("b", &[ko, n8], dt);
        // _km: A [m, k] with B [k, n]; _mk: A [k, m] with B [n, k]
        let b2 = g.input("b2", &[k8, n8], dt);
        let at2 = g.input("at2", &[k8, m8], dt);
        let ab = g.input("ab", &[3, mo, k8], dt);
        let outs = vec![
            a.dot_general(&bt, dd(&[], &[], &[1], &[1])).unwrap(),
            at.dot_general(&b, dd(&[], &[], &[0], &[0])).unwrap(),
            a.matmul(&b2).unwrap(),
            at2.dot_general(&bt, dd(&[], &[], &[0], &[1])).unwrap(),
            ab.matmul(&b2).unwrap(),
            ab.dot_general(&ab, dd(&[0], &[0], &[2], &[2])).unwrap(),
        ];
        let mut t = |n: &'static str, s: &[usize]| (n, rand_f32(&mut r, s, -1.0, 1.0).convert(dt));
        let inputs = [
            t("a", &[mo, k8]),
            t("bt", &[no, k8]),
            t("at", &[ko, m8]),
            t("b", &[ko, n8]),
            t("b2", &[k8, n8]),
            t("at2", &[k8, m8]),
            t("ab", &[3, mo, k8]),
        ];
        let case = format!("wgmma round {round}: m {mo}/{m8} n {no}/{n8} k {ko}/{k8}");
        let pl = check_on(&case, &outs, &inputs, 4e-3, &|_, _| false, true);
        let want = [
            "gemm_wgmma_bf16_kk",
            "gemm_wgmma_bf16_mm",
            "gemm_wgmma_bf16_km",
            "gemm_wgmma_bf16_mk",
            "gemm_wgmma_bf16_km",
            "gemm_wgmma_bf16_kk",
        ];
        assert_eq!(entries(&pl), want, "{case}");
    }
}

/// Layouts TMA cannot read in place (a row stride of an odd number of bf16) fall back to
/// the sm_80 kernels, and f32 never runs on wgmma; without `hopper` nothing does.
#[test]
fn wgmma_falls_back_where_tma_cannot_read() {
    let mut r = StdRng::seed_from_u64(14);
    let g = Graph::new();
    let (m, n, k) = (40, 24, 13);
    let a = g.input("a", &[m, k], DType::BF16);
    let b = g.input("b", &[k, n], DType::BF16);
    let c = g.input("c", &[k, m], DType::BF16);
    let f = g.input("f", &[m, 16], DType::F32);
    let w = g.input("w", &[16, n], DType::F32);
    let outs = vec![
        a.matmul(&b).unwrap(),
        c.dot_general(&b, dd(&[], &[], &[0], &[0])).unwrap(),
        f.matmul(&w).unwrap(),
    ];
    let inputs = [
        (
            "a",
            rand_f32(&mut r, &[m, k], -1.0, 1.0).convert(DType::BF16),
        ),
        (
            "b",
            rand_f32(&mut r, &[k, n], -1.0, 1.0).convert(DType::BF16),
        ),
        (
            "c",
            rand_f32(&mut r, &[k, m], -1.0, 1.0).convert(DType::BF16),
        ),
        ("f", rand_f32(&mut r, &[m, 16], -1.0, 1.0)),
        ("w", rand_f32(&mut r, &[16, n], -1.0, 1.0)),
    ];
    let pl = check_on("fallbacks", &outs, &inputs, 4e-3, &|_, _| false, true);
    // A [40, 13]: a 26-byte row stride: SIMT; A [13, 40] and B [13, 24] are TMA-readable
    assert_eq!(
        entries(&pl),
        ["gemm_simt", "gemm_wgmma_bf16_mm", "gemm_simt"]
    );
    let pl = check_on("no hopper", &outs, &inputs, 4e-3, &|_, _| false, false);
    assert!(entries(&pl).iter().all(|e| !e.starts_with("gemm_wgmma")));
}
