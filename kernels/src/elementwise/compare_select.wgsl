// Comparisons (bool out, 0 or 1) and select. OP is the `Cmp` variant's position
// (gidd_kernels::wgsl::cmp_code): eq, ne, lt, le, gt, ge, with IEEE semantics on floats
// (every comparison with NaN is false except ne).

override OP: u32 = 0u;
// compare_i: 0 = i32 (signed order), 1 = u32 and bool (unsigned order).
override KIND: u32 = 0u;
// select_w: words per element (a constant, so the copy loop unrolls).
override W: u32 = 1u;

fn from_order(lt: bool, eq: bool) -> u32 {
    var r = false;
    switch OP {
        case 0u: { r = eq; }
        case 1u: { r = !eq; }
        case 2u: { r = lt; }
        case 3u: { r = lt || eq; }
        case 4u: { r = !lt && !eq; }
        default: { r = !lt; }
    }
    return select(0u, 1u, r);
}

@compute @workgroup_size(256)
fn compare_f(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    let x = bitcast<f32>(lda(i));
    let y = bitcast<f32>(ldb(i));
    if is_nan(x) || is_nan(y) {
        // unordered: only ne holds
        O[i] = select(0u, 1u, OP == 1u);
        return;
    }
    O[i] = from_order(x < y, x == y);
}

@compute @workgroup_size(256)
fn compare_i(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    let x = lda(i);
    let y = ldb(i);
    var lt = x < y;
    if KIND == 0u {
        lt = bitcast<i32>(x) < bitcast<i32>(y);
    }
    O[i] = from_order(lt, x == y);
}

@compute @workgroup_size(256)
fn compare_l(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    let x = lda2(i);
    let y = ldb2(i);
    O[i] = from_order(l_lt(x, y), all(x == y));
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
