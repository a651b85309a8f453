// Comparisons (bool out, 0 or 1) and select. OP is the `Cmp` variant's position
// (gidd_kernels::wgsl::cmp_code); the per-element functions are in ops.wgsl.

override OP: u32 = 0u;
// compare_i: 0 = i32 (signed order), 1 = u32 and bool (unsigned order).
override KIND: u32 = 0u;
// select_w: words per element (a constant, so the copy loop unrolls).
override W: u32 = 1u;

@compute @workgroup_size(256)
fn compare_f(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = compare_f_op(OP, bitcast<f32>(lda(i)), bitcast<f32>(ldb(i)));
    }
}

@compute @workgroup_size(256)
fn compare_i(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = compare_i_op(OP, KIND, lda(i), ldb(i));
    }
}

@compute @workgroup_size(256)
fn compare_l(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = compare_l_op(OP, lda2(i), ldb2(i));
    }
}

// out = pred ? on_true : on_false, moving the words of elements W words wide (bits kept:
// NaN payloads survive). A = pred, B = on_true, C = on_false.
@compute @workgroup_size(256)
fn select_w(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    let take = lda(i) != 0u;
    for (var k = 0u; k < W; k = k + 1u) {
        var v: u32;
        if take {
            v = select(B[i * W + k], P[4 + k], (P[1] & 2u) != 0u);
        } else {
            v = select(C[i * W + k], P[6 + k], (P[1] & 4u) != 0u);
        }
        O[i * W + k] = v;
    }
}
