// y = op(x) elementwise, one invocation per element. OP is the `Unary` variant's position
// (gidd_kernels::wgsl::unary_code); the per-element functions are in ops.wgsl.

override OP: u32 = 0u;
// The output is a 16-bit float (1 = bf16, 2 = f16): round the f32 result once (one word per
// element: packed values run through the executor's generated kernels instead).
override HALF: u32 = 0u;
// The integer kind of unary_i: 0 = i32, 1 = u32, 2 = bool.
override KIND: u32 = 0u;

@compute @workgroup_size(256)
fn unary_f(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = store_f(unary_f_op(OP, bitcast<f32>(lda(i))), HALF);
    }
}

@compute @workgroup_size(256)
fn unary_i(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        O[i] = unary_i_op(OP, KIND, lda(i));
    }
}

@compute @workgroup_size(256)
fn unary_l(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        st2(i, unary_l_op(OP, lda2(i)));
    }
}
