//! Training curves as a self-contained SVG (no plotting dependency): loss and ELBO per step.

use std::fmt::Write;

/// An SVG line chart of each named series over steps; y on a linear axis between the
/// series' joint min and max. Non-finite points are skipped.
pub fn curves_svg(title: &str, steps: &[f64], series: &[(&str, &[f64])]) -> String {
    let (w, h, pad) = (720.0, 360.0, 48.0);
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let finite = series
        .iter()
        .flat_map(|(_, ys)| ys.iter().copied())
        .filter(|y| y.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let (x0, x1) = (
        steps.first().copied().unwrap_or(0.0),
        steps.last().copied().unwrap_or(1.0).max(1.0),
    );
    let sx = |x: f64| pad + (x - x0) / (x1 - x0).max(1e-9) * (w - 2.0 * pad);
    let sy = |y: f64| h - pad - (y - lo) / (hi - lo) * (h - 2.0 * pad);
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
    for i in 0..=4 {
        let y = lo + (hi - lo) * i as f64 / 4.0;
        let _ = write!(s, r#"<text x="4" y="{:.1}">{y:.3}</text>"#, sy(y) + 4.0);
    }
    let _ = write!(
        s,
        r#"<text x="{pad}" y="{}">step {x0}</text><text x="{}" y="{}" text-anchor="end">step {x1}</text>"#,
        h - pad + 16.0,
        w - pad,
        h - pad + 16.0
    );
    for (k, (name, ys)) in series.iter().enumerate() {
        let c = colors[k % colors.len()];
        let pts: Vec<String> = steps
            .iter()
            .zip(ys.iter())
            .filter(|(_, y)| y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="1.2" points="{}"/>"#,
            pts.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" fill="{c}">{name}</text>"#,
            w - pad - 120.0,
            pad + 16.0 * k as f64
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Curves of a metrics.jsonl (step, loss, elbo), smoothed by a running mean over `window` steps.
pub fn metrics_svg(jsonl: &str, window: usize) -> String {
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let get = |k: &str| -> Vec<f64> {
        rows.iter()
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
    curves_svg(
        "training (running mean)",
        &get("step"),
        &[("loss", &loss), ("elbo (nats/token)", &elbo)],
    )
}

#[cfg(test)]
mod tests {
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
}
