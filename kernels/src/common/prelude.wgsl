// The shared head of every WGSL kernel: the wgpu executor prepends it to each kernel file
// (WGSL has no includes). Nothing here declares a binding; each kernel file declares its own.
//
// Storage: every buffer is an array<u32> of words. f32, i32, u32 and bool (0 or 1) take one
// word per element; bf16 and f16 are packed two per word (element 2j in the low half of word
// j, 2j + 1 in the high half: the bytes of a little-endian [bf16] or [f16] on the host), and a
// kernel that writes them owns whole words (two elements per invocation), since two
// invocations that each wrote one half of a word would race; i64 takes two words, (lo, hi),
// two's complement, with the arithmetic emulated below on vec2<u32>. Inside a kernel, and in
// the scratch buffers of kernels that take a 16-bit float "widened" (one word per element,
// HALF override constants), such a value is the f32 bits of its value (for bf16: the low 16
// bits zero).

const WG: u32 = 256u;

// The flat invocation index of a 1-D kernel launched as a 2-D grid of WG-wide workgroups
// (at most 65535 workgroups per grid dimension, so long vectors spill into y).
fn flat_id(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid.x;
}

// NaN tested on the bits: a compiler may assume x == x for floats.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn f32_nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

fn f32_inf() -> f32 {
    return bitcast<f32>(0x7f800000u);
}

// x rounded to the nearest bf16 (ties to even; NaN stays NaN and turns quiet), widened back to
// f32: bit for bit half::bf16::from_f32 followed by to_f32.
fn round_bf16(x: f32) -> f32 {
    let b = bitcast<u32>(x);
    if (b & 0x7fffffffu) > 0x7f800000u {
        return bitcast<f32>((b | 0x00400000u) & 0xffff0000u);
    }
    return bitcast<f32>((b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u);
}

// The f32 bits of packed bf16 element i, whose word is w.
fn bf16_bits(w: u32, i: u32) -> u32 {
    return (w >> ((i & 1u) * 16u)) << 16u;
}

// The word of two bf16 elements given as f32 bits already rounded (low 16 bits zero).
fn bf16_pair(lo: u32, hi: u32) -> u32 {
    return (lo >> 16u) | (hi & 0xffff0000u);
}

// ---- f16 (IEEE binary16), stored like bf16: two per word, element 2j in the low half ----
// Converted on the bits, not with pack2x16float / unpack2x16float, whose rounding, overflow
// and subnormals WGSL leaves to the implementation: these are bit for bit half::f16's
// from_f32 (ties to even, overflow to inf, subnormals kept) and to_f32 on every adapter, and
// need no `shader-f16`.

// x rounded to the nearest f16, widened back to f32 (its value exactly).
fn round_f16(x: f32) -> f32 {
    let b = bitcast<u32>(x);
    let s = b & 0x80000000u;
    let a = b & 0x7fffffffu;
    if a > 0x7f800000u {
        return bitcast<f32>((b | 0x00400000u) & 0xffffe000u);
    }
    // 65520 (the midpoint between f16's largest, 65504, and 2^16) and above round to inf
    if a >= 0x477ff000u {
        return bitcast<f32>(s | 0x7f800000u);
    }
    // normal f16 (>= 2^-14): 10 of f32's 23 fraction bits kept, ties to even
    if a >= 0x38800000u {
        return bitcast<f32>(s | ((a + 0xfffu + ((a >> 13u) & 1u)) & 0xffffe000u));
    }
    // subnormal f16: a multiple of 2^-24; both scalings are exact, round() ties to even
    let q = round(bitcast<f32>(a) * 16777216.0) * bitcast<f32>(0x33800000u);
    return bitcast<f32>(s | bitcast<u32>(q));
}

// The 16 bits of an f16 given as the f32 bits of its value (already rounded).
fn f16_enc(b: u32) -> u32 {
    let s = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if a >= 0x7f800000u {
        return s | 0x7c00u | select(0u, 0x200u | ((a >> 13u) & 0x3ffu), a > 0x7f800000u);
    }
    if a >= 0x38800000u {
        return s | ((a - 0x38000000u) >> 13u);
    }
    return s | u32(bitcast<f32>(a) * 16777216.0);
}

// The f32 bits of the f16 whose 16 bits are h (exact).
fn f16_dec(h: u32) -> u32 {
    let s = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    // inf, or NaN made quiet (as half::f16::to_f32 and x86's vcvtph2ps make it)
    if e == 0x1fu {
        return s | 0x7f800000u | select(0u, 0x00400000u, m != 0u) | (m << 13u);
    }
    if e == 0u {
        return s | bitcast<u32>(f32(m) * bitcast<f32>(0x33800000u));
    }
    return s | ((e + 112u) << 23u) | (m << 13u);
}

// ---- a 16-bit float of either kind: the HALF / PACKED override constants of the kernels ----
// 0 = f32 (one word per element), 1 = bf16, 2 = f16.
const HALF_NONE: u32 = 0u;
const HALF_BF16: u32 = 1u;
const HALF_F16: u32 = 2u;

// y as stored in a float of kind `h` (rounded once), as f32.
fn round_half(y: f32, h: u32) -> f32 {
    if h == HALF_BF16 {
        return round_bf16(y);
    }
    if h == HALF_F16 {
        return round_f16(y);
    }
    return y;
}

// The f32 bits of packed element i of kind `h` (bf16 or f16), whose word is w.
fn half_bits(w: u32, i: u32, h: u32) -> u32 {
    if h == HALF_F16 {
        return f16_dec((w >> ((i & 1u) * 16u)) & 0xffffu);
    }
    return bf16_bits(w, i);
}

// The 16 bits of a value of kind `h` (bf16 or f16) given as the f32 bits of its value.
fn half_enc(b: u32, h: u32) -> u32 {
    if h == HALF_F16 {
        return f16_enc(b);
    }
    return b >> 16u;
}

// The word of two packed elements of kind `h`, given as the f32 bits of values already
// rounded to it.
fn half_pair(lo: u32, hi: u32, h: u32) -> u32 {
    return half_enc(lo, h) | (half_enc(hi, h) << 16u);
}

// ---- i64 as vec2<u32>(lo, hi): wrapping two's complement, as StableHLO and the cpu executor ----

fn l_from_i32(x: i32) -> vec2<u32> {
    return vec2<u32>(bitcast<u32>(x), select(0u, 0xffffffffu, x < 0i));
}

fn l_from_u32(x: u32) -> vec2<u32> {
    return vec2<u32>(x, 0u);
}

fn l_is_neg(a: vec2<u32>) -> bool {
    return (a.y >> 31u) != 0u;
}

fn l_is_zero(a: vec2<u32>) -> bool {
    return (a.x | a.y) == 0u;
}

fn l_add(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn l_sub(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return vec2<u32>(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}

fn l_neg(a: vec2<u32>) -> vec2<u32> {
    return l_add(~a, vec2<u32>(1u, 0u));
}

// |a|, wrapping (i64::MIN stays i64::MIN, which read unsigned is 2^63).
fn l_abs(a: vec2<u32>) -> vec2<u32> {
    return select(a, l_neg(a), l_is_neg(a));
}

// The full 64-bit product of two u32s, (lo, hi), from 16-bit halves (WGSL has no wide multiply).
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return vec2<u32>((p00 & 0xffffu) | (mid << 16u), p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}

// The low 64 bits of a * b (the same for signed and unsigned operands).
fn l_mul(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let p = mul_wide(a.x, b.x);
    return vec2<u32>(p.x, p.y + a.x * b.y + a.y * b.x);
}

// Signed a < b.
fn l_lt(a: vec2<u32>, b: vec2<u32>) -> bool {
    let ah = bitcast<i32>(a.y);
    let bh = bitcast<i32>(b.y);
    return ah < bh || (ah == bh && a.x < b.x);
}

// Unsigned a < b.
fn l_ult(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.y < b.y || (a.y == b.y && a.x < b.x);
}

// a << n for n < 64 (callers give 0 for larger amounts, as the cpu executor does).
fn l_shl(a: vec2<u32>, n: u32) -> vec2<u32> {
    if n == 0u {
        return a;
    }
    if n >= 32u {
        return vec2<u32>(0u, a.x << (n - 32u));
    }
    return vec2<u32>(a.x << n, (a.y << n) | (a.x >> (32u - n)));
}

// Logical a >> n for n < 64.
fn l_shr(a: vec2<u32>, n: u32) -> vec2<u32> {
    if n == 0u {
        return a;
    }
    if n >= 32u {
        return vec2<u32>(a.y >> (n - 32u), 0u);
    }
    return vec2<u32>((a.x >> n) | (a.y << (32u - n)), a.y >> n);
}

struct LDivMod {
    q: vec2<u32>,
    r: vec2<u32>,
}

// Unsigned 64-bit long division, one quotient bit per step; d != 0.
fn l_udivmod(n: vec2<u32>, d: vec2<u32>) -> LDivMod {
    var q = vec2<u32>(0u, 0u);
    var r = vec2<u32>(0u, 0u);
    for (var i = 63i; i >= 0i; i = i - 1i) {
        let bit = u32(i);
        let w = select(n.x, n.y, bit >= 32u);
        r = l_shl(r, 1u);
        r.x = r.x | ((w >> (bit & 31u)) & 1u);
        if !l_ult(r, d) {
            r = l_sub(r, d);
            if bit >= 32u {
                q.y = q.y | (1u << (bit - 32u));
            } else {
                q.x = q.x | (1u << bit);
            }
        }
    }
    return LDivMod(q, r);
}

// Signed division truncating toward zero; by zero gives 0; MIN / -1 wraps to MIN.
fn l_div(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    if l_is_zero(b) {
        return vec2<u32>(0u, 0u);
    }
    let q = l_udivmod(l_abs(a), l_abs(b)).q;
    return select(q, l_neg(q), l_is_neg(a) != l_is_neg(b));
}

// Remainder with the dividend's sign; by zero gives 0.
fn l_rem(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    if l_is_zero(b) {
        return vec2<u32>(0u, 0u);
    }
    let r = l_udivmod(l_abs(a), l_abs(b)).r;
    return select(r, l_neg(r), l_is_neg(a));
}

// The i64 nearest to x toward zero, saturating; NaN gives 0 (Rust's `as`).
fn l_from_f32(x: f32) -> vec2<u32> {
    if is_nan(x) {
        return vec2<u32>(0u, 0u);
    }
    if x >= 9223372036854775807.0 {
        return vec2<u32>(0xffffffffu, 0x7fffffffu);
    }
    if x <= -9223372036854775808.0 {
        return vec2<u32>(0u, 0x80000000u);
    }
    let t = trunc(abs(x));
    // t < 2^63 is an integer with 24 significant bits: both halves come out exact.
    let hi = floor(t / 4294967296.0);
    let lo = t - hi * 4294967296.0;
    let m = vec2<u32>(u32(lo), u32(hi));
    return select(m, l_neg(m), x < 0.0);
}

// a as f32 (hi * 2^32 + lo: within an ulp of the correctly rounded value).
fn l_to_f32(a: vec2<u32>) -> f32 {
    let m = l_abs(a);
    let v = f32(m.y) * 4294967296.0 + f32(m.x);
    return select(v, -v, l_is_neg(a));
}

// Accurate exp / ln and a compensated sum, shared by the row, loss, reduction and attention
// kernels (their cpu references round these in f64 or libm).
const LOG2E: f32 = 1.4426950408889634;
// ln 2 split so that n * LN2_HI is exact for the n that occur.
const LN2_HI: f32 = 0.693359375;
const LN2_LO: f32 = -2.12194440e-4;

// e^x to a few ulp: 0 below -104, inf above 89, NaN kept.
fn exp_acc(x0: f32) -> f32 {
    if is_nan(x0) {
        return x0;
    }
    let x = clamp(x0, -104.0, 89.0);
    let n = round(x * LOG2E);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    var p = 1.9875691e-4;
    p = p * r + 1.3981999e-3;
    p = p * r + 8.3334519e-3;
    p = p * r + 4.1665796e-2;
    p = p * r + 1.6666665e-1;
    p = p * r + 0.5;
    p = p * (r * r) + r + 1.0;
    // 2^n as two normal factors, so a subnormal result is rounded once
    let ni = i32(n);
    let n1 = ni >> 1u;
    let n2 = ni - n1;
    let s1 = bitcast<f32>(u32(n1 + 127) << 23u);
    let s2 = bitcast<f32>(u32(n2 + 127) << 23u);
    return (p * s1) * s2;
}

// ln y for finite y > 0 (a softmax denominator: at least 1).
fn ln_acc(y: f32) -> f32 {
    if is_nan(y) || y == f32_inf() {
        return y;
    }
    return fm_ln(y);
}

// fastmath::ln (the cpu's), for finite y > 0: no guard, so it is what ln_acc computes there.
fn fm_ln(y: f32) -> f32 {
    let bits = bitcast<u32>(y);
    var e = i32((bits >> 23u) & 0xffu) - 127;
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f800000u);
    if m > 1.41421356 {
        m = m * 0.5;
        e = e + 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let s = t * (2.0 + t2 * (0.6666667 + t2 * (0.4 + t2 * (0.2857143 + t2 * 0.2222222))));
    let ef = f32(e);
    return ef * 0.69314575 + (s + ef * 1.4286068e-6);
}

// (s, c) + v, Neumaier's compensated step.
fn kahan(acc: vec2<f32>, v: f32) -> vec2<f32> {
    let t = acc.x + v;
    var e: f32;
    if abs(acc.x) >= abs(v) {
        e = (acc.x - t) + v;
    } else {
        e = (v - t) + acc.x;
    }
    return vec2<f32>(t, acc.y + e);
}
