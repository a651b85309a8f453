// Convert between dtype classes, iota, and fill. Conversions are the cpu executor's: floats to
// integers truncate toward zero and saturate (NaN gives 0), anything to bool is x != 0 (NaN
// included), integers to integers keep the low bits, to bf16 rounds to nearest even.

// Source and target kinds: 0 = i32, 1 = u32, 2 = bool (the one-word integer kinds).
override FROM: u32 = 0u;
override TO: u32 = 0u;
// The float output is bf16: round once.
override BF16: bool = false;

fn int_to_f32(x: u32) -> f32 {
    if FROM == 0u {
        return f32(bitcast<i32>(x));
    }
    return f32(x);
}

// f32 -> i32 / u32 / bool.
fn f32_to_int(x: f32) -> u32 {
    if TO == 2u {
        return select(1u, 0u, x == 0.0);
    }
    if is_nan(x) {
        return 0u;
    }
    if TO == 0u {
        if x >= 2147483648.0 {
            return 0x7fffffffu;
        }
        if x <= -2147483648.0 {
            return 0x80000000u;
        }
        return bitcast<u32>(i32(trunc(x)));
    }
    if x >= 4294967296.0 {
        return 0xffffffffu;
    }
    if x <= 0.0 {
        return 0u;
    }
    return u32(trunc(x));
}

@compute @workgroup_size(256)
fn convert_ff(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        stf(i, bitcast<f32>(lda(i)), BF16);
    }
}

@compute @workgroup_size(256)
fn convert_fi(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = f32_to_int(bitcast<f32>(lda(i)));
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
        stf(i, int_to_f32(lda(i)), BF16);
    }
}

@compute @workgroup_size(256)
fn convert_ii(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        let x = lda(i);
        O[i] = select(x, select(0u, 1u, x != 0u), TO == 2u);
    }
}

@compute @workgroup_size(256)
fn convert_il(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        let x = lda(i);
        st2(i, select(l_from_u32(x), l_from_i32(bitcast<i32>(x)), FROM == 0u));
    }
}

@compute @workgroup_size(256)
fn convert_li(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        let x = lda2(i);
        O[i] = select(x.x, select(0u, 1u, !l_is_zero(x)), TO == 2u);
    }
}

@compute @workgroup_size(256)
fn convert_lf(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        stf(i, l_to_f32(lda2(i)), BF16);
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
        stf(i, f32(iota_at(i)), BF16);
    }
}

// i32, u32 and bool (TO = 2: index != 0).
@compute @workgroup_size(256)
fn iota_i(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        let v = iota_at(i);
        O[i] = select(v, select(0u, 1u, v != 0u), TO == 2u);
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
