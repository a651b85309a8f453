// The adapter's f32 FMA peak, measured: each invocation runs P[0] rounds of 8 independent
// vec4 FMA chains (64 FLOPs a round). The multiplier and addend come from P[1], P[2] at run
// time so no compiler can fold the loop; the sum is stored so none can drop it.

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;

@compute @workgroup_size(256)
fn peak_fma(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    let x = vec4<f32>(bitcast<f32>(P[1]));
    let y = vec4<f32>(bitcast<f32>(P[2]));
    let s = f32(i) * 1e-9;
    var a0 = vec4<f32>(s, s + 0.1, s + 0.2, s + 0.3);
    var a1 = a0 + 1.0;
    var a2 = a0 + 2.0;
    var a3 = a0 + 3.0;
    var a4 = a0 + 4.0;
    var a5 = a0 + 5.0;
    var a6 = a0 + 6.0;
    var a7 = a0 + 7.0;
    for (var r = 0u; r < P[0]; r = r + 1u) {
        a0 = fma(a0, x, y);
        a1 = fma(a1, x, y);
        a2 = fma(a2, x, y);
        a3 = fma(a3, x, y);
        a4 = fma(a4, x, y);
        a5 = fma(a5, x, y);
        a6 = fma(a6, x, y);
        a7 = fma(a7, x, y);
    }
    let t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    O[i] = bitcast<u32>(t.x + t.y + t.z + t.w);
}
