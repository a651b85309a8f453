// Flash-style attention, forward and backward (attention/mod.rs has the math; these kernels
// agree with the cpu kernel, attention/cpu.rs). No [Lq, Lk] score matrix is ever stored:
//
//   attention_fwd:  one 256-wide workgroup per (batch*head, block of 16 queries); key tiles
//                   of 16 stream through workgroup memory under an online softmax.
//   attention_fwd_row: the same, one invocation per query row, no workgroup memory (CPU
//                   adapters: see its comment).
//   attention_rows: one invocation per query row: D_i = do_i . o_i (compensated, close to the
//                   cpu's f64 sum); packs do, D, lse and "every key masked" into one scratch
//                   buffer ST, so each gradient kernel binds at most 8 buffers (WebGPU's
//                   default per-stage limit).
//   attention_dkdv: one workgroup per (batch*head, block of 16 keys); query tiles streamed:
//                   dv_j = sum_i p_ij do_i, dk_j = scale sum_i ds_ij q_i.
//   attention_dq:   one workgroup per (batch*head, block of 16 queries); key tiles streamed:
//                   dq_i = scale sum_j ds_ij k_j.
// The backward recomputes p = exp(s - lse) and ds = p (do_i . v_j - D_i) g (g: the soft cap's
// derivative, 0 where masked). Every sum has one owning invocation and a fixed order:
// deterministic, no atomics.
//
// Invocation t of a workgroup is (r, c) = (t / 16, t % 16): it scores row r of the block
// against row c of the tile (in attention_dkdv the block holds keys, the tile queries) and
// owns the head dims c, c + 16, .. of its block row's accumulators (at most DMAX / 16 each).
//
// Masked scores are the finite f32::MIN, so a row with every key masked is uniform over all
// Lk keys (out = mean of v) and its lse rounds to f32::MIN; that lse cannot give back
// p = 1/Lk, so the backward reads it from the mask (the dead flag), as the cpu kernel does.
//
// Products are fma in the cpu kernel's order (q times scale first, the tile ascending); exp,
// ln and tanh are written out (softmax.wgsl says why not the builtins).
//
// P[0] = B*H, P[1] = H, P[2] = Lq, P[3] = Lk, P[4] = D (<= DMAX), P[5] = scale (f32 bits),
// P[6] = soft cap c (f32 bits), P[7] = 1 when the cap is on, P[8] = blocks per head (query
// blocks; key blocks for attention_dkdv), P[8 + k] = the word where binding k's values start
// (k = 1..7; 0 unless the launcher binds windows of tensors larger than one binding: then
// P[0], P[2], P[3] count the window's heads, queries and keys, gidd_wgpu's
// fused/attention.rs), P[16]: flags (below), P[17] = all of a head's keys (the mask's row
// stride; P[3] unless the keys are split into windows).
//
// Flags, for sums split over windows (the fma chains go on from the stored partial state, bit
// for bit the unsplit sums): attention_dkdv (queries in several windows): bit 0 continues the
// sums stored in dk, dv, bit 1 scales dk when done. attention_fwd(_row) and attention_dq (keys
// in several windows, each a whole number of T-key tiles): bit 0 continues from the stored
// state, bit 1 finishes (normalizes the output, or scales dq). The forward's state between
// key windows is the unnormalized output in OUT and (running max, running sum) per row in a
// scratch bound at binding 2 (ST when finishing, binding 2 then being lse).
//
// ST, with R = B*H*Lq rows: [0, R*D) do, then R values D_i, R lse, R dead flags.

@group(0) @binding(0) var<storage, read> P: array<u32>;

// attention_fwd: out, lse; attention_dkdv: dk, dv; attention_dq: dq (its binding 2 is an
// unused dummy, so q..ST sit where the other kernels have them); attention_rows: ST.
@group(0) @binding(1) var<storage, read_write> W1: array<u32>;
@group(0) @binding(2) var<storage, read_write> W2: array<u32>;
@group(0) @binding(3) var<storage, read> Q: array<u32>;
@group(0) @binding(4) var<storage, read> K: array<u32>;
@group(0) @binding(5) var<storage, read> V: array<u32>;
// bool [B, Lq, Lk], one word per element, 0 = masked
@group(0) @binding(6) var<storage, read> MASK: array<u32>;
@group(0) @binding(7) var<storage, read> ST: array<u32>;

// attention_rows' operands: out, dout, lse, mask.
@group(0) @binding(2) var<storage, read> R_O: array<u32>;
@group(0) @binding(3) var<storage, read> R_DO: array<u32>;
@group(0) @binding(4) var<storage, read> R_LSE: array<u32>;
@group(0) @binding(5) var<storage, read> R_MASK: array<u32>;

// Rows per block and per tile.
const T: u32 = 16u;
// The largest head dim (gidd_wgpu's fused/attention.rs refuses larger ones).
const DMAX: u32 = 128u;
// Head dims one invocation owns: DMAX / T.
const NU: u32 = 8u;

// Two [T, DMAX] row tiles (18 KiB with SS and SP: under lavapipe's 32 KiB).
var<workgroup> SA: array<f32, 2048>;
var<workgroup> SB: array<f32, 2048>;
// [T, T]: scores / ds, and probabilities.
var<workgroup> SS: array<f32, 256>;
var<workgroup> SP: array<f32, 256>;

const F32_MIN: f32 = -3.40282347e+38;

// tanh without cancellation near 0 or inf / inf far out (elementwise/ops.wgsl's tanh_f).
fn tanh_acc(x: f32) -> f32 {
    let a = abs(x);
    if a < 0.55 {
        let z = x * x;
        let p = 0.0014558344 - z * 0.00059002744;
        let q = 0.0088632355 + z * (-0.0035921280 + z * p);
        let r = 0.13333334 + z * (-0.053968254 + z * (0.021869489 - z * q));
        return x * (1.0 + z * (-0.33333334 + z * r));
    }
    if a > 10.0 {
        return sign(x);
    }
    let e = exp_acc(-2.0 * a);
    return sign(x) * (1.0 - e) / (1.0 + e);
}

// ---- tiles: rows [r0, r0 + T) of a [rows, D] buffer into SA or SB (row k at k * DMAX);
// rows at or past `end` read as 0 ----

fn a_from_q(r0: u32, end: u32, d: u32, t: u32) {
    for (var e = t; e < T * d; e = e + WG) {
        let k = e / d;
        let x = e - k * d;
        var y = 0.0;
        if r0 + k < end {
            y = bitcast<f32>(Q[P[11u] + (r0 + k) * d + x]);
        }
        SA[k * DMAX + x] = y;
    }
}

// do rows from ST (they start at word 0 there).
fn a_from_do(r0: u32, end: u32, d: u32, t: u32) {
    for (var e = t; e < T * d; e = e + WG) {
        let k = e / d;
        let x = e - k * d;
        var y = 0.0;
        if r0 + k < end {
            y = bitcast<f32>(ST[P[15u] + (r0 + k) * d + x]);
        }
        SA[k * DMAX + x] = y;
    }
}

fn b_from_k(r0: u32, end: u32, d: u32, t: u32) {
    for (var e = t; e < T * d; e = e + WG) {
        let k = e / d;
        let x = e - k * d;
        var y = 0.0;
        if r0 + k < end {
            y = bitcast<f32>(K[P[12u] + (r0 + k) * d + x]);
        }
        SB[k * DMAX + x] = y;
    }
}

fn b_from_v(r0: u32, end: u32, d: u32, t: u32) {
    for (var e = t; e < T * d; e = e + WG) {
        let k = e / d;
        let x = e - k * d;
        var y = 0.0;
        if r0 + k < end {
            y = bitcast<f32>(V[P[13u] + (r0 + k) * d + x]);
        }
        SB[k * DMAX + x] = y;
    }
}

// The soft-capped score of query row a of SA against key row b of SB, and d s~ / d s:
// (c tanh(s / c), 1 - tanh^2) with the cap, else (s, 1); s = sum_x (scale q_x) k_x.
fn score(a: u32, b: u32, d: u32, scale: f32) -> vec2<f32> {
    var s = 0.0;
    for (var x = 0u; x < d; x = x + 1u) {
        s = fma(SA[a * DMAX + x] * scale, SB[b * DMAX + x], s);
    }
    if P[7] != 0u {
        let c = bitcast<f32>(P[6]);
        let th = tanh_acc(s * (1.0 / c));
        return vec2<f32>(c * th, 1.0 - th * th);
    }
    return vec2<f32>(s, 1.0);
}

// do row a of SA . v row b of SB.
fn dot_ab(a: u32, b: u32, d: u32) -> f32 {
    var s = 0.0;
    for (var x = 0u; x < d; x = x + 1u) {
        s = fma(SA[a * DMAX + x], SB[b * DMAX + x], s);
    }
    return s;
}

// Whether query i of batch b may see key j.
fn sees(b: u32, i: u32, j: u32) -> bool {
    return MASK[P[14u] + (b * P[2] + i) * P[17] + j] != 0u;
}

// The forward's stored state of window row `row`: (running max, running sum), from binding 2
// or (finishing) from ST.
fn fwd_state(row: u32) -> vec2<f32> {
    if (P[16] & 2u) != 0u {
        return vec2<f32>(bitcast<f32>(ST[P[15u] + 2u * row]), bitcast<f32>(ST[P[15u] + 2u * row + 1u]));
    }
    return vec2<f32>(bitcast<f32>(W2[P[10u] + 2u * row]), bitcast<f32>(W2[P[10u] + 2u * row + 1u]));
}

// Stores the forward's state of row `row` (not finishing: binding 2 is the scratch).
fn fwd_keep(row: u32, m: f32, l: f32) {
    W2[P[10u] + 2u * row] = bitcast<u32>(m);
    W2[P[10u] + 2u * row + 1u] = bitcast<u32>(l);
}

// The flat workgroup index (the grid folds y into x as plan::grid lays it out).
fn block_id(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

@compute @workgroup_size(256)
fn attention_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let blk = block_id(wg, nwg);
    // uniform over the workgroup: all invocations return here or none does
    if blk >= P[0] * P[8] {
        return;
    }
    let t = lid.x;
    let r = t / T;
    let c = t % T;
    let lq = P[2];
    let lk = P[3];
    let d = P[4];
    let scale = bitcast<f32>(P[5]);
    let bh = blk / P[8];
    let b = bh / P[1];
    let i0 = (blk % P[8]) * T;
    let i = i0 + r;
    a_from_q(bh * lq + i0, bh * lq + lq, d, t);
    // m starts at f32::MIN rather than -inf: every score is at least that (masked ones equal)
    var m_run = F32_MIN;
    var l_run = 0.0;
    var o: array<f32, NU>;
    let go_on = (P[16] & 1u) != 0u && i < lq;
    if go_on {
        let ml = fwd_state(bh * lq + i);
        m_run = ml.x;
        l_run = ml.y;
    }
    for (var u = 0u; u < NU; u = u + 1u) {
        o[u] = 0.0;
        let x = c + u * T;
        if go_on && x < d {
            o[u] = bitcast<f32>(W1[P[9u] + (bh * lq + i) * d + x]);
        }
    }
    for (var j0 = 0u; j0 < lk; j0 = j0 + T) {
        let kn = min(T, lk - j0);
        // the previous tile's reads of SB are done (and SA is written, the first time)
        workgroupBarrier();
        b_from_k(bh * lk + j0, bh * lk + lk, d, t);
        workgroupBarrier();
        var s = F32_MIN;
        if c < kn {
            s = score(r, c, d, scale).x;
            if i < lq && !sees(b, i, j0 + c) {
                s = F32_MIN;
            }
        }
        SS[t] = s;
        workgroupBarrier();
        b_from_v(bh * lk + j0, bh * lk + lk, d, t);
        // online softmax: the row's new max, the old terms' rescale, this tile's p
        var bmax = F32_MIN;
        for (var k = 0u; k < kn; k = k + 1u) {
            bmax = max(bmax, SS[r * T + k]);
        }
        let mn = max(m_run, bmax);
        let alpha = exp_acc(m_run - mn);
        m_run = mn;
        SP[t] = select(0.0, exp_acc(s - mn), c < kn);
        workgroupBarrier();
        var psum = 0.0;
        for (var k = 0u; k < kn; k = k + 1u) {
            psum = psum + SP[r * T + k];
        }
        l_run = fma(l_run, alpha, psum);
        for (var u = 0u; u < NU; u = u + 1u) {
            let x = c + u * T;
            if x < d {
                var acc = o[u] * alpha;
                for (var k = 0u; k < kn; k = k + 1u) {
                    acc = fma(SP[r * T + k], SB[k * DMAX + x], acc);
                }
                o[u] = acc;
            }
        }
    }
    if i >= lq {
        return;
    }
    let row = bh * lq + i;
    if (P[16] & 2u) == 0u {
        // more key windows follow: keep the state
        for (var u = 0u; u < NU; u = u + 1u) {
            let x = c + u * T;
            if x < d {
                W1[P[9u] + row * d + x] = bitcast<u32>(o[u]);
            }
        }
        if c == 0u {
            fwd_keep(row, m_run, l_run);
        }
        return;
    }
    if P[17] == 0u {
        // an empty softmax: 0 / 0, as the cpu kernel
        for (var x = c; x < d; x = x + T) {
            W1[P[9u] + row * d + x] = bitcast<u32>(f32_nan());
        }
        if c == 0u {
            W2[P[10u] + row] = bitcast<u32>(-f32_inf());
        }
        return;
    }
    let inv = 1.0 / l_run;
    for (var u = 0u; u < NU; u = u + 1u) {
        let x = c + u * T;
        if x < d {
            W1[P[9u] + row * d + x] = bitcast<u32>(o[u] * inv);
        }
    }
    if c == 0u {
        W2[P[10u] + row] = bitcast<u32>(m_run + ln_acc(l_run));
    }
}

// attention_fwd for CPU adapters (lavapipe), strategy `row_stream`: one invocation per query
// row streams the keys straight from K and V, with no workgroup memory and no barrier. llvmpipe
// runs a workgroup's invocations as SIMD lanes and each barrier as a switch through all of its
// lane groups, so the tiled kernel's four barriers per 16 keys cost more than its arithmetic,
// and a CPU's caches already hold the key rows a workgroup tile would. The arithmetic is
// attention_fwd's, tile for tile (16 keys under one running max, the same fma order), so the
// two give the same bits. 64-wide workgroups, a row each: P[8] is unused.
@compute @workgroup_size(64)
fn attention_fwd_row(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = block_id(wg, nwg) * 64u + lid.x;
    let lq = P[2];
    if row >= P[0] * lq {
        return;
    }
    let lk = P[3];
    let d = P[4];
    let scale = bitcast<f32>(P[5]);
    let bh = row / lq;
    let i = row % lq;
    let b = bh / P[1];
    // q times scale once (the tiled kernel forms the same product per score)
    var qs: array<f32, DMAX>;
    var o: array<f32, DMAX>;
    let go_on = (P[16] & 1u) != 0u;
    for (var x = 0u; x < d; x = x + 1u) {
        qs[x] = bitcast<f32>(Q[P[11u] + row * d + x]) * scale;
        o[x] = 0.0;
        if go_on {
            o[x] = bitcast<f32>(W1[P[9u] + row * d + x]);
        }
    }
    var m_run = F32_MIN;
    var l_run = 0.0;
    if go_on {
        let ml = fwd_state(row);
        m_run = ml.x;
        l_run = ml.y;
    }
    var p: array<f32, T>;
    for (var j0 = 0u; j0 < lk; j0 = j0 + T) {
        let kn = min(T, lk - j0);
        var bmax = F32_MIN;
        for (var k = 0u; k < kn; k = k + 1u) {
            let kr = (bh * lk + j0 + k) * d;
            var s = 0.0;
            for (var x = 0u; x < d; x = x + 1u) {
                s = fma(qs[x], bitcast<f32>(K[P[12u] + kr + x]), s);
            }
            if P[7] != 0u {
                let c = bitcast<f32>(P[6]);
                s = c * tanh_acc(s * (1.0 / c));
            }
            if !sees(b, i, j0 + k) {
                s = F32_MIN;
            }
            p[k] = s;
            bmax = max(bmax, s);
        }
        let mn = max(m_run, bmax);
        let alpha = exp_acc(m_run - mn);
        m_run = mn;
        var psum = 0.0;
        for (var k = 0u; k < kn; k = k + 1u) {
            p[k] = exp_acc(p[k] - mn);
            psum = psum + p[k];
        }
        l_run = fma(l_run, alpha, psum);
        // each o[x]: scaled by alpha, then the tile's terms in key order, as in the tiled
        // kernel; keys outermost so that V is read along its rows
        let vr = (bh * lk + j0) * d;
        for (var x = 0u; x < d; x = x + 1u) {
            o[x] = o[x] * alpha;
        }
        for (var k = 0u; k < kn; k = k + 1u) {
            let pk = p[k];
            for (var x = 0u; x < d; x = x + 1u) {
                o[x] = fma(pk, bitcast<f32>(V[P[13u] + vr + k * d + x]), o[x]);
            }
        }
    }
    if (P[16] & 2u) == 0u {
        // more key windows follow: keep the state
        for (var x = 0u; x < d; x = x + 1u) {
            W1[P[9u] + row * d + x] = bitcast<u32>(o[x]);
        }
        fwd_keep(row, m_run, l_run);
        return;
    }
    if P[17] == 0u {
        // an empty softmax: 0 / 0, as the cpu kernel
        for (var x = 0u; x < d; x = x + 1u) {
            W1[P[9u] + row * d + x] = bitcast<u32>(f32_nan());
        }
        W2[P[10u] + row] = bitcast<u32>(-f32_inf());
        return;
    }
    let inv = 1.0 / l_run;
    for (var x = 0u; x < d; x = x + 1u) {
        W1[P[9u] + row * d + x] = bitcast<u32>(o[x] * inv);
    }
    W2[P[10u] + row] = bitcast<u32>(m_run + ln_acc(l_run));
}

@compute @workgroup_size(256)
fn attention_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = flat_id(wg, nwg, lid);
    let lq = P[2];
    let rows = P[0] * lq;
    if row >= rows {
        return;
    }
    let lk = P[17];
    let d = P[4];
    // D_i: exact products (fma gives each one's rounding error) under a compensated sum
    var acc = vec2<f32>(0.0, 0.0);
    for (var x = 0u; x < d; x = x + 1u) {
        let w = R_DO[P[11u] + row * d + x];
        W1[P[9u] + row * d + x] = w;
        let g = bitcast<f32>(w);
        let o = bitcast<f32>(R_O[P[10u] + row * d + x]);
        let p = g * o;
        acc = kahan(acc, p);
        acc.y = acc.y + fma(g, o, -p);
    }
    let nq = rows * d;
    W1[P[9u] + nq + row] = bitcast<u32>(acc.x + acc.y);
    W1[P[9u] + nq + rows + row] = R_LSE[P[12u] + row];
    let b = row / lq / P[1];
    let i = row % lq;
    var dead = 1u;
    for (var j = 0u; j < lk; j = j + 1u) {
        if R_MASK[P[13u] + (b * lq + i) * lk + j] != 0u {
            dead = 0u;
            break;
        }
    }
    W1[P[9u] + nq + 2u * rows + row] = dead;
}

@compute @workgroup_size(256)
fn attention_dkdv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let blk = block_id(wg, nwg);
    if blk >= P[0] * P[8] {
        return;
    }
    let t = lid.x;
    // r: the key of the block; c: the query of the tile
    let r = t / T;
    let c = t % T;
    let lq = P[2];
    let lk = P[3];
    let d = P[4];
    let scale = bitcast<f32>(P[5]);
    let bh = blk / P[8];
    let b = bh / P[1];
    let j0 = (blk % P[8]) * T;
    let j = j0 + r;
    let rows = P[0] * lq;
    let nq = rows * d;
    let inv_lk = 1.0 / f32(P[17]);
    var dk: array<f32, NU>;
    var dv: array<f32, NU>;
    for (var u = 0u; u < NU; u = u + 1u) {
        dk[u] = 0.0;
        dv[u] = 0.0;
        let x = c + u * T;
        if (P[16] & 1u) != 0u && j < lk && x < d {
            dk[u] = bitcast<f32>(W1[P[9u] + (bh * lk + j) * d + x]);
            dv[u] = bitcast<f32>(W2[P[10u] + (bh * lk + j) * d + x]);
        }
    }
    let dk_scale = select(1.0, scale, (P[16] & 2u) != 0u);
    for (var i0 = 0u; i0 < lq; i0 = i0 + T) {
        let qn = min(T, lq - i0);
        let i = i0 + c;
        let qrow = bh * lq + i;
        let ok = c < qn && j < lk;
        workgroupBarrier();
        a_from_q(bh * lq + i0, bh * lq + lq, d, t);
        b_from_k(bh * lk + j0, bh * lk + lk, d, t);
        workgroupBarrier();
        var p = 0.0;
        var g = 0.0;
        if ok {
            let sg = score(c, r, d, scale);
            var s = sg.x;
            g = sg.y;
            if !sees(b, i, j) {
                s = F32_MIN;
                g = 0.0;
            }
            p = exp_acc(s - bitcast<f32>(ST[P[15u] + nq + rows + qrow]));
            if ST[P[15u] + nq + 2u * rows + qrow] != 0u {
                p = inv_lk;
            }
        }
        workgroupBarrier();
        a_from_do(bh * lq + i0, bh * lq + lq, d, t);
        b_from_v(bh * lk + j0, bh * lk + lk, d, t);
        workgroupBarrier();
        var ds = 0.0;
        if ok {
            ds = p * (dot_ab(c, r, d) - bitcast<f32>(ST[P[15u] + nq + qrow])) * g;
        }
        SP[t] = p;
        SS[t] = ds;
        workgroupBarrier();
        // dv_j += sum_i p_ij do_i (SA holds do)
        for (var u = 0u; u < NU; u = u + 1u) {
            let x = c + u * T;
            if x < d {
                var acc = dv[u];
                for (var k = 0u; k < qn; k = k + 1u) {
                    acc = fma(SP[r * T + k], SA[k * DMAX + x], acc);
                }
                dv[u] = acc;
            }
        }
        workgroupBarrier();
        a_from_q(bh * lq + i0, bh * lq + lq, d, t);
        workgroupBarrier();
        // dk_j += sum_i ds_ij q_i (unscaled q; the scale is applied once at the end)
        for (var u = 0u; u < NU; u = u + 1u) {
            let x = c + u * T;
            if x < d {
                var acc = dk[u];
                for (var k = 0u; k < qn; k = k + 1u) {
                    acc = fma(SS[r * T + k], SA[k * DMAX + x], acc);
                }
                dk[u] = acc;
            }
        }
    }
    if j >= lk {
        return;
    }
    for (var u = 0u; u < NU; u = u + 1u) {
        let x = c + u * T;
        if x < d {
            W1[P[9u] + (bh * lk + j) * d + x] = bitcast<u32>(dk[u] * dk_scale);
            W2[P[10u] + (bh * lk + j) * d + x] = bitcast<u32>(dv[u]);
        }
    }
}

@compute @workgroup_size(256)
fn attention_dq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let blk = block_id(wg, nwg);
    if blk >= P[0] * P[8] {
        return;
    }
    let t = lid.x;
    // r: the query of the block; c: the key of the tile
    let r = t / T;
    let c = t % T;
    let lq = P[2];
    let lk = P[3];
    let d = P[4];
    let scale = bitcast<f32>(P[5]);
    let bh = blk / P[8];
    let b = bh / P[1];
    let i0 = (blk % P[8]) * T;
    let i = i0 + r;
    let qrow = bh * lq + i;
    let rows = P[0] * lq;
    let nq = rows * d;
    var lse = 0.0;
    var di = 0.0;
    if i < lq {
        lse = bitcast<f32>(ST[P[15u] + nq + rows + qrow]);
        di = bitcast<f32>(ST[P[15u] + nq + qrow]);
    }
    var dq: array<f32, NU>;
    for (var u = 0u; u < NU; u = u + 1u) {
        dq[u] = 0.0;
        let x = c + u * T;
        if (P[16] & 1u) != 0u && i < lq && x < d {
            dq[u] = bitcast<f32>(W1[P[9u] + qrow * d + x]);
        }
    }
    let dq_scale = select(1.0, scale, (P[16] & 2u) != 0u);
    for (var j0 = 0u; j0 < lk; j0 = j0 + T) {
        let kn = min(T, lk - j0);
        let j = j0 + c;
        let ok = i < lq && c < kn;
        workgroupBarrier();
        a_from_q(bh * lq + i0, bh * lq + lq, d, t);
        b_from_k(bh * lk + j0, bh * lk + lk, d, t);
        workgroupBarrier();
        // a row with every key masked has g = 0 throughout: its ds, and so dq, is 0
        var p = 0.0;
        var g = 0.0;
        if ok {
            let sg = score(r, c, d, scale);
            var s = sg.x;
            g = sg.y;
            if !sees(b, i, j) {
                s = F32_MIN;
                g = 0.0;
            }
            p = exp_acc(s - lse);
        }
        workgroupBarrier();
        a_from_do(bh * lq + i0, bh * lq + lq, d, t);
        b_from_v(bh * lk + j0, bh * lk + lk, d, t);
        workgroupBarrier();
        var ds = 0.0;
        if ok {
            ds = p * (dot_ab(r, c, d) - di) * g;
        }
        SS[t] = ds;
        workgroupBarrier();
        b_from_k(bh * lk + j0, bh * lk + lk, d, t);
        workgroupBarrier();
        // dq_i += sum_j ds_ij k_j
        for (var u = 0u; u < NU; u = u + 1u) {
            let x = c + u * T;
            if x < d {
                var acc = dq[u];
                for (var k = 0u; k < kn; k = k + 1u) {
                    acc = fma(SS[r * T + k], SB[k * DMAX + x], acc);
                }
                dq[u] = acc;
            }
        }
    }
    if i >= lq {
        return;
    }
    for (var u = 0u; u < NU; u = u + 1u) {
        let x = c + u * T;
        if x < d {
            W1[P[9u] + qrow * d + x] = bitcast<u32>(dq[u] * dq_scale);
        }
    }
}
