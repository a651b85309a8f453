// gemm_blocked.wgsl over f32 operands (one word per element; a 16-bit operand widened): the
// bindings, loads and the store of the output (rounded to bf16 or f16 with HALF, one word
// each).

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> B: array<vec4<f32>>;

override HALF: u32 = 0u;

fn ld_a(q: u32) -> vec4<f32> {
    return A[q];
}

fn ld_b(q: u32) -> vec4<f32> {
    return B[q];
}

fn store_row(row: u32, n: u32, n_n: u32, c: vec4<f32>) {
    for (var j = 0u; j < 4u; j = j + 1u) {
        if n + j < n_n {
            let y = c[j];
            O[row + n + j] = bitcast<u32>(round_half(y, HALF));
        }
    }
}


// The f32 sums of an earlier K block (ACC).
fn load_row(row: u32, n: u32, n_n: u32) -> vec4<f32> {
    var c = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j = j + 1u) {
        if n + j < n_n {
            c[j] = bitcast<f32>(O[row + n + j]);
        }
    }
    return c;
}
