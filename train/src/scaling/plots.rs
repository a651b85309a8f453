//! The charts of `gidd fit` (SCALING.md §10 items 1, 2, 3 and 5), each as SVG and PNG,
//! drawn by the project's `plot::Chart`. A chart has one colour per series, so a fit's
//! band is drawn as its two percentile lines, and panels become separate files.

use super::{Analysis, FitArgs, PowerLaw};
use crate::plot::{Chart, Corner, Scale, Series, SVG_SIZE};
use anyhow::Result;
use std::path::Path;

pub(super) fn save(
    dir: &Path,
    name: &str,
    chart: &Chart<'_>,
    files: &mut Vec<String>,
) -> Result<()> {
    let (w, h) = SVG_SIZE;
    let svg = chart.svg(w, h)?;
    gidd_ports::write_atomic(&dir.join(format!("{name}.svg")), svg.as_bytes())?;
    let png = chart.png(2 * w, 2 * h)?;
    gidd_ports::write_atomic(&dir.join(format!("{name}.png")), &png)?;
    files.push(name.to_string());
    Ok(())
}

/// A file-name-safe form of a noise label.
pub(super) fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The fit line and its 95% band over [lo, hi], 40 log-spaced points.
pub(super) fn law_lines(name: &str, law: &PowerLaw, lo: f64, hi: f64, color: usize) -> [Series; 3] {
    let xs = super::numeric::log_grid(lo, hi, 40);
    let band: Vec<(f64, (f64, f64))> = xs.iter().map(|&x| (x, law.band(x))).collect();
    [
        Series::line(
            format!("{name} fit, a = {:.3}", law.exponent),
            xs.iter().map(|&x| (x, law.at(x))).collect(),
        )
        .colored(color),
        Series::line(
            format!("{name} 2.5%"),
            band.iter().map(|(x, b)| (*x, b.0)).collect(),
        )
        .colored(color),
        Series::line(
            format!("{name} 97.5%"),
            band.iter().map(|(x, b)| (*x, b.1)).collect(),
        )
        .colored(color),
    ]
}

/// Writes every chart into `args.out`; returns their names (without extension).
pub fn write_all(a: &Analysis, args: &FitArgs) -> Result<Vec<String>> {
    let dir = args.out.as_path();
    let mut files = Vec::new();
    let (blo, bhi) = a
        .budgets
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(l, h), &c| (l.min(c), h.max(c)));
    for n in &a.noises {
        let noise = slug(&n.noise);
        // 1. Iso-FLOP scatter: selected rows (Method 1), one series per model size.
        let m1 = &n.methods[0];
        let mut sizes: Vec<f64> = m1.rows.iter().map(|r| r.n).collect();
        sizes.sort_by(f64::total_cmp);
        sizes.dedup();
        let mut series: Vec<Series> = sizes
            .iter()
            .map(|&s| {
                let pts = m1.rows.iter().filter(|r| r.n == s).map(|r| (r.c, r.loss));
                Series::dots(format!("N = {s:.3e}"), pts.collect())
            })
            .collect();
        let sq: Vec<(f64, f64)> = m1.sq.optima.iter().map(|o| (o.c, o.loss)).collect();
        series.push(Series::line("sq. fit L*", sq));
        let title = format!(
            "iso-FLOP, {} (Method 1, window {:.1e}..{:.1e})",
            n.noise,
            args.thresholds().c_lo,
            args.thresholds().c_hi
        );
        let chart = Chart {
            x_label: "FLOPs C",
            y_label: "ELBO (nats/token)",
            x_scale: Scale::Log,
            ..Chart::new(&title, &series)
        };
        save(dir, &format!("isoflop_{noise}"), &chart, &mut files)?;
        // 2. Each law vs C, Method 1 and 6N, used optima and the others.
        for kind in ["sq", "raw"] {
            for (law, label) in [
                ("D", "D* (tokens)"),
                ("M", "M* (FLOPs/token)"),
                ("N", "N*"),
                ("L", "L* (nats)"),
            ] {
                let mut series = Vec::new();
                for m in &n.methods {
                    // Method 1 blue, Method 2 (6N) orange, as in the paper's figures.
                    let color = if m.method == "6n" { 5 } else { 0 };
                    let v = if kind == "sq" { &m.sq } else { &m.raw };
                    let y = |o: &super::Optimum| match law {
                        "D" => o.d,
                        "M" => o.m,
                        "N" => o.n,
                        _ => o.loss,
                    };
                    let (used, other): (Vec<_>, Vec<_>) =
                        v.optima.iter().zip(&v.used).partition(|p| *p.1);
                    series.push(
                        Series::dots(
                            format!("{} optima", m.method),
                            used.iter().map(|p| (p.0.c, y(p.0))).collect(),
                        )
                        .colored(color),
                    );
                    series.push(
                        Series::dots(
                            format!("{} left out", m.method),
                            other.iter().map(|p| (p.0.c, y(p.0))).collect(),
                        )
                        .colored(4),
                    );
                    if let Some(l) = v.laws.get(law) {
                        series.extend(law_lines(m.method, l, blo, bhi, color));
                    }
                }
                let title = format!("{label} vs C, {} ({kind})", n.noise);
                let chart = Chart {
                    legend: if law == "L" {
                        Corner::UpperRight
                    } else {
                        Corner::UpperLeft
                    },
                    ..Chart::log_log(&title, "FLOPs C", label, &series)
                };
                save(
                    dir,
                    &format!("law_{law}_{kind}_{noise}"),
                    &chart,
                    &mut files,
                )?;
            }
        }
    }
    // 3. Exponent comparison across noise types (Method 1).
    let mut series = Vec::new();
    for (law, kind, color) in [
        ("M", "sq", 0),
        ("M", "raw", 3),
        ("D", "sq", 1),
        ("D", "raw", 5),
    ] {
        let pick = |f: fn(&PowerLaw) -> f64| -> Vec<(f64, f64)> {
            a.noises
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let v = if kind == "sq" {
                        &n.methods[0].sq
                    } else {
                        &n.methods[0].raw
                    };
                    v.laws.get(law).map(|l| (i as f64, f(l)))
                })
                .collect()
        };
        series.push(Series::dots(format!("{law}* {kind}"), pick(|l| l.exponent)).colored(color));
        series.push(
            Series::line(format!("{law}* {kind} 2.5%"), pick(|l| l.exponent_ci[0])).colored(color),
        );
        series.push(
            Series::line(format!("{law}* {kind} 97.5%"), pick(|l| l.exponent_ci[1])).colored(color),
        );
    }
    let names: Vec<String> = a
        .noises
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{i} {}", n.noise))
        .collect();
    let x_label = format!("noise: {}", names.join(", "));
    let chart = Chart {
        x_label: &x_label,
        y_label: "exponent vs C (Method 1)",
        ..Chart::new("compute-optimal exponents, 95% bootstrap", &series)
    };
    save(dir, "exponents", &chart, &mut files)?;
    // 5. Optimal allocation N* vs D*, with the Chinchilla and Llama-3 reference laws.
    let mut series: Vec<Series> = a
        .noises
        .iter()
        .map(|n| {
            let v = &n.methods[0].sq;
            let pts = v
                .optima
                .iter()
                .zip(&v.used)
                .filter(|p| *p.1)
                .map(|p| (p.0.d, p.0.n));
            Series::dots(n.noise.clone(), pts.collect())
        })
        .collect();
    if blo < bhi {
        let cs = super::numeric::log_grid(blo, bhi, 20);
        let refl = |name: &str, an: f64, en: f64, ad: f64, ed: f64| {
            Series::line(
                name,
                cs.iter()
                    .map(|&c| (ad * c.powf(ed), an * c.powf(en)))
                    .collect(),
            )
        };
        series.push(refl("Chinchilla", 0.15, 0.49, 1.15, 0.51));
        series.push(refl("Llama-3", 0.6, 0.463, 0.299, 0.537));
    }
    let chart = Chart {
        legend: Corner::UpperLeft,
        ..Chart::log_log(
            "optimal allocation (Method 1, sq. fit)",
            "D* (tokens)",
            "N*",
            &series,
        )
    };
    save(dir, "allocation", &chart, &mut files)?;
    Ok(files)
}
