//! Host model of sample_step.ptx (its header has the algorithm): the same block of 256
//! threads over contiguous chunks, thread 0's sequential sums of the partials, radix select,
//! bisection and the tie walk, the same f64 exp (bit-built scale, the same Horner constants),
//! so that plan tests against the cpu executor check the lowering and the algorithm, not the
//! PTX instructions (no GPU has run those).

#![allow(clippy::unwrap_used)]

use crate::emulate::Mem;
use std::collections::HashMap;

const THREADS: usize = 256;
const NEG_INF_BITS: u32 = 0xFF80_0000;

/// 1/13!, 1/12!, .., 1/2!, 1/1!, 1/0! as in the PTX.
const HORNER: [u64; 14] = [
    0x3DE6124613A86D09,
    0x3E21EED8EFF8D898,
    0x3E5AE64567F544E4,
    0x3E927E4FB7789F5C,
    0x3EC71DE3A556C734,
    0x3EFA01A01A01A01A,
    0x3F2A01A01A01A01A,
    0x3F56C16C16C16C17,
    0x3F81111111111111,
    0x3FA5555555555555,
    0x3FC5555555555555,
    0x3FE0000000000000,
    0x3FF0000000000000,
    0x3FF0000000000000,
];

fn exp64(x: f64) -> f64 {
    if !(x > -745.2) {
        return 0.0;
    }
    if x == 0.0 {
        return 1.0;
    }
    let k = (x * f64::from_bits(0x3FF71547652B82FE) + 0.5).floor();
    let r = (x - k * f64::from_bits(0x3FE62E42FEE00000)) - k * f64::from_bits(0x3DEA39EF35793C76);
    let mut q = f64::from_bits(HORNER[0]);
    for &c in &HORNER[1..] {
        q = q * r + f64::from_bits(c);
    }
    let ki = k as i32;
    let (k1, k2) = (ki / 2, ki - ki / 2);
    let s = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
    q * s(k1) * s(k2)
}

fn key_of(bits: u32, i: usize, mask: usize, ban: u32) -> u32 {
    let mut b = if i == mask || i as u32 == ban {
        NEG_INF_BITS
    } else {
        bits
    };
    if b == 0x8000_0000 {
        b = 0;
    }
    if b >= 0x8000_0000 {
        !b
    } else {
        b | 0x8000_0000
    }
}

fn val_of(key: u32) -> f64 {
    let b = if key >= 0x8000_0000 {
        key & 0x7FFF_FFFF
    } else {
        !key
    };
    f32::from_bits(b) as f64
}

/// Thread 0's sum of the per-thread partials, and each thread's exclusive prefix.
fn scan(parts: &[f64]) -> (f64, Vec<f64>) {
    let mut acc = 0.0;
    let pre = parts
        .iter()
        .map(|&s| {
            let p = acc;
            acc += s;
            p
        })
        .collect();
    (acc, pre)
}

pub fn sample_step(m: &mut Mem, a: &HashMap<&str, u64>) {
    let (rows, v, mask) = (a["rows"] as usize, a["vocab"] as usize, a["mask"] as usize);
    let f = |n: &str| f64::from_bits(a[n]);
    let h = |n: &str| f32::from_bits(a[n] as u32) as f64;
    let (anc, temp, topp, at, as_) = (a["mode"] == 1, f("temp"), f("topp"), f("a_t"), f("a_s"));
    let (pit, pis) = ([h("pit0"), h("pit1")], [h("pis0"), h("pis1")]);
    let pi = |p: &[f64; 2], k: usize| p[usize::from(k == mask)];
    let (topk, usep0) = (a["topk"] as u32, a["usep"] == 1);
    let c = v.div_ceil(THREADS);
    let chunk = |t: usize| (t * c).min(v)..(t * c + c).min(v);
    for row in 0..rows {
        let rp = a["ri"] + 16 * row as u64;
        let (z, ban) = (m.rd(rp, 4) as usize, m.rd(rp + 4, 4) as u32);
        let (uhi, ulo) = (m.rd(rp + 8, 4) as u32, m.rd(rp + 12, 4) as u32);
        let u = (uhi as f64 * 67108864.0 + ulo as f64) * f64::from_bits(0x3CA0000000000000);
        let keys: Vec<u32> = (0..v)
            .map(|i| {
                let bits = m.rd(a["lg"] + 4 * (row * v + i) as u64, 4) as u32;
                key_of(bits, i, mask, ban)
            })
            .collect();
        let ats = at / as_;
        let bpz = (1.0 - at) * pi(&pit, z) - ats * (1.0 - as_) * pi(&pis, z);
        let (tok, score) = if anc && bpz == 0.0 {
            (z as u32, 0.0)
        } else {
            let oneh = temp == 0.0;
            let usep = usep0 && !oneh;
            // 1. the maximum and its first index
            let per: Vec<(u32, u32)> = (0..THREADS)
                .map(|t| {
                    let (mut km, mut im) = (0u32, u32::MAX);
                    for i in chunk(t) {
                        if keys[i] > km || im == u32::MAX {
                            (km, im) = (keys[i], i as u32);
                        }
                    }
                    (km, im)
                })
                .collect();
            let kmax = per.iter().map(|p| p.0).max().unwrap();
            let imax = per
                .iter()
                .map(|&(k, i)| if k == kmax { i } else { u32::MAX })
                .min()
                .unwrap() as usize;
            let m1 = val_of(kmax);
            let mm = m1 / temp;
            let expof = |k: u32| exp64(val_of(k) / temp - mm);
            // 2. top-k by radix select
            let mut tk = 0u32;
            if topk > 0 && !oneh {
                let (mut pre, mut want) = (0u32, topk);
                for d in 0..4 {
                    let sh = 24 - 8 * d;
                    let mut hist = [0u32; 256];
                    for &k in &keys {
                        if d == 0 || (k >> (sh + 8)) == (pre >> (sh + 8)) {
                            hist[((k >> sh) & 255) as usize] += 1;
                        }
                    }
                    let (mut acc, mut b) = (0u32, 255usize);
                    while !(acc + hist[b] >= want || b == 0) {
                        acc += hist[b];
                        b -= 1;
                    }
                    pre |= (b as u32) << sh;
                    want -= acc;
                }
                tk = pre;
            }
            // 3. the top-k softmax's sum
            let part = |g: &dyn Fn(usize) -> f64| -> Vec<f64> {
                (0..THREADS)
                    .map(|t| chunk(t).fold(0.0, |s, i| s + g(i)))
                    .collect()
            };
            let zk = if oneh {
                0.0
            } else {
                scan(&part(&|i| if keys[i] >= tk { expof(keys[i]) } else { 0.0 })).0
            };
            // 4. top-p: the boundary key and how many of its ties stay
            let (mut kstar, mut tieb, mut nkeep) = (0u32, vec![0u32; THREADS], u32::MAX);
            if usep {
                let above = |k: u32| {
                    scan(&part(&|i| {
                        if keys[i] >= tk && keys[i] > k {
                            expof(keys[i]) / zk
                        } else {
                            0.0
                        }
                    }))
                    .0
                };
                let (mut lo, mut hi) = (0u32, kmax);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if above(mid) <= topp {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                kstar = lo;
                let g = above(kstar);
                let ties = part(&|i| f64::from(keys[i] >= tk && keys[i] == kstar));
                let (nt, pre) = scan(&ties);
                tieb = pre.iter().map(|&p| p as u32).collect();
                let q = expof(kstar) / zk;
                let (mut cum, mut j) = (g, 0u32);
                while j < nt as u32 && !((j > 0 || g > 0.0) && cum > topp) {
                    cum += q;
                    j += 1;
                }
                nkeep = j.max(1);
            }
            // 5./6. the kept set's numerators (tie ranks walked per chunk)
            let e_of = |t: usize| -> Vec<f64> {
                let mut rank = tieb[t];
                chunk(t)
                    .map(|i| {
                        let k = keys[i];
                        let tie = usep && k >= tk && k == kstar;
                        let keep = k >= tk && (!usep || k > kstar || (tie && rank < nkeep));
                        let e = if oneh {
                            f64::from(u8::from(i == imax))
                        } else if keep {
                            expof(k)
                        } else {
                            0.0
                        };
                        rank += u32::from(tie);
                        e
                    })
                    .collect()
            };
            let es: Vec<Vec<f64>> = (0..THREADS).map(e_of).collect();
            let zs = scan(&es.iter().map(|e| e.iter().sum::<f64>()).collect::<Vec<_>>()).0;
            let ez = chunk(z / c.max(1))
                .zip(&es[z / c.max(1)])
                .find(|(i, _)| *i == z)
                .map_or(0.0, |(_, &e)| e);
            let xz = ez / zs;
            let qtz = at * xz + (1.0 - at) * pi(&pit, z);
            let weight = |i: usize, e: f64| {
                let xh = e / zs;
                if !anc {
                    return xh;
                }
                let qs = as_ * xh + (1.0 - as_) * pi(&pis, i);
                let qts = if i == z { ats } else { 0.0 } + bpz;
                let w = qs * qts / qtz;
                if w > 0.0 {
                    w
                } else {
                    0.0
                }
            };
            let sums: Vec<f64> = (0..THREADS)
                .map(|t| {
                    chunk(t)
                        .zip(&es[t])
                        .fold(0.0, |s, (i, &e)| s + weight(i, e))
                })
                .collect();
            let (tot, pre) = scan(&sums);
            let (mut hit, mut last) = (u32::MAX, 0u32);
            for t in 0..THREADS {
                let mut uu = u * tot - pre[t];
                for (i, &e) in chunk(t).zip(&es[t]) {
                    let w = weight(i, e);
                    if w > 0.0 {
                        last = last.max(i as u32 + 1);
                    }
                    if uu < w && (w > 0.0 || !anc) {
                        hit = hit.min(i as u32);
                        break;
                    }
                    uu -= w;
                }
            }
            let tok = if hit != u32::MAX {
                hit
            } else if last > 0 {
                last - 1
            } else if anc {
                z as u32
            } else {
                0
            };
            // 7. the adaptive score over the untempered softmax
            let score = if anc {
                0.0
            } else {
                let z1 = scan(&part(&|i| exp64(val_of(keys[i]) - m1))).0;
                1.0 / z1 - exp64(val_of(keys[z]) - m1) / z1
            };
            (tok, score)
        };
        let o = a["out"] + 12 * row as u64;
        let bits = score.to_bits();
        m.wr(o, 4, tok as u64);
        m.wr(o + 4, 4, bits >> 32);
        m.wr(o + 8, 4, bits & 0xFFFF_FFFF);
    }
}
