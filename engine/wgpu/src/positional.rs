//! Generated kernels (crate::fuse) over values larger than one storage binding, including
//! those that read by position: views (broadcast, transpose, slice), iota and concatenate.
//! The output is cut into chunks of elements; each chunk is one dispatch that binds the
//! output's window of the chunk and, of each value it reads, the window spanning every
//! element the chunk reads through any of that value's maps (at the output's index, a view's
//! strides, a concatenated part's place). The kernel indexes with global element numbers:
//! `gi = i + P[2]` (the chunk's first element), less `P[3 + k]` (the element where read k's
//! window starts), so a chunk computes exactly what the unsplit kernel computes for its
//! elements: the windows change which dispatch writes an element, never its value.
//!
//! A chunk is as long as one binding holds of the output, cut back (to the last row
//! boundary of a map's shape, else by half) until every read window fits: a transposed read
//! spans a source row per output element, and a chunk that crosses an output row reads the
//! ends of two source columns, so such chunks end on output rows. Chunks start anywhere:
//! windows start at the aligned offset at or before their first element. Where a packed bf16
//! or f16 value is written, an invocation owns a whole word and keeps the half of its first word
//! that lies before the chunk (an earlier dispatch wrote it).
//! P[0] = the chunk's elements, P[1] = 0 (crate::fuse's opaque zero), P[2] = the chunk's
//! first element, P[3 + k] = read k's window start (elements), then one per written value.

use crate::buffer::{elem_bytes, half, is_half};
use crate::error::{Result, WgpuError};
use crate::fuse::{index_expr, load};
use crate::lower::class;
use crate::pipelines::Kernel;
use crate::plan::{grid, lcm, strides, u32_of, Bind, Builder, WG};
use gidd_engine::program::Loc;
use gidd_engine::DType;
use gidd_kernels::wgsl::generated_source;
use std::fmt::Write;

/// How a kernel reads a value for the output element of global index `gi`: element
/// `off + sum_d c_d * st[d]`, with c the coordinates of `gi` in `shape`; for a part of a
/// concatenation, only where `c[dim]` lies in [at, end), and with `c[dim] - at` in its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    pub shape: Vec<usize>,
    pub off: usize,
    pub st: Vec<usize>,
    pub part: Option<(usize, usize, usize)>,
}

impl Map {
    /// Read at the output's own index.
    pub fn direct(n: usize) -> Map {
        Map::view(vec![n], 0, vec![1])
    }

    pub fn view(shape: Vec<usize>, off: usize, st: Vec<usize>) -> Map {
        Map {
            shape,
            off,
            st,
            part: None,
        }
    }

    /// The elements [lo, hi) that output elements [s, e] read (a superset: per dim, the
    /// coordinates between those of s and e where no outer coordinate changes between them,
    /// else all of them); None when they read none (a part the chunk does not reach).
    pub fn span(&self, s: usize, e: usize) -> Option<(usize, usize)> {
        let ost = strides(&self.shape);
        let (mut lo, mut hi) = (self.off, self.off);
        for (d, &n) in self.shape.iter().enumerate() {
            let block = ost[d] * n;
            let (mut c0, mut c1) = match s / block == e / block {
                true => ((s / ost[d]) % n, (e / ost[d]) % n),
                false => (0, n - 1),
            };
            if let Some((pd, at, end)) = self.part {
                if pd == d {
                    (c0, c1) = (c0.max(at), c1.min(end - 1));
                    if c0 > c1 {
                        return None;
                    }
                    (c0, c1) = (c0 - at, c1 - at);
                }
            }
            lo += c0 * self.st[d];
            hi += c1 * self.st[d];
        }
        Some((lo, hi + 1))
    }
}

/// A value bound by a generated kernel: its binding, element bytes (bf16, f16: 2), whether it is
/// larger than one binding, and (for a read) every map it is read under.
pub struct Bound {
    pub bind: Bind,
    pub eb: u64,
    pub big: bool,
    pub maps: Vec<Map>,
}

impl Bound {
    pub fn of(b: &Builder, v: usize, bind: Bind, maps: Vec<Map>) -> Bound {
        Bound {
            bind,
            eb: elem_bytes(b.dtype(v)),
            big: b.too_big(v),
            maps,
        }
    }
}

/// The start of a generated kernel's body (after its signature) that writes values of
/// dtypes `writes`: the invocation's global element `gi` (or, where a packed bf16 or f16 value
/// is written, its word `gw` and a loop over that word's two elements); returns the indent of
/// the per-element code, which runs for elements of the chunk only.
pub fn frame_head(s: &mut String, writes: &[DType]) -> &'static str {
    if !writes.iter().any(|&d| is_half(d)) {
        s.push_str(
            "    let t = flat_id(wg, nwg, lid);\n    if t >= P[0] {\n        return;\n    }\n\
             \x20   let gi = P[2] + t;\n",
        );
        return "    ";
    }
    s.push_str(
        "    let gw = (P[2] >> 1u) + flat_id(wg, nwg, lid);\n    if 2u * gw >= P[2] + P[0] {\n\
         \x20       return;\n    }\n    // the halves of the first word before the chunk\n\
         \x20   var keep = 0u;\n",
    );
    for (k, &d) in writes.iter().enumerate() {
        if is_half(d) {
            let _ = writeln!(s, "    var w{k} = 0u;");
        }
    }
    s.push_str(
        "    for (var e = 0u; e < 2u; e = e + 1u) {\n        let gi = 2u * gw + e;\n\
         \x20       if gi < P[2] {\n            keep = keep | select(0xffffu, 0xffff0000u, e == 1u);\n\
         \x20       }\n        if gi >= P[2] && gi < P[2] + P[0] {\n",
    );
    "            "
}

/// The store of written value `k` (dtype `d`, its words in register `r`); `nreads`: the
/// kernel's read bindings (the write's window start is P[3 + nreads + k]).
pub fn frame_write(s: &mut String, k: usize, d: DType, r: &str, nreads: usize, ind: &str) {
    let at = format!("gi - P[{}u]", 3 + nreads + k);
    let _ = match d {
        DType::I64 => writeln!(
            s,
            "{ind}O{k}[2u * ({at})] = {r}.x;\n{ind}O{k}[2u * ({at}) + 1u] = {r}.y;"
        ),
        // 16-bit results are rounded already: their 16 bits go to the element's half
        DType::BF16 | DType::F16 => writeln!(
            s,
            "{ind}w{k} = w{k} | (half_enc({r}, {}u) << (16u * e));",
            half(d)
        ),
        _ => writeln!(s, "{ind}O{k}[{at}] = {r};"),
    };
}

/// The end of the body: the packed words stored (with the kept halves), and the braces.
pub fn frame_tail(s: &mut String, writes: &[DType], nreads: usize) {
    if writes.iter().any(|&d| is_half(d)) {
        s.push_str("        }\n    }\n");
        for (k, &d) in writes.iter().enumerate() {
            if is_half(d) {
                let at = format!("gw - (P[{}u] >> 1u)", 3 + nreads + k);
                let _ = writeln!(
                    s,
                    "    if keep != 0u {{\n        w{k} = w{k} | (O{k}[{at}] & keep);\n    }}\n\
                     \x20   O{k}[{at}] = w{k};"
                );
            }
        }
    }
    s.push_str("}\n");
}

/// The invocations of a chunk of `len` elements from `s`: one per element, or one per word
/// the chunk touches where a packed bf16 or f16 value is written.
fn threads(s: usize, len: usize, per: usize) -> usize {
    match per {
        1 => len,
        _ => (s + len).div_ceil(2) - s / 2,
    }
}

fn params(len: usize, base: usize, offs: &[usize]) -> Result<Vec<u32>> {
    let mut p = vec![u32_of(len)?, 0, u32_of(base)?];
    for &o in offs {
        p.push(u32_of(o)?);
    }
    Ok(p)
}

/// One dispatch of a generated kernel: the windows of its bindings, parameters and grid.
pub type Chunk = (Vec<Option<(u64, u64)>>, Vec<u32>, [u32; 3]);

/// Adds generated kernel `k` over output elements [0, n), `per` per invocation (2 where a packed
/// bf16 or f16 value is written): one dispatch when every value fits one binding, else one per
/// chunk (the module doc).
pub fn push(
    b: &mut Builder,
    k: Kernel,
    writes: &[Bound],
    reads: &[Bound],
    n: usize,
    per: usize,
) -> Result<()> {
    let binds: Vec<Bind> = writes.iter().chain(reads).map(|x| x.bind).collect();
    for (windows, p, g) in chunks(b, writes, reads, n, per)? {
        b.push_windows(k.clone(), binds.clone(), windows, &p, g)?;
    }
    Ok(())
}

/// The dispatches of [`push`], planned without adding them.
pub fn chunks(
    b: &Builder,
    writes: &[Bound],
    reads: &[Bound],
    n: usize,
    per: usize,
) -> Result<Vec<Chunk>> {
    let nb = writes.len() + reads.len();
    if !writes.iter().chain(reads).any(|x| x.big) {
        let g = grid(threads(0, n, per).div_ceil(WG))?;
        return Ok(vec![(vec![], params(n, 0, &vec![0; nb])?, g)]);
    }
    let widest = writes.iter().map(|w| w.eb).max().unwrap_or(4);
    // a chunk's output window holds it and the aligned bytes before it
    let most = (b.max_binding.saturating_sub(b.offset_align() + 4) / widest) as usize;
    // the row sizes of every map's shape: where a chunk may end without crossing a row
    let mut rows: Vec<usize> = reads
        .iter()
        .flat_map(|r| &r.maps)
        .flat_map(|m| {
            let st = strides(&m.shape);
            (0..m.shape.len().saturating_sub(1)).map(move |d| st[d])
        })
        .filter(|&x| x > 1)
        .collect();
    rows.sort_unstable();
    rows.dedup();
    let mut out = vec![];
    let mut s = 0;
    while s < n {
        let mut len = most.min(n - s);
        let (rw, roffs) = loop {
            if len == 0 {
                return Err(too_wide(b));
            }
            if let Some(w) = read_windows(b, reads, s, len) {
                break w;
            }
            // end on the last row boundary before the chunk's end, else halve
            let e = s + len;
            let cut = rows
                .iter()
                .map(|&r| (e - 1) / r * r)
                .filter(|&c| c > s)
                .max();
            len = match cut {
                Some(c) if c - s > len / 2 => c - s,
                _ => len / 2,
            };
        };
        let ws: Vec<Bound> = writes
            .iter()
            .map(|w| Bound {
                bind: w.bind,
                eb: w.eb,
                big: true,
                maps: vec![Map::direct(n)],
            })
            .collect();
        let (mut windows, mut offs) = read_windows(b, &ws, s, len).ok_or_else(|| too_wide(b))?;
        windows.extend(rw);
        offs.splice(0..0, roffs);
        let g = grid(threads(s, len, per).div_ceil(WG))?;
        out.push((windows, params(len, s, &offs)?, g));
        s += len;
    }
    Ok(out)
}

fn too_wide(b: &Builder) -> WgpuError {
    WgpuError::Unsupported(format!(
        "{}: one output element reads more than one storage binding ({:.1} MiB, \
         max_storage_buffer_binding_size) of an operand",
        b.doing,
        b.max_binding as f64 / 1048576.0
    ))
}

/// The window of each read for output elements [s, s + len) and the element it starts at
/// (values that fit are bound whole, from element 0); None when one does not fit a binding.
type Windows = (Vec<Option<(u64, u64)>>, Vec<usize>);

fn read_windows(b: &Builder, reads: &[Bound], s: usize, len: usize) -> Option<Windows> {
    let align = b.offset_align();
    let (mut windows, mut offs) = (vec![], vec![]);
    for r in reads {
        if !r.big {
            windows.push(None);
            offs.push(0);
            continue;
        }
        let span = r
            .maps
            .iter()
            .filter_map(|m| m.span(s, s + len - 1))
            .reduce(|a, c| (a.0.min(c.0), a.1.max(c.1)));
        let Some((lo, hi)) = span else {
            // not read by this chunk: any valid binding
            windows.push(Some((0, 4)));
            offs.push(0);
            continue;
        };
        // the window starts on a whole element and word (bf16, f16: an even element)
        let a = lcm(align, r.eb.max(4));
        let off = lo as u64 * r.eb / a * a;
        let size = (hi as u64 * r.eb).next_multiple_of(4) - off;
        if size > b.max_binding {
            return None;
        }
        windows.push(Some((off, size)));
        offs.push((off / r.eb) as usize);
    }
    Some((windows, offs))
}

/// concatenate along `dim` as one generated kernel over the output, each element loaded from
/// the part whose place holds it: how a concatenation touching a value larger than one
/// binding runs (in windows: [`push`]), packed bf16 and f16 included (whole words per
/// invocation).
pub fn concat(b: &mut Builder, parts: &[usize], out: usize, dim: usize) -> Result<()> {
    let p = b.p;
    let d = b.dtype(out);
    class(d)?;
    let shape = b.shape(out).to_vec();
    let n: usize = shape.iter().product();
    if n == 0 {
        return Ok(());
    }
    // (part, first place, end) of the parts with elements
    let mut live = vec![];
    let mut at = 0;
    for &x in parts {
        let sz = b.shape(x)[dim];
        if sz > 0 {
            live.push((x, at, at + sz));
        }
        at += sz;
    }
    let mut bufs: Vec<usize> = vec![];
    for &(x, _, _) in &live {
        if !matches!(p.loc[x], Loc::Splat(_)) && !bufs.contains(&x) {
            bufs.push(x);
        }
    }
    let ty = if d == DType::I64 { "vec2<u32>" } else { "u32" };
    let ost = strides(&shape);
    let mut s = String::from(
        "\n// generated: a concatenation (engine/wgpu/src/positional.rs)\n\
         @group(0) @binding(0) var<storage, read> P: array<u32>;\n\
         @group(0) @binding(1) var<storage, read_write> O0: array<u32>;\n",
    );
    for k in 0..bufs.len() {
        let _ = writeln!(
            s,
            "@group(0) @binding({}) var<storage, read> I{k}: array<u32>;",
            2 + k
        );
    }
    let _ = writeln!(
        s,
        "\nfn part_word(gi: u32) -> {ty} {{\n    let c = (gi / {}u) % {}u;",
        ost[dim], shape[dim]
    );
    let mut maps: Vec<Vec<Map>> = vec![vec![]; bufs.len()];
    for (q, &(x, at, end)) in live.iter().enumerate() {
        let mut pst = strides(b.shape(x));
        let along = pst[dim];
        for (st, &sz) in pst.iter_mut().zip(b.shape(x)) {
            if sz == 1 {
                *st = 0;
            }
        }
        let mut st = pst.clone();
        st[dim] = 0;
        let idx = format!("{} + (c - {at}u) * {along}u", index_expr(&shape, 0, &st));
        let word = load(p, &bufs, x, &idx);
        if q + 1 < live.len() {
            let _ = writeln!(s, "    if c < {end}u {{\n        return {word};\n    }}");
        } else {
            let _ = writeln!(s, "    return {word};");
        }
        if let Some(k) = bufs.iter().position(|&v| v == x) {
            let mut m = Map::view(shape.clone(), 0, pst);
            m.st[dim] = along;
            m.part = Some((dim, at, end));
            maps[k].push(m);
        }
    }
    s.push_str(
        "}\n\n@compute @workgroup_size(256)\n\
         fn concat(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,\n\
         \x20         @builtin(local_invocation_id) lid: vec3<u32>) {\n",
    );
    let ind = frame_head(&mut s, &[d]);
    let _ = writeln!(s, "{ind}let r = part_word(gi);");
    frame_write(&mut s, 0, d, "r", bufs.len(), ind);
    frame_tail(&mut s, &[d], bufs.len());
    let per = if is_half(d) { 2 } else { 1 };
    b.windowed = true;
    let binds = (|| -> Result<(Bind, Vec<Bind>)> {
        let o = b.out(out)?;
        let r = bufs.iter().map(|&v| b.buf(v)).collect::<Result<Vec<_>>>()?;
        Ok((o, r))
    })();
    b.windowed = false;
    let (o, rb) = binds?;
    let writes = [Bound::of(b, out, o, vec![])];
    let reads: Vec<Bound> = bufs
        .iter()
        .zip(rb)
        .zip(maps)
        .map(|((&v, bind), m)| Bound::of(b, v, bind, m))
        .collect();
    let k = Kernel::generated(generated_source(&s), "concat", 1, bufs.len());
    push(b, k, &writes, &reads, n, per)
}

#[cfg(test)]
mod tests {
    use super::Map;

    /// The span of every chunk holds every element the chunk reads, by brute force over
    /// transposes, broadcasts, slices and concatenated parts.
    #[test]
    fn spans_cover_every_read() {
        let shape = vec![3, 5, 7];
        let maps = [
            Map::view(shape.clone(), 0, vec![1, 3, 15]),
            Map::view(shape.clone(), 4, vec![0, 7, 1]),
            Map::view(shape.clone(), 11, vec![70, 0, 2]),
            Map {
                shape: shape.clone(),
                off: 0,
                st: vec![14, 7, 1],
                part: Some((1, 2, 4)),
            },
        ];
        let n: usize = shape.iter().product();
        for m in &maps {
            let at = |i: usize| -> Option<usize> {
                let c = [i / 35, (i / 7) % 5, i % 7];
                let mut x = m.off;
                for d in 0..3 {
                    let mut cd = c[d];
                    if let Some((pd, a, e)) = m.part {
                        if pd == d {
                            if cd < a || cd >= e {
                                return None;
                            }
                            cd -= a;
                        }
                    }
                    x += cd * m.st[d];
                }
                Some(x)
            };
            for s in 0..n {
                for e in s..n {
                    let read: Vec<usize> = (s..=e).filter_map(at).collect();
                    match m.span(s, e) {
                        Some((lo, hi)) => assert!(
                            read.iter().all(|&x| lo <= x && x < hi),
                            "{m:?} [{s}, {e}]: {read:?} outside [{lo}, {hi})"
                        ),
                        None => assert!(read.is_empty(), "{m:?} [{s}, {e}]: {read:?}"),
                    }
                }
            }
        }
    }
}
