use super::render::COLORS;
use super::{Chart, Scale, Series, Style};

const RUN: &str = "{\"step\":1,\"loss\":6.0,\"elbo\":6.0}\n\
    {\"step\":2,\"loss\":5.0,\"elbo\":5.5}\n\
    {\"step\":2,\"heldout_elbo\":5.2,\"heldout_true_entropy\":1.9}\n\
    {\"step\":3,\"loss\":4.0,\"elbo\":5.0}\n";

/// Parses an SVG as XML; returns the text of its `<text>` elements and the `stroke` /
/// `fill` colours of its polylines and circles.
fn parse_svg(svg: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let nodes = || doc.descendants().filter(|n| n.is_element());
    let texts = nodes()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect();
    let attr = |tag: &str, a: &str| -> Vec<String> {
        nodes()
            .filter(|n| n.has_tag_name(tag))
            .filter_map(|n| n.attribute(a).map(str::to_string))
            .collect()
    };
    (texts, attr("polyline", "stroke"), attr("circle", "fill"))
}

fn hex(c: plotters::style::RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

#[test]
fn svg_is_xml_with_the_series_the_title_and_the_labels() {
    let svg = super::metrics_svg(RUN, 1);
    let (texts, strokes, fills) = parse_svg(&svg);
    for want in [
        "training (running mean)",
        "step",
        "loss",
        "elbo (nats/token)",
        "held-out elbo",
        "true entropy",
    ] {
        assert!(texts.iter().any(|t| t == want), "{want:?} in {texts:?}");
    }
    // Each line series once in the plot and once in the legend.
    for i in [0, 1, 3] {
        let n = strokes.iter().filter(|s| **s == hex(COLORS[i])).count();
        assert_eq!(n, 2, "series {i}: {strokes:?}");
    }
    // One held-out dot and its legend sample.
    assert_eq!(fills.iter().filter(|f| **f == hex(COLORS[2])).count(), 2);
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
}

#[test]
fn svg_names_are_escaped_and_nan_points_skipped() {
    let s = super::curves_svg(
        "a <b> & c",
        &[1.0, 2.0, 3.0],
        &[("x<y", &[1.0, f64::NAN, 3.0]), ("b", &[2.0, 2.0, 2.0])],
    );
    let (texts, _, _) = parse_svg(&s);
    assert!(texts.iter().any(|t| t == "a <b> & c"), "{texts:?}");
    assert!(texts.iter().any(|t| t == "x<y"), "{texts:?}");
    assert!(!s.contains("NaN"));
}

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
    assert_eq!(s[2].style, Style::Dots);
    assert_eq!(s[3].points, [(1.0, 1.9), (3.0, 1.9)]);
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

/// The (column, row) of every pixel within `tol` of colour `c` in each channel.
fn pixels_of(px: &[u8], w: u32, c: plotters::style::RGBColor, tol: u8) -> Vec<(f64, f64)> {
    px.chunks(3)
        .enumerate()
        .filter(|(_, p)| {
            p.iter()
                .zip([c.0, c.1, c.2])
                .all(|(a, b)| a.abs_diff(b) <= tol)
        })
        .map(|(i, _)| ((i % w as usize) as f64, (i / w as usize) as f64))
        .collect()
}

/// Least-squares line row = a + b col through `pts`; returns (b, largest |residual|).
fn fit(pts: &[(f64, f64)]) -> (f64, f64) {
    let n = pts.len() as f64;
    let (mx, my) = pts
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let sxy: f64 = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = pts.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let b = sxy / sxx;
    let worst = pts
        .iter()
        .map(|(x, y)| (y - my - b * (x - mx)).abs())
        .fold(0.0, f64::max);
    (b, worst)
}

#[test]
fn png_decodes_at_the_size_asked_with_the_curve_in_the_plot_area() {
    // A rising diagonal with a NaN point and an infinite one (skipped), and a dot.
    let series = [
        Series::line(
            "diag",
            vec![
                (0.0, 0.0),
                (f64::NAN, 0.5),
                (5.0, f64::INFINITY),
                (10.0, 10.0),
            ],
        ),
        Series::dots("dot", vec![(2.0, 8.0)]),
    ];
    let (w, h) = (900u32, 500u32);
    let bytes = super::chart_png("test", &series, w, h).expect("png");
    let (dw, dh, px) = decode(&bytes);
    assert_eq!((dw, dh), (w, h));
    assert_eq!(px.len(), (w * h * 3) as usize);
    let line = pixels_of(&px, w, COLORS[0], 0);
    // The legend sample is a short horizontal stroke in the upper right; the curve
    // spans most of the width, rising to the right (rows decrease).
    let curve: Vec<(f64, f64)> = line
        .iter()
        .copied()
        .filter(|(x, _)| *x < 0.6 * w as f64)
        .collect();
    let (slope, worst) = fit(&curve);
    assert!(curve.len() > 200, "curve pixels: {}", curve.len());
    assert!(slope < -0.3, "rises to the right: slope {slope}");
    assert!(worst < 4.0, "straight: worst residual {worst}");
    let x0 = curve.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    assert!(
        x0 > 40.0 && x0 < 0.2 * w as f64,
        "starts right of the y axis: {x0}"
    );
    // The dot: upper left of the plot, about radius-3 * 1.25 wide.
    let dot = pixels_of(&px, w, COLORS[1], 0);
    assert!(dot.len() > 20, "dot pixels: {}", dot.len());
    assert!(dot
        .iter()
        .any(|(x, y)| *x < 0.5 * w as f64 && *y < 0.5 * h as f64));
    // Text: dark pixels in the top rows (the title) and left columns (tick labels).
    let dark = |x: usize, y: usize| px[(y * w as usize + x) * 3..][..3].iter().all(|v| *v < 96);
    assert!(
        (0..25).any(|y| (0..w as usize).any(|x| dark(x, y))),
        "title pixels"
    );
    assert!(
        (0..h as usize).any(|y| (0..w as usize / 10).any(|x| dark(x, y))),
        "tick labels"
    );
}

#[test]
fn a_power_law_is_straight_on_log_log_axes() {
    let pts: Vec<(f64, f64)> = (0..=40)
        .map(|i| 10f64.powf(15.0 + i as f64 / 10.0))
        .map(|c| (c, 20.0 * c.powf(-0.07)))
        .collect();
    let series = [Series::line("fit", pts.clone())];
    let (w, h) = (800u32, 600u32);
    let straight = |chart: Chart<'_>| {
        let (_, _, px) = decode(&chart.png(w, h).expect("png"));
        let curve: Vec<(f64, f64)> = pixels_of(&px, w, COLORS[0], 0)
            .into_iter()
            .filter(|(x, _)| *x < 0.6 * w as f64)
            .collect();
        assert!(curve.len() > 150, "{}", curve.len());
        fit(&curve).1
    };
    let loglog = Chart::log_log("power law", "compute (FLOPs)", "loss", &series);
    assert!(straight(loglog) < 4.0, "straight on log-log axes");
    let linear = Chart::new("power law", &series);
    assert!(straight(linear) > 20.0, "curved on linear axes");
    let svg = loglog.svg(640, 480).expect("svg");
    let (texts, _, _) = parse_svg(&svg);
    for want in [
        "1e15",
        "1e17",
        "1e19",
        "compute (FLOPs)",
        "loss",
        "fit",
        "power law",
    ] {
        assert!(texts.iter().any(|t| t == want), "{want:?} in {texts:?}");
    }
}

#[test]
fn odd_series_and_sizes_do_not_panic() {
    let odd = [
        vec![],
        vec![(1.0, 1.0)],
        vec![(f64::NAN, f64::NAN)],
        vec![
            (1.0, f64::NAN),
            (2.0, f64::INFINITY),
            (f64::NEG_INFINITY, 3.0),
        ],
        vec![(0.0, -1.0), (-5.0, 0.0)],
        vec![(1.0, f64::MAX), (2.0, -f64::MAX)],
        vec![(f64::MIN_POSITIVE, 1e-300), (1e300, 1e300)],
        vec![(3.0, 7.0), (3.0, 7.0)],
    ];
    for points in &odd {
        for style in [Style::Line, Style::Dots] {
            let series = [Series {
                name: "s".into(),
                points: points.clone(),
                style,
                color: None,
            }];
            for (xs, ys) in [(Scale::Linear, Scale::Linear), (Scale::Log, Scale::Log)] {
                let chart = Chart {
                    x_scale: xs,
                    y_scale: ys,
                    ..Chart::new("odd", &series)
                };
                let svg = chart.svg(720, 360).expect("svg");
                parse_svg(&svg);
                let (w, h, _) = decode(&chart.png(300, 200).expect("png"));
                assert_eq!((w, h), (300, 200));
            }
        }
    }
    let none: [Series; 0] = [];
    for (w, h) in [(0, 0), (1, 1), (30, 10), (2000, 40)] {
        let (dw, dh, _) = decode(&super::chart_png("", &none, w, h).expect("png"));
        assert_eq!((dw, dh), (w.max(1), h.max(1)));
        decode(&super::chart_png("t", &[Series::line("a", vec![(1.0, 2.0)])], w, h).expect("png"));
    }
    parse_svg(&super::metrics_svg("", 20));
    parse_svg(&super::metrics_svg("not json\n{\"step\":1}\n", 0));
    decode(&super::metrics_png("", 20).expect("png"));
}

#[test]
fn metrics_png_is_twice_the_svg_size() {
    let bytes = super::metrics_png(RUN, 1).expect("png");
    let (w, h, px) = decode(&bytes);
    assert_eq!((w, h), (1440, 720));
    assert!(
        pixels_of(&px, w, COLORS[2], 0).len() > 20,
        "held-out dot drawn"
    );
    assert!(
        pixels_of(&px, w, COLORS[3], 0).len() > 100,
        "true entropy drawn"
    );
}
