//! A host model of gemm_wgmma_sm90a.ptx's indexing and pipeline: per CTA, the producer's TMA
//! copies (stage, coordinates, boxes, zero fill, the 128-byte swizzle) and the consumers'
//! waits, wgmma descriptors (start, leading and stride byte offsets, the k16 steps), the
//! accumulator fragments and the epilogue's stores, as the PTX computes them, with the
//! mbarrier protocol run under random interleavings of the three warpgroups. A wgmma group
//! reads its stage at a random moment between its issue and its retirement (wait_group), so a
//! stage released too early, or a wrong parity, gives wrong numbers or a deadlock here. The
//! hardware facts it assumes (TMA box order, the swizzle, the descriptor and fragment layouts)
//! are from the PTX ISA; only a GPU can confirm them.

#![allow(clippy::unwrap_used)]

use crate::emulate::Mem;
use crate::hopper::{self, TmaSpec, BK, BM, BN, STAGES, STAGE_BYTES};
use crate::plan::{Arg, Launch, TENSOR_MAP_SLOTS};
use half::bf16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// The tests' stand-in for cuTensorMapEncodeTiled: the address and the spec in plain words.
pub(crate) fn encode(s: &TmaSpec, addr: u64) -> crate::error::Result<[u64; TENSOR_MAP_SLOTS]> {
    let mut w = [0u64; TENSOR_MAP_SLOTS];
    w[0] = addr;
    w[1..4].copy_from_slice(&s.dims);
    w[4..6].copy_from_slice(&s.strides);
    for (i, b) in s.boxes.iter().enumerate() {
        w[6 + i] = *b as u64;
    }
    Ok(w)
}

fn decode(w: &[u64]) -> (TmaSpec, u64) {
    let spec = TmaSpec {
        dims: [w[1], w[2], w[3]],
        strides: [w[4], w[5]],
        boxes: [w[6] as u32, w[7] as u32, w[8] as u32],
    };
    (spec, w[0])
}

/// The 128-byte swizzle of a shared-memory offset (1024-byte aligned base): the 16-byte chunk
/// index within a 128-byte row XORed with the row index within 8 rows.
pub(crate) fn swizzle(off: u32) -> u32 {
    off ^ (((off >> 7) & 7) << 4)
}

/// One TMA tile copy into `smem` at `dst`: box element (i0, i1, i2) from global coordinates
/// `c` + i, zero when out of range, at dst + ((i2 box1 + i1) box0 + i0) 2, swizzled.
pub(crate) fn tma_load(m: &mut Mem, map: &[u64], c: [u32; 3], smem: &mut [u8], dst: u32) -> u32 {
    let (s, addr) = decode(map);
    let [b0, b1, b2] = s.boxes;
    assert_eq!(b0 * 2, 128, "the 128-byte swizzle needs 128-byte box rows");
    for i2 in 0..b2 {
        for i1 in 0..b1 {
            for i0 in 0..b0 {
                let g = [c[0] + i0, c[1] + i1, c[2] + i2];
                let inside = (0..3).all(|d| (g[d] as u64) < s.dims[d]);
                let v = if inside {
                    let at = addr
                        + 2 * g[0] as u64
                        + g[1] as u64 * s.strides[0]
                        + g[2] as u64 * s.strides[1];
                    m.rd(at, 2) as u16
                } else {
                    0
                };
                let off = swizzle(dst + ((i2 * b1 + i1) * b0 + i0) * 2);
                smem[off as usize..off as usize + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    s.box_bytes()
}

/// Element (r, k) of the `rows` x 16 operand a wgmma descriptor names: K-major (`trans` 0)
/// rows of 128 bytes in groups of 8 at the stride byte offset; MN-major (1) 64-element runs
/// along r at the leading byte offset, k rows of 128 bytes in groups of 8 at the stride one.
pub(crate) fn desc_elem(smem: &[u8], desc: u64, trans: bool, r: u32, k: u32) -> f32 {
    assert_eq!(
        desc >> 62,
        1,
        "descriptor layout is not the 128-byte swizzle"
    );
    let start = ((desc & 0x3fff) << 4) as u32;
    let lbo = (((desc >> 16) & 0x3fff) << 4) as u32;
    let sbo = (((desc >> 32) & 0x3fff) << 4) as u32;
    let off = if trans {
        start + (r / 64) * lbo + (r % 64) * 2 + (k / 8) * sbo + (k % 8) * 128
    } else {
        start + (r / 8) * sbo + (r % 8) * 128 + k * 2
    };
    let o = swizzle(off) as usize;
    bf16::from_le_bytes([smem[o], smem[o + 1]]).to_f32()
}

/// An mbarrier: completed phases, arrivals and transaction bytes still expected.
#[derive(Clone, Copy)]
pub(crate) struct Bar {
    phase: u32,
    count: u32,
    pending: u32,
    tx: i64,
}

impl Bar {
    pub(crate) fn new(count: u32) -> Bar {
        Bar {
            phase: 0,
            count,
            pending: count,
            tx: 0,
        }
    }
    /// try_wait.parity: whether the phase of parity `p` has completed.
    pub(crate) fn passed(&self, p: u32) -> bool {
        self.phase & 1 != p
    }
    fn settle(&mut self) {
        assert!(self.tx >= 0, "more bytes arrived than expected");
        if self.pending == 0 && self.tx == 0 {
            self.phase += 1;
            self.pending = self.count;
        }
    }
    pub(crate) fn arrive(&mut self, expect_tx: i64) {
        assert!(self.pending > 0);
        self.pending -= 1;
        self.tx += expect_tx;
        self.settle();
    }
    pub(crate) fn complete_tx(&mut self, bytes: i64) {
        self.tx -= bytes;
        self.settle();
    }
}

/// A consumer warpgroup's state: its next k tile, its groups in flight (k tile, read yet),
/// its accumulators (thread x register).
struct Consumer {
    kt: u32,
    inflight: Vec<(u32, bool)>,
    acc: Vec<[f32; 64]>,
}

/// The CTA-wide constants the kernel derives from its arguments.
struct Cta<'a> {
    a_kc: bool,
    b_kc: bool,
    maps: [&'a [u64]; 2],
    kt_n: u32,
    m0: u32,
    n0: u32,
    ba: u32,
    bb: u32,
}

/// A wgmma group of warpgroup `c` on k tile `kt`: its 4 k16 steps' descriptors as the PTX
/// builds them, read from `smem`, accumulated into the fragments.
fn group(cta: &Cta, smem: &[u8], c: u32, kt: u32, acc: &mut [[f32; 64]]) {
    let s = kt % STAGES as u32;
    let sa = s << 15;
    let sb = sa + 16384;
    let ast = sa + (c << 13);
    let (da, oa) = if cta.a_kc {
        (hopper::DESC_K_MAJOR, hopper::KSTEP_K_MAJOR)
    } else {
        (hopper::DESC_MN_MAJOR, hopper::KSTEP_MN_MAJOR)
    };
    let (db, ob) = if cta.b_kc {
        (hopper::DESC_K_MAJOR, hopper::KSTEP_K_MAJOR)
    } else {
        (hopper::DESC_MN_MAJOR, hopper::KSTEP_MN_MAJOR)
    };
    for kk in 0..4 {
        let desc_a = ((((ast + kk * oa) & 0x3ffff) >> 4) as u64) | da;
        let desc_b = ((((sb + kk * ob) & 0x3ffff) >> 4) as u64) | db;
        let a: Vec<[f32; 16]> = (0..64)
            .map(|r| std::array::from_fn(|k| desc_elem(smem, desc_a, !cta.a_kc, r, k as u32)))
            .collect();
        let b: Vec<[f32; 16]> = (0..128)
            .map(|j| std::array::from_fn(|k| desc_elem(smem, desc_b, !cta.b_kc, j, k as u32)))
            .collect();
        for (t, regs) in acc.iter_mut().enumerate() {
            let (warp, lane) = (t as u32 / 32, t as u32 % 32);
            for (i, d) in regs.iter_mut().enumerate() {
                let i = i as u32;
                let row = 16 * warp + lane / 4 + 8 * ((i / 2) % 2);
                let col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
                for k in 0..16 {
                    *d = a[row as usize][k].mul_add(b[col as usize][k], *d);
                }
            }
        }
    }
}

/// A launch's slots by name: plain values, and the slot ranges of its tensor maps.
pub(crate) type Slots<'a> = (
    HashMap<&'a str, u64>,
    HashMap<&'a str, std::ops::Range<usize>>,
);

pub(crate) fn by_name<'a>(l: &'a Launch, slots: &[u64]) -> Slots<'a> {
    let mut a: HashMap<&str, u64> = HashMap::new();
    let mut maps: HashMap<&str, std::ops::Range<usize>> = HashMap::new();
    let mut at = 0;
    for (name, arg) in &l.args {
        if let Arg::TensorMap(..) = arg {
            maps.insert(name, at..at + TENSOR_MAP_SLOTS);
            at += TENSOR_MAP_SLOTS;
        } else {
            a.insert(name, slots[at]);
            at += 1;
        }
    }
    assert_eq!(at, slots.len());
    (a, maps)
}

/// Runs one gemm_wgmma_bf16_XY launch (slots resolved with [`encode`]) CTA by CTA.
pub(crate) fn gemm(m: &mut Mem, l: &Launch, slots: &[u64]) {
    let (a, maps) = by_name(l, slots);
    assert_eq!(l.block, hopper::THREADS);
    assert_eq!(l.smem, hopper::SMEM_BYTES);
    let suffix = l.entry.strip_prefix("gemm_wgmma_bf16_").unwrap().as_bytes();
    let (a_kc, b_kc) = (suffix[0] == b'k', suffix[1] == b'k');
    let (mm, nn, kk) = (a["m"] as u32, a["n"] as u32, a["k"] as u32);
    let mut rng = StdRng::seed_from_u64(mm as u64 * 31 + nn as u64 * 7 + kk as u64);
    for z in 0..l.grid[2] {
        for y in 0..l.grid[1] {
            for x in 0..l.grid[0] {
                let bz = a["b0"] as u32 + z;
                let cta = Cta {
                    a_kc,
                    b_kc,
                    maps: [
                        &slots[maps["tma_a[16]"].clone()],
                        &slots[maps["tma_b[16]"].clone()],
                    ],
                    kt_n: kk.div_ceil(64),
                    m0: y * BM as u32,
                    n0: x * BN as u32,
                    ba: bz * a["a_batched"] as u32,
                    bb: bz * a["b_batched"] as u32,
                };
                let acc = run_cta(m, &cta, &mut rng);
                // the epilogue: thread t of warpgroup c stores its quads
                let cbase = mm * nn * bz;
                for (c, regs) in acc.iter().enumerate() {
                    for (t, r) in regs.iter().enumerate() {
                        let (warp, lane) = (t as u32 / 32, t as u32 % 32);
                        let row = cta.m0 + 64 * c as u32 + 16 * warp + lane / 4;
                        let col0 = cta.n0 + 2 * (lane % 4);
                        for j in 0..16u32 {
                            for i in 0..4u32 {
                                let (rr, cc) = (row + 8 * (i >> 1), col0 + 8 * j + (i & 1));
                                if rr < mm && cc < nn {
                                    let v = r[(4 * j + i) as usize];
                                    let e = (cbase + rr * nn + cc) as u64;
                                    if a["out_bf16"] == 1 {
                                        m.wr(a["c"] + 2 * e, 2, bf16::from_f32(v).to_bits() as u64);
                                    } else {
                                        m.wr(a["c"] + 4 * e, 4, v.to_bits() as u64);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The producer and two consumers of one CTA under a random interleaving; returns the
/// consumers' accumulators.
fn run_cta(m: &mut Mem, cta: &Cta, rng: &mut StdRng) -> [Vec<[f32; 64]>; 2] {
    let mut smem = vec![0x5Au8; STAGES * STAGE_BYTES as usize];
    let mut full = [Bar::new(1); STAGES];
    let mut empty = [Bar::new(8); STAGES];
    let mut pkt = 0u32;
    let mut cons: Vec<Consumer> = (0..2)
        .map(|_| Consumer {
            kt: 0,
            inflight: vec![],
            acc: vec![[0.0; 64]; 128],
        })
        .collect();
    loop {
        let mut moved = false;
        let order: u32 = rng.random_range(0..3);
        for actor in (0..3).map(|i| (i + order) % 3) {
            if actor == 0 {
                if pkt >= cta.kt_n {
                    continue;
                }
                let (s, u) = ((pkt % 4) as usize, pkt / 4);
                if u > 0 && !empty[s].passed((u - 1) & 1) {
                    continue;
                }
                full[s].arrive(STAGE_BYTES as i64);
                let sa = (s as u32) << 15;
                let sb = sa + 16384;
                let kx = pkt * BK as u32;
                let mut copies = vec![];
                if cta.a_kc {
                    copies.push((0, [kx, cta.m0, cta.ba], sa));
                } else {
                    copies.push((0, [cta.m0, kx, cta.ba], sa));
                    copies.push((0, [cta.m0 + 64, kx, cta.ba], sa + 8192));
                }
                if cta.b_kc {
                    copies.push((1, [kx, cta.n0, cta.bb], sb));
                } else {
                    copies.push((1, [cta.n0, kx, cta.bb], sb));
                    copies.push((1, [cta.n0 + 64, kx, cta.bb], sb + 8192));
                }
                for (op, c, dst) in copies {
                    let bytes = tma_load(m, cta.maps[op], c, &mut smem, dst);
                    full[s].complete_tx(bytes as i64);
                }
                pkt += 1;
                moved = true;
            } else {
                let c = actor - 1;
                let me = &mut cons[c as usize];
                // a group in flight may read its stage now
                for g in me.inflight.iter_mut() {
                    if !g.1 && rng.random_bool(0.5) {
                        group(cta, &smem, c, g.0, &mut me.acc);
                        g.1 = true;
                        moved = true;
                    }
                }
                if me.kt >= cta.kt_n {
                    // wait_group 0: the last group retires
                    for g in std::mem::take(&mut me.inflight) {
                        if !g.1 {
                            group(cta, &smem, c, g.0, &mut me.acc);
                            moved = true;
                        }
                    }
                    continue;
                }
                let (s, u) = ((me.kt % 4) as usize, me.kt / 4);
                if !full[s].passed(u & 1) {
                    continue;
                }
                me.inflight.push((me.kt, false));
                // wait_group 1: all but the newest group retire (reading their stage if
                // they had not yet); then each of the 4 warps releases the previous stage
                let keep = me.inflight.pop().unwrap();
                for g in std::mem::take(&mut me.inflight) {
                    if !g.1 {
                        group(cta, &smem, c, g.0, &mut me.acc);
                    }
                }
                me.inflight.push(keep);
                if me.kt > 0 {
                    for _ in 0..4 {
                        empty[((me.kt - 1) % 4) as usize].arrive(0);
                    }
                }
                me.kt += 1;
                moved = true;
            }
        }
        let done = pkt >= cta.kt_n
            && cons
                .iter()
                .all(|c| c.kt >= cta.kt_n && c.inflight.is_empty());
        if done {
            break;
        }
        assert!(moved, "the pipeline deadlocked (producer at k tile {pkt})");
    }
    let [c0, c1]: [Consumer; 2] = cons.try_into().ok().unwrap();
    [c0.acc, c1.acc]
}
