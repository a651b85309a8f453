// The fused GIDD diffusion KL over the vocabulary, forward and backward (gidd_loss/mod.rs has
// the math; SPEC.md section 3). One 256-wide workgroup per token streams its V logits:
//   pass 1: an online max / sum of exponentials (each invocation rescales its running sum
//           when its max grows; the workgroup merges the (max, sum) pairs), with the mask's
//           logit read as -1e6;
//   forward pass 2: sum_v (log q_elsewhere - log p_v), from which kl follows with the
//           corrections at x and the mask (q_t takes three values per row);
//   backward pass 2: dot = sum_v g_v x_hat_v; pass 3: d logits_v = x_hat_v (g_v - dot).
// p_t and q_t are recomputed where needed, never stored. exp and ln are the cpu kernel's own
// (gidd_loss/fastmath.rs), ported, so the two agree to rounding; sums are compensated.
// Ids are clamped to [0, V) (the cpu executor requires them in range).
//
// P[0] = rows, P[1] = V, P[2] = mask id, P[3..7] = min_log_snr, max_log_snr, scale, shift
// (f32 bits), P[7] = z's kind, P[8] = x's kind (0 = i32, 1 = u32, 2 = i64).

@group(0) @binding(0) var<storage, read> P: array<u32>;

// diffusion_kl: outputs kl, log p[z], log q[z]; operands logits, z, x, l.
@group(0) @binding(1) var<storage, read_write> KL: array<u32>;
@group(0) @binding(2) var<storage, read_write> LPZ: array<u32>;
@group(0) @binding(3) var<storage, read_write> LQZ: array<u32>;
@group(0) @binding(4) var<storage, read> F_LG: array<u32>;
@group(0) @binding(5) var<storage, read> F_Z: array<u32>;
@group(0) @binding(6) var<storage, read> F_X: array<u32>;
@group(0) @binding(7) var<storage, read> F_L: array<u32>;

// diffusion_kl_bwd: output d logits; operands logits, z, x, l, g_kl, g_log_p_z.
@group(0) @binding(1) var<storage, read_write> DLG: array<u32>;
@group(0) @binding(2) var<storage, read> B_LG: array<u32>;
@group(0) @binding(3) var<storage, read> B_Z: array<u32>;
@group(0) @binding(4) var<storage, read> B_X: array<u32>;
@group(0) @binding(5) var<storage, read> B_L: array<u32>;
@group(0) @binding(6) var<storage, read> B_GKL: array<u32>;
@group(0) @binding(7) var<storage, read> B_GLPZ: array<u32>;

override HALF: u32 = 0u;

var<workgroup> sh_m: array<f32, 256>;
var<workgroup> sh_s: array<f32, 256>;
var<workgroup> sh_c: array<f32, 256>;

const TINY: f32 = 1.17549435e-38;
const MASKED: f32 = -1e6;

// fastmath::exp: e^x, exactly 0 below -87.3, inf above 88.7.
fn fm_exp(x: f32) -> f32 {
    if x < -87.3 {
        return 0.0;
    }
    if x > 88.7 {
        return f32_inf();
    }
    let n = round(x * 1.44269504);
    let r = x - n * 0.69314575 - n * 1.4286068e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (0.16666667 + r * (0.041666668 + r * (0.008333334
        + r * (0.0013888889 + r * 0.0001984127))))));
    return p * bitcast<f32>(u32(i32(n) + 127) << 23u);
}

// ln(max(y, tiny)), and ln(tiny) where y is not positive (NaN included).
fn safe_ln(y: f32) -> f32 {
    if y > 0.0 {
        return fm_ln(max(y, TINY));
    }
    return fm_ln(TINY);
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + fm_exp(-x));
}

// Id j of an id buffer of `kind`, clamped to [0, V).
fn clamp_id(lo: u32, hi: u32, kind: u32) -> u32 {
    let top = P[1] - 1u;
    switch kind {
        case 0u: {
            return min(u32(max(bitcast<i32>(lo), 0i)), top);
        }
        case 1u: {
            return min(lo, top);
        }
        default: {
            if (hi >> 31u) != 0u {
                return 0u;
            }
            return select(min(lo, top), top, hi != 0u);
        }
    }
}

// A running (max, sum of e^(v - max), compensation) and one more value v.
fn online(a: vec3<f32>, v: f32) -> vec3<f32> {
    if v <= a.x {
        let k = kahan(a.yz, fm_exp(v - a.x));
        return vec3<f32>(a.x, k.x, k.y);
    }
    // a new max: the old sum is rescaled (its compensation with it)
    let f = fm_exp(a.x - v);
    let k = kahan(vec2<f32>(a.y * f, a.z * f), 1.0);
    return vec3<f32>(v, k.x, k.y);
}

// Two running (max, sum, compensation) merged.
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let m = max(a.x, b.x);
    let fa = fm_exp(a.x - m);
    let fb = fm_exp(b.x - m);
    let k = kahan(vec2<f32>(a.y * fa, a.z * fa), b.y * fb);
    return vec3<f32>(m, k.x, k.y + b.z * fb);
}

// The softmax statistics of a row (every invocation gets them): its max (at least -1e6, the
// mask's logit) and sum_v e^(lg_v - max).
fn row_stats(t: u32, lg: vec3<f32>) -> vec2<f32> {
    workgroupBarrier();
    sh_m[t] = lg.x;
    sh_s[t] = lg.y;
    sh_c[t] = lg.z;
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        workgroupBarrier();
        if t < half {
            let r = merge(vec3<f32>(sh_m[t], sh_s[t], sh_c[t]),
                          vec3<f32>(sh_m[t + half], sh_s[t + half], sh_c[t + half]));
            sh_m[t] = r.x;
            sh_s[t] = r.y;
            sh_c[t] = r.z;
        }
    }
    workgroupBarrier();
    return vec2<f32>(sh_m[0], sh_s[0] + sh_c[0]);
}

fn wg_sum(t: u32, acc: vec2<f32>) -> f32 {
    workgroupBarrier();
    sh_s[t] = acc.x;
    sh_c[t] = acc.y;
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        workgroupBarrier();
        if t < half {
            let k = kahan(vec2<f32>(sh_s[t], sh_c[t]), sh_s[t + half]);
            sh_s[t] = k.x;
            sh_c[t] = k.y + sh_c[t + half];
        }
    }
    workgroupBarrier();
    return sh_s[0] + sh_c[0];
}

// A row's constants: the marginals' parts and log q at the three places it differs.
struct Row {
    alpha: f32,
    // alpha / sum e (the weight of a softmax numerator in p)
    a: f32,
    rest_o: f32,
    rest_m: f32,
    mx: f32,
    inv: f32,
    mask: u32,
    // x's id
    xi: u32,
    // log q elsewhere, at x, at the mask; and their exponentials
    lq: vec3<f32>,
    eq: vec3<f32>,
}

fn make_row(l: f32, stats: vec2<f32>, xi: u32) -> Row {
    let vocab = P[1];
    let mask = P[2];
    let alpha = sigmoid(clamp(l, bitcast<f32>(P[3]), bitcast<f32>(P[4])));
    let beta = sigmoid(bitcast<f32>(P[5]) * l + bitcast<f32>(P[6]));
    let u = 1.0 / (f32(vocab) - 1.0);
    let rest_o = (1.0 - alpha) * (beta * u);
    let rest_m = (1.0 - alpha) * (1.0 - beta);
    // q = alpha [v = x] + rest_v
    let rest_x = select(rest_o, rest_m, xi == mask);
    let at_m = select(0.0, alpha, xi == mask);
    let lq = vec3<f32>(safe_ln(rest_o), safe_ln(alpha + rest_x), safe_ln(at_m + rest_m));
    let eq = vec3<f32>(fm_exp(lq.x), fm_exp(lq.y), fm_exp(lq.z));
    let inv = f32(1.0 / stats.y);
    return Row(alpha, alpha * inv, rest_o, rest_m, stats.x, inv, mask, xi, lq, eq);
}

// The softmax numerator e^(lg_v - max) of id v with logit lg (the mask's read as -1e6).
fn numer(r: Row, v: u32, lg: f32) -> f32 {
    return fm_exp(select(lg, MASKED, v == r.mask) - r.mx);
}

// p_v from its softmax numerator, with the cpu's operation order.
fn p_of(r: Row, v: u32, e: f32) -> f32 {
    let p = r.a * e + r.rest_o;
    if v == r.mask {
        return p + (r.rest_m - r.rest_o);
    }
    return p;
}

// Which of q's three values id v has: 0 elsewhere, 1 at x, 2 at the mask (x first).
fn q_slot(r: Row, v: u32) -> u32 {
    if v == r.xi {
        return 1u;
    }
    return select(0u, 2u, v == r.mask);
}

fn out_f(y: f32) -> u32 {
    return bitcast<u32>(round_half(y, HALF));
}

fn lg_value(v: u32, lg: f32) -> f32 {
    return select(lg, MASKED, v == P[2]);
}

@compute @workgroup_size(256)
fn diffusion_kl(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * nwg.x + wg.x;
    // the row is uniform over the workgroup: all invocations return here or none does
    if row >= P[0] {
        return;
    }
    let t = lid.x;
    let vocab = P[1];
    let base = row * vocab;
    var st = vec3<f32>(MASKED, 0.0, 0.0);
    for (var v = t; v < vocab; v = v + WG) {
        st = online(st, lg_value(v, bitcast<f32>(F_LG[base + v])));
    }
    let stats = row_stats(t, st);
    let wz = select(1u, 2u, P[7] == 2u);
    let wx = select(1u, 2u, P[8] == 2u);
    let zi = clamp_id(F_Z[row * wz], F_Z[row * wz + wz - 1u], P[7]);
    let xi = clamp_id(F_X[row * wx], F_X[row * wx + wx - 1u], P[8]);
    let r = make_row(bitcast<f32>(F_L[row]), stats, xi);
    // sum_v (log q_elsewhere - log p_v)
    var acc = vec2<f32>(0.0, 0.0);
    for (var v = t; v < vocab; v = v + WG) {
        let lp = safe_ln(p_of(r, v, numer(r, v, bitcast<f32>(F_LG[base + v]))));
        acc = kahan(acc, r.lq.x - lp);
    }
    let d = wg_sum(t, acc);
    if t == 0u {
        let lp_x = safe_ln(p_of(r, xi, numer(r, xi, bitcast<f32>(F_LG[base + xi]))));
        let lp_m = safe_ln(p_of(r, r.mask, numer(r, r.mask, 0.0)));
        // x and the mask were summed as if elsewhere: replace their terms
        var fix = r.eq.y * (r.lq.y - lp_x) - r.eq.x * (r.lq.x - lp_x);
        if r.mask != xi {
            fix = fix + (r.eq.z * (r.lq.z - lp_m) - r.eq.x * (r.lq.x - lp_m));
        }
        let lp_z = safe_ln(p_of(r, zi, numer(r, zi, bitcast<f32>(F_LG[base + zi]))));
        KL[row] = out_f(r.eq.x * d + fix);
        LPZ[row] = out_f(lp_z);
        LQZ[row] = out_f(r.lq[q_slot(r, zi)]);
    }
}

// g_v = d loss / d x_hat_v: alpha (-g_kl e^(log q_v) + [v = z] g_lpz) / p_v where p_v > tiny.
fn grad_xhat(r: Row, v: u32, e: f32, zi: u32, gk: f32, gz: f32, pz: f32) -> f32 {
    let p = p_of(r, v, e);
    var g = 0.0;
    if p > TINY {
        g = r.alpha * (-gk * r.eq[q_slot(r, v)]) / p;
    }
    if v == zi && pz > TINY {
        g = g + r.alpha * gz / pz;
    }
    return g;
}

@compute @workgroup_size(256)
fn diffusion_kl_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * nwg.x + wg.x;
    if row >= P[0] {
        return;
    }
    let t = lid.x;
    let vocab = P[1];
    let base = row * vocab;
    var st = vec3<f32>(MASKED, 0.0, 0.0);
    for (var v = t; v < vocab; v = v + WG) {
        st = online(st, lg_value(v, bitcast<f32>(B_LG[base + v])));
    }
    let stats = row_stats(t, st);
    let wz = select(1u, 2u, P[7] == 2u);
    let wx = select(1u, 2u, P[8] == 2u);
    let zi = clamp_id(B_Z[row * wz], B_Z[row * wz + wz - 1u], P[7]);
    let xi = clamp_id(B_X[row * wx], B_X[row * wx + wx - 1u], P[8]);
    let r = make_row(bitcast<f32>(B_L[row]), stats, xi);
    let gk = bitcast<f32>(B_GKL[row]);
    let gz = bitcast<f32>(B_GLPZ[row]);
    let pz = p_of(r, zi, numer(r, zi, bitcast<f32>(B_LG[base + zi])));
    var acc = vec2<f32>(0.0, 0.0);
    for (var v = t; v < vocab; v = v + WG) {
        let e = numer(r, v, bitcast<f32>(B_LG[base + v]));
        acc = kahan(acc, grad_xhat(r, v, e, zi, gk, gz, pz) * (e * r.inv));
    }
    let dot = wg_sum(t, acc);
    for (var v = t; v < vocab; v = v + WG) {
        let e = numer(r, v, bitcast<f32>(B_LG[base + v]));
        let d = (e * r.inv) * (grad_xhat(r, v, e, zi, gk, gz, pz) - dot);
        DLG[base + v] = out_f(select(d, 0.0, v == r.mask));
    }
}
