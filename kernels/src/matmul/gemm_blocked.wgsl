// Batched GEMM for CPU adapters (lavapipe), strategy `register_blocked`:
//   C[b, m, n] = sum_k A[b, m, k] B[b, k, n], C contiguous [batch, M, N],
// with A stored [batch, M, Kp] and B [batch, Kp, Np] (Kp, Np: K, N rounded up to 4; the
// executor copies an operand into that layout, zero-padding K, when it is not already there).
// f32 math and accumulation; a bf16 or f16 output is rounded once at the store.
//
// Why not gemm.wgsl's tiled kernel: a CPU driver runs a workgroup's invocations as SIMD lanes,
// pays for every load instruction (address, bounds check) and for barriers, and gains nothing
// from workgroup memory (its caches do that). So each invocation owns an 8 x 4 block of C in
// registers (8 vec4 accumulators), reads A and B four elements per load and touches no
// workgroup memory: measured 3-4x the tiled kernel's rate on lavapipe.
//
// This file is the kernel; the operand bindings, `ld_a`/`ld_b` (four consecutive elements of a row,
// by index in fours) and `store_row` come before it from gemm_blocked_f32.wgsl (f32 operands, 16
// bytes a load) or gemm_blocked_bf16.wgsl (packed bf16 or f16 operands, 8 bytes a load).
//
// P[0] = M, P[1] = N, P[2] = Kp / 4, P[3] = A batch stride, P[4] = A row stride, P[5] = B
// batch stride, P[6] = B row stride (all in fours of elements), P[7] = C row stride, P[8] = C
// batch stride (in elements: N and M N, or the whole output's when C binds a window of it
// that a block of a larger GEMM writes), P[9] = first batch of this dispatch, P[10] = C's
// first element (in the window C binds; even when packed).
//
// ACC: C holds the sum over earlier K blocks (f32, one word each): the accumulators start
// from it, so a GEMM split along K (operands larger than one storage binding) performs the
// same fma chain, bit for bit, as the unsplit one.

override ACC: bool = false;

@compute @workgroup_size(64)
fn gemm_blocked(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m_n = P[0];
    let n_n = P[1];
    let k4 = P[2];
    let b = wg.z + P[9];
    let q = wg.x * 64u + lid.x;
    let quads = (n_n + 3u) / 4u;
    let m0 = wg.y * 8u;
    // rows past M read the last row, a quad past N the last quad; neither is stored
    let last = m_n - 1u - m0;
    let ra = P[4];
    let a0 = b * P[3] + m0 * ra;
    let r0 = a0;
    let r1 = a0 + min(1u, last) * ra;
    let r2 = a0 + min(2u, last) * ra;
    let r3 = a0 + min(3u, last) * ra;
    let r4 = a0 + min(4u, last) * ra;
    let r5 = a0 + min(5u, last) * ra;
    let r6 = a0 + min(6u, last) * ra;
    let r7 = a0 + min(7u, last) * ra;
    let rb = P[6];
    var bi = b * P[5] + min(q, quads - 1u);
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    let ost = P[7];
    let row = P[10] + b * P[8] + m0 * ost;
    if ACC && q < quads {
        let nq = q * 4u;
        let rows_left = m_n - m0;
        c0 = load_row(row, nq, n_n);
        if rows_left > 1u { c1 = load_row(row + ost, nq, n_n); }
        if rows_left > 2u { c2 = load_row(row + 2u * ost, nq, n_n); }
        if rows_left > 3u { c3 = load_row(row + 3u * ost, nq, n_n); }
        if rows_left > 4u { c4 = load_row(row + 4u * ost, nq, n_n); }
        if rows_left > 5u { c5 = load_row(row + 5u * ost, nq, n_n); }
        if rows_left > 6u { c6 = load_row(row + 6u * ost, nq, n_n); }
        if rows_left > 7u { c7 = load_row(row + 7u * ost, nq, n_n); }
    }
    for (var kk = 0u; kk < k4; kk = kk + 1u) {
        let x0 = ld_a(r0 + kk);
        let x1 = ld_a(r1 + kk);
        let x2 = ld_a(r2 + kk);
        let x3 = ld_a(r3 + kk);
        let x4 = ld_a(r4 + kk);
        let x5 = ld_a(r5 + kk);
        let x6 = ld_a(r6 + kk);
        let x7 = ld_a(r7 + kk);
        let b0 = ld_b(bi);
        let b1 = ld_b(bi + rb);
        let b2 = ld_b(bi + 2u * rb);
        let b3 = ld_b(bi + 3u * rb);
        c0 = fma(vec4<f32>(x0.x), b0, fma(vec4<f32>(x0.y), b1, fma(vec4<f32>(x0.z), b2, fma(vec4<f32>(x0.w), b3, c0))));
        c1 = fma(vec4<f32>(x1.x), b0, fma(vec4<f32>(x1.y), b1, fma(vec4<f32>(x1.z), b2, fma(vec4<f32>(x1.w), b3, c1))));
        c2 = fma(vec4<f32>(x2.x), b0, fma(vec4<f32>(x2.y), b1, fma(vec4<f32>(x2.z), b2, fma(vec4<f32>(x2.w), b3, c2))));
        c3 = fma(vec4<f32>(x3.x), b0, fma(vec4<f32>(x3.y), b1, fma(vec4<f32>(x3.z), b2, fma(vec4<f32>(x3.w), b3, c3))));
        c4 = fma(vec4<f32>(x4.x), b0, fma(vec4<f32>(x4.y), b1, fma(vec4<f32>(x4.z), b2, fma(vec4<f32>(x4.w), b3, c4))));
        c5 = fma(vec4<f32>(x5.x), b0, fma(vec4<f32>(x5.y), b1, fma(vec4<f32>(x5.z), b2, fma(vec4<f32>(x5.w), b3, c5))));
        c6 = fma(vec4<f32>(x6.x), b0, fma(vec4<f32>(x6.y), b1, fma(vec4<f32>(x6.z), b2, fma(vec4<f32>(x6.w), b3, c6))));
        c7 = fma(vec4<f32>(x7.x), b0, fma(vec4<f32>(x7.y), b1, fma(vec4<f32>(x7.z), b2, fma(vec4<f32>(x7.w), b3, c7))));
        bi = bi + 4u * rb;
    }
    if q >= quads {
        return;
    }
    let n = q * 4u;
    let cs = array<vec4<f32>, 8>(c0, c1, c2, c3, c4, c5, c6, c7);
    for (var r = 0u; r < 8u; r = r + 1u) {
        if m0 + r < m_n {
            store_row(row + r * ost, n, n_n, cs[r]);
        }
    }
}
