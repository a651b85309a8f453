//! Training curves with no plotting dependency: one chart, two renderers. `chart_svg`
//! writes self-contained SVG; `chart_png` rasterizes the same chart itself (anti-aliased
//! lines and dots, a built-in 5x7 bitmap font) and only hands the pixels to the `png`
//! encoder, so nothing needs fontconfig, freetype or any system library.
//!
//! From a metrics.jsonl the chart shows loss and ELBO per step (running mean), the
//! periodic held-out ELBO as dots, and the held-out text's true entropy as a flat line
//! when the run knows it (embedded corpus).

use std::fmt::Write;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Line,
    Dots,
}

/// One named series of (step, value) points; non-finite points are skipped when drawn.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: Style,
}

/// Series colours, in order (the SVG and the PNG use the same ones).
const COLORS: [[u8; 3]; 5] = [
    [0x1f, 0x77, 0xb4],
    [0xd6, 0x27, 0x28],
    [0x2c, 0xa0, 0x2c],
    [0x94, 0x67, 0xbd],
    [0x7f, 0x7f, 0x7f],
];

/// The size the SVG is laid out at; the PNG scales this layout to the size asked for.
const BASE_W: f64 = 720.0;
const BASE_H: f64 = 360.0;
const BASE_PAD: f64 = 48.0;
/// Fraction of the data's y range added below and above it.
const Y_MARGIN: f64 = 0.04;

fn finite(s: &Series) -> impl Iterator<Item = (f64, f64)> + '_ {
    s.points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
}

/// Data to canvas coordinates: x over the steps of all series, y linear between the
/// series' joint min and max, in a `w` x `h` canvas with margin `pad`.
struct Frame {
    w: f64,
    h: f64,
    pad: f64,
    x0: f64,
    x1: f64,
    lo: f64,
    hi: f64,
}

impl Frame {
    fn new(series: &[Series], w: f64, h: f64, pad: f64) -> Frame {
        let inf = (f64::INFINITY, f64::NEG_INFINITY);
        let ((x0, x1), (lo, hi)) = series
            .iter()
            .flat_map(finite)
            .fold((inf, inf), |((xa, xb), (ya, yb)), (x, y)| {
                ((xa.min(x), xb.max(x)), (ya.min(y), yb.max(y)))
            });
        let (x0, x1) = if x0 > x1 { (0.0, 1.0) } else { (x0, x1) };
        let (lo, hi) = if lo > hi {
            (0.0, 1.0)
        } else if lo == hi {
            (lo - 1.0, lo + 1.0)
        } else {
            // A little headroom, so a curve at the min or max does not sit on an axis.
            let m = Y_MARGIN * (hi - lo);
            (lo - m, hi + m)
        };
        Frame {
            w,
            h,
            pad,
            x0,
            x1,
            lo,
            hi,
        }
    }
    fn sx(&self, x: f64) -> f64 {
        self.pad + (x - self.x0) / (self.x1 - self.x0).max(1e-9) * (self.w - 2.0 * self.pad)
    }
    fn sy(&self, y: f64) -> f64 {
        self.h - self.pad - (y - self.lo) / (self.hi - self.lo) * (self.h - 2.0 * self.pad)
    }
    /// The five y tick values, bottom to top.
    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        (0..=4).map(|i| self.lo + (self.hi - self.lo) * i as f64 / 4.0)
    }
}

/// The chart as a self-contained SVG (720 x 360).
pub fn chart_svg(title: &str, series: &[Series]) -> String {
    let f = Frame::new(series, BASE_W, BASE_H, BASE_PAD);
    let (w, h, pad) = (f.w, f.h, f.pad);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{pad}" y="20" font-size="14">{title}</text>"#
    );
    let _ = write!(
        s,
        r#"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - pad,
        w - pad,
        h - pad
    );
    let _ = write!(
        s,
        r#"<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{}" stroke="black"/>"#,
        h - pad
    );
    for y in f.ticks() {
        let _ = write!(s, r#"<text x="4" y="{:.1}">{y:.3}</text>"#, f.sy(y) + 4.0);
    }
    let _ = write!(
        s,
        r#"<text x="{pad}" y="{}">step {}</text><text x="{}" y="{}" text-anchor="end">step {}</text>"#,
        h - pad + 16.0,
        f.x0,
        w - pad,
        h - pad + 16.0,
        f.x1
    );
    for (k, ser) in series.iter().enumerate() {
        let [r, g, b] = COLORS[k % COLORS.len()];
        let c = format!("#{r:02x}{g:02x}{b:02x}");
        match ser.style {
            Style::Line => {
                let pts: Vec<String> = finite(ser)
                    .map(|(x, y)| format!("{:.1},{:.1}", f.sx(x), f.sy(y)))
                    .collect();
                let _ = write!(
                    s,
                    r#"<polyline fill="none" stroke="{c}" stroke-width="1.2" points="{}"/>"#,
                    pts.join(" ")
                );
            }
            Style::Dots => {
                for (x, y) in finite(ser) {
                    let _ = write!(
                        s,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                        f.sx(x),
                        f.sy(y)
                    );
                }
            }
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{c}">{}</text>"#,
            w - pad - 120.0,
            pad + 16.0 * k as f64,
            ser.name
        );
    }
    s.push_str("</svg>\n");
    s
}

/// An SVG line chart of each named series over steps (see `chart_svg`).
pub fn curves_svg(title: &str, steps: &[f64], series: &[(&str, &[f64])]) -> String {
    chart_svg(title, &lines(steps, series))
}

fn lines(steps: &[f64], series: &[(&str, &[f64])]) -> Vec<Series> {
    series
        .iter()
        .map(|(name, ys)| Series {
            name: name.to_string(),
            points: steps.iter().copied().zip(ys.iter().copied()).collect(),
            style: Style::Line,
        })
        .collect()
}

/// An RGB canvas with anti-aliased drawing by coverage.
struct Canvas {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            rgb: vec![255; w * h * 3],
        }
    }

    /// Blends colour `c` at coverage `a` (0..1) into pixel (x, y); outside pixels are ignored.
    fn blend(&mut self, x: i64, y: i64, c: [u8; 3], a: f64) {
        if x < 0 || y < 0 || x as usize >= self.w || y as usize >= self.h || a <= 0.0 {
            return;
        }
        let a = a.min(1.0);
        let i = (y as usize * self.w + x as usize) * 3;
        for (p, &q) in self.rgb[i..i + 3].iter_mut().zip(&c) {
            *p = (*p as f64 * (1.0 - a) + q as f64 * a).round() as u8;
        }
    }

    fn fill_rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: [u8; 3]) {
        for y in y0.round() as i64..y1.round().max(y0.round() + 1.0) as i64 {
            for x in x0.round() as i64..x1.round().max(x0.round() + 1.0) as i64 {
                self.blend(x, y, c, 1.0);
            }
        }
    }

    /// A polyline of stroke `width` px: coverage of each pixel is the max over segments
    /// (so joints are not drawn twice), then blended once.
    fn polyline(&mut self, pts: &[(f64, f64)], width: f64, c: [u8; 3]) {
        let hw = width / 2.0;
        let mut cov = vec![0f32; self.w * self.h];
        let mark = |x: i64, y: i64, a: f64, cov: &mut [f32]| {
            if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
                let i = y as usize * self.w + x as usize;
                cov[i] = cov[i].max(a as f32);
            }
        };
        let segs: Vec<((f64, f64), (f64, f64))> = if pts.len() == 1 {
            vec![(pts[0], pts[0])]
        } else {
            pts.windows(2).map(|p| (p[0], p[1])).collect()
        };
        for ((ax, ay), (bx, by)) in segs {
            let (dx, dy) = (bx - ax, by - ay);
            let len2 = dx * dx + dy * dy;
            let xa = (ax.min(bx) - hw - 1.0).floor() as i64;
            let xb = (ax.max(bx) + hw + 1.0).ceil() as i64;
            let ya = (ay.min(by) - hw - 1.0).floor() as i64;
            let yb = (ay.max(by) + hw + 1.0).ceil() as i64;
            for y in ya.max(0)..=yb.min(self.h as i64 - 1) {
                for x in xa.max(0)..=xb.min(self.w as i64 - 1) {
                    let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                    let t = if len2 > 0.0 {
                        (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    let d = ((px - ax - t * dx).powi(2) + (py - ay - t * dy).powi(2)).sqrt();
                    mark(x, y, (hw + 0.5 - d).clamp(0.0, 1.0), &mut cov);
                }
            }
        }
        for (i, &a) in cov.iter().enumerate() {
            if a > 0.0 {
                self.blend((i % self.w) as i64, (i / self.w) as i64, c, a as f64);
            }
        }
    }

    fn dot(&mut self, cx: f64, cy: f64, r: f64, c: [u8; 3]) {
        for y in (cy - r - 1.0).floor() as i64..=(cy + r + 1.0).ceil() as i64 {
            for x in (cx - r - 1.0).floor() as i64..=(cx + r + 1.0).ceil() as i64 {
                let d = ((x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2)).sqrt();
                self.blend(x, y, c, (r + 0.5 - d).clamp(0.0, 1.0));
            }
        }
    }

    /// Text in the 5x7 font (plus descenders), each font pixel a `scale` x `scale` block, its top-left corner
    /// at (x, y); with `end` the text ends at x instead.
    fn text(&mut self, x: f64, y: f64, s: &str, scale: usize, c: [u8; 3], end: bool) {
        let adv = 6 * scale;
        let x = if end {
            x - (s.chars().count() * adv) as f64
        } else {
            x
        };
        let (x, y) = (x.round() as i64, y.round() as i64);
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                self.blend(
                                    x + (k * adv + col * scale + dx) as i64,
                                    y + (row * scale + dy) as i64,
                                    c,
                                    1.0,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The PNG's frame at `w` x `h` and its scale against the SVG's 720 x 360 layout.
fn png_frame(series: &[Series], w: usize, h: usize) -> (Frame, f64) {
    let k = (w as f64 / BASE_W).min(h as f64 / BASE_H);
    (
        Frame::new(series, w as f64, h as f64, (BASE_PAD * k).round()),
        k,
    )
}

/// The chart as a `width` x `height` PNG: the SVG's layout scaled to that size, same
/// series, colours, ticks and labels.
pub fn chart_png(
    title: &str,
    series: &[Series],
    width: u32,
    height: u32,
) -> Result<Vec<u8>, png::EncodingError> {
    let (w, h) = (width.max(1) as usize, height.max(1) as usize);
    let (f, k) = png_frame(series, w, h);
    let fs = (k.round() as usize).max(1);
    let glyph_h = 7.0 * fs as f64;
    let black = [0u8; 3];
    let mut cv = Canvas::new(w, h);
    let pad = f.pad;
    let t = (k.round()).max(1.0);
    cv.fill_rect(pad, f.h - pad, f.w - pad, f.h - pad + t, black);
    cv.fill_rect(pad - t, pad, pad, f.h - pad + t, black);
    cv.text(
        pad,
        (20.0 * k - glyph_h).max(0.0),
        title,
        fs + 1,
        black,
        false,
    );
    for y in f.ticks() {
        let label = format!("{y:.3}");
        cv.text(4.0 * k, f.sy(y) - glyph_h / 2.0, &label, fs, black, false);
    }
    let ly = f.h - pad + 6.0 * k;
    cv.text(pad, ly, &format!("step {}", f.x0), fs, black, false);
    cv.text(f.w - pad, ly, &format!("step {}", f.x1), fs, black, true);
    for (i, ser) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = finite(ser).map(|(x, y)| (f.sx(x), f.sy(y))).collect();
        match ser.style {
            Style::Line if !pts.is_empty() => cv.polyline(&pts, 1.2 * k, c),
            Style::Line => {}
            Style::Dots => pts.iter().for_each(|&(x, y)| cv.dot(x, y, 3.0 * k, c)),
        }
        let lx = f.w - pad - 120.0 * k;
        cv.text(
            lx,
            pad + 16.0 * k * i as f64 - glyph_h,
            &ser.name,
            fs,
            c,
            false,
        );
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header()?;
    wr.write_image_data(&cv.rgb)?;
    wr.finish()?;
    Ok(out)
}

/// The series of a metrics.jsonl: loss and ELBO of the step lines (those with "loss"),
/// smoothed by a running mean over `window` steps; the held-out ELBO of the eval lines
/// (those with "heldout_elbo") as dots; and their "heldout_true_entropy", if any, as a
/// flat line over the steps.
pub fn metrics_series(jsonl: &str, window: usize) -> Vec<Series> {
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let step = |r: &serde_json::Value| r["step"].as_f64().unwrap_or(f64::NAN);
    let train: Vec<&serde_json::Value> = rows.iter().filter(|r| !r["loss"].is_null()).collect();
    let steps: Vec<f64> = train.iter().map(|r| step(r)).collect();
    let get = |k: &str| -> Vec<f64> {
        train
            .iter()
            .map(|r| r[k].as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let smooth = |v: Vec<f64>| -> Vec<f64> {
        (0..v.len())
            .map(|i| {
                let a = i.saturating_sub(window.max(1) - 1);
                let w: Vec<f64> = v[a..=i].iter().copied().filter(|x| x.is_finite()).collect();
                if w.is_empty() {
                    f64::NAN
                } else {
                    w.iter().sum::<f64>() / w.len() as f64
                }
            })
            .collect()
    };
    let (loss, elbo) = (smooth(get("loss")), smooth(get("elbo")));
    let mut out = lines(&steps, &[("loss", &loss), ("elbo (nats/token)", &elbo)]);
    let evals: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((step(r), r["heldout_elbo"].as_f64()?)))
        .collect();
    if !evals.is_empty() {
        out.push(Series {
            name: "held-out elbo".into(),
            points: evals,
            style: Style::Dots,
        });
    }
    let truth = rows
        .iter()
        .find_map(|r| r["heldout_true_entropy"].as_f64())
        .filter(|t| t.is_finite());
    let span = steps.iter().copied().filter(|x| x.is_finite());
    let (a, b) = span.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if let (Some(t), true) = (truth, a <= b) {
        out.push(Series {
            name: "true entropy".into(),
            points: vec![(a, t), (b, t)],
            style: Style::Line,
        });
    }
    out
}

const METRICS_TITLE: &str = "training (running mean)";

/// curves.svg of a metrics.jsonl (see `metrics_series`).
pub fn metrics_svg(jsonl: &str, window: usize) -> String {
    chart_svg(METRICS_TITLE, &metrics_series(jsonl, window))
}

/// curves.png of a metrics.jsonl: the same chart as `metrics_svg`, at twice its size.
pub fn metrics_png(jsonl: &str, window: usize) -> Result<Vec<u8>, png::EncodingError> {
    chart_png(
        METRICS_TITLE,
        &metrics_series(jsonl, window),
        2 * BASE_W as u32,
        2 * BASE_H as u32,
    )
}

/// A 5x7 glyph with a descender row (rows top to bottom, bit 4 = leftmost column; row 7
/// is below the baseline). Upper case is drawn as lower case; characters outside the
/// font as '?'.
fn glyph(c: char) -> [u8; 8] {
    let c = c.to_ascii_lowercase();
    match c {
        'g' => [0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x0e],
        'j' => [0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x12, 0x0c],
        'p' => [0x00, 0x00, 0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10],
        'q' => [0x00, 0x00, 0x0f, 0x11, 0x11, 0x0f, 0x01, 0x01],
        'y' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e],
        _ => {
            let [a, b, c, d, e, f, g] = glyph7(c);
            [a, b, c, d, e, f, g, 0]
        }
    }
}

/// The glyphs that stay above the baseline.
fn glyph7(c: char) -> [u8; 7] {
    match c {
        ' ' => [0; 7],
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '1' => [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '3' => [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        '5' => [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
        '6' => [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
        '7' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
        '9' => [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08],
        '-' => [0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00],
        '=' => [0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        ':' => [0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        'a' => [0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e],
        'c' => [0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e],
        'd' => [0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f],
        'e' => [0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e],
        'f' => [0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12],
        'l' => [0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        'm' => [0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11],
        'n' => [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e],
        'r' => [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e],
        't' => [0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06],
        'u' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d],
        'v' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04],
        'w' => [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a],
        'x' => [0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11],
        'z' => [0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f],
        _ => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

#[cfg(test)]
mod tests {
    use super::{chart_png, Series, Style, COLORS};

    #[test]
    fn svg_has_one_polyline_per_series_and_skips_nan() {
        let s = super::curves_svg(
            "t",
            &[1.0, 2.0, 3.0],
            &[("a", &[1.0, f64::NAN, 3.0]), ("b", &[2.0, 2.0, 2.0])],
        );
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(!s.contains("NaN"));
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        let m = super::metrics_svg(
            "{\"step\":1,\"loss\":1.0,\"elbo\":5.0}\n{\"step\":2,\"loss\":0.5,\"elbo\":4.0}\n",
            2,
        );
        assert_eq!(m.matches("<polyline").count(), 2);
    }

    const RUN: &str = "{\"step\":1,\"loss\":6.0,\"elbo\":6.0}\n\
        {\"step\":2,\"loss\":5.0,\"elbo\":5.5}\n\
        {\"step\":2,\"heldout_elbo\":5.2,\"heldout_true_entropy\":1.9}\n\
        {\"step\":3,\"loss\":4.0,\"elbo\":5.0}\n";

    #[test]
    fn eval_lines_become_dots_and_the_true_entropy_a_flat_line() {
        let s = super::metrics_series(RUN, 1);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["loss", "elbo (nats/token)", "held-out elbo", "true entropy"]
        );
        assert_eq!(s[0].points.len(), 3, "eval lines are not loss points");
        assert_eq!(s[2].points, [(2.0, 5.2)]);
        assert_eq!(s[3].points, [(1.0, 1.9), (3.0, 1.9)]);
        let svg = super::metrics_svg(RUN, 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert_eq!(svg.matches("<polyline").count(), 3);
    }

    /// Decodes a PNG, checking its signature; returns (width, height, RGB pixels).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR", "IHDR is the first chunk");
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut r = dec.read_info().expect("PNG header");
        let mut buf = vec![0; r.output_buffer_size().expect("buffer size")];
        let info = r.next_frame(&mut buf).expect("PNG image data");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// Whether a pixel of the 3x3 block around (x, y) is at least half colour `c` over white.
    fn near(px: &[u8], w: u32, (x, y): (f64, f64), c: [u8; 3]) -> bool {
        let (x, y) = (x as i64, y as i64);
        (-1..=1)
            .flat_map(|dy| (-1..=1).map(move |dx| (x + dx, y + dy)))
            .any(|(x, y)| {
                let i = (y as usize * w as usize + x as usize) * 3;
                (0..3).filter(|&j| c[j] != 255).all(|j| {
                    let a = (255.0 - px[i + j] as f64) / (255.0 - c[j] as f64);
                    a >= 0.5
                })
            })
    }

    #[test]
    fn png_decodes_at_the_size_asked_with_the_curve_drawn() {
        // A diagonal from the plot's bottom-left to its top-right corner, plus one dot.
        let series = [
            Series {
                name: "diag".into(),
                points: vec![(0.0, 0.0), (f64::NAN, 0.5), (10.0, 10.0)],
                style: Style::Line,
            },
            Series {
                name: "dot".into(),
                points: vec![(2.0, 8.0)],
                style: Style::Dots,
            },
        ];
        let (w, h) = (900u32, 500u32);
        let bytes = chart_png("test", &series, w, h).expect("encode");
        let ihdr_w = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        let ihdr_h = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        assert_eq!((ihdr_w, ihdr_h), (w, h), "IHDR size");
        let (dw, dh, px) = decode(&bytes);
        assert_eq!((dw, dh), (w, h));
        assert_eq!(px.len(), (w * h * 3) as usize);
        let (f, _) = super::png_frame(&series, w as usize, h as usize);
        assert!(f.pad > 40.0 && f.sx(10.0) < w as f64 && f.sy(0.0) < h as f64);
        for t in [1.5, 3.0, 5.0, 7.0, 8.5] {
            let on = (f.sx(t), f.sy(t));
            assert!(near(&px, w, on, COLORS[0]), "curve pixel at x = {t}");
            // Off the curve (mirrored across the plot's middle): still background.
            let off = (f.sx(t), f.sy(10.0 - t));
            assert!(
                t == 5.0 || !near(&px, w, off, COLORS[0]),
                "background at x = {t}"
            );
        }
        assert!(near(&px, w, (f.sx(2.0), f.sy(8.0)), COLORS[1]), "the dot");
        assert!(
            !near(&px, w, (f.sx(8.0), f.sy(2.0)), COLORS[1]),
            "one dot only"
        );
        // Some text (the title) is drawn in the top margin.
        let top = &px[..(f.pad as usize * w as usize * 3)];
        assert!(top.chunks(3).any(|p| p == [0, 0, 0]), "title pixels");
    }

    #[test]
    fn the_font_covers_the_labels() {
        let unknown = super::glyph('~');
        for c in "abcdefghijklmnopqrstuvwxyz0123456789.,-+=_()/:% ".chars() {
            assert_ne!(super::glyph(c), unknown, "glyph for {c:?}");
        }
        assert_eq!(super::glyph('A'), super::glyph('a'));
        assert!(
            super::glyph('g')[7] != 0 && super::glyph('a')[7] == 0,
            "descenders"
        );
    }

    #[test]
    fn metrics_png_is_twice_the_svg_size() {
        let bytes = super::metrics_png(RUN, 1).expect("encode");
        let (w, h, px) = decode(&bytes);
        assert_eq!((w, h), (1440, 720));
        assert!(px.chunks(3).any(|p| p == COLORS[2]), "held-out dot drawn");
        assert!(px.chunks(3).any(|p| p == COLORS[3]), "true entropy drawn");
    }
}
