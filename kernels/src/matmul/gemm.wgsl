// Batched GEMM with any operand strides (so every transpose of dot_general is free):
//   C[b, m, n] = sum_k A[a_off + b sa_b + m sa_m + k sa_k] * B[b_off + b sb_b + k sb_k + n sb_n]
// C contiguous [batch, M, N]. f32 math and accumulation over f32 operands (bf16 and f16
// dot_general run gemm_blocked over their packed operands on every adapter).
//
// Strategy `tiled_smem` (GPUs; CPU adapters run gemm_blocked.wgsl): a 16 x 16 workgroup
// computes a 64 x 64 tile of C, each invocation a 4 x 4 block, stepping K by 16 through two
// 16 x 64 tiles in workgroup memory (8 KiB). Out-of-range rows, columns and k read as zero, so
// any M, N, K works.
//
// P[0] = M, P[1] = N, P[2] = K, P[3] = sa_b, P[4] = sa_m, P[5] = sa_k, P[6] = sb_b,
// P[7] = sb_k, P[8] = sb_n, P[9] = first batch of this dispatch (grids are at most 65535 high),
// P[10] = a_off, P[11] = b_off.

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<storage, read> A: array<u32>;
@group(0) @binding(3) var<storage, read> B: array<u32>;

override HALF: u32 = 0u;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

// [TK][TM] and [TK][TN]: an invocation's 4 rows (columns) of one k are adjacent.
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m_n = P[0];
    let n_n = P[1];
    let k_n = P[2];
    let b = wg.z + P[9];
    let m0 = wg.y * TM;
    let n0 = wg.x * TN;
    let t = lid.y * 16u + lid.x;
    let a_base = P[10] + b * P[3];
    let b_base = P[11] + b * P[6];
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < k_n; k0 = k0 + TK) {
        for (var q = 0u; q < 4u; q = q + 1u) {
            let e = t + 256u * q;
            // A tile: consecutive invocations walk k (contiguous when sa_k = 1)
            let am = m0 + e / TK;
            let ak = k0 + e % TK;
            var av = 0.0;
            if am < m_n && ak < k_n {
                av = bitcast<f32>(A[a_base + am * P[4] + ak * P[5]]);
            }
            As[(e % TK) * TM + e / TK] = av;
            // B tile: consecutive invocations walk n (contiguous when sb_n = 1)
            let bk = k0 + e / TN;
            let bn = n0 + e % TN;
            var bv = 0.0;
            if bk < k_n && bn < n_n {
                bv = bitcast<f32>(B[b_base + bk * P[7] + bn * P[8]]);
            }
            Bs[e] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let ar = kk * TM + lid.y * 4u;
            let a = vec4<f32>(As[ar], As[ar + 1u], As[ar + 2u], As[ar + 3u]);
            let br = kk * TN + lid.x * 4u;
            let bv = vec4<f32>(Bs[br], Bs[br + 1u], Bs[br + 2u], Bs[br + 3u]);
            acc0 = fma(vec4<f32>(a.x), bv, acc0);
            acc1 = fma(vec4<f32>(a.y), bv, acc1);
            acc2 = fma(vec4<f32>(a.z), bv, acc2);
            acc3 = fma(vec4<f32>(a.w), bv, acc3);
        }
        workgroupBarrier();
    }
    let rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + lid.y * 4u + i;
        if m >= m_n {
            break;
        }
        let row = rows[i];
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n0 + lid.x * 4u + j;
            if n < n_n {
                let y = row[j];
                O[(b * m_n + m) * n_n + n] = bitcast<u32>(round_half(y, HALF));
            }
        }
    }
}
