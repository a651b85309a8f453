// One strided copy serves broadcast_in_dim, transpose, slice and each part of a concatenate:
//   dst[dst_off + sum_d idx_d * dst_stride_d] = src[src_off + sum_d idx_d * src_stride_d]
// over the row-major multi-index idx of an index space of rank <= 8 (stride 0 broadcasts),
// in elements of P[2] words (1, or 2 for i64). Pure copies: bit patterns survive. With SRC_H
// (1 = bf16, 2 = f16) the source is packed (src indexes its halves) and the destination
// widened, one word per element: how a 16-bit float operand reaches a kernel that reads one
// word per element (each invocation writes its own word, so there is no race on the
// destination).
//
// P[0] = elements, P[1] = rank, P[2] = words per element, P[3] = src_off, P[4] = dst_off,
// P[5..13] = index-space shape, P[13..21] = src strides, P[21..29] = dst strides.

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<storage, read> A: array<u32>;

// The rank (P[1]) and words per element (P[2]) as pipeline constants: with constant trip
// counts the driver unrolls both loops (a SIMD driver runs a loop of run-time length under a
// lane mask, several times slower on lavapipe).
override RANK: u32 = 1u;
override W: u32 = 1u;
override SRC_H: u32 = 0u;

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
    for (var d = 0u; d < RANK; d = d + 1u) {
        let k = RANK - 1u - d;
        let n = P[5u + k];
        // the outermost dim needs no division: rem < n there
        var j = rem;
        if k > 0u {
            j = rem % n;
            rem = rem / n;
        }
        src = src + j * P[13u + k];
        dst = dst + j * P[21u + k];
    }
    if SRC_H != HALF_NONE {
        O[dst] = half_bits(A[src >> 1u], src, SRC_H);
        return;
    }
    for (var k = 0u; k < W; k = k + 1u) {
        O[dst * W + k] = A[src * W + k];
    }
}

