// Sum or max over any set of dims (the executor merges adjacent dims first, so most reductions
// have one kept and one reduced run). Output o reads the input at
//   base(o) + off(r), r < R,
// with base from the kept dims' multi-index and off from the reduced dims'.
//
// Numerics (the cpu executor accumulates in f64 and rounds once): float sums are compensated
// (Neumaier) in each invocation and combined with an error-free two-sum across a workgroup, so
// they stay near f64 accuracy; integer sums accumulate exactly in 64 bits and saturate to the
// element type; i64 sums wrap. max propagates NaN; the max over nothing is -inf for floats and 0
// for integers, the sum over nothing 0.
//
// P[0] = outputs, P[1] = R, P[2] = kept rank, P[3] = reduced rank (each <= 8),
// P[4..12] = kept sizes, P[12..20] = kept strides, P[20..28] = reduced sizes,
// P[28..36] = reduced strides (strides in elements of the input), P[36] = the input's first
// element in the window A binds (0 unless a window of a larger input starts unaligned).

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<storage, read> A: array<u32>;

// 0 = sum, 1 = max.
override OP: u32 = 0u;
override HALF: u32 = 0u;
// The float input is packed (1 = bf16, 2 = f16; two per word, read in place: no unpacking
// pass).
override PACKED: u32 = 0u;
// reduce_i: 0 = i32, 1 = u32, 2 = bool.
override KIND: u32 = 0u;
// reduce_i_cols: write the exact 64-bit sum (two words), unsaturated: a window's partial of a
// sum over more than one storage binding.
override WIDE: bool = false;
// reduce_l_cols: 0, or 1 + KIND: the wrapping i64 sum is such partials' total, saturated to
// that element type and written as one word (the partials' finish).
override SAT: u32 = 0u;

var<workgroup> sh_s: array<f32, 256>;
var<workgroup> sh_c: array<f32, 256>;

// The kept and reduced ranks (P[2], P[3]) as pipeline constants, so the index loops unroll.
override KR: u32 = 1u;
override RR: u32 = 1u;

// The offset of multi-index i over `rank` dims whose sizes and strides start at P[sizes],
// P[strides] (the outermost dim needs no division).
fn unravel(i: u32, rank: u32, sizes: u32, strides: u32) -> u32 {
    var rem = i;
    var off = 0u;
    for (var d = 0u; d < rank; d = d + 1u) {
        let k = rank - 1u - d;
        var j = rem;
        if k > 0u {
            j = rem % P[sizes + k];
            rem = rem / P[sizes + k];
        }
        off = off + j * P[strides + k];
    }
    return off;
}

fn base(o: u32) -> u32 {
    return P[36] + unravel(o, KR, 4u, 12u);
}

fn red_off(r: u32) -> u32 {
    return unravel(r, RR, 20u, 28u);
}

fn max_nan(a: f32, b: f32) -> f32 {
    if is_nan(a) || is_nan(b) {
        return f32_nan();
    }
    return max(a, b);
}

// Float input element i.
fn ld(i: u32) -> f32 {
    if PACKED != HALF_NONE {
        return bitcast<f32>(half_bits(A[i >> 1u], i, PACKED));
    }
    return bitcast<f32>(A[i]);
}

// The float accumulation of one invocation over r = first, first + step, ... < R.
fn fold_f(b: u32, first: u32, step: u32) -> vec2<f32> {
    let r_n = P[1];
    if OP == 0u {
        var acc = vec2<f32>(0.0, 0.0);
        for (var r = first; r < r_n; r = r + step) {
            acc = kahan(acc, ld(b + red_off(r)));
        }
        return acc;
    }
    var m = -f32_inf();
    for (var r = first; r < r_n; r = r + step) {
        m = max_nan(m, ld(b + red_off(r)));
    }
    return vec2<f32>(m, 0.0);
}

fn finish_f(acc: vec2<f32>) -> u32 {
    var y = acc.x;
    if OP == 0u {
        y = acc.x + acc.y;
    }
    return bitcast<u32>(round_half(y, HALF));
}

// One invocation per output, walking its R inputs (short reductions, and strided ones such as
// sums over leading dims, where neighbouring invocations read neighbouring words).
@compute @workgroup_size(256)
fn reduce_f_cols(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = flat_id(wg, nwg, lid);
    if o >= P[0] {
        return;
    }
    O[o] = finish_f(fold_f(base(o), 0u, 1u));
}

// One workgroup per output (long reductions over the innermost dims): 256 strided partial
// accumulations, then a tree.
@compute @workgroup_size(256)
fn reduce_f_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = wg.y * nwg.x + wg.x;
    let t = lid.x;
    // o is uniform across the workgroup, so every invocation reaches the barriers below
    let live = o < P[0];
    var acc = vec2<f32>(0.0, -f32_inf());
    if live {
        acc = fold_f(base(o), t, WG);
    }
    sh_s[t] = acc.x;
    sh_c[t] = acc.y;
    for (var half = WG / 2u; half > 0u; half = half / 2u) {
        workgroupBarrier();
        if t < half {
            let a = vec2<f32>(sh_s[t], sh_c[t]);
            let b = vec2<f32>(sh_s[t + half], sh_c[t + half]);
            if OP == 0u {
                // error-free two-sum of the running sums, compensations added
                let k = kahan(a, b.x);
                sh_s[t] = k.x;
                sh_c[t] = k.y + b.y;
            } else {
                sh_s[t] = max_nan(a.x, b.x);
            }
        }
    }
    if live && t == 0u {
        O[o] = finish_f(vec2<f32>(sh_s[0], sh_c[0]));
    }
}

// i32 / u32 / bool, one invocation per output: sums exact in 64 bits, then saturated.
@compute @workgroup_size(256)
fn reduce_i_cols(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = flat_id(wg, nwg, lid);
    if o >= P[0] {
        return;
    }
    let b = base(o);
    var sum = vec2<u32>(0u, 0u);
    var m = select(0x80000000u, 0u, KIND != 0u);
    for (var r = 0u; r < P[1]; r = r + 1u) {
        let v = A[b + red_off(r)];
        if KIND == 0u {
            sum = l_add(sum, l_from_i32(bitcast<i32>(v)));
            m = select(m, v, bitcast<i32>(v) > bitcast<i32>(m));
        } else {
            sum = l_add(sum, l_from_u32(v));
            m = max(m, v);
        }
    }
    if OP == 1u {
        O[o] = select(m, 0u, P[1] == 0u);
        return;
    }
    if WIDE {
        O[2u * o] = sum.x;
        O[2u * o + 1u] = sum.y;
        return;
    }
    O[o] = saturated(sum, KIND);
}

// An exact 64-bit sum saturated to element kind `kind` (0 = i32, 1 = u32, 2 = bool).
fn saturated(sum: vec2<u32>, kind: u32) -> u32 {
    var y = sum.x;
    if kind == 0u {
        if l_lt(sum, l_from_i32(-2147483647i - 1i)) {
            y = 0x80000000u;
        } else if l_lt(l_from_i32(2147483647i), sum) {
            y = 0x7fffffffu;
        }
    } else {
        let cap = select(0xffffffffu, 255u, kind == 2u);
        if sum.y != 0u || sum.x > cap {
            y = cap;
        }
    }
    return y;
}

// i64, one invocation per output: wrapping sum, signed max.
@compute @workgroup_size(256)
fn reduce_l_cols(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = flat_id(wg, nwg, lid);
    if o >= P[0] {
        return;
    }
    let b = base(o);
    var sum = vec2<u32>(0u, 0u);
    var m = vec2<u32>(0u, 0x80000000u);
    for (var r = 0u; r < P[1]; r = r + 1u) {
        let k = b + red_off(r);
        let v = vec2<u32>(A[2u * k], A[2u * k + 1u]);
        sum = l_add(sum, v);
        m = select(m, v, l_lt(m, v));
    }
    var y = sum;
    if OP == 1u {
        y = select(m, vec2<u32>(0u, 0u), P[1] == 0u);
    } else if SAT != 0u {
        O[o] = saturated(sum, SAT - 1u);
        return;
    }
    O[2u * o] = y.x;
    O[2u * o + 1u] = y.y;
}
