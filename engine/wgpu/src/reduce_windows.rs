//! A reduction of the outermost dim (column sums and maxima of [R, C]) whose partials do not
//! fit one storage binding: the windows of rows leave one f32 partial row per window (i64 for
//! integer sums), and those rows (nwin x C words) outgrow a binding when the input is large
//! and C long; a bf16 input's f32 row (4 C bytes) can outgrow it even when its packed row
//! (2 C) fits. Then the columns go in chunks, each reduced on its own: rows of the chunk in
//! windows (each as many rows as fit, read through the window that spans them), the chunk's
//! partials in one scratch that fits, reduced into the chunk's window of the output. The
//! windows of the output and of the partials start aligned (a chunk of columns is a multiple
//! of the alignment in their elements); those of the input anywhere (the kernels add the
//! elements before its data, P[36]).

use crate::error::{Result, WgpuError};
use crate::pipelines::Kernel;
use crate::plan::{gcd, grid, lcm, u32_of, Bind, Builder, WG};

/// A reduction's input as runs of dims: (size, stride, reduced), outermost first.
pub type Runs = Vec<(usize, usize, bool)>;

/// The column chunks of a reduction of [outer, inner] over outer.
pub struct Columns {
    outer: usize,
    inner: usize,
    /// Columns per chunk (the last may have fewer).
    cw: usize,
    /// Rows per window of a chunk.
    per: usize,
    /// Bytes per input element (packed bf16: 2), per output element, words per partial.
    ein: u64,
    eout: u64,
    ew: usize,
}

impl Columns {
    /// None when the partials of the whole rows fit (`nwin` windows of `n_out` partials of
    /// `ew` words, `pad`ded rows, and the output whole): the caller's one-chunk path. Else the
    /// chunks, or an error naming the limit when the runs are not [outer (reduced), inner
    /// (kept)] or no chunk fits.
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        b: &Builder,
        ds: &Runs,
        n_out: usize,
        nwin: Option<usize>,
        stride: usize,
        ein: u64,
        eout: u64,
        ew: usize,
    ) -> Result<Option<Columns>> {
        let max = b.max_binding;
        let part = |nwin: usize, stride: usize| (nwin * stride * ew * 4) as u64;
        if let Some(nwin) = nwin {
            if part(nwin, stride) <= max && n_out as u64 * eout <= max {
                return Ok(None);
            }
        }
        let refuse = |why: &str| {
            WgpuError::Unsupported(format!(
                "{}: a reduction over runs {ds:?} ({why}) is more than one storage binding \
                 ({:.1} MiB, max_storage_buffer_binding_size)",
                b.doing,
                max as f64 / 1048576.0
            ))
        };
        let &[(outer, st, true), (inner, 1, false)] = ds.as_slice() else {
            return Err(refuse(
                "its partials; only a reduction of the outermost dim splits its columns",
            ));
        };
        debug_assert_eq!(st, inner);
        let align = b.offset_align();
        let step = |e: u64| align / gcd(e, align);
        // columns per chunk in these elements start the output's and partials' windows aligned
        let q = lcm(step(eout), step(4 * ew as u64)) as usize;
        // rows per window: a span of (rows - 1) inner + cw elements after an aligned start
        let rows = |cw: usize| {
            let room = (max.saturating_sub(align + 4) / ein) as usize;
            match room >= cw {
                true => ((room - cw) / inner + 1).min(outer),
                false => 0,
            }
        };
        let mut cw = (inner.min(max as usize / (4 * ew)) / q * q).max(q);
        loop {
            let per = rows(cw);
            if per > 0 && part(outer.div_ceil(per), cw) <= max && cw as u64 * eout <= max {
                return Ok(Some(Columns {
                    outer,
                    inner,
                    cw,
                    per,
                    ein,
                    eout,
                    ew,
                }));
            }
            if cw <= q {
                return Err(refuse("a chunk of its columns, with its partials"));
            }
            cw = (cw / 2).div_ceil(q) * q;
        }
    }

    /// The dispatches: per chunk, `kpart(runs)` over each window of rows into the chunk's
    /// partial rows (scratch 0), then `kfin(runs)` over those into the output's window.
    pub fn push(
        &self,
        b: &mut Builder,
        src: Bind,
        o: Bind,
        params: &dyn Fn(&Runs) -> Result<Vec<u32>>,
        kpart: &dyn Fn(&Runs) -> Result<Kernel>,
        kfin: &dyn Fn(&Runs) -> Result<Kernel>,
    ) -> Result<()> {
        let (outer, inner, cw, per) = (self.outer, self.inner, self.cw, self.per);
        let nwin = outer.div_ceil(per);
        let row = (cw * self.ew * 4) as u64;
        let part = b.scratch(0, nwin as u64 * row);
        for c0 in (0..inner).step_by(cw) {
            let w = cw.min(inner - c0);
            for (i, r0) in (0..outer).step_by(per).enumerate() {
                let len = per.min(outer - r0);
                let wd = vec![(len, inner, true), (w, 1, false)];
                let span = (len - 1) * inner + w;
                let (win, resid) = b.span_window(r0 * inner + c0, span, self.ein);
                let wins = vec![Some((i as u64 * row, (w * self.ew * 4) as u64)), Some(win)];
                let mut p = params(&wd)?;
                p[36] = u32_of(resid)?;
                let g = grid(w.div_ceil(WG))?;
                b.push_windows(kpart(&wd)?, vec![part, src], wins, &p, g)?;
            }
            let mut fin = vec![(nwin, cw, true)];
            if w > 1 {
                fin.push((w, 1, false));
            }
            let out_win = (
                c0 as u64 * self.eout,
                (w as u64 * self.eout).next_multiple_of(4),
            );
            let wins = vec![Some(out_win), Some((0, nwin as u64 * row))];
            let g = grid(w.div_ceil(WG))?;
            b.push_windows(kfin(&fin)?, vec![o, part], wins, &params(&fin)?, g)?;
        }
        Ok(())
    }
}
