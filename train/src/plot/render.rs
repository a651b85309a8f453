//! Drawing a `Chart` with plotters, once for both outputs: the SVG backend writes text
//! as `<text>` elements; the bitmap backend rasterizes it from DejaVu Sans, which the
//! `dejavu` crate embeds in the binary and `ab_glyph` renders (no fontconfig, freetype
//! or any other system library). The pixels go to the `png` encoder.

use super::axis::Axis;
use super::{Chart, Corner, PlotError, Style};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::OnceLock;

/// Series colours, in order (SVG and PNG alike).
pub(super) const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xff, 0x7f, 0x0e),
];

/// The size the layout is designed at; other sizes scale fonts, margins and strokes by
/// min(width / BASE_W, height / BASE_H).
pub(super) const BASE_W: u32 = 720;
pub(super) const BASE_H: u32 = 360;
/// Fraction of the data's span added at both ends of an axis.
const X_MARGIN: f64 = 0.02;
const Y_MARGIN: f64 = 0.04;
/// The family plotters looks the embedded font up by (and the SVG names).
const FAMILY: &str = "sans-serif";

/// Registers DejaVu Sans with plotters (once per process).
fn font() -> Result<(), PlotError> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// A drawing failure of plotters, with the output it was drawing.
fn draw_err<E: std::error::Error + Send + Sync>(
    target: &'static str,
) -> impl Fn(DrawingAreaErrorKind<E>) -> PlotError {
    move |e| PlotError::Draw {
        target,
        message: e.to_string(),
    }
}

/// The chart as an SVG document of `width` x `height`.
pub(super) fn svg(chart: &Chart<'_>, width: u32, height: u32) -> Result<String, PlotError> {
    font()?;
    let (w, h) = (width.max(1), height.max(1));
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (w, h)).into_drawing_area();
        draw(chart, &root, scale_of(w, h)).map_err(draw_err("svg"))?;
        root.present().map_err(draw_err("svg"))?;
    }
    out.push('\n');
    Ok(out)
}

/// The chart as an 8-bit RGB PNG of `width` x `height`.
pub(super) fn png(chart: &Chart<'_>, width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    font()?;
    let (w, h) = (width.max(1), height.max(1));
    let mut rgb = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(chart, &root, scale_of(w, h)).map_err(draw_err("png"))?;
        root.present().map_err(draw_err("png"))?;
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header()?;
    wr.write_image_data(&rgb)?;
    wr.finish()?;
    Ok(out)
}

fn scale_of(w: u32, h: u32) -> f64 {
    (w as f64 / BASE_W as f64).min(h as f64 / BASE_H as f64)
}

/// The drawable points of a series in axis coordinates: NaN, inf, and values <= 0 on a
/// log axis are skipped.
pub(super) fn axis_points<'a>(
    chart: &'a Chart<'_>,
    points: &'a [(f64, f64)],
) -> impl Iterator<Item = (f64, f64)> + 'a {
    points
        .iter()
        .filter_map(|&(x, y)| Some((chart.x_scale.to_axis(x)?, chart.y_scale.to_axis(y)?)))
}

/// The x and y axes of the chart: ranges over every drawable point, and ticks.
pub(super) fn axes(chart: &Chart<'_>) -> (Axis, Axis) {
    let pts: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| axis_points(chart, &s.points))
        .collect();
    (
        Axis::new(chart.x_scale, pts.iter().map(|p| p.0), X_MARGIN),
        Axis::new(chart.y_scale, pts.iter().map(|p| p.1), Y_MARGIN),
    )
}

/// Draws the whole chart on `root`, its layout scaled by `k`.
fn draw<DB: DrawingBackend>(
    chart: &Chart<'_>,
    root: &DrawingArea<DB, Shift>,
    k: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let px = |v: f64| (v * k).round().max(1.0) as u32;
    let font = |size: f64| (FAMILY, size * k).into_font();
    let (xa, ya) = axes(chart);
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(root);
    builder
        .margin_top(px(8.0))
        .margin_right(px(20.0))
        .margin_left(px(8.0))
        .margin_bottom(px(6.0))
        .x_label_area_size(px(if chart.x_label.is_empty() { 26.0 } else { 42.0 }))
        .y_label_area_size(px(if chart.y_label.is_empty() { 52.0 } else { 70.0 }));
    if !chart.title.is_empty() {
        builder.caption(chart.title, font(18.0));
    }
    let mut cc = builder.build_cartesian_2d(xa.clone(), ya.clone())?;
    let (x_fmt, y_fmt) = (|t: &f64| xa.label(*t), |t: &f64| ya.label(*t));
    cc.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(font(13.0))
        .axis_desc_style(font(14.0))
        .axis_style(BLACK.stroke_width(px(1.0)))
        .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd).stroke_width(px(1.0)))
        .light_line_style(RGBColor(0xf0, 0xf0, 0xf0).stroke_width(px(1.0)))
        .set_all_tick_mark_size(px(4.0))
        .draw()?;
    let stroke = px(1.5);
    let radius = px(3.0);
    let sample = px(22.0) as i32;
    for (i, s) in chart.series.iter().enumerate() {
        let c = COLORS[s.color.unwrap_or(i) % COLORS.len()];
        let pts: Vec<(f64, f64)> = axis_points(chart, &s.points).collect();
        let line = c.stroke_width(stroke);
        let dots = c.filled();
        let anno = match (s.style, pts.len()) {
            // A line through one point would draw nothing: show the point.
            (Style::Line, 1) => {
                cc.draw_series(pts.iter().map(|&p| Circle::new(p, stroke, dots)))?
            }
            (Style::Line, _) => cc.draw_series(std::iter::once(PathElement::new(pts, line)))?,
            (Style::Dots, _) => {
                cc.draw_series(pts.iter().map(|&p| Circle::new(p, radius, dots)))?
            }
        };
        let anno = anno.label(s.name.as_str());
        match s.style {
            Style::Line => {
                anno.legend(move |(x, y)| PathElement::new([(x, y), (x + sample, y)], line))
            }
            Style::Dots => {
                anno.legend(move |(x, y)| Circle::new((x + sample / 2, y), radius, dots))
            }
        };
    }
    if chart.series.is_empty() {
        return Ok(());
    }
    let position = match chart.legend {
        Corner::UpperRight => SeriesLabelPosition::UpperRight,
        Corner::UpperLeft => SeriesLabelPosition::UpperLeft,
        Corner::LowerLeft => SeriesLabelPosition::LowerLeft,
        Corner::LowerRight => SeriesLabelPosition::LowerRight,
    };
    cc.configure_series_labels()
        .position(position)
        .margin(px(8.0))
        .legend_area_size(sample + px(6.0) as i32)
        .label_font(font(13.0))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}
