//! Writes the Hopper flash attention forward (attention_wgmma_d{64,128}.ptx, sm_90a): the
//! contract of the mma.sync forward (mma_ptx.rs; same slots after the tensor maps, same
//! outputs), on wgmma.mma_async fed by TMA with a producer warpgroup. Generated per head dim
//! (the accumulators are registers), checked in, compared with this generator by a test:
//! regenerate with `GIDD_WRITE_PTX=1 cargo test --release -p gidd-kernels wgmma_ptx`.
//!
//! A CTA of 3 warpgroups owns 128 query rows. Warpgroup 0 is the producer (setmaxnreg.dec;
//! thread 0 issues cp.async.bulk.tensor copies): Q once, then K and V tiles of 64 keys into
//! STAGES stages, each stage's `full` mbarrier counting the bytes, its `empty` mbarrier the 8
//! consumer warps' releases. Warpgroups 1 and 2 (setmaxnreg.inc) own 64 rows each: S = Q K^T
//! by m64n64k16 wgmmas (both operands shared-memory descriptors, K-major), the online softmax
//! of mma_ptx_fwd.rs on the accumulators (whose per-warp layout is mma.sync's), P packed to
//! bf16 A fragments in registers, O += P V by m64nDk16 wgmmas (V an MN-major descriptor).
//! Which key tiles are needed is decided once per CTA (a bitmap in shared memory, from the
//! mask), so producer and consumers walk the same list without a CTA barrier in the loop.
//! engine/cuda/src/emulate_attention_wgmma.rs models it from the constants below.

use super::mma_ptx::{finish_forward, online_softmax, quad, Gen};
use std::fmt::Write;

/// Query rows per CTA (2 consumer warpgroups of 64).
pub const ROWS: usize = 128;
/// Threads: a producer warpgroup and two consumers.
pub const THREADS: u32 = 384;
/// Keys per streamed tile (the n of the S wgmma, 4 k16 steps of P V).
pub const KEYS: usize = 64;
/// Pipeline stages of K and V.
pub const STAGES: usize = 2;
/// The longest key sequence: the needed-tile bitmap's bits (longer runs take the mma.sync
/// kernel).
pub const MAX_TILES: usize = 4096;
/// Registers after setmaxnreg: producer and consumers (40 x 128 + 232 x 256 <= 64 Ki).
pub const PRODUCER_REGS: u32 = 40;
pub const CONSUMER_REGS: u32 = 232;
/// The 128-byte-swizzle box: 64 bf16 columns (128 bytes) by up to 256 rows; a row of D = 128
/// is two boxes.
pub const BOX_COLS: usize = 64;
/// wgmma descriptor constants (engine/cuda/src/hopper.rs holds the same for the GEMM):
/// 128-byte swizzle, stride byte offset 1024 (8 rows of 128 bytes); leading byte offset
/// unused (1) for K-major, the next 64-column box for MN-major V.
pub const DESC_K_MAJOR: u64 = (1 << 62) | ((1024 >> 4) << 32) | (1 << 16);
pub const DESC_MN_MAJOR: u64 = (1 << 62) | ((1024 >> 4) << 32) | (((KEYS * 128) as u64 >> 4) << 16);

pub const HEAD_DIMS: [usize; 2] = [64, 128];

/// The entry for head dim `d`.
pub fn entry(d: usize) -> Option<&'static str> {
    match d {
        64 => Some("attention_wgmma_fwd_d64"),
        128 => Some("attention_wgmma_fwd_d128"),
        _ => None,
    }
}

pub fn file_name(d: usize) -> String {
    format!("attention_wgmma_d{d}.ptx")
}

/// Argument slots: three tensor maps (16 slots each), then the mma.sync forward's.
pub const ARGS: &str =
    "tma_q[16] tma_k[16] tma_v[16] bh heads lq lk dim scale cap capped out lse q k v mask";

/// Bytes of the Q tile (128 rows).
pub fn q_bytes(d: usize) -> usize {
    ROWS * d * 2
}

/// Bytes of one stage: a K and a V tile of 64 rows.
pub fn stage_bytes(d: usize) -> usize {
    2 * KEYS * d * 2
}

/// Offsets from the 1024-aligned base: Q, stage s (K, then V half a stage on), the mbarriers
/// (full[s], empty[s], q), the needed-tile bitmap, the rows' "any key open" words.
pub fn stage_at(d: usize, s: usize) -> usize {
    q_bytes(d) + s * stage_bytes(d)
}
pub fn bars_at(d: usize) -> usize {
    stage_at(d, STAGES)
}
pub fn full_at(d: usize, s: usize) -> usize {
    bars_at(d) + 8 * s
}
pub fn empty_at(d: usize, s: usize) -> usize {
    bars_at(d) + 8 * (STAGES + s)
}
pub fn qbar_at(d: usize) -> usize {
    bars_at(d) + 16 * STAGES
}
pub fn bitmap_at(d: usize) -> usize {
    bars_at(d) + 64
}
pub fn rowany_at(d: usize) -> usize {
    bitmap_at(d) + MAX_TILES / 8
}

/// Dynamic shared memory a launch asks for (1024 bytes of slack to align the base).
pub fn smem_bytes(d: usize) -> usize {
    1024 + rowany_at(d) + 4 * ROWS
}

/// Byte offset of the (row, k16 step) start of a K-major operand laid out as 64-column
/// boxes of `rows` rows of 128 bytes: the box of the step, then 32 bytes a step.
pub fn k_major_step(rows: usize, step: usize) -> usize {
    (step / 4) * rows * 128 + (step % 4) * 32
}

/// Byte offset of k16 step u of the MN-major V tile (16 key rows of 128 bytes).
pub fn v_step(u: usize) -> usize {
    u * 16 * 128
}

/// Offset of consumer warpgroup c's 64 rows in the Q box (rows of 128 bytes).
pub fn q_rows_at(c: usize) -> usize {
    c * 64 * 128
}

const HEADER: &str = r"// Flash attention forward for Hopper (sm_90a only): wgmma.mma_async (bf16 -> f32) fed by
// TMA (cp.async.bulk.tensor, 128-byte swizzle) with mbarriers and warp specialisation
// (setmaxnreg). Same contract and slots (after the tensor maps) as attention_mma_fwd_d*
// (mma_ptx.rs): scale, optional soft cap c tanh(s/c), a bool mask [B, Lq, Lk] shared by the
// heads, masked scores the finite f32::MIN (a fully masked row is uniform over its keys),
// keys past Lk -inf, tiles no owned row needs skipped (all kept when a row is fully masked),
// out f32 [B H, Lq, D], lse f32 [B H, Lq]. The learned bias slot is key 0 of k and v.
// GENERATED by kernels/src/attention/wgmma_ptx.rs (edit that, then regenerate).
// UNVERIFIED ON HARDWARE: ptxas assembles it in CI and engine/cuda/src/emulate_attention_wgmma.rs
// models it against the cpu executor; no GPU has executed it.
//
// Tensor maps (host: engine/cuda/src/attention_mma.rs): bf16 q / k / v [B H][L][D] as rank 3
// {D, L, B H}, 128-byte swizzle, zero fill past L; boxes {64, 128, 1} (Q) and {64, 64, 1}
// (K, V), a D = 128 row taking two boxes. Grid (ceil(Lq / 128), B H), 384 threads, dynamic
// shared memory wgmma_ptx::smem_bytes(D). Layout from the 1024-aligned base: Q (128 rows),
// STAGES x (K tile, V tile), mbarriers full[s], empty[s], q, the needed-tile bitmap, the
// owned rows' any-key-open words.
";

fn l(g: &mut Gen, s: &str) {
    g.l(s);
}

/// A spin on mbarrier `bar` (a register or address) until the phase of parity `par` completes.
fn wait(g: &mut Gen, label: &str, bar: &str, par: &str) {
    g.raw(&format!("{label}:\n"));
    l(
        g,
        &format!("mbarrier.try_wait.parity.shared::cta.b64 %q, [{bar}], {par};"),
    );
    l(g, &format!("@!%q bra {label};"));
}

/// %j = the first needed tile at or after %j (or %ntiles): every tile when %keepp, else the
/// bitmap's bits.
fn next_tile(g: &mut Gen, label: &str) {
    g.raw(&format!("{label}:\n"));
    l(g, "setp.ge.u32 %p, %j, %ntiles;");
    l(g, &format!("@%p bra {label}_END;"));
    l(g, &format!("@%keepp bra {label}_END;"));
    l(
        g,
        "shr.u32 %x, %j, 5; shl.b32 %x, %x, 2; add.u32 %x, %x, %bm;",
    );
    l(
        g,
        "ld.shared.u32 %x, [%x]; and.b32 %u, %j, 31; shr.b32 %x, %x, %u; and.b32 %x, %x, 1;",
    );
    l(g, "setp.ne.u32 %p, %x, 0;");
    l(g, &format!("@%p bra {label}_END;"));
    l(g, "add.u32 %j, %j, 1;");
    l(g, &format!("bra {label};"));
    g.raw(&format!("{label}_END:\n"));
}

/// The PTX module for head dim `d` (64 or 128).
pub fn source(d: usize) -> String {
    let name = entry(d).expect("a head dim with a wgmma forward");
    let mut g = Gen {
        s: String::new(),
        d,
    };
    g.raw(HEADER);
    let _ = writeln!(g.s, "//\n// ARGS {name}: {ARGS}\n");
    g.raw(".version 8.0\n.target sm_90a\n.address_size 64\n\n");
    g.raw(".extern .shared .align 1024 .b8 dsmem[];\n\n");
    g.raw(include_str!("mma_funcs.ptx"));
    g.raw("\n");
    let nslots = ARGS.split_whitespace().count() + 3 * 15;
    let _ = writeln!(
        g.s,
        ".visible .entry {name}(.param .align 64 .b8 args[{}])\n.maxntid {THREADS}, 1, 1\n.minnctapersm 1\n{{",
        8 * nslots
    );
    body(&mut g);
    l(&mut g, "ret;");
    g.raw("}\n");
    g.s
}

fn body(g: &mut Gen) {
    let d = g.d;
    l(
        g,
        ".reg .u32 %heads, %lq, %lk, %capped, %me, %wg, %warp, %lane, %t4, %bh, %b, %own0;",
    );
    l(
        g,
        ".reg .u32 %c0r, %c1r, %x, %u, %i, %j, %n, %stg, %par, %ntiles, %col0, %col, %end;",
    );
    l(
        g,
        ".reg .u32 %base, %bm, %ra, %fb, %eb, %qb, %kst, %vst, %r, %row, %one;",
    );
    l(
        g,
        ".reg .u64 %Mb, %a, %a2, %oa0, %oa1, %mrow0, %mrow1, %st, %tq, %tk, %tv;",
    );
    l(g, ".reg .u64 %dq, %dk, %dv, %da, %db;");
    l(g, ".reg .u64 %P_out, %P_lse, %P_q, %P_k, %P_v, %P_mask;");
    l(
        g,
        ".reg .f32 %scale, %cap, %f, %m0, %m1, %l0, %l1, %n0, %n1, %e0, %e1;",
    );
    l(g, &format!(".reg .f32 %s<{}>, %o<{}>;", KEYS / 2, d / 2));
    l(g, &format!(".reg .b32 %pa<{}>;", KEYS / 4));
    l(
        g,
        ".reg .pred %p, %q, %any, %rv0, %rv1, %closed, %keepp, %pf, %pt;",
    );
    // slots after the three maps (48 slots): bh heads lq lk dim scale cap capped out lse q k v mask
    let names: Vec<&str> = ARGS.split_whitespace().skip(3).collect();
    for (i, n) in names.iter().enumerate() {
        let at = 8 * (48 + i);
        match *n {
            "heads" | "lq" | "lk" | "capped" => l(g, &format!("ld.param.u32 %{n}, [args+{at}];")),
            "scale" | "cap" => l(g, &format!("ld.param.f32 %{n}, [args+{at}];")),
            "bh" | "dim" => {}
            _ => l(g, &format!("ld.param.u64 %P_{n}, [args+{at}];")),
        }
    }
    l(
        g,
        "// the tensor maps stay in parameter space (TMA reads them by generic address)",
    );
    l(
        g,
        "mov.u64 %tq, args; cvta.param.u64 %tq, %tq; add.u64 %tk, %tq, 128; add.u64 %tv, %tq, 256;",
    );
    l(
        g,
        "mov.u32 %one, 1; setp.ne.u32 %pf, %one, 1; setp.eq.u32 %pt, %one, 1;",
    );
    l(
        g,
        "mov.u32 %me, %tid.x; shr.u32 %wg, %me, 7; and.b32 %lane, %me, 31; and.b32 %t4, %lane, 3;",
    );
    l(g, "mov.u32 %bh, %ctaid.y; div.u32 %b, %bh, %heads;");
    l(
        g,
        "mul.lo.u32 %u, %b, %lq; mul.wide.u32 %a, %u, %lk; add.u64 %Mb, %P_mask, %a;",
    );
    l(
        g,
        &format!("mov.u32 %own0, %ctaid.x; mul.lo.u32 %own0, %own0, {ROWS};"),
    );
    l(
        g,
        &format!(
            "add.u32 %ntiles, %lk, {}; shr.u32 %ntiles, %ntiles, {};",
            KEYS - 1,
            KEYS.trailing_zeros()
        ),
    );
    l(
        g,
        "mov.u32 %base, dsmem; add.u32 %base, %base, 1023; and.b32 %base, %base, 0xfffffc00;",
    );
    l(
        g,
        &format!(
            "add.u32 %bm, %base, {}; add.u32 %ra, %base, {};",
            bitmap_at(d),
            rowany_at(d)
        ),
    );
    let words = MAX_TILES / 32 + ROWS;
    assert!(words <= THREADS as usize, "one word a thread");
    l(
        g,
        &format!("// zero the bitmap and the row words ({words} words, contiguous)"),
    );
    l(
        g,
        &format!("setp.lt.u32 %p, %me, {words}; shl.b32 %x, %me, 2; add.u32 %x, %x, %bm;"),
    );
    l(g, "@%p st.shared.u32 [%x], 0;");
    l(
        g,
        "// thread 0: full[s] (the producer's arrival + bytes), empty[s] (8 consumer warps), q",
    );
    l(g, "setp.ne.u32 %p, %me, 0;");
    l(g, "@%p bra INITED;");
    for s in 0..STAGES {
        l(
            g,
            &format!(
                "add.u32 %x, %base, {}; mbarrier.init.shared::cta.b64 [%x], 1;",
                full_at(d, s)
            ),
        );
        l(
            g,
            &format!(
                "add.u32 %x, %base, {}; mbarrier.init.shared::cta.b64 [%x], 8;",
                empty_at(d, s)
            ),
        );
    }
    l(
        g,
        &format!(
            "add.u32 %x, %base, {}; mbarrier.init.shared::cta.b64 [%x], 1;",
            qbar_at(d)
        ),
    );
    l(g, "fence.mbarrier_init.release.cluster;");
    l(g, "fence.proxy.async.shared::cta;");
    g.raw("INITED:\n");
    l(g, "bar.sync 0;");
    scan(g);
    split(g);
}

/// The needed tiles: pair p = (owned row p % 128, tile p / 128) of every thread in turn sets
/// the tile's bit and the row's word when the row has an open key in the tile; then whether
/// a valid owned row has none (bar.red: every tile is then needed).
fn scan(g: &mut Gen) {
    l(
        g,
        &format!(
            "// needed tiles: pairs (row p % {ROWS}, tile p / {ROWS}), p = me, me + {THREADS}, ..."
        ),
    );
    l(
        g,
        &format!("mul.lo.u32 %end, %ntiles, {ROWS}; mov.u32 %i, %me;"),
    );
    g.raw("SCAN:\n");
    l(g, "setp.ge.u32 %p, %i, %end;");
    l(g, "@%p bra SCANNED;");
    l(
        g,
        &format!(
            "and.b32 %r, %i, {}; shr.u32 %j, %i, {};",
            ROWS - 1,
            ROWS.trailing_zeros()
        ),
    );
    l(g, "add.u32 %row, %own0, %r; setp.ge.u32 %p, %row, %lq;");
    l(g, "@%p bra SNEXT;");
    l(
        g,
        &format!("mul.lo.u32 %col, %j, {KEYS}; add.u32 %u, %col, {KEYS}; min.u32 %u, %u, %lk;"),
    );
    l(
        g,
        "mul.wide.u32 %a, %row, %lk; add.u64 %a, %Mb, %a; mov.u32 %x, 0;",
    );
    g.raw("SCOL:\n");
    l(g, "setp.ge.u32 %p, %col, %u;");
    l(g, "@%p bra SHIT;");
    l(
        g,
        "cvt.u64.u32 %a2, %col; add.u64 %a2, %a, %a2; ld.global.u8 %n, [%a2]; or.b32 %x, %x, %n;",
    );
    l(g, "add.u32 %col, %col, 1;");
    l(g, "bra SCOL;");
    g.raw("SHIT:\n");
    l(g, "setp.eq.u32 %p, %x, 0;");
    l(g, "@%p bra SNEXT;");
    l(
        g,
        "shr.u32 %u, %j, 5; shl.b32 %u, %u, 2; add.u32 %u, %u, %bm;",
    );
    l(
        g,
        "and.b32 %x, %j, 31; shl.b32 %x, %one, %x; atom.shared.or.b32 %x, [%u], %x;",
    );
    l(
        g,
        "shl.b32 %u, %r, 2; add.u32 %u, %u, %ra; st.shared.u32 [%u], %one;",
    );
    g.raw("SNEXT:\n");
    l(g, &format!("add.u32 %i, %i, {THREADS};"));
    l(g, "bra SCAN;");
    g.raw("SCANNED:\n");
    l(g, "bar.sync 0;");
    l(
        g,
        "// a valid owned row with no open key needs every tile (its uniform average)",
    );
    l(g, &format!("add.u32 %row, %own0, %me; setp.lt.u32 %p, %me, {ROWS}; setp.lt.and.u32 %p, %row, %lq, %p;"));
    l(g, "mov.u32 %x, 1; shl.b32 %u, %me, 2; add.u32 %u, %u, %ra;");
    l(g, "@%p ld.shared.u32 %x, [%u];");
    l(g, "setp.eq.u32 %closed, %x, 0;");
    l(g, "bar.red.or.pred %keepp, 0, %closed;");
}

/// Warp specialisation: the producer warpgroup gives registers back and its thread 0 copies;
/// the consumers take them and compute.
fn split(g: &mut Gen) {
    let d = g.d;
    let boxes = d / BOX_COLS;
    l(g, "setp.ne.u32 %p, %wg, 0;");
    l(g, "@%p bra CONSUMER;");
    l(
        g,
        &format!("setmaxnreg.dec.sync.aligned.u32 {PRODUCER_REGS};"),
    );
    l(g, "setp.ne.u32 %p, %me, 0;");
    l(g, "@%p bra DONE;");
    l(
        g,
        &format!(
            "// Q: {boxes} box(es) of 64 columns x {ROWS} rows, {} bytes apart",
            q_bytes(d) / boxes
        ),
    );
    l(g, &format!("add.u32 %qb, %base, {};", qbar_at(d)));
    l(
        g,
        &format!(
            "mbarrier.arrive.expect_tx.shared::cta.b64 %st, [%qb], {};",
            q_bytes(d)
        ),
    );
    for h in 0..boxes {
        l(
            g,
            &format!(
                "add.u32 %x, %base, {}; mov.u32 %u, {};",
                h * ROWS * 128,
                h * BOX_COLS
            ),
        );
        l(g, "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%x], [%tq, {%u, %own0, %bh}], [%qb];");
    }
    l(g, "mov.u32 %n, 0; mov.u32 %j, 0;");
    next_tile(g, "PSEEK");
    g.raw("PLOOP:\n");
    l(g, "setp.ge.u32 %p, %j, %ntiles;");
    l(g, "@%p bra DONE;");
    l(
        g,
        &format!(
            "and.b32 %stg, %n, {}; shr.u32 %u, %n, {};",
            STAGES - 1,
            STAGES.trailing_zeros()
        ),
    );
    l(
        g,
        "// the stage's previous use (phase u - 1 of empty[s]) released by the 8 consumer warps",
    );
    l(g, "setp.eq.u32 %p, %u, 0;");
    l(g, "@%p bra PLOAD;");
    l(g, "sub.u32 %par, %u, 1; and.b32 %par, %par, 1;");
    l(
        g,
        &format!(
            "mad.lo.u32 %eb, %stg, 8, %base; add.u32 %eb, %eb, {};",
            empty_at(d, 0)
        ),
    );
    wait(g, "PWAIT", "%eb", "%par");
    g.raw("PLOAD:\n");
    l(
        g,
        &format!(
            "mad.lo.u32 %fb, %stg, 8, %base; add.u32 %fb, %fb, {};",
            full_at(d, 0)
        ),
    );
    l(
        g,
        &format!(
            "mbarrier.arrive.expect_tx.shared::cta.b64 %st, [%fb], {};",
            stage_bytes(d)
        ),
    );
    l(
        g,
        &format!(
            "mad.lo.u32 %kst, %stg, {}, %base; add.u32 %kst, %kst, {};",
            stage_bytes(d),
            q_bytes(d)
        ),
    );
    l(
        g,
        &format!(
            "add.u32 %vst, %kst, {}; mul.lo.u32 %col, %j, {KEYS};",
            stage_bytes(d) / 2
        ),
    );
    for (t, st) in [("%tk", "%kst"), ("%tv", "%vst")] {
        for h in 0..boxes {
            l(
                g,
                &format!(
                    "add.u32 %x, {st}, {}; mov.u32 %u, {};",
                    h * KEYS * 128,
                    h * BOX_COLS
                ),
            );
            l(g, &format!("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%x], [{t}, {{%u, %col, %bh}}], [%fb];"));
        }
    }
    l(g, "add.u32 %n, %n, 1; add.u32 %j, %j, 1;");
    next_tile(g, "PNEXT");
    l(g, "bra PLOOP;");
    g.raw("CONSUMER:\n");
    l(
        g,
        &format!("setmaxnreg.inc.sync.aligned.u32 {CONSUMER_REGS};"),
    );
    consumer(g, d / 8);
    g.raw("DONE:\n");
}

fn desc(g: &mut Gen, reg: &str, addr: &str, c: u64) {
    l(g, &format!("and.b32 %x, {addr}, 0x3ffff; shr.u32 %x, %x, 4; cvt.u64.u32 {reg}, %x; or.b64 {reg}, {reg}, {c:#018x};"));
}

fn consumer(g: &mut Gen, nt: usize) {
    let d = g.d;
    let s_regs = KEYS / 2;
    l(g, "// warpgroup c = wg - 1 owns rows own0 + 64 c ..; warp w of it 16 of them, lane (g, t) rows g, g + 8");
    l(
        g,
        "sub.u32 %u, %wg, 1; shr.u32 %warp, %me, 5; and.b32 %warp, %warp, 3;",
    );
    l(g, &format!("mad.lo.u32 %x, %u, {}, %base;", q_rows_at(1)));
    desc(g, "%dq", "%x", DESC_K_MAJOR);
    l(g, "mad.lo.u32 %r, %u, 64, %own0; mad.lo.u32 %r, %warp, 16, %r; shr.u32 %x, %lane, 2; add.u32 %r, %r, %x;");
    l(
        g,
        "setp.lt.u32 %rv0, %r, %lq; add.u32 %x, %r, 8; setp.lt.u32 %rv1, %x, %lq;",
    );
    l(
        g,
        "sub.u32 %u, %lq, 1; min.u32 %c0r, %r, %u; min.u32 %c1r, %x, %u;",
    );
    for (r, mrow) in [("%c0r", "%mrow0"), ("%c1r", "%mrow1")] {
        l(
            g,
            &format!("mul.wide.u32 %a, {r}, %lk; add.u64 {mrow}, %Mb, %a;"),
        );
    }
    l(g, "mov.f32 %m0, 0fFF800000; mov.f32 %m1, 0fFF800000; mov.f32 %l0, 0f00000000; mov.f32 %l1, 0f00000000;");
    for n in 0..nt {
        l(g, &quad(n, |i| format!("mov.f32 %o{i}, 0f00000000;")));
    }
    l(g, &format!("add.u32 %qb, %base, {};", qbar_at(d)));
    wait(g, "QWAIT", "%qb", "0");
    l(g, "mov.u32 %n, 0; mov.u32 %j, 0;");
    next_tile(g, "CSEEK");
    g.raw("CLOOP:\n");
    l(g, "setp.ge.u32 %p, %j, %ntiles;");
    l(g, "@%p bra CDONE;");
    l(
        g,
        &format!(
            "and.b32 %stg, %n, {}; shr.u32 %par, %n, {}; and.b32 %par, %par, 1;",
            STAGES - 1,
            STAGES.trailing_zeros()
        ),
    );
    l(
        g,
        &format!(
            "mad.lo.u32 %fb, %stg, 8, %base; add.u32 %fb, %fb, {};",
            full_at(d, 0)
        ),
    );
    wait(g, "CWAIT", "%fb", "%par");
    l(
        g,
        &format!(
            "mad.lo.u32 %kst, %stg, {}, %base; add.u32 %kst, %kst, {};",
            stage_bytes(d),
            q_bytes(d)
        ),
    );
    l(g, &format!("add.u32 %vst, %kst, {};", stage_bytes(d) / 2));
    desc(g, "%dk", "%kst", DESC_K_MAJOR);
    desc(g, "%dv", "%vst", DESC_MN_MAJOR);
    l(g, "// S = Q K^T: D / 16 k16 steps, the first overwriting S");
    l(g, "wgmma.fence.sync.aligned;");
    let sl: Vec<String> = (0..s_regs).map(|i| format!("%s{i}")).collect();
    let sl = sl.join(", ");
    for k in 0..d / 16 {
        l(
            g,
            &format!(
                "add.u64 %da, %dq, {}; add.u64 %db, %dk, {};",
                k_major_step(ROWS, k) >> 4,
                k_major_step(KEYS, k) >> 4
            ),
        );
        let sd = if k == 0 { "%pf" } else { "%pt" };
        l(g, &format!("wgmma.mma_async.sync.aligned.m64n{KEYS}k16.f32.bf16.bf16 {{{sl}}}, %da, %db, {sd}, 1, 1, 0, 0;"));
    }
    l(g, "wgmma.commit_group.sync.aligned;");
    l(g, "wgmma.wait_group.sync.aligned 0;");
    l(
        g,
        &format!("shl.b32 %col0, %t4, 1; mad.lo.u32 %col0, %j, {KEYS}, %col0;"),
    );
    online_softmax(g, s_regs, nt);
    l(
        g,
        "// O += P V: 4 k16 steps of 16 keys, P from registers, V MN-major",
    );
    l(g, "wgmma.fence.sync.aligned;");
    let ol: Vec<String> = (0..d / 2).map(|i| format!("%o{i}")).collect();
    let ol = ol.join(", ");
    for u in 0..KEYS / 16 {
        l(g, &format!("add.u64 %db, %dv, {};", v_step(u) >> 4));
        l(g, &format!(
            "wgmma.mma_async.sync.aligned.m64n{d}k16.f32.bf16.bf16 {{{ol}}}, {{%pa{}, %pa{}, %pa{}, %pa{}}}, %db, %pt, 1, 1, 1;",
            4 * u, 4 * u + 1, 4 * u + 2, 4 * u + 3
        ));
    }
    l(g, "wgmma.commit_group.sync.aligned;");
    l(g, "wgmma.wait_group.sync.aligned 0;");
    l(g, "// this warp is done with the stage");
    l(
        g,
        &format!(
            "setp.eq.u32 %p, %lane, 0; mad.lo.u32 %eb, %stg, 8, %base; add.u32 %eb, %eb, {};",
            empty_at(d, 0)
        ),
    );
    l(g, "@%p mbarrier.arrive.shared::cta.b64 %st, [%eb];");
    l(g, "add.u32 %n, %n, 1; add.u32 %j, %j, 1;");
    next_tile(g, "CNEXT");
    l(g, "bra CLOOP;");
    g.raw("CDONE:\n");
    finish_forward(g);
    l(g, "bra DONE;");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in modules are this generator's output (GIDD_WRITE_PTX=1 rewrites them).
    #[test]
    fn checked_in_wgmma_ptx_is_generated() {
        for d in HEAD_DIMS {
            let path = format!(
                "{}/src/attention/{}",
                env!("CARGO_MANIFEST_DIR"),
                file_name(d)
            );
            let want = source(d);
            if std::env::var("GIDD_WRITE_PTX").as_deref() == Ok("1") {
                std::fs::write(&path, &want).expect("writing the generated PTX");
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                have == want,
                "{path} is not wgmma_ptx.rs's output: rerun with GIDD_WRITE_PTX=1"
            );
            let n = want.lines().count();
            assert!(n < 700, "{path}: {n} lines");
        }
    }

    #[test]
    fn wgmma_geometry_fits() {
        for d in HEAD_DIMS {
            assert!(smem_bytes(d) <= 227 * 1024, "D {d}: {}", smem_bytes(d));
            // swizzle atoms (8 rows of 128 bytes) start 1024-aligned
            assert_eq!(q_bytes(d) % 1024, 0);
            assert_eq!(stage_bytes(d) % 2048, 0);
            assert_eq!(bars_at(d) % 8, 0);
        }
        assert_eq!(THREADS as usize, 3 * 128);
        assert!(PRODUCER_REGS as usize * 128 + CONSUMER_REGS as usize * 256 <= 65536);
        assert!(STAGES.is_power_of_two() && KEYS.is_power_of_two());
        assert_eq!(MAX_TILES % 32, 0);
    }
}
