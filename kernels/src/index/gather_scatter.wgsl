// Gather and scatter-add along one axis (index/mod.rs): the indexed operand is
// [pre, len, post], the indices [m], the other operand [pre, m, post]; indices are clamped to
// [0, len) as StableHLO's gather clamps, so a bad id never reads or writes outside a buffer.
//
// scatter-add accumulates with atomics: f32 by a compare-exchange loop on the bit pattern (so
// the order of additions to one element, and its last bits, can vary from run to run; the cpu
// executor adds in index order), i32 / u32 by atomicAdd (wrapping), bool by atomicOr, i64 by
// two atomicAdds with the carry of the low word added to the high one (exact, wrapping). A
// bf16 or f16 output is summed in an f32 buffer and packed (rounded once) after.
//
// P[0] = elements of the [pre, m, post] operand, P[1] = len, P[2] = post, P[3] = m,
// P[4] = words per element (unused: W), P[5] = index kind (0 = i32, 1 = u32, 2 = i64);
// P[6], P[7] = the first element and the element count of the window of the indexed operand
// that its binding covers (gather's source, scatter-add's output: one larger than a storage
// binding is reached in one dispatch per window, each moving the elements that lie in its
// window; else 0 and all). scatter-add: P[8] = the first update of this dispatch (updates
// larger than a binding come in windows too: A binds updates P[8] ..< P[8] + P[0]).

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read> A: array<u32>;
@group(0) @binding(3) var<storage, read> B: array<u32>;

// scatter_add's element kind: 0 = f32 (a 16-bit float output's f32 sums), 2 = i32 or u32, 3 = bool,
// 4 = i64.
override KIND: u32 = 0u;
// scatter_add: the float updates are packed (1 = bf16, 2 = f16). gather_h moves packed halves
// as bits, whichever 16-bit float they hold.
override PACKED: u32 = 0u;
// gather: words per element (a constant, so the copy loop unrolls).
override W: u32 = 1u;

// The clamped index j of the index operand B.
fn index_at(j: u32) -> u32 {
    let len = P[1];
    let top = len - min(len, 1u);
    switch P[5] {
        case 0u: {
            let v = bitcast<i32>(B[j]);
            return min(u32(max(v, 0i)), top);
        }
        case 1u: {
            return min(B[j], top);
        }
        default: {
            let lo = B[2u * j];
            let hi = B[2u * j + 1u];
            if (hi >> 31u) != 0u {
                return 0u;
            }
            return select(min(lo, top), top, hi != 0u);
        }
    }
}

// The [pre, len, post] position of element e of the [pre, m, post] operand.
fn target_of(e: u32) -> u32 {
    let post = P[2];
    let m = P[3];
    let q = e % post;
    let j = (e / post) % m;
    let p = e / (post * m);
    return (p * P[1] + index_at(j)) * post + q;
}

// out[pre, m, post] = x[pre, clamp(ids), post]: O is the output, A the source.
@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let e = flat_id(wg, nwg, lid);
    if e >= P[0] {
        return;
    }
    let src = target_of(e);
    if src < P[6] || src - P[6] >= P[7] {
        return;
    }
    let at = src - P[6];
    for (var k = 0u; k < W; k = k + 1u) {
        atomicStore(&O[e * W + k], A[at * W + k]);
    }
}

// gather over packed bf16 or f16 (source and output two per word, read in place): one invocation
// per output word. A half whose source lies outside this dispatch's window keeps the value an
// earlier window's dispatch wrote (window starts are even, so halves keep their parity).
@compute @workgroup_size(256)
fn gather_h(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = flat_id(wg, nwg, lid);
    if 2u * j >= P[0] {
        return;
    }
    var w = atomicLoad(&O[j]);
    for (var h = 0u; h < 2u; h = h + 1u) {
        let e = 2u * j + h;
        if e < P[0] {
            let src = target_of(e);
            if src >= P[6] && src - P[6] < P[7] {
                let at = src - P[6];
                let bits = (A[at >> 1u] >> ((at & 1u) * 16u)) & 0xffffu;
                w = (w & ~(0xffffu << (16u * h))) | (bits << (16u * h));
            }
        }
    }
    atomicStore(&O[j], w);
}

// Zeroes the first P[0] words of the output (scatter-add's starting point).
@compute @workgroup_size(256)
fn zero(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i < P[0] {
        atomicStore(&O[i], 0u);
    }
}

// out[pre, clamp(ids), post] += upd[pre, m, post]: A is the updates (from P[8]), O the
// output's window from element P[6].
@compute @workgroup_size(256)
fn scatter_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let a = flat_id(wg, nwg, lid);
    if a >= P[0] {
        return;
    }
    let g = target_of(a + P[8]);
    if g < P[6] || g - P[6] >= P[7] {
        return;
    }
    let t = g - P[6];
    switch KIND {
        case 2u: {
            atomicAdd(&O[t], A[a]);
        }
        case 3u: {
            atomicOr(&O[t], select(0u, 1u, A[a] != 0u));
        }
        case 4u: {
            let lo = A[2u * a];
            let old = atomicAdd(&O[2u * t], lo);
            let carry = select(0u, 1u, old + lo < old);
            atomicAdd(&O[2u * t + 1u], A[2u * a + 1u] + carry);
        }
        default: {
            var u = bitcast<f32>(A[a]);
            if PACKED != HALF_NONE {
                u = bitcast<f32>(half_bits(A[a >> 1u], a, PACKED));
            }
            var old = atomicLoad(&O[t]);
            loop {
                let sum = bitcast<u32>(bitcast<f32>(old) + u);
                let r = atomicCompareExchangeWeak(&O[t], old, sum);
                if r.exchanged {
                    break;
                }
                old = r.old_value;
            }
        }
    }
}
