// Softmax, log-softmax and the softmax backward over the last axis (softmax/mod.rs has the
// math): one 256-wide workgroup per row, rows of any length looped over by the workgroup.
//
// Numerics: exp and ln are written out below (Cephes-style range reduction, a few ulp) rather
// than the driver's builtins, whose Vulkan error bound grows with |x| (3 + 2|x| ulp for exp);
// the row sums are compensated (Neumaier) per invocation and combined with an error-free
// two-sum across the workgroup, so they stay close to the cpu's sums. A row with a NaN, or
// all -inf, comes out NaN as on the cpu.
//
// P[0] = rows, P[1] = n (row length).

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<storage, read> A: array<u32>;
// softmax_bwd: A is y, B is dy.
@group(0) @binding(3) var<storage, read> B: array<u32>;

// softmax_fwd: false = softmax, true = log-softmax.
override LOG: bool = false;
override HALF: u32 = 0u;

var<workgroup> sh_a: array<f32, 256>;
var<workgroup> sh_b: array<f32, 256>;

// The workgroup's max of v (every invocation gets it). NaN need not survive: it reappears in
// the exponential sum.
fn wg_max(t: u32, v: f32) -> f32 {
    workgroupBarrier();
    sh_a[t] = v;
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        workgroupBarrier();
        if t < half {
            sh_a[t] = max(sh_a[t], sh_a[t + half]);
        }
    }
    workgroupBarrier();
    return sh_a[0];
}

// The workgroup's compensated sum of the invocations' (sum, compensation) pairs.
fn wg_sum(t: u32, acc: vec2<f32>) -> f32 {
    workgroupBarrier();
    sh_a[t] = acc.x;
    sh_b[t] = acc.y;
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        workgroupBarrier();
        if t < half {
            let k = kahan(vec2<f32>(sh_a[t], sh_b[t]), sh_a[t + half]);
            sh_a[t] = k.x;
            sh_b[t] = k.y + sh_b[t + half];
        }
    }
    workgroupBarrier();
    return sh_a[0] + sh_b[0];
}

fn store(i: u32, y: f32) {
    O[i] = bitcast<u32>(round_half(y, HALF));
}

// y = softmax(x) or log-softmax(x) of row `wg` (A = x).
@compute @workgroup_size(256)
fn softmax_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.y * nwg.x + wg.x;
    // the row is uniform over the workgroup: every invocation returns here or none does
    if row >= P[0] {
        return;
    }
    let t = lid.x;
    let n = P[1];
    let base = row * n;
    var m = -f32_inf();
    for (var j = t; j < n; j = j + WG) {
        m = max(m, bitcast<f32>(A[base + j]));
    }
    m = wg_max(t, m);
    var acc = vec2<f32>(0.0, 0.0);
    for (var j = t; j < n; j = j + WG) {
        acc = kahan(acc, exp_acc(bitcast<f32>(A[base + j]) - m));
    }
    let s = wg_sum(t, acc);
    if LOG {
        let shift = -(m + ln_acc(s));
        for (var j = t; j < n; j = j + WG) {
            store(base + j, bitcast<f32>(A[base + j]) + shift);
        }
    } else {
        let inv = 1.0 / s;
        for (var j = t; j < n; j = j + WG) {
            store(base + j, exp_acc(bitcast<f32>(A[base + j]) - m) * inv);
        }
    }
}

// dx = y (dy - sum(dy y)) of row `wg` (A = y, B = dy).
@compute @workgroup_size(256)
fn softmax_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
        acc = kahan(acc, bitcast<f32>(A[base + j]) * bitcast<f32>(B[base + j]));
    }
    let d = wg_sum(t, acc);
    for (var j = t; j < n; j = j + WG) {
        store(base + j, bitcast<f32>(A[base + j]) * (bitcast<f32>(B[base + j]) - d));
    }
}
