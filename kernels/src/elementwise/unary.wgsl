// y = op(x) elementwise, one invocation per element. OP is the `Unary` variant's position
// (gidd_kernels::wgsl::unary_code); the numerics are the cpu executor's (elementwise/mod.rs).

override OP: u32 = 0u;
// The output is bf16 (stored widened): round the f32 result once.
override BF16: bool = false;
// The integer kind of unary_i: 0 = i32, 1 = u32, 2 = bool.
override KIND: u32 = 0u;

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

fn unary_float(x: f32) -> f32 {
    switch OP {
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

@compute @workgroup_size(256)
fn unary_f(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    stf(i, unary_float(bitcast<f32>(lda(i))), BF16);
}

// i32 / u32 / bool: neg and abs wrap (and are the identity on u32 and bool), not is bitwise
// (1 - x on bool).
@compute @workgroup_size(256)
fn unary_i(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    let x = lda(i);
    var y = x;
    if OP == 10u {
        y = select(~x, 1u - x, KIND == 2u);
    } else if KIND == 0u {
        let neg = (x >> 31u) != 0u;
        if OP == 0u || (OP == 7u && neg) {
            y = 0u - x;
        }
    }
    O[i] = y;
}

@compute @workgroup_size(256)
fn unary_l(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_id(wg, nwg, lid);
    if i >= P[0] {
        return;
    }
    let x = lda2(i);
    var y = ~x;
    if OP == 0u {
        y = l_neg(x);
    } else if OP == 7u {
        y = l_abs(x);
    }
    st2(i, y);
}
