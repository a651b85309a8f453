// gemm_blocked.wgsl over packed 16-bit operands (HALF: 1 = bf16, 2 = f16; operands and output
// of one kind): four elements are two words, so a load moves half the bytes of the f32
// kernel's. The output is of that kind, rounded once: packed (PACKED_OUT)
// when N is even, so that the four columns an invocation owns start on a word and its words
// are its own; widened (one word each, the executor packs it after) when N is odd, where a
// row's last element shares a word with the next row's first. Without ROUND (and PACKED_OUT)
// the f32 sums are stored unrounded: the partial sums of a GEMM split along K, which the
// executor rounds and packs once after the last block.

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<storage, read> A: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> B: array<vec2<u32>>;

override PACKED_OUT: bool = true;
override ROUND: bool = true;
override HALF: u32 = 1u;

fn unpack4(w: vec2<u32>) -> vec4<f32> {
    if HALF == HALF_F16 {
        return vec4<f32>(bitcast<f32>(f16_dec(w.x & 0xffffu)), bitcast<f32>(f16_dec(w.x >> 16u)),
                         bitcast<f32>(f16_dec(w.y & 0xffffu)), bitcast<f32>(f16_dec(w.y >> 16u)));
    }
    return vec4<f32>(bitcast<f32>(w.x << 16u), bitcast<f32>(w.x & 0xffff0000u),
                     bitcast<f32>(w.y << 16u), bitcast<f32>(w.y & 0xffff0000u));
}

fn ld_a(q: u32) -> vec4<f32> {
    return unpack4(A[q]);
}

fn ld_b(q: u32) -> vec4<f32> {
    return unpack4(B[q]);
}

fn rounded(y: f32) -> u32 {
    return bitcast<u32>(round_half(y, HALF));
}

fn store_row(row: u32, n: u32, n_n: u32, c: vec4<f32>) {
    if PACKED_OUT {
        // N even: row and n are even, so n < N implies n + 1 < N (and likewise n + 2, n + 3)
        let w = (row + n) / 2u;
        if n < n_n {
            O[w] = half_pair(rounded(c.x), rounded(c.y), HALF);
        }
        if n + 2u < n_n {
            O[w + 1u] = half_pair(rounded(c.z), rounded(c.w), HALF);
        }
        return;
    }
    for (var j = 0u; j < 4u; j = j + 1u) {
        if n + j < n_n {
            O[row + n + j] = select(bitcast<u32>(c[j]), rounded(c[j]), ROUND);
        }
    }
}


// The unrounded f32 sums of an earlier K block (ACC; never with PACKED_OUT).
fn load_row(row: u32, n: u32, n_n: u32) -> vec4<f32> {
    var c = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j = j + 1u) {
        if n + j < n_n {
            c[j] = bitcast<f32>(O[row + n + j]);
        }
    }
    return c;
}
