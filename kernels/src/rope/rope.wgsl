// NeoX RoPE forward and backward (rope/mod.rs has the math): x [rows, heads, d], cos and sin
// [rows, d/2]. Elementwise over the (row, head, j < d/2) pairs: each invocation rotates one
// pair (x[j], x[j + d/2]) and writes both, with the cpu kernel's operation order (one fma per
// output), so results agree to the last bit or two.
//
// P[0] = pairs (rows * heads * d/2), P[1] = heads, P[2] = d/2.

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<u32>;
@group(0) @binding(3) var<storage, read> COS: array<u32>;
@group(0) @binding(4) var<storage, read> SIN: array<u32>;

// true: the backward (the rotation by -angle, sin negated).
override BWD: bool = false;
override HALF: u32 = 0u;

fn out_f(y: f32) -> u32 {
    return bitcast<u32>(round_half(y, HALF));
}

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat_id(wg, nwg, lid);
    if e >= P[0] {
        return;
    }
    let half = P[2];
    let j = e % half;
    let rh = e / half;
    let row = rh / P[1];
    let c = bitcast<f32>(COS[row * half + j]);
    let s0 = bitcast<f32>(SIN[row * half + j]);
    let s = select(s0, -s0, BWD);
    let i1 = rh * 2u * half + j;
    let x1 = bitcast<f32>(X[i1]);
    let x2 = bitcast<f32>(X[i1 + half]);
    O[i1] = out_f(fma(x1, c, (-x2) * s));
    O[i1 + half] = out_f(fma(x2, c, x1 * s));
}
