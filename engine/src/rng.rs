//! Host Philox-4x32-10: the twin of `api::random`, for tests and host-side draws.

pub const PHILOX_M0: u32 = 0xD251_1F53;
pub const PHILOX_M1: u32 = 0xCD9E_8D57;
pub const PHILOX_W0: u32 = 0x9E37_79B9;
pub const PHILOX_W1: u32 = 0xBB67_AE85;

pub fn philox4x32(mut c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let (mut k0, mut k1) = (k[0], k[1]);
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        let p0 = (c[0] as u64) * (PHILOX_M0 as u64);
        let p1 = (c[2] as u64) * (PHILOX_M1 as u64);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k0,
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k1,
            p0 as u32,
        ];
    }
    c
}

/// The host twin of `api::uniform_f32`.
pub fn uniform_f32(n: usize, seed: [u32; 2], stream: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let w = philox4x32([(i / 4) as u32, stream, 0, 0], seed)[i % 4];
            (w >> 8) as f32 * (1.0 / 16_777_216.0)
        })
        .collect()
}

/// Uniform in [0, 1) with 53 random bits: 27 from `hi`, 26 from `lo`.
pub fn f64_from_words(hi: u32, lo: u32) -> f64 {
    (((hi >> 5) as u64) << 26 | (lo >> 6) as u64) as f64 / (1u64 << 53) as f64
}

/// A uniform f64 in [0, 1) at Philox counter `c` under `seed`: draws keyed by position,
/// so parallel or reordered work draws the same numbers.
pub fn uniform_f64_at(seed: u64, c: [u32; 4]) -> f64 {
    let w = philox4x32(c, [seed as u32, (seed >> 32) as u32]);
    f64_from_words(w[0], w[1])
}

/// A small host generator for initialisation and tests (Philox in counter mode).
#[derive(Clone, Debug)]
pub struct HostRng {
    key: [u32; 2],
    counter: u64,
    buf: [u32; 4],
    pos: usize,
}

impl HostRng {
    pub fn new(seed: u64) -> Self {
        HostRng {
            key: [seed as u32, (seed >> 32) as u32],
            counter: 0,
            buf: [0; 4],
            pos: 4,
        }
    }
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == 4 {
            self.buf = philox4x32(
                [self.counter as u32, (self.counter >> 32) as u32, 0x5eed, 0],
                self.key,
            );
            self.counter += 1;
            self.pos = 0;
        }
        self.pos += 1;
        self.buf[self.pos - 1]
    }
    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        let hi = self.next_u32();
        f64_from_words(hi, self.next_u32())
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    pub fn below(&mut self, n: u32) -> u32 {
        ((self.next_u32() as u64 * n as u64) >> 32) as u32
    }
    /// The generator's position, for exact resume.
    pub fn state(&self) -> (u64, usize) {
        (self.counter, self.pos)
    }
    pub fn set_state(&mut self, counter: u64, pos: usize) {
        self.counter = counter.saturating_sub(if pos < 4 { 1 } else { 0 });
        self.pos = 4;
        if pos < 4 {
            self.buf = philox4x32(
                [self.counter as u32, (self.counter >> 32) as u32, 0x5eed, 0],
                self.key,
            );
            self.counter += 1;
            self.pos = pos;
        }
    }
}

/// The host twin of `api::uniform_rows`.
pub fn uniform_rows(rows: usize, cols: usize, seed: [u32; 2], stream: u32, row0: u32) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let w = philox4x32(
                [(c / 4) as u32, stream, row0.wrapping_add(r as u32), 0],
                seed,
            )[c % 4];
            out.push((w >> 8) as f32 * (1.0 / 16_777_216.0));
        }
    }
    out
}
