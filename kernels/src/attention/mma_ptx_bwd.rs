//! The backward's tensor-core kernels (see mma_ptx.rs), after attention_bwd_rows has written
//! ST[query] = (D = do . o, lse', fill): every (p, ds) is recomputed from q.k and do.v by
//! grad_el (mma_funcs.ptx), as the SIMT kernels do, so no [Lq, Lk] matrix is stored. Each
//! gradient row has one owner: no atomics, deterministic.
//! dq: a warp owns 16 queries (Q and dO A fragments in registers) and streams K (X) and V (Y):
//!   S = Q K^T, dP = dO V^T, dq += dS K. Tiles with no unmasked pair in the block's rows are
//!   skipped (a masked pair has ds = 0, so fully masked rows need none).
//! dkdv: a warp owns 16 keys (K and V A fragments reloaded from global per k16 step, to keep
//!   the two D-wide accumulators in registers) and streams Q (X) and dO (Y): S^T = K Q^T,
//!   dP^T = V dO^T, dv += P^T dO, dk += dS^T Q. Tiles are skipped unless they hold an
//!   unmasked pair or a fully masked query (fill 0: p = 1 / Lk reaches dv).

use super::{
    accumulate, frag_regs, frag_rows, pack, pipeline, products, prologue, quad, store_rows,
};
use super::{Gen, Kind, A};

/// (p, ds) of the 16 product elements: element (j, e) is owned row g + 8 (e / 2) (`rows`),
/// column 32 cur + 8 j + 2 t + e % 2; `owned_queries` says which is the query.
fn grads(g: &mut Gen, owned_queries: bool) {
    for i in 0..16 {
        let (j, e) = (i / 4, i % 4);
        let row = if e < 2 { "%c0r" } else { "%c1r" };
        let (qi, kj) = if owned_queries {
            (row, "%col")
        } else {
            ("%col", row)
        };
        g.l(&format!(
            "add.u32 %col, %col0, {}; call (%pds), grad_el, (%s{i}, %dp{i}, {qi}, {kj}, %lq, %lk, %Mb, %STb, %scale, %cap, %capped); mov.b64 {{%s{i}, %dp{i}}}, %pds;",
            8 * j + e % 2
        ));
    }
}

fn stats(g: &mut Gen) {
    g.l("mul.lo.u32 %u, %bh, %lq;");
    g.l("mul.wide.u32 %a, %u, 12;");
    g.l("add.u64 %STb, %P_st, %a;");
    g.l("mov.u32 %keep, 0;");
}

pub(super) fn dq(g: &mut Gen) {
    let (kc, nt) = (g.d / 16, g.d / 8);
    g.l(&format!(
        ".reg .b32 %q<{k}>, %do<{k}>;\n    .reg .f32 %s<16>, %dp<16>, %o<{n}>;",
        k = 4 * kc,
        n = 4 * nt
    ));
    g.l(".reg .u64 %STb;");
    g.l(".reg .b64 %pds;");
    prologue(g, Kind::Dq, "%lq");
    stats(g);
    frag_regs(g, "%q", "%P_q", "%lq");
    frag_regs(g, "%do", "%P_dout", "%lq");
    for n in 0..nt {
        g.l(&quad(n, |i| format!("mov.f32 %o{i}, 0f00000000;")));
    }
    let needed = "%keep, %own0, %lq, %lk, %Mb, %lk, %one, %z64";
    pipeline(g, "%lk", needed, "%bh, %lk, %P_k, %P_v", &|g| {
        g.l("// S = Q K^T, dP = dO V^T, then (p, ds), dq += dS K");
        products(g, "%s", A::Regs("%q"), "%xn");
        products(g, "%dp", A::Regs("%do"), "%yn");
        grads(g, true);
        pack(g, "%dp");
        accumulate(g, "%o", "%xt");
    });
    store_rows(g, "%o", "%P_dq", "%lq", None);
}

pub(super) fn dkdv(g: &mut Gen) {
    let nt = g.d / 8;
    g.l(&format!(
        ".reg .f32 %s<16>, %dp<16>, %ok<{n}>, %ov<{n}>;",
        n = 4 * nt
    ));
    g.l(".reg .u64 %STb, %gk0, %gk1, %gv0, %gv1;");
    g.l(".reg .b64 %pds;");
    prologue(g, Kind::Dkdv, "%lk");
    stats(g);
    let rows = ["%c0r", "%c1r"];
    frag_rows(g, "%P_k", "%lk", rows, ["%gk0", "%gk1"]);
    frag_rows(g, "%P_v", "%lk", rows, ["%gv0", "%gv1"]);
    for n in 0..nt {
        g.l(&quad(n, |i| format!("mov.f32 %ok{i}, 0f00000000;")));
        g.l(&quad(n, |i| format!("mov.f32 %ov{i}, 0f00000000;")));
    }
    let needed = "%keep, %own0, %lk, %lq, %Mb, %one, %lk, %STb";
    pipeline(g, "%lq", needed, "%bh, %lq, %P_q, %P_dout", &|g| {
        g.l("// S^T = K Q^T, dP^T = V dO^T, then (p, ds), dv += P^T dO, dk += dS^T Q");
        products(g, "%s", A::Global(["%gk0", "%gk1"]), "%xn");
        products(g, "%dp", A::Global(["%gv0", "%gv1"]), "%yn");
        grads(g, false);
        pack(g, "%s");
        accumulate(g, "%ov", "%yt");
        pack(g, "%dp");
        accumulate(g, "%ok", "%xt");
    });
    store_rows(g, "%ok", "%P_dk", "%lk", None);
    store_rows(g, "%ov", "%P_dv", "%lk", None);
}
