// Per-element op functions, shared by the elementwise entry points (unary.wgsl, binary.wgsl,
// compare_select.wgsl, convert.wgsl: the op comes from an override constant) and by the
// executor's generated kernels for chains of elementwise ops (the op is a literal there), so a
// fused chain computes exactly what its ops compute one dispatch at a time. The numerics are
// the cpu executor's (elementwise/mod.rs). Integer kinds: 0 = i32, 1 = u32, 2 = bool.

// A float result as stored: rounded once when the value is a 16-bit float (h: HALF_*).
fn store_f(y: f32, h: u32) -> u32 {
    return bitcast<u32>(round_half(y, h));
}

fn log_f(x: f32) -> f32 {
    // Vulkan leaves log(x <= 0) undefined: give IEEE's answers.
    if x < 0.0 {
        return f32_nan();
    }
    if x == 0.0 {
        return -f32_inf();
    }
    return log(x);
}

fn sqrt_f(x: f32) -> f32 {
    if x < 0.0 {
        return f32_nan();
    }
    return sqrt(x);
}

fn tanh_f(x: f32) -> f32 {
    // Not the builtin: drivers may compute it as (e^2x - 1) / (e^2x + 1), which cancels near 0
    // and gives inf / inf = NaN for large |x|.
    let a = abs(x);
    if a < 0.55 {
        // Taylor series to x^17; the next term is below half an f32 ulp for |x| < 0.55.
        let z = x * x;
        let p = 0.0014558344 - z * 0.00059002744;
        let q = 0.0088632355 + z * (-0.0035921280 + z * p);
        let r = 0.13333334 + z * (-0.053968254 + z * (0.021869489 - z * q));
        return x * (1.0 + z * (-0.33333334 + z * r));
    }
    if a > 10.0 {
        return sign(x);
    }
    // well conditioned here: e <= e^-1.1, so 1 - e >= 0.66
    let e = exp(-2.0 * a);
    return sign(x) * (1.0 - e) / (1.0 + e);
}

// op: the `Unary` variant's position (gidd_kernels::wgsl::unary_code).
fn unary_f_op(op: u32, x: f32) -> f32 {
    switch op {
        case 0u: { return -x; }
        case 1u: { return exp(x); }
        case 2u: { return log_f(x); }
        case 3u: { return tanh_f(x); }
        case 4u: { return 1.0 / (1.0 + exp(-x)); }
        case 5u: { return sqrt_f(x); }
        case 6u: { return 1.0 / sqrt_f(x); }
        case 7u: { return abs(x); }
        case 8u: { return sin(x); }
        case 9u: { return cos(x); }
        case 10u: { return x; }
        default: { return floor(x); }
    }
}

// i32 / u32 / bool: neg and abs wrap (and are the identity on u32 and bool), not is bitwise
// (1 - x on bool).
fn unary_i_op(op: u32, kind: u32, x: u32) -> u32 {
    if op == 10u {
        return select(~x, 1u - x, kind == 2u);
    }
    if kind == 0u && (op == 0u || (op == 7u && (x >> 31u) != 0u)) {
        return 0u - x;
    }
    return x;
}

fn unary_l_op(op: u32, x: vec2<u32>) -> vec2<u32> {
    if op == 0u {
        return l_neg(x);
    }
    if op == 7u {
        return l_abs(x);
    }
    return ~x;
}

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

// op: the `Binary` variant's position (gidd_kernels::wgsl::binary_code). NaN-propagating
// max/min; bit ops on floats give NaN.
fn binary_f_op(op: u32, x: f32, y: f32) -> f32 {
    switch op {
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

fn lt_kind(kind: u32, x: u32, y: u32) -> bool {
    if kind == 0u {
        return bitcast<i32>(x) < bitcast<i32>(y);
    }
    return x < y;
}

// Wrapping integers, division by zero gives 0, shifts by at least the bit width give 0.
fn binary_i_op(op: u32, kind: u32, x: u32, y: u32) -> u32 {
    switch op {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: {
            if y == 0u { return 0u; }
            if kind == 0u {
                // i32::MIN / -1 wraps to i32::MIN
                if x == 0x80000000u && y == 0xffffffffu { return x; }
                return bitcast<u32>(bitcast<i32>(x) / bitcast<i32>(y));
            }
            return x / y;
        }
        case 7u: {
            if y == 0u { return 0u; }
            if kind == 0u {
                if y == 0xffffffffu { return 0u; }
                return bitcast<u32>(bitcast<i32>(x) % bitcast<i32>(y));
            }
            return x % y;
        }
        case 4u: { return select(x, y, lt_kind(kind, x, y)); }
        case 5u: { return select(x, y, lt_kind(kind, y, x)); }
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

fn binary_l_op(op: u32, x: vec2<u32>, y: vec2<u32>) -> vec2<u32> {
    let big = y.y != 0u || y.x >= 64u;
    switch op {
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

// op: the `Cmp` variant's position (gidd_kernels::wgsl::cmp_code): eq, ne, lt, le, gt, ge.
fn from_order(op: u32, lt: bool, eq: bool) -> u32 {
    var r = false;
    switch op {
        case 0u: { r = eq; }
        case 1u: { r = !eq; }
        case 2u: { r = lt; }
        case 3u: { r = lt || eq; }
        case 4u: { r = !lt && !eq; }
        default: { r = !lt; }
    }
    return select(0u, 1u, r);
}

// IEEE: every comparison with NaN is false except ne.
fn compare_f_op(op: u32, x: f32, y: f32) -> u32 {
    if is_nan(x) || is_nan(y) {
        return select(0u, 1u, op == 1u);
    }
    return from_order(op, x < y, x == y);
}

// kind: 0 = signed order (i32), else unsigned (u32, bool).
fn compare_i_op(op: u32, kind: u32, x: u32, y: u32) -> u32 {
    return from_order(op, lt_kind(kind, x, y), x == y);
}

fn compare_l_op(op: u32, x: vec2<u32>, y: vec2<u32>) -> u32 {
    return from_order(op, l_lt(x, y), all(x == y));
}

// Conversions: floats to integers truncate toward zero and saturate (NaN gives 0), anything
// to bool is x != 0 (NaN included), integers to integers keep the low bits.
fn int_to_f32(src: u32, x: u32) -> f32 {
    if src == 0u {
        return f32(bitcast<i32>(x));
    }
    return f32(x);
}

fn f32_to_int(to: u32, x: f32) -> u32 {
    if to == 2u {
        return select(1u, 0u, x == 0.0);
    }
    if is_nan(x) {
        return 0u;
    }
    if to == 0u {
        if x >= 2147483648.0 {
            return 0x7fffffffu;
        }
        if x <= -2147483648.0 {
            return 0x80000000u;
        }
        return bitcast<u32>(i32(trunc(x)));
    }
    if x >= 4294967296.0 {
        return 0xffffffffu;
    }
    if x <= 0.0 {
        return 0u;
    }
    return u32(trunc(x));
}

fn int_to_int(to: u32, x: u32) -> u32 {
    return select(x, select(0u, 1u, x != 0u), to == 2u);
}

fn int_to_long(src: u32, x: u32) -> vec2<u32> {
    return select(l_from_u32(x), l_from_i32(bitcast<i32>(x)), src == 0u);
}

fn long_to_int(to: u32, x: vec2<u32>) -> u32 {
    return select(x.x, select(0u, 1u, !l_is_zero(x)), to == 2u);
}
