//! Flash-style attention, forward and backward, as WGSL kernels (attention/attention.wgsl):
//! the `[B, H, Lq, Lk]` scores are never stored. The forward is one dispatch (on GPUs a
//! workgroup per 16 queries of a head, key tiles under an online softmax; on CPU adapters an
//! invocation per query row, the same arithmetic: crate::AttentionStrategy); the backward three: a pass over
//! the query rows (`D_i = do_i . o_i`, the rows whose keys are all masked, and `do`, `lse`
//! packed into one scratch buffer), then `dk, dv` (a workgroup per 16 keys, looping over the
//! queries) and `dq` (a workgroup per 16 queries, looping over the keys). Each gradient
//! element has one owner: deterministic, no atomics.
//!
//! Tensors larger than one storage binding run in windows, each a set of the same
//! dispatches over part of the problem (the kernels add each binding's start, P[9..16]):
//! whole batches of heads, else heads of one batch, else blocks of one head's queries (a
//! batch's [Lq, Lk] mask is the first to outgrow a binding: 128 MiB at L = 5793); with
//! query blocks, dk and dv carry their sums from one block to the next, bit for bit the
//! unsplit chains. Else (one head's keys and values, or 16 rows of its mask, larger than a
//! binding) blocks of queries, each as many mask rows as a binding holds, times blocks of
//! keys, whole 16-key tiles: the forward carries its online softmax (running max and sum
//! in a scratch, the unnormalized output in the output) from one key block to the next and
//! dq its sums, bit for bit the unsplit tile loop. Only a single mask row (Lk words) or 16
//! keys larger than a binding are refused.
//!
//! The graph builds attention over f32 only (infer admits f32 or f64; the api converts bf16
//! around it) and f64 programs never load here, so f32 is what the kernels take. Head dims
//! up to [`DMAX`]; larger ones are refused at load.

use super::no_kernel;
use crate::error::{Result, WgpuError};
use crate::pipelines::Kernel;
use crate::plan::{grid, u32_of, Bind, Builder, WG};
use gidd_engine::op::{AttnSpec, Op};
use gidd_engine::DType;
use gidd_kernels::wgsl::Module;

/// The largest head dim the kernels hold in workgroup memory (`DMAX` in the WGSL).
pub const DMAX: usize = 128;
/// Queries (or keys) per workgroup block and per streamed tile (`T` in the WGSL).
const T: usize = 16;

pub fn supports(_op: &Op, dtype: DType) -> bool {
    dtype == DType::F32
}

/// (B, H, Lq, Lk, D) of q [B,H,Lq,D] and k [B,H,Lk,D].
fn dims(b: &Builder, q: usize, k: usize) -> (usize, usize, usize, usize, usize) {
    let (qs, ks) = (b.shape(q), b.shape(k));
    (qs[0], qs[1], qs[2], ks[2], qs[3])
}

pub fn lower(b: &mut Builder, op: &Op, ins: &[usize], outs: &[usize]) -> Result<()> {
    let spec = match op {
        Op::Attention(s) | Op::AttentionBwd(s) => *s,
        _ => return Err(no_kernel(op)),
    };
    for &v in ins.iter().chain(outs) {
        let d = b.dtype(v);
        // operand 3 is the bool mask
        if d != DType::F32 && !(v == ins[3] && d == DType::Bool) {
            return Err(WgpuError::Unsupported(format!(
                "{}: the WGSL kernels take f32 values (and a bool mask), not {d}",
                op.name()
            )));
        }
    }
    let (bs, h, lq, lk, d) = dims(b, ins[0], ins[1]);
    if d > DMAX {
        return Err(WgpuError::Unsupported(format!(
            "{}: head dim {d} exceeds the WGSL kernels' {DMAX}",
            op.name()
        )));
    }
    let rows = bs * h * lq;
    // every index the kernels form stays below these (ST holds do and three words a row)
    for n in [rows * d + 3 * rows, bs * h * lk * d, bs * lq * lk] {
        u32_of(n)?;
    }
    let fwd = matches!(op, Op::Attention(_));
    let sh = Dims {
        bs,
        h,
        lq,
        lk,
        d,
        fwd,
    };
    let whole = Win {
        g0: 0,
        g: bs * h,
        i0: 0,
        n: lq,
        j0: 0,
        m: lk,
    };
    let big = ins.iter().chain(outs).any(|&v| b.too_big(v))
        || sh.needs(whole).iter().any(|&x| x > b.max_binding);
    b.windowed = big;
    let binds = (|| -> Result<Vec<Bind>> {
        let mut v = vec![];
        for &x in ins {
            v.push(b.buf(x)?);
        }
        for &x in outs {
            v.push(b.out(x)?);
        }
        Ok(v)
    })();
    b.windowed = false;
    let binds = binds?;
    let wins = match big {
        true => sh.windows(b)?,
        false => vec![whole],
    };
    for w in wins {
        window(b, &sh, spec_words(spec), &binds, ins.len(), w, big)?;
    }
    Ok(())
}

/// The problem's sizes, and whether it is the forward.
struct Dims {
    bs: usize,
    h: usize,
    lq: usize,
    lk: usize,
    d: usize,
    fwd: bool,
}

/// A window of the problem: heads [g0, g0 + g) (whole batches, or heads of one batch), queries
/// [i0, i0 + n) (all of them, or part of one head's), keys [j0, j0 + m) (all of them, or
/// part of one head's): what one set of dispatches binds.
#[derive(Clone, Copy, Debug)]
struct Win {
    g0: usize,
    g: usize,
    i0: usize,
    n: usize,
    j0: usize,
    m: usize,
}

impl Dims {
    /// Bytes each binding of window `w` needs: q (out, do, dq), k (v, dk, dv), lse, mask (its
    /// whole rows: attention_rows reads them all), ST (the forward's state: two words a row).
    fn needs(&self, w: Win) -> [u64; 5] {
        let (g, n, d, m) = (w.g as u64, w.n as u64, self.d as u64, w.m as u64);
        let (lq, lk) = (self.lq as u64, self.lk as u64);
        let mask = match w.g >= self.h && w.n == self.lq {
            true => g / self.h as u64 * lq * lk,
            false => n * lk,
        };
        let st = match (self.fwd, w.m < self.lk) {
            (true, true) => 2 * g * n,
            (true, false) => 0,
            (false, _) => g * n * d + 3 * g * n,
        };
        [4 * g * n * d, 4 * g * m * d, 4 * g * n, 4 * mask, 4 * st]
    }

    /// The windows, as large as fit (with the slack of an aligned start): whole batches; else
    /// heads of one batch; else query blocks of one head (keys and values of one head whole).
    fn windows(&self, b: &Builder) -> Result<Vec<Win>> {
        let slack = b.offset_align() + 4;
        let fits_keys = |g: usize, n: usize, m: usize| {
            let w = Win {
                g0: 0,
                g,
                i0: 0,
                n,
                j0: 0,
                m,
            };
            self.needs(w).iter().all(|&x| x + slack <= b.max_binding)
        };
        let fits = |g: usize, n: usize| fits_keys(g, n, self.lk);
        let (bs, h, lq, lk) = (self.bs, self.h, self.lq, self.lk);
        let win = |g0, g, i0, n| Win {
            g0,
            g,
            i0,
            n,
            j0: 0,
            m: lk,
        };
        let mut out = vec![];
        if fits(h, lq) {
            let k = largest(1, bs, |k| fits(k * h, lq));
            for b0 in (0..bs).step_by(k) {
                out.push(win(b0 * h, k.min(bs - b0) * h, 0, lq));
            }
        } else if fits(1, lq) {
            let k = largest(1, h, |k| fits(k, lq));
            for bi in 0..bs {
                for h0 in (0..h).step_by(k) {
                    out.push(win(bi * h + h0, k.min(h - h0), 0, lq));
                }
            }
        } else if fits(1, T.min(lq)) {
            // query blocks start on the kernels' 16-row tiles
            let k = largest(1, lq.div_ceil(T), |k| fits(1, (k * T).min(lq))) * T;
            for g0 in 0..bs * h {
                for i0 in (0..lq).step_by(k) {
                    out.push(win(g0, 1, i0, k.min(lq - i0)));
                }
            }
        } else if fits_keys(1, 1, T.min(lk)) {
            // query blocks of as many mask rows as fit (whole 16-row tiles when 16 fit), each
            // over key blocks of whole 16-key tiles (so the forward's tiles are the unsplit
            // ones); query blocks outermost, so dk, dv go on over them as above
            let mut n = largest(1, lq, |n| fits_keys(1, n, T.min(lk)));
            if n > T {
                n -= n % T;
            }
            let m = largest(1, lk.div_ceil(T), |k| fits_keys(1, n, (k * T).min(lk))) * T;
            for g0 in 0..bs * h {
                for i0 in (0..lq).step_by(n) {
                    for j0 in (0..lk).step_by(m) {
                        out.push(Win {
                            g0,
                            g: 1,
                            i0,
                            n: n.min(lq - i0),
                            j0,
                            m: m.min(lk - j0),
                        });
                    }
                }
            }
        } else {
            return Err(WgpuError::Unsupported(format!(
                "{}: one row of the mask ({} keys) or {T} keys of one head ([{T}, {}] f32) are \
                 more than one storage binding ({:.1} MiB, max_storage_buffer_binding_size)",
                b.doing,
                self.lk,
                self.d,
                b.max_binding as f64 / 1048576.0
            )));
        }
        Ok(out)
    }
}

/// The largest x in [lo, hi] with f(x), f falling from true (f(lo) assumed) to false.
fn largest(lo: usize, hi: usize, f: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if f(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// P[5..8]: scale, soft cap, whether capped.
fn spec_words(spec: AttnSpec) -> [u32; 3] {
    [
        spec.scale.to_bits(),
        spec.softcap.unwrap_or(1.0).to_bits(),
        spec.softcap.is_some().into(),
    ]
}

/// The dispatches of window `w`; `binds`: the node's inputs then outputs (forward: q, k, v,
/// mask, out, lse; backward: q, k, v, mask, out, lse, do, dq, dk, dv). With `windowed`, each
/// binds the byte windows of its tensors that hold `w` (the kernels add the words between an
/// aligned window start and the data: P[9..16]), else whole buffers.
fn window(
    b: &mut Builder,
    sh: &Dims,
    spec: [u32; 3],
    binds: &[Bind],
    nin: usize,
    w: Win,
    windowed: bool,
) -> Result<()> {
    let (h, lq, lk, d) = (sh.h, sh.lq, sh.lk, sh.d);
    // (byte window, words before the data) of words [start, start + len)
    let span = |start: usize, len: usize| match windowed {
        true => {
            let (win, resid) = b.span_window(start, len.max(1), 4);
            (Some(win), resid)
        }
        false => (None, 0),
    };
    let q = span((w.g0 * lq + w.i0) * d, w.g * w.n * d);
    let kv = span((w.g0 * lk + w.j0) * d, w.g * w.m * d);
    let lse = span(w.g0 * lq + w.i0, w.g * w.n);
    // the mask rows of the window's queries: whole batches, or rows of one (from key j0)
    let batches = w.g >= h && w.n == lq;
    let mask_at = |j0: usize, m: usize| match batches {
        true => span(w.g0 / h * lq * lk, w.g / h * lq * lk),
        false => span((w.g0 / h * lq + w.i0) * lk + j0, (w.n - 1) * lk + m),
    };
    let mask = mask_at(w.j0, w.m);
    // attention_rows reads whole mask rows
    let row_mask = mask_at(0, lk);
    // key blocks: bit 0 goes on from the state of the earlier ones, bit 1 finishes
    let key_flags = u32::from(w.j0 > 0) | (u32::from(w.j0 + w.m == lk) << 1);
    let params = |blocks: usize, offs: [usize; 7], flags: u32| -> Result<Vec<u32>> {
        let mut p = vec![
            u32_of(w.g)?,
            u32_of(h)?,
            u32_of(w.n)?,
            u32_of(w.m)?,
            u32_of(d)?,
            spec[0],
            spec[1],
            spec[2],
            u32_of(blocks)?,
        ];
        for o in offs {
            p.push(u32_of(o)?);
        }
        p.push(flags);
        p.push(u32_of(lk)?);
        Ok(p)
    };
    let (qb, kb) = (w.n.div_ceil(T), w.m.div_ceil(T));
    let rows = w.g * w.n;
    let [bq, bk, bv, bm] = [binds[0], binds[1], binds[2], binds[3]];
    if sh.fwd {
        let (bo, bl) = (binds[nin], binds[nin + 1]);
        // between key blocks the running max and sum live in scratch 1: bound as the lse
        // output while more blocks follow, as ST when finishing
        let mut state = || b.scratch(1, (8 * rows) as u64);
        let (l_bind, l_win, st) = match key_flags {
            2 => (bl, lse, Bind::Dummy),
            3 => (bl, lse, state()),
            _ => (state(), (None, 0), Bind::Dummy),
        };
        let wins = vec![q.0, l_win.0, q.0, kv.0, kv.0, mask.0, None];
        let p = params(qb, [q.1, l_win.1, q.1, kv.1, kv.1, mask.1, 0], key_flags)?;
        let binds = vec![bo, l_bind, bq, bk, bv, bm, st];
        let (kern, g) = match b.attention_rows {
            true => ("attention_fwd_row", grid(rows.div_ceil(64))?),
            false => ("attention_fwd", grid(w.g * qb)?),
        };
        let kern = Kernel::new(Module::Attention, kern, 5).outputs(2);
        return b.push_windows(kern, binds, wins, &p, g);
    }
    let (bo, bl, bdo) = (binds[nin - 3], binds[nin - 2], binds[nin - 1]);
    let (bdq, bdk, bdv) = (binds[nin], binds[nin + 1], binds[nin + 2]);
    let st = b.scratch(0, ((rows * d + 3 * rows) * 4).max(4) as u64);
    if w.j0 == 0 {
        // once per block of queries
        let kern = Kernel::new(Module::Attention, "attention_rows", 4);
        let wins = vec![None, q.0, q.0, lse.0, row_mask.0];
        let p = params(qb, [0, q.1, q.1, lse.1, row_mask.1, 0, 0], 0)?;
        b.push_windows(
            kern,
            vec![st, bo, bdo, bl, bm],
            wins,
            &p,
            grid(rows.div_ceil(WG))?,
        )?;
    }
    // dk, dv sum over every query: over several query windows the sums go on (bit 0) and dk
    // is scaled after the last (bit 1)
    let flags = u32::from(w.i0 > 0) | (u32::from(w.i0 + w.n == lq) << 1);
    let kern = Kernel::new(Module::Attention, "attention_dkdv", 5).outputs(2);
    let wins = vec![kv.0, kv.0, q.0, kv.0, kv.0, mask.0, None];
    let p = params(kb, [kv.1, kv.1, q.1, kv.1, kv.1, mask.1, 0], flags)?;
    let binds = vec![bdk, bdv, bq, bk, bv, bm, st];
    b.push_windows(kern, binds, wins, &p, grid(w.g * kb)?)?;
    // binding 2 is a dummy, so q, k, v, mask, ST sit where attention_dkdv has them; over
    // several key windows dq's sums go on and it is scaled after the last
    let kern = Kernel::new(Module::Attention, "attention_dq", 6);
    let wins = vec![q.0, None, q.0, kv.0, kv.0, mask.0, None];
    let p = params(qb, [q.1, 0, q.1, kv.1, kv.1, mask.1, 0], key_flags)?;
    let binds = vec![bdq, Bind::Dummy, bq, bk, bv, bm, st];
    b.push_windows(kern, binds, wins, &p, grid(w.g * qb)?)
}

#[cfg(test)]
mod tests {
    /// The launcher's block and head-dim limits are the kernel file's.
    #[test]
    fn sizes_match_the_wgsl() {
        let s = gidd_kernels::wgsl::Module::Attention.body();
        assert!(s.contains(&format!("const DMAX: u32 = {}u;", super::DMAX)));
        assert!(s.contains(&format!("const T: u32 = {}u;", super::T)));
    }
}
