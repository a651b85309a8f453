// Convert between dtype classes, iota, and fill; the per-element conversions are in ops.wgsl
// (the cpu executor's: truncation toward zero with saturation, x != 0 to bool, low bits kept
// between integers, round to nearest even to bf16 or f16).

// Source and target kinds: 0 = i32, 1 = u32, 2 = bool (the one-word integer kinds).
override FROM: u32 = 0u;
override TO: u32 = 0u;
// The float output is a 16-bit float (1 = bf16, 2 = f16): round once.
override HALF: u32 = 0u;

@compute @workgroup_size(256)
fn convert_ff(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = store_f(bitcast<f32>(lda(i)), HALF);
    }
}

@compute @workgroup_size(256)
fn convert_fi(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = f32_to_int(TO, bitcast<f32>(lda(i)));
    }
}

@compute @workgroup_size(256)
fn convert_fl(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        st2(i, l_from_f32(bitcast<f32>(lda(i))));
    }
}

@compute @workgroup_size(256)
fn convert_if(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = store_f(int_to_f32(FROM, lda(i)), HALF);
    }
}

@compute @workgroup_size(256)
fn convert_ii(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = int_to_int(TO, lda(i));
    }
}

@compute @workgroup_size(256)
fn convert_il(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        st2(i, int_to_long(FROM, lda(i)));
    }
}

@compute @workgroup_size(256)
fn convert_li(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = long_to_int(TO, lda2(i));
    }
}

@compute @workgroup_size(256)
fn convert_lf(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = store_f(l_to_f32(lda2(i)), HALF);
    }
}

// out[i] = index of i along a dim of size P[9] whose row-major stride is P[8].
fn iota_at(i: u32) -> u32 {
    return (i / P[8]) % P[9];
}

@compute @workgroup_size(256)
fn iota_f(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = store_f(f32(iota_at(i)), HALF);
    }
}

// i32, u32 and bool (TO = 2: index != 0).
@compute @workgroup_size(256)
fn iota_i(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        let v = iota_at(i);
        O[i] = int_to_int(TO, v);
    }
}

@compute @workgroup_size(256)
fn iota_l(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        st2(i, l_from_u32(iota_at(i)));
    }
}

// P[0] elements of P[8] words each, all equal to the words P[2], P[3] (a splat made real).
@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        for (var k = 0u; k < P[8]; k = k + 1u) {
            O[i * P[8] + k] = P[2 + k];
        }
    }
}

// Packs P[0] widened values of A (one word each, as the widened kernels write them) two per
// word into O as HALF (bf16 or f16), rounding each to nearest even (so a plain f32 packs as its
// 16-bit float too): one invocation per output word, the last one half-filled (high half 0)
// when P[0] is odd.
@compute @workgroup_size(256)
fn pack_half(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = flat_id(wg, nwg, lid);
    let i = 2u * j;
    if i >= P[0] {
        return;
    }
    let lo = bitcast<u32>(round_half(bitcast<f32>(A[i]), HALF));
    var hi = 0u;
    if i + 1u < P[0] {
        hi = bitcast<u32>(round_half(bitcast<f32>(A[i + 1u]), HALF));
    }
    O[j] = half_pair(lo, hi, HALF);
}

// pack_half into a run of packed O that may start and end mid-word: P[0] values of A from
// A[P[2]] go to elements P[1].. of O; a half of a word outside the run keeps its value (the
// neighbouring run of another dispatch). One invocation per word the run touches.
@compute @workgroup_size(256)
fn pack_half_run(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = P[1];
    let end = first + P[0];
    let w = first / 2u + flat_id(wg, nwg, lid);
    let e = 2u * w;
    if e >= end {
        return;
    }
    let old = O[w];
    var lo = old & 0xffffu;
    var hi = old >> 16u;
    if e >= first {
        lo = half_enc(bitcast<u32>(round_half(bitcast<f32>(A[P[2] + e - first]), HALF)), HALF);
    }
    if e + 1u < end {
        hi = half_enc(bitcast<u32>(round_half(bitcast<f32>(A[P[2] + e + 1u - first]), HALF)), HALF);
    }
    O[w] = lo | (hi << 16u);
}
