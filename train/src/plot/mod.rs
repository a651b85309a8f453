//! Charts of training metrics and of scaling studies, drawn by `plotters` into SVG and
//! PNG with no system library: PNG text is rasterized from DejaVu Sans embedded in the
//! binary (the `dejavu` crate, rendered by plotters' `ab_glyph` feature); see `render`.
//!
//! - `Chart`: the general entry point: named line/dot series on linear or log axes,
//!   with a title, axis labels and a legend, to an SVG string or PNG bytes.
//! - `metrics_svg` / `metrics_png`: curves.svg / curves.png of a metrics.jsonl: loss and
//!   ELBO per step (running mean), the periodic held-out ELBO as dots, and the held-out
//!   text's true entropy as a flat line when the run knows it (embedded corpus).
//!
//! Points with a NaN or infinite coordinate, or a coordinate <= 0 on a log axis, are
//! skipped (a line joins the points either side); no input makes these functions panic.

mod axis;
mod render;
#[cfg(test)]
mod tests;

pub use axis::Scale;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Line,
    Dots,
}

/// One named series of (x, y) points.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: Style,
    /// Index into the palette; None = the series' position. Related series (a fit and
    /// its band lines) share one colour this way.
    pub color: Option<usize>,
}

impl Series {
    /// A line through `points` in order.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            style: Style::Line,
            color: None,
        }
    }
    /// A dot at each of `points` (a scatter).
    pub fn dots(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            style: Style::Dots,
            color: None,
        }
    }
    /// The same series in palette colour `index` (0 blue, 1 red, 2 green, 3 purple,
    /// 4 grey, 5 orange; wraps around).
    pub fn colored(self, index: usize) -> Series {
        Series {
            color: Some(index),
            ..self
        }
    }
}

/// The corner of the plot area the legend sits in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Corner {
    #[default]
    UpperRight,
    UpperLeft,
    LowerLeft,
    LowerRight,
}

/// A chart: series over two axes, each linear or log10, with a title, axis labels
/// (empty = none) and a legend naming every series. Colours follow the series order.
///
/// ```text
/// let runs = [Series::dots("runs", vec![(1e17, 3.1), (1e18, 2.8), (1e19, 2.55)]),
///             Series::line("fit", vec![(1e17, 3.12), (1e19, 2.53)])];
/// let c = Chart::log_log("loss vs compute", "FLOPs", "loss (nats/token)", &runs);
/// let (svg, png) = (c.svg(640, 480)?, c.png(1280, 960)?);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_scale: Scale,
    pub y_scale: Scale,
    pub legend: Corner,
    pub series: &'a [Series],
}

impl<'a> Chart<'a> {
    /// Linear axes, no axis labels, legend upper right.
    pub fn new(title: &'a str, series: &'a [Series]) -> Chart<'a> {
        Chart {
            title,
            x_label: "",
            y_label: "",
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            legend: Corner::UpperRight,
            series,
        }
    }

    /// Log axes on both sides, labelled, legend upper right (a scaling-law plot).
    pub fn log_log(
        title: &'a str,
        x_label: &'a str,
        y_label: &'a str,
        series: &'a [Series],
    ) -> Chart<'a> {
        Chart {
            x_label,
            y_label,
            x_scale: Scale::Log,
            y_scale: Scale::Log,
            ..Chart::new(title, series)
        }
    }

    /// The chart as a self-contained SVG document of `width` x `height` (fonts, margins
    /// and strokes are laid out for 720 x 360 and scale with the size).
    pub fn svg(&self, width: u32, height: u32) -> Result<String, PlotError> {
        render::svg(self, width, height)
    }

    /// The chart as an 8-bit RGB PNG of `width` x `height`.
    pub fn png(&self, width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
        render::png(self, width, height)
    }
}

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("the embedded DejaVu Sans font could not be registered with plotters")]
    Font,
    #[error("drawing the {target} chart: {message}")]
    Draw {
        target: &'static str,
        message: String,
    },
    #[error("encoding the chart as PNG: {0}")]
    Encode(#[from] png::EncodingError),
}

/// The SVG size of `chart_svg` and `metrics_svg`; their PNGs are twice as large.
pub const SVG_SIZE: (u32, u32) = (render::BASE_W, render::BASE_H);

/// The chart (linear axes) as a self-contained 720 x 360 SVG. If drawing fails, an SVG
/// of the same size saying why.
pub fn chart_svg(title: &str, series: &[Series]) -> String {
    svg_or_message(&Chart::new(title, series))
}

/// The chart of `chart_svg` as a `width` x `height` PNG.
pub fn chart_png(
    title: &str,
    series: &[Series],
    width: u32,
    height: u32,
) -> Result<Vec<u8>, PlotError> {
    Chart::new(title, series).png(width, height)
}

/// An SVG line chart of each named series over steps (see `chart_svg`).
pub fn curves_svg(title: &str, steps: &[f64], series: &[(&str, &[f64])]) -> String {
    chart_svg(title, &lines(steps, series))
}

fn lines(steps: &[f64], series: &[(&str, &[f64])]) -> Vec<Series> {
    series
        .iter()
        .map(|(name, ys)| {
            Series::line(
                *name,
                steps.iter().copied().zip(ys.iter().copied()).collect(),
            )
        })
        .collect()
}

fn svg_or_message(chart: &Chart<'_>) -> String {
    let (w, h) = SVG_SIZE;
    chart.svg(w, h).unwrap_or_else(|e| {
        let why = e
            .to_string()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"><text x="8" y="20" font-family="sans-serif">chart not drawn: {why}</text></svg>
"#
        )
    })
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
        out.push(Series::dots("held-out elbo", evals));
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
        out.push(Series::line("true entropy", vec![(a, t), (b, t)]));
    }
    out
}

const METRICS_TITLE: &str = "training (running mean)";

fn metrics_chart<'a>(series: &'a [Series]) -> Chart<'a> {
    Chart {
        x_label: "step",
        ..Chart::new(METRICS_TITLE, series)
    }
}

/// curves.svg of a metrics.jsonl (see `metrics_series`), 720 x 360; if drawing fails,
/// an SVG saying why.
pub fn metrics_svg(jsonl: &str, window: usize) -> String {
    svg_or_message(&metrics_chart(&metrics_series(jsonl, window)))
}

/// curves.png of a metrics.jsonl: the same chart as `metrics_svg`, at twice its size.
pub fn metrics_png(jsonl: &str, window: usize) -> Result<Vec<u8>, PlotError> {
    let (w, h) = SVG_SIZE;
    metrics_chart(&metrics_series(jsonl, window)).png(2 * w, 2 * h)
}
