// RMSNorm with the (1 + w) gain, forward and backward (norm/mod.rs has the math).
//
// rms_norm_fwd and rms_norm_bwd: one 256-wide workgroup per row, rows of any length looped
// over. dw = sum over rows of dy x rstd is a reduction across workgroups; it is summed
// deterministically, without float atomics: rms_norm_dw_part sums blocks of rows per column
// into a scratch buffer of partials, rms_norm_dw_finish sums the partials in block order.
// Every sum is compensated (Neumaier), so the f32 results stay near the cpu's (which sums
// in f32 lanes and f64 across blocks).
//
// P[0] = rows, P[1] = n, P[2] = eps (f32 bits; forward), P[3] = rows per dw block,
// P[4] = dw blocks, P[5] = the first dw block of this dispatch (rows larger than a storage
// binding come in windows of whole blocks: the partials' rows are the global blocks').

@group(0) @binding(0) var<storage, read> P: array<u32>;

// rms_norm_fwd: outputs y, rstd; operands x, w.
@group(0) @binding(1) var<storage, read_write> Y: array<u32>;
@group(0) @binding(2) var<storage, read_write> RSTD: array<u32>;
@group(0) @binding(3) var<storage, read> FX: array<u32>;
@group(0) @binding(4) var<storage, read> FW: array<u32>;

// rms_norm_bwd: output dx; operands x, w, rstd, dy.
@group(0) @binding(1) var<storage, read_write> DX: array<u32>;
@group(0) @binding(2) var<storage, read> BX: array<u32>;
@group(0) @binding(3) var<storage, read> BW: array<u32>;
@group(0) @binding(4) var<storage, read> BR: array<u32>;
@group(0) @binding(5) var<storage, read> BDY: array<u32>;

// rms_norm_dw_part: output the partials [blocks, n]; operands x, rstd, dy.
@group(0) @binding(1) var<storage, read_write> PART: array<u32>;
@group(0) @binding(2) var<storage, read> QX: array<u32>;
@group(0) @binding(3) var<storage, read> QR: array<u32>;
@group(0) @binding(4) var<storage, read> QDY: array<u32>;

// rms_norm_dw_finish: output dw; operand the partials.
@group(0) @binding(1) var<storage, read_write> DW: array<u32>;
@group(0) @binding(2) var<storage, read> FPART: array<u32>;

override HALF: u32 = 0u;

var<workgroup> sh_s: array<f32, 256>;
var<workgroup> sh_c: array<f32, 256>;

// The workgroup's compensated sum of the invocations' (sum, compensation) pairs.
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

fn out_f(y: f32) -> u32 {
    return bitcast<u32>(round_half(y, HALF));
}

// 1 / sqrt(ss / n + eps) rounded about once, as the cpu's f64 evaluation: the mean as a
// (high, low) pair, then a Newton step on the driver's estimate with an exact residual. The
// backward's dx, for short rows a difference of nearly equal terms, inherits any last-bit
// difference in rstd.
fn rstd_of(ss: f32, n: f32, eps: f32) -> f32 {
    let q = ss / n;
    let ql = fma(-q, n, ss) / n;
    let vh = q + eps;
    let vl = ((q - vh) + eps) + ql;
    let r0 = 1.0 / sqrt(vh);
    let t = r0 * r0;
    let tl = fma(r0, r0, -t);
    let w = vh * t;
    let wl = fma(vh, t, -w) + vh * tl + vl * t;
    let e = (1.0 - w) - wl;
    return r0 + r0 * (0.5 * e);
}

// y = x r (1 + w), r = 1 / sqrt(mean(x^2) + eps), of row `wg`.
@compute @workgroup_size(256)
fn rms_norm_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * nwg.x + wg.x;
    // the row is uniform over the workgroup: all invocations return here or none does
    if row >= P[0] {
        return;
    }
    let t = lid.x;
    let n = P[1];
    let base = row * n;
    var acc = vec2<f32>(0.0, 0.0);
    for (var j = t; j < n; j = j + WG) {
        let x = bitcast<f32>(FX[base + j]);
        acc = kahan(acc, x * x);
    }
    let ss = wg_sum(t, acc);
    let r = rstd_of(ss, f32(n), bitcast<f32>(P[2]));
    if t == 0u {
        RSTD[row] = out_f(r);
    }
    for (var j = t; j < n; j = j + WG) {
        let g = 1.0 + bitcast<f32>(FW[j]);
        Y[base + j] = out_f((bitcast<f32>(FX[base + j]) * r) * g);
    }
}

// r^3 a / n rounded about once (the cpu computes it in f64): with n small, dx is a
// difference of nearly equal terms, and a c off by an ulp or two shows in it. Products are
// carried as (high, low) pairs with fma's exact error terms.
fn r3_a_over_n(r: f32, a: f32, n: f32) -> f32 {
    let h2 = r * r;
    let l2 = fma(r, r, -h2);
    let h3 = h2 * r;
    let l3 = fma(h2, r, -h3) + l2 * r;
    let h4 = h3 * a;
    let l4 = fma(h3, a, -h4) + l3 * a;
    let q = h4 / n;
    return q + (fma(-q, n, h4) + l4) / n;
}

// dx = r g dy - x r^3 a / n, a = sum_j dy g x, g = 1 + w, of row `wg`.
@compute @workgroup_size(256)
fn rms_norm_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * nwg.x + wg.x;
    if row >= P[0] {
        return;
    }
    let t = lid.x;
    let n = P[1];
    let base = row * n;
    var acc = vec2<f32>(0.0, 0.0);
    for (var j = t; j < n; j = j + WG) {
        let g = 1.0 + bitcast<f32>(BW[j]);
        acc = kahan(acc, (bitcast<f32>(BDY[base + j]) * g) * bitcast<f32>(BX[base + j]));
    }
    let a = wg_sum(t, acc);
    let r = bitcast<f32>(BR[row]);
    let c = r3_a_over_n(r, a, f32(n));
    for (var j = t; j < n; j = j + WG) {
        let g = 1.0 + bitcast<f32>(BW[j]);
        let x = bitcast<f32>(BX[base + j]);
        let dy = bitcast<f32>(BDY[base + j]);
        DX[base + j] = out_f(fma(x, -c, r * (g * dy)));
    }
}

// Partial dw of row block wg.y for column j (one invocation per column of a 256-column
// tile wg.x): sum over the block's rows of dy x r, in row order. Unrounded f32 (a scratch
// buffer).
@compute @workgroup_size(256)
fn rms_norm_dw_part(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = P[1];
    let j = wg.x * WG + lid.x;
    if j >= n {
        return;
    }
    let rows = P[0];
    let per = P[3];
    let r0 = wg.y * per;
    let r1 = min(r0 + per, rows);
    var acc = vec2<f32>(0.0, 0.0);
    for (var i = r0; i < r1; i = i + 1u) {
        let k = i * n + j;
        let v = (bitcast<f32>(QDY[k]) * bitcast<f32>(QX[k])) * bitcast<f32>(QR[i]);
        acc = kahan(acc, v);
    }
    PART[(P[5] + wg.y) * n + j] = bitcast<u32>(acc.x + acc.y);
}

// dw[j] = the sum of the blocks' partials of column j, in block order.
@compute @workgroup_size(256)
fn rms_norm_dw_finish(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = flat_id(wg, nwg, lid);
    let n = P[1];
    if j >= n {
        return;
    }
    var acc = vec2<f32>(0.0, 0.0);
    for (var b = 0u; b < P[4]; b = b + 1u) {
        acc = kahan(acc, bitcast<f32>(FPART[b * n + j]));
    }
    DW[j] = out_f(acc.x + acc.y);
}
