// One strided copy serves broadcast_in_dim, transpose, slice and each part of a concatenate:
//   dst[dst_off + sum_d idx_d * dst_stride_d] = src[src_off + sum_d idx_d * src_stride_d]
// over the row-major multi-index idx of an index space of rank <= 8 (stride 0 broadcasts),
// in elements of P[2] words (1, or 2 for i64). Pure copies: bit patterns survive.
//
// P[0] = elements, P[1] = rank, P[2] = words per element, P[3] = src_off, P[4] = dst_off,
// P[5..13] = index-space shape, P[13..21] = src strides, P[21..29] = dst strides.

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<storage, read> A: array<u32>;

@compute @workgroup_size(256)
fn strided_copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    var rem = i;
    var src = P[3];
    var dst = P[4];
    for (var d = i32(P[1]) - 1i; d >= 0i; d = d - 1i) {
        let k = u32(d);
        let n = P[5u + k];
        let j = rem % n;
        rem = rem / n;
        src = src + j * P[13u + k];
        dst = dst + j * P[21u + k];
    }
    let w = P[2];
    for (var k = 0u; k < w; k = k + 1u) {
        O[dst * w + k] = A[src * w + k];
    }
}
