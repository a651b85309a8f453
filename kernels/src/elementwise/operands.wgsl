// Elementwise operands (shared by every elementwise kernel file; the executor prepends it after
// the prelude). Bindings: P the dispatch's parameters, O the output, A B C the operands.
// Parameters: P[0] = element count, P[1] = scalar mask (bit k: operand k is an unmaterialised
// splat whose words are P[2 + 2k], P[3 + 2k]), P[8..] the kernel's own.

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> O: array<u32>;
@group(0) @binding(2) var<storage, read> A: array<u32>;
@group(0) @binding(3) var<storage, read> B: array<u32>;
@group(0) @binding(4) var<storage, read> C: array<u32>;

fn lda(i: u32) -> u32 {
    if (P[1] & 1u) != 0u {
        return P[2];
    }
    return A[i];
}

fn ldb(i: u32) -> u32 {
    if (P[1] & 2u) != 0u {
        return P[4];
    }
    return B[i];
}

fn ldc(i: u32) -> u32 {
    if (P[1] & 4u) != 0u {
        return P[6];
    }
    return C[i];
}

// Element i of a two-word (i64) operand.
fn lda2(i: u32) -> vec2<u32> {
    if (P[1] & 1u) != 0u {
        return vec2<u32>(P[2], P[3]);
    }
    return vec2<u32>(A[2u * i], A[2u * i + 1u]);
}

fn ldb2(i: u32) -> vec2<u32> {
    if (P[1] & 2u) != 0u {
        return vec2<u32>(P[4], P[5]);
    }
    return vec2<u32>(B[2u * i], B[2u * i + 1u]);
}

fn st2(i: u32, v: vec2<u32>) {
    O[2u * i] = v.x;
    O[2u * i + 1u] = v.y;
}
