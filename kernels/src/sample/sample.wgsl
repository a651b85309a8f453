// One generation step's sampling per position, in f64 (sample/mod.rs has the contract and
// the cpu reference; SPEC.md section 6). Needs SHADER_F64. One 256-wide workgroup per row;
// invocation t owns the contiguous chunk [t C, (t + 1) C) of the vocabulary (C = ceil(V /
// 256)) and walks it in index order, so every sum is the reference's sequential sum within
// a chunk, then over the chunks in order (invocation 0 scans the 256 partial sums):
//   1. the maximum's order key and its first index (temperature 0: the one-hot argmax);
//   2. top-k: the k-th largest order key by radix select (4 passes of an 8-bit histogram
//      counted with workgroup atomics: exact), keeping keys >= it as the reference keeps
//      x >= kth (x = l / T orders as the f32 logits do: dividing distinct f32 by T > 0 in
//      f64 neither merges nor swaps them);
//   3. top-p: the smallest key K whose mass above, G(K), is <= p, by bisection over the 32-bit
//      key space (G is monotone; each probe is a pass); K is then present, and of the tokens
//      tied at K the first n (by index) stay, n counted by the reference's running sum
//      G(K) + q + q + .. <= p (its stable sort puts ties in index order);
//   4. the softmax of the kept set, then the categorical draw (tempered probabilities or
//      the ancestral posterior): the chunk holding u * total walks to its token.
// exp is ours (no f64 exp in SPIR-V): Cody-Waite reduction and a degree-13 Taylor series,
// within 2 ulp of libm's. Sums may associate differently from the reference's single
// running sum: a token differs only where u lands within rounding (~1e-16 relative) of a
// boundary between two tokens, or top-p's cut is that close to p.
//
// P[0] = rows, P[1] = V, P[2] = mask id, P[3] = mode (0 adaptive, 1 ancestral), P[4] = top-k
// (0 = none), P[5] = top-p on (0/1), P[6..14] = f64 bit words (hi, lo) of temperature, top-p,
// a_t, a_s; P[14..18] = f32 bits of pi_t[other], pi_t[mask], pi_s[other], pi_s[mask].
// ROWS [R, 4] = (z, banned id or -1, uniform's 27 high bits, 26 low bits);
// OUT [R, 3] = (token, score's f64 bits high word, low word).

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> OUT: array<u32>;
@group(0) @binding(2) var<storage, read> LG: array<u32>;
@group(0) @binding(3) var<storage, read> ROWS: array<u32>;

var<workgroup> sh_f: array<f64, 256>;
var<workgroup> sh_u: array<u32, 256>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> sh_hit: atomic<u32>;
var<workgroup> sh_last: atomic<u32>;
var<workgroup> sh_xz: f64;
var<workgroup> sh_scalar: f64;
var<workgroup> sh_word: u32;

// 2^e exactly, for e in [-1074, 1023] (powers of two multiply exactly).
fn pow2(e: i32) -> f64 {
    var r = 1.0lf;
    var b = 2.0lf;
    if e < 0 {
        b = 0.5lf;
    }
    var n = u32(abs(e));
    while n > 0u {
        if (n & 1u) == 1u {
            r = r * b;
        }
        b = b * b;
        n = n >> 1u;
    }
    return r;
}

// The f64 with IEEE bit words (hi, lo), decoded arithmetically (finite values).
fn f64_of(hi: u32, lo: u32) -> f64 {
    let e = i32((hi >> 20u) & 0x7ffu);
    let mant = f64(hi & 0xfffffu) * 4294967296.0lf + f64(lo);
    var x = mant * pow2(-1074);
    if e > 0 {
        x = (1.0lf + mant * pow2(-52)) * pow2(e - 1023);
    }
    if (hi >> 31u) == 1u {
        x = -x;
    }
    return x;
}

// The IEEE bit words (hi, lo) of a finite f64, encoded arithmetically.
fn bits_of(x0: f64) -> vec2<u32> {
    var sign = 0u;
    var x = x0;
    if x < 0.0lf {
        sign = 0x80000000u;
        x = -x;
    }
    if x == 0.0lf {
        return vec2<u32>(sign, 0u);
    }
    var e = -1022;
    var mant = x * pow2(537) * pow2(537); // subnormal: the integer mantissa itself
    if x >= pow2(-1022) {
        // largest e with 2^e <= x, by bisection over [-1022, 1023]
        var lo = -1022;
        var hi = 1023;
        while lo < hi {
            let mid = lo + (hi - lo + 1) / 2;
            if pow2(mid) <= x {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        e = lo;
        mant = (x * pow2(-e) - 1.0lf) * pow2(52);
    }
    let top = floor(mant / 4294967296.0lf);
    let low = mant - top * 4294967296.0lf;
    var biased = u32(e + 1023);
    if x < pow2(-1022) {
        biased = 0u;
    }
    return vec2<u32>(sign | (biased << 20u) | u32(top), u32(low));
}

// e^x in f64: 0 below -745.2, exactly 1 at 0.
fn exp64(x: f64) -> f64 {
    if !(x > -745.2lf) {
        return 0.0lf; // -inf and NaN included
    }
    if x == 0.0lf {
        return 1.0lf;
    }
    let k = floor(x * 1.4426950408889634lf + 0.5lf);
    let r = (x - k * 6.93147180369123816490e-01lf) - k * 1.90821492927058770002e-10lf;
    var p = 1.0lf / 6227020800.0lf;
    p = p * r + 1.0lf / 479001600.0lf;
    p = p * r + 1.0lf / 39916800.0lf;
    p = p * r + 1.0lf / 3628800.0lf;
    p = p * r + 1.0lf / 362880.0lf;
    p = p * r + 1.0lf / 40320.0lf;
    p = p * r + 1.0lf / 5040.0lf;
    p = p * r + 1.0lf / 720.0lf;
    p = p * r + 1.0lf / 120.0lf;
    p = p * r + 1.0lf / 24.0lf;
    p = p * r + 1.0lf / 6.0lf;
    p = p * r + 0.5lf;
    p = p * r + 1.0lf;
    p = p * r + 1.0lf;
    // split the scale so neither factor leaves f64's range
    let k1 = i32(k) / 2;
    return p * pow2(k1) * pow2(i32(k) - k1);
}

// The order key of an f32: unsigned comparison of keys is the numeric order.
// -0 is +0 (the reference compares numerically).
fn okey(f: f32) -> u32 {
    var b = bitcast<u32>(f);
    if b == 0x80000000u {
        b = 0u;
    }
    if (b >> 31u) == 1u {
        return ~b;
    }
    return b | 0x80000000u;
}

fn value_of(key: u32) -> f32 {
    if (key >> 31u) == 1u {
        return bitcast<f32>(key & 0x7fffffffu);
    }
    return bitcast<f32>(~key);
}

// Logit i of the row at `base`, the mask and the banned id at -inf (as an order key).
fn key_at(base: u32, i: u32, ban: u32) -> u32 {
    if i == P[2] || i == ban {
        return okey(f32_neg_inf());
    }
    return okey(bitcast<f32>(LG[base + i]));
}

fn f32_neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

// pi's value at id k: one on the mask, one elsewhere (P[w] for others, P[w + 1] the mask's).
fn pi_at(w: u32, k: u32) -> f64 {
    if k == P[2] {
        return f64(bitcast<f32>(P[w + 1u]));
    }
    return f64(bitcast<f32>(P[w]));
}

// The sum of the invocations' `v` in invocation order (invocation 0 adds sequentially), and
// in sh_f[t] each invocation's exclusive prefix.
fn scan_sum(t: u32, v: f64) -> f64 {
    sh_f[t] = v;
    workgroupBarrier();
    if t == 0u {
        var acc = 0.0lf;
        for (var i = 0u; i < 256u; i++) {
            let s = sh_f[i];
            sh_f[i] = acc;
            acc = acc + s;
        }
        sh_scalar = acc;
    }
    return workgroupUniformLoad(&sh_scalar);
}

// The maximum of the invocations' u32 `v`.
fn max_u32(t: u32, v: u32) -> u32 {
    workgroupBarrier();
    sh_u[t] = v;
    workgroupBarrier();
    if t == 0u {
        var m = 0u;
        for (var i = 0u; i < 256u; i++) {
            m = max(m, sh_u[i]);
        }
        sh_word = m;
    }
    return workgroupUniformLoad(&sh_word);
}

// The minimum of the invocations' u32 `v`.
fn min_u32(t: u32, v: u32) -> u32 {
    workgroupBarrier();
    sh_u[t] = v;
    workgroupBarrier();
    if t == 0u {
        var m = 0xffffffffu;
        for (var i = 0u; i < 256u; i++) {
            m = min(m, sh_u[i]);
        }
        sh_word = m;
    }
    return workgroupUniformLoad(&sh_word);
}

// The k-th largest order key of the row (1-based k), by radix select: each pass counts the
// candidates' next 8 bits and descends into the bucket holding the k-th.
fn kth_key(t: u32, base: u32, ban: u32, lo: u32, hi: u32, k: u32) -> u32 {
    var prefix = 0u;
    var want = k;
    for (var d = 0u; d < 4u; d++) {
        let shift = 24u - 8u * d;
        workgroupBarrier();
        atomicStore(&hist[t], 0u);
        workgroupBarrier();
        for (var i = lo; i < hi; i++) {
            let key = key_at(base, i, ban);
            // the candidates share the digits chosen so far (none in the first pass)
            if d == 0u || (key >> (shift + 8u)) == (prefix >> (shift + 8u)) {
                atomicAdd(&hist[(key >> shift) & 255u], 1u);
            }
        }
        workgroupBarrier();
        if t == 0u {
            var acc = 0u;
            var b = 255u;
            loop {
                let n = atomicLoad(&hist[b]);
                if acc + n >= want || b == 0u {
                    break;
                }
                acc = acc + n;
                b = b - 1u;
            }
            sh_u[0] = prefix | (b << shift);
            sh_u[1] = want - acc;
        }
        workgroupBarrier();
        prefix = sh_u[0];
        want = sh_u[1];
    }
    return max_u32(t, prefix);
}

@compute @workgroup_size(256)
fn sample_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32) {
    let row = wg.y * nwg.x + wg.x;
    if row >= P[0] {
        return;
    }
    let v = P[1];
    let base = row * v;
    let z = ROWS[row * 4u];
    let ban = ROWS[row * 4u + 1u]; // -1 reads as 0xffffffff: no id
    let u = (f64(ROWS[row * 4u + 2u]) * 67108864.0lf + f64(ROWS[row * 4u + 3u])) * pow2(-53);
    let ancestral = P[3] == 1u;
    let temp = f64_of(P[6], P[7]);
    let top_p = f64_of(P[8], P[9]);
    let a_t = f64_of(P[10], P[11]);
    let a_s = f64_of(P[12], P[13]);
    let c = (v + 255u) / 256u;
    let lo = min(t * c, v);
    let hi = min(lo + c, v);
    let bpz = (1.0lf - a_t) * pi_at(14u, z) - (a_t / a_s) * (1.0lf - a_s) * pi_at(16u, z);
    if ancestral && bpz == 0.0lf {
        // the posterior keeps z whatever x_hat
        if t == 0u {
            OUT[row * 3u] = z;
            OUT[row * 3u + 1u] = 0u;
            OUT[row * 3u + 2u] = 0u;
        }
        return;
    }

    // 1. the maximum and its first index
    var km = 0u;
    var im = 0xffffffffu;
    for (var i = lo; i < hi; i++) {
        let key = key_at(base, i, ban);
        if im == 0xffffffffu || key > km {
            km = key;
            im = i;
        }
    }
    let kmax = max_u32(t, km);
    var mine = 0xffffffffu;
    if km == kmax {
        mine = im;
    }
    let imax = min_u32(t, mine);
    let onehot = temp == 0.0lf;
    let m = f64(value_of(kmax)) / temp;

    // 2. top-k: keep keys >= the k-th largest
    var tk = 0u;
    if !onehot && P[4] > 0u {
        tk = kth_key(t, base, ban, lo, hi, P[4]);
    }

    // 3. the top-k softmax's sum (the exponentials are recomputed in every pass)
    var s = 0.0lf;
    if !onehot {
        for (var i = lo; i < hi; i++) {
            let key = key_at(base, i, ban);
            if key >= tk {
                s = s + exp64(f64(value_of(key)) / temp - m);
            }
        }
    }
    let zk = scan_sum(t, s);

    // 4. top-p: the boundary key, and how many of its ties (by index) stay
    let use_p = !onehot && P[5] == 1u;
    var kstar = 0u;
    var tie_base = 0u;
    var n_keep = 0xffffffffu;
    if use_p {
        var a = 0u;
        var b = kmax;
        while a < b {
            let mid = a + (b - a) / 2u;
            var g = 0.0lf;
            for (var i = lo; i < hi; i++) {
                let key = key_at(base, i, ban);
                if key >= tk && key > mid {
                    g = g + exp64(f64(value_of(key)) / temp - m) / zk;
                }
            }
            if scan_sum(t, g) <= top_p {
                b = mid;
            } else {
                a = mid + 1u;
            }
        }
        kstar = a;
        var g = 0.0lf;
        var ties = 0u;
        for (var i = lo; i < hi; i++) {
            let key = key_at(base, i, ban);
            if key >= tk && key > kstar {
                g = g + exp64(f64(value_of(key)) / temp - m) / zk;
            }
            if key >= tk && key == kstar {
                ties = ties + 1u;
            }
        }
        let above = scan_sum(t, g);
        let n_ties = u32(scan_sum(t, f64(ties)));
        tie_base = u32(sh_f[t]);
        if t == 0u {
            // the reference's running sum over the ties, in their (index) order
            let q = exp64(f64(value_of(kstar)) / temp - m) / zk;
            var cum = above;
            var j = 0u;
            loop {
                if j >= n_ties || ((j > 0u || above > 0.0lf) && cum > top_p) {
                    break;
                }
                cum = cum + q;
                j = j + 1u;
            }
            sh_word = max(j, 1u);
        }
        n_keep = workgroupUniformLoad(&sh_word);
    }

    // 5. the kept set's softmax sum, and x_hat[z]'s numerator
    var s2 = 0.0lf;
    var rank = tie_base;
    for (var i = lo; i < hi; i++) {
        let key = key_at(base, i, ban);
        var e = 0.0lf;
        if onehot {
            e = select(0.0lf, 1.0lf, i == imax);
        } else if key >= tk && (!use_p || key > kstar || (key == kstar && rank < n_keep)) {
            e = exp64(f64(value_of(key)) / temp - m);
        }
        if use_p && key >= tk && key == kstar {
            rank = rank + 1u;
        }
        if i == z {
            sh_xz = e;
        }
        s2 = s2 + e;
    }
    let zs = scan_sum(t, s2);
    let xz = workgroupUniformLoad(&sh_xz) / zs;

    // 6. the draw: chunk sums, then the chunk holding u * total walks to its token
    let qtz = a_t * xz + (1.0lf - a_t) * pi_at(14u, z);
    var w_sum = 0.0lf;
    for (var walk = 0u; walk < 2u; walk++) {
        var uu = 0.0lf;
        if walk == 1u {
            uu = u * scan_sum(t, w_sum) - sh_f[t];
            if t == 0u {
                atomicStore(&sh_hit, 0xffffffffu);
                atomicStore(&sh_last, 0u);
            }
            workgroupBarrier();
        }
        rank = tie_base;
        var last = 0u;
        for (var i = lo; i < hi; i++) {
            let key = key_at(base, i, ban);
            var e = 0.0lf;
            if onehot {
                e = select(0.0lf, 1.0lf, i == imax);
            } else if key >= tk && (!use_p || key > kstar || (key == kstar && rank < n_keep)) {
                e = exp64(f64(value_of(key)) / temp - m);
            }
            if use_p && key >= tk && key == kstar {
                rank = rank + 1u;
            }
            let xh = e / zs;
            var w = xh;
            if ancestral {
                let qs = a_s * xh + (1.0lf - a_s) * pi_at(16u, i);
                let qts = select(0.0lf, a_t / a_s, i == z) + bpz;
                w = qs * qts / qtz;
                if !(w > 0.0lf) {
                    w = 0.0lf;
                }
            }
            if walk == 0u {
                w_sum = w_sum + w;
            } else {
                if w > 0.0lf {
                    last = i + 1u;
                }
                if uu < w && (w > 0.0lf || !ancestral) {
                    atomicMin(&sh_hit, i);
                    break;
                }
                uu = uu - w;
            }
        }
        if walk == 1u {
            atomicMax(&sh_last, last);
        }
    }
    workgroupBarrier();

    // the adaptive score: max x_hat - x_hat[z] of the untempered, unfiltered softmax
    var score = 0.0lf;
    if !ancestral {
        let m1 = f64(value_of(kmax));
        var s1 = 0.0lf;
        for (var i = lo; i < hi; i++) {
            s1 = s1 + exp64(f64(value_of(key_at(base, i, ban))) - m1);
        }
        let z1 = scan_sum(t, s1);
        score = 1.0lf / z1 - exp64(f64(value_of(key_at(base, z, ban))) - m1) / z1;
    }
    if t == 0u {
        var token = atomicLoad(&sh_hit);
        if token == 0xffffffffu {
            // rounding left u past the total: the last token with mass (the reference's)
            let last = atomicLoad(&sh_last);
            token = select(select(0u, z, ancestral), last - 1u, last > 0u);
        }
        let bits = bits_of(score);
        OUT[row * 3u] = token;
        OUT[row * 3u + 1u] = bits.x;
        OUT[row * 3u + 2u] = bits.y;
    }
}
