//! The tensor-core forward's entry (mma.sync) and the per-tile softmax and epilogue it
//! shares with the wgmma forward (wgmma_ptx.rs). Part of mma_ptx.rs's generator.

use super::{
    accumulate, frag_regs, pack_steps, pipeline, products, prologue, quad, store_rows, Gen, Kind, A,
};

/// The forward's work on one tile's `n` product accumulators %s0.. (n / 4 n8 tiles of keys
/// from %col0 = first key + 2 t): scores (scale, cap, mask), the online softmax of the rows
/// (m, l in %m0 / %l0 and %m1 / %l1), P packed to %pa0.. and the `nt` output quads %o
/// rescaled; the caller then accumulates P V. Shared by the mma.sync and wgmma forwards.
pub(crate) fn online_softmax(g: &mut Gen, cnt: usize, nt: usize) {
    g.l(&format!(
        "// element (j, e): row g + 8 (e / 2), key {} cur + 8 j + 2 t + e % 2",
        2 * cnt
    ));
    for i in 0..cnt {
        let (j, e) = (i / 4, i % 4);
        let mrow = if e < 2 { "%mrow0" } else { "%mrow1" };
        g.l(&format!(
            "add.u32 %col, %col0, {}; call (%s{i}), score, (%s{i}, %col, %lk, {mrow}, %scale, %cap, %capped);",
            8 * j + e % 2
        ));
    }
    g.l("// online softmax per row: the quad's max m', corr = e^(m - m'), p = e^(s - m'),");
    g.l("// l = l corr + this lane's p; O = O corr + P V");
    for (r, n, m) in [(0, "%n0", "%m0"), (1, "%n1", "%m1")] {
        g.l(&format!("max.f32 {n}, {m}, %s{};", 2 * r));
        for i in (0..cnt).filter(|i| i % 4 / 2 == r && *i != 2 * r) {
            g.l(&format!("max.f32 {n}, {n}, %s{i};"));
        }
        for sh in [1, 2] {
            g.l(&format!(
                "shfl.sync.bfly.b32 %f, {n}, {sh}, 0x1f, 0xffffffff; max.f32 {n}, {n}, %f;"
            ));
        }
    }
    for (r, n, m, c, l) in [
        (0, "%n0", "%m0", "%e0", "%l0"),
        (1, "%n1", "%m1", "%e1", "%l1"),
    ] {
        g.l(&format!("sub.f32 %f, {m}, {n}; call ({c}), fexp, (%f);"));
        g.l(&format!("mov.f32 {m}, {n}; mul.f32 {l}, {l}, {c};"));
        for i in (0..cnt).filter(|i| i % 4 / 2 == r) {
            g.l(&format!(
                "sub.f32 %f, %s{i}, {n}; call (%s{i}), fexp, (%f); add.f32 {l}, {l}, %s{i};"
            ));
        }
    }
    pack_steps(g, "%s", cnt / 8);
    for n in 0..nt {
        g.l(&quad(n, |i| {
            let c = if i % 4 < 2 { "%e0" } else { "%e1" };
            format!("mul.f32 %o{i}, %o{i}, {c};")
        }));
    }
}

/// The forward's end: each row's l summed over its quad, O / l stored for the valid rows
/// (%c0r, %c1r, %rv0, %rv1), lse = m + ln l by lane t = 0.
pub(crate) fn finish_forward(g: &mut Gen) {
    g.l("// the quad's partial sums: l += l(lane ^ 1), then l += l(lane ^ 2)");
    for l in ["%l0", "%l1"] {
        for sh in [1, 2] {
            g.l(&format!(
                "shfl.sync.bfly.b32 %f, {l}, {sh}, 0x1f, 0xffffffff; add.f32 {l}, {l}, %f;"
            ));
        }
    }
    g.l("rcp.rn.f32 %n0, %l0;");
    g.l("rcp.rn.f32 %n1, %l1;");
    store_rows(g, "%o", "%P_out", "%lq", Some(["%n0", "%n1"]));
    g.l("// lse = m + ln l, by lane t = 0 of each quad");
    g.l("setp.eq.u32 %p, %t4, 0;");
    for (m, l, rv, row) in [
        ("%m0", "%l0", "%rv0", "%c0r"),
        ("%m1", "%l1", "%rv1", "%c1r"),
    ] {
        g.l(&format!("lg2.approx.f32 %f, {l};"));
        g.l(&format!("fma.rn.f32 %f, %f, 0f3F317218, {m};"));
        g.l(&format!("mad.lo.u32 %u, %bh, %lq, {row};"));
        g.l("mul.wide.u32 %a, %u, 4;");
        g.l("add.u64 %a, %P_lse, %a;");
        g.l(&format!("and.pred %any, %p, {rv};"));
        g.l("@%any st.global.f32 [%a], %f;");
    }
}

pub(super) fn forward(g: &mut Gen) {
    let d = g.d;
    let (kc, nt) = (d / 16, d / 8);
    g.l(".reg .f32 %m0, %m1, %l0, %l1, %n0, %n1, %e0, %e1;");
    g.l(&format!(
        ".reg .b32 %q<{}>;\n    .reg .f32 %s<16>, %o<{}>;",
        4 * kc,
        4 * nt
    ));
    g.l(".reg .u64 %mrow0, %mrow1;");
    g.l(".reg .pred %closed;");
    prologue(g, Kind::Fwd, "%lq");
    for (r, mrow) in [("%c0r", "%mrow0"), ("%c1r", "%mrow1")] {
        g.l(&format!("mul.wide.u32 %a, {r}, %lk;"));
        g.l(&format!("add.u64 {mrow}, %Mb, %a;"));
    }
    frag_regs(g, "%q", "%P_q", "%lq");
    g.l("// does the block own a fully masked row? (warp w scans its 16 rows) Then every tile");
    g.l("// is needed (they make its uniform average); else tiles with an unmasked pair only.");
    g.l("setp.ne.u32 %closed, %me, %me;");
    g.l("mov.u32 %i, 0;");
    g.raw("CROW:\n");
    g.l("mad.lo.u32 %u, %warp, 16, %own0;");
    g.l("add.u32 %u, %u, %i;");
    g.l("setp.ge.u32 %p, %u, %lq;");
    g.l("@%p bra CDONE;");
    g.l("mul.wide.u32 %a, %u, %lk;");
    g.l("add.u64 %a, %Mb, %a;");
    g.l("setp.ne.u32 %any, %me, %me;");
    g.l("mov.u32 %col, %lane;");
    g.raw("CKEY:\n");
    g.l("setp.ge.u32 %p, %col, %lk;");
    g.l("@%p bra CVOTE;");
    g.l("cvt.u64.u32 %a2, %col;");
    g.l("add.u64 %a2, %a, %a2;");
    g.l("ld.global.u8 %u, [%a2];");
    g.l("setp.ne.or.u32 %any, %u, 0, %any;");
    g.l("add.u32 %col, %col, 32;");
    g.l("bra CKEY;");
    g.raw("CVOTE:\n");
    g.l("vote.sync.any.pred %any, %any, 0xffffffff;");
    g.l("not.pred %any, %any;");
    g.l("or.pred %closed, %closed, %any;");
    g.l("add.u32 %i, %i, 1;");
    g.l("setp.lt.u32 %p, %i, 16;");
    g.l("@%p bra CROW;");
    g.raw("CDONE:\n");
    g.l("bar.red.or.pred %closed, 0, %closed;");
    g.l("selp.u32 %keep, 1, 0, %closed;");
    g.l("mov.f32 %m0, 0fFF800000;");
    g.l("mov.f32 %m1, 0fFF800000;");
    g.l("mov.f32 %l0, 0f00000000;");
    g.l("mov.f32 %l1, 0f00000000;");
    for n in 0..nt {
        g.l(&quad(n, |i| format!("mov.f32 %o{i}, 0f00000000;")));
    }
    let needed = "%keep, %own0, %lq, %lk, %Mb, %lk, %one, %z64";
    pipeline(g, "%lk", needed, "%bh, %lk, %P_k, %P_v", &|g| {
        g.l("// S = Q K^T");
        products(g, "%s", A::Regs("%q"), "%xn");
        online_softmax(g, 16, nt);
        accumulate(g, "%o", "%yt");
    });
    finish_forward(g);
}
