// y = op(a, b) elementwise, one invocation per element. OP is the `Binary` variant's position
// (gidd_kernels::wgsl::binary_code); the per-element functions are in ops.wgsl.

override OP: u32 = 0u;
override HALF: u32 = 0u;
// The integer kind of binary_i: 0 = i32, 1 = u32, 2 = bool.
override KIND: u32 = 0u;

@compute @workgroup_size(256)
fn binary_f(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = store_f(binary_f_op(OP, bitcast<f32>(lda(i)), bitcast<f32>(ldb(i))), HALF);
    }
}

@compute @workgroup_size(256)
fn binary_i(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = binary_i_op(OP, KIND, lda(i), ldb(i));
    }
}

@compute @workgroup_size(256)
fn binary_l(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        st2(i, binary_l_op(OP, lda2(i), ldb2(i)));
    }
}
