// y = op(a, b) elementwise, one invocation per element. OP is the `Binary` variant's position
// (gidd_kernels::wgsl::binary_code); the numerics are the cpu executor's (elementwise/mod.rs):
// NaN-propagating max/min, wrapping integers, division by zero gives 0, shifts by at least the
// bit width give 0, bit ops on floats give NaN.

override OP: u32 = 0u;
override BF16: bool = false;
// The integer kind of binary_i: 0 = i32, 1 = u32, 2 = bool.
override KIND: u32 = 0u;

// Rust's powf on the cases the model can meet: x^0 = 1 = 1^y, negative bases with integral
// exponents, zero bases, and NaN otherwise for negative bases.
fn pow_f(x: f32, y: f32) -> f32 {
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if is_nan(x) || is_nan(y) {
        return f32_nan();
    }
    let odd = fract(y * 0.5) != 0.0;
    if x == 0.0 {
        let z = select(0.0, f32_inf(), y < 0.0);
        return select(z, -z, odd && bitcast<u32>(x) != 0u);
    }
    let r = pow(abs(x), y);
    if x < 0.0 {
        if fract(y) != 0.0 {
            return f32_nan();
        }
        return select(r, -r, odd);
    }
    return r;
}

// fmod, the remainder with the dividend's sign. WGSL's % is x - y trunc(x / y), which gives
// NaN for a finite x over an infinite y (fmod gives x) and is exact while x / y < 2^24.
fn rem_f(x: f32, y: f32) -> f32 {
    if abs(y) == f32_inf() && abs(x) != f32_inf() && !is_nan(x) {
        return x;
    }
    return x % y;
}

fn binary_float(x: f32, y: f32) -> f32 {
    switch OP {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        case 4u: {
            if is_nan(x) || is_nan(y) { return f32_nan(); }
            return max(x, y);
        }
        case 5u: {
            if is_nan(x) || is_nan(y) { return f32_nan(); }
            return min(x, y);
        }
        case 6u: { return pow_f(x, y); }
        case 7u: { return rem_f(x, y); }
        default: { return f32_nan(); }
    }
}

@compute @workgroup_size(256)
fn binary_f(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    stf(i, binary_float(bitcast<f32>(lda(i)), bitcast<f32>(ldb(i))), BF16);
}

fn lt_i(x: u32, y: u32) -> bool {
    if KIND == 0u {
        return bitcast<i32>(x) < bitcast<i32>(y);
    }
    return x < y;
}

fn binary_int(x: u32, y: u32) -> u32 {
    switch OP {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: {
            if y == 0u { return 0u; }
            if KIND == 0u {
                // i32::MIN / -1 wraps to i32::MIN
                if x == 0x80000000u && y == 0xffffffffu { return x; }
                return bitcast<u32>(bitcast<i32>(x) / bitcast<i32>(y));
            }
            return x / y;
        }
        case 7u: {
            if y == 0u { return 0u; }
            if KIND == 0u {
                if y == 0xffffffffu { return 0u; }
                return bitcast<u32>(bitcast<i32>(x) % bitcast<i32>(y));
            }
            return x % y;
        }
        case 4u: { return select(x, y, lt_i(x, y)); }
        case 5u: { return select(x, y, lt_i(y, x)); }
        case 8u: { return x & y; }
        case 9u: { return x | y; }
        case 10u: { return x ^ y; }
        // shift amounts are read unsigned: a negative i32 amount is huge, so gives 0
        case 11u: { return select(x << (y & 31u), 0u, y >= 32u); }
        case 12u: { return select(x >> (y & 31u), 0u, y >= 32u); }
        // pow on integers
        default: { return 0u; }
    }
}

@compute @workgroup_size(256)
fn binary_i(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    O[i] = binary_int(lda(i), ldb(i));
}

fn binary_long(x: vec2<u32>, y: vec2<u32>) -> vec2<u32> {
    let big = y.y != 0u || y.x >= 64u;
    switch OP {
        case 0u: { return l_add(x, y); }
        case 1u: { return l_sub(x, y); }
        case 2u: { return l_mul(x, y); }
        case 3u: { return l_div(x, y); }
        case 7u: { return l_rem(x, y); }
        case 4u: { return select(x, y, l_lt(x, y)); }
        case 5u: { return select(x, y, l_lt(y, x)); }
        case 8u: { return x & y; }
        case 9u: { return x | y; }
        case 10u: { return x ^ y; }
        case 11u: { return select(l_shl(x, y.x), vec2<u32>(0u, 0u), big); }
        case 12u: { return select(l_shr(x, y.x), vec2<u32>(0u, 0u), big); }
        default: { return vec2<u32>(0u, 0u); }
    }
}

@compute @workgroup_size(256)
fn binary_l(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    st2(i, binary_long(lda2(i), ldb2(i)));
}
