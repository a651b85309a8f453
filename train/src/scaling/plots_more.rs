//! The charts of SCALING.md §10 items 4 (frontiers in bits/byte), 6 (LR grids and the
//! batch-size and LR laws) and 7 (cooldown). A chart is written only when the runs give
//! it something to show (e.g. no LR grid without two LRs at one size and batch).

use super::batch::cooldown_pairs;
use super::plots::{law_lines, save, slug};
use super::{bits_per_byte, Analysis, FitArgs, Slope};
use crate::plot::{Chart, Corner, Scale, Series};
use anyhow::Result;
use std::collections::BTreeMap;

/// The fitted line of a log-log law over [lo, hi].
fn slope_line(name: String, law: &Slope, lo: f64, hi: f64) -> Series {
    let xs = super::numeric::log_grid(lo, hi, 30);
    Series::line(name, xs.iter().map(|&x| (x, law.at(x))).collect())
}

fn span(xs: impl Iterator<Item = f64>) -> (f64, f64) {
    xs.filter(|x| x.is_finite() && *x > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)))
}

/// Item 4: the compute frontier L*(C) and the token frontier L*(D*) of each noise type
/// (Method 1, sq. fit laws) in bits/byte, divided by the measured cooldown factor when
/// the sweep has one; solid inside the fit window, grey past it up to `extrapolate_to`.
fn frontiers(a: &Analysis, args: &FitArgs, files: &mut Vec<String>) -> Result<()> {
    let Ok(bpt) = a.bytes_per_token else {
        return Ok(());
    };
    let k = a.cooldown.as_ref().map_or(1.0, |c| c.ratio);
    let t = args.thresholds();
    let (blo, bhi) = span(a.budgets.iter().copied());
    if !(blo < bhi) {
        return Ok(());
    }
    let end = args.extrapolate_to.unwrap_or(match args.scale {
        super::FitScale::Paper => 1e27,
        _ => 100.0 * bhi,
    });
    let fit_hi = t.c_hi.min(bhi).max(blo);
    let bpb = |nats: f64| bits_per_byte(nats / k, bpt);
    let note = if k != 1.0 {
        format!(", ÷ cooldown factor {k:.4}")
    } else {
        ", constant LR (no cooled runs)".into()
    };
    let (mut cs, mut ds) = (Vec::new(), Vec::new());
    for (i, n) in a.noises.iter().enumerate() {
        let v = &n.methods[0].sq;
        let color = i % 4;
        let pts = |law: &str, x_of: fn(&super::Optimum) -> f64, out: &mut Vec<Series>| {
            let Some(l) = v.laws.get(law) else { return };
            let used: Vec<(f64, f64)> = v
                .optima
                .iter()
                .zip(&v.used)
                .filter(|p| *p.1)
                .map(|p| (x_of(p.0), bpb(p.0.loss)))
                .collect();
            let (lo, hi) = span(used.iter().map(|p| p.0));
            let (lo, hi, stop) = match law {
                // the compute axis runs from the smallest budget to `end`; the window's
                // upper edge separates fitted from extrapolated
                "L" => (blo, end, fit_hi),
                _ => (lo, hi * end / bhi, hi),
            };
            if !(lo < hi) {
                return;
            }
            let line = |a: f64, b: f64| {
                super::numeric::log_grid(a, b, 40)
                    .into_iter()
                    .map(|x| (x, bpb(l.at(x))))
                    .collect::<Vec<_>>()
            };
            out.push(Series::dots(format!("{} optima", n.noise), used).colored(color));
            out.push(
                Series::line(
                    format!("{} fit, a = {:.4}", n.noise, l.exponent),
                    line(lo, stop),
                )
                .colored(color),
            );
            if stop < hi {
                out.push(
                    Series::line(format!("{} extrapolated", n.noise), line(stop, hi)).colored(4),
                );
            }
        };
        pts("L", |o| o.c, &mut cs);
        pts("L_vs_D", |o| o.d, &mut ds);
    }
    if !cs.is_empty() {
        let title = format!("compute frontier, bits/byte ({bpt:.3} bytes/token{note})");
        let chart = Chart {
            x_label: "FLOPs C",
            y_label: "bits/byte",
            x_scale: Scale::Log,
            ..Chart::new(&title, &cs)
        };
        save(&args.out, "frontier_compute", &chart, files)?;
    }
    if !ds.is_empty() {
        if let Some(dt) = args.data_tokens {
            let (ylo, yhi) = ds
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
                    (a.min(y), b.max(y))
                });
            ds.push(
                Series::line(format!("{dt:.1e} tokens"), vec![(dt, ylo), (dt, yhi)]).colored(4),
            );
        }
        let title = format!("token frontier, bits/byte ({bpt:.3} bytes/token{note})");
        let chart = Chart {
            x_label: "tokens D*",
            y_label: "bits/byte",
            x_scale: Scale::Log,
            ..Chart::new(&title, &ds)
        };
        save(&args.out, "frontier_tokens", &chart, files)?;
    }
    Ok(())
}

/// Item 6: per noise, the ELBO-vs-lr grid at the budget with the most (N, B) pairs that
/// have >= 2 LRs; η* vs B; B* vs D with its law; η* vs B*; tokens to each target loss vs
/// B (the size with the most batch sizes). Overall: B* vs D of every noise type.
fn lr_and_batch(a: &Analysis, args: &FitArgs, files: &mut Vec<String>) -> Result<()> {
    let seq = a.fits.first().map_or(1.0, |f| f.run.seq as f64);
    for n in &a.noises {
        let noise = slug(&n.noise);
        let rows = &n.methods[0].all_rows;
        // (C, N, B) -> [(lr, loss)]
        let mut grid: BTreeMap<(u64, u64, u64), Vec<(f64, f64)>> = BTreeMap::new();
        for r in rows {
            grid.entry((r.c.to_bits(), r.n.to_bits(), r.batch))
                .or_default()
                .push((r.lr, r.loss));
        }
        let mut per_c: BTreeMap<u64, usize> = BTreeMap::new();
        for ((c, _, _), v) in &grid {
            if v.len() >= 2 {
                *per_c.entry(*c).or_default() += 1;
            }
        }
        if let Some((&c, _)) = per_c.iter().max_by_key(|(c, k)| (**k, **c)) {
            let mut series: Vec<Series> = grid
                .iter()
                .filter(|((cc, _, _), v)| *cc == c && v.len() >= 2)
                .map(|((_, nn, b), v)| {
                    let mut v = v.clone();
                    v.sort_by(|x, y| x.0.total_cmp(&y.0));
                    Series::line(format!("N {:.2e} B {b}", f64::from_bits(*nn)), v)
                })
                .collect();
            let etas: Vec<(f64, f64)> = n
                .lr_vertices
                .iter()
                .filter(|v| v.c.to_bits() == c)
                .map(|v| (v.eta, v.loss))
                .collect();
            series.push(Series::dots("η* (parabola vertex)", etas).colored(4));
            let title = format!(
                "ELBO vs lr, {} at C = {:.2e} (Method 1)",
                n.noise,
                f64::from_bits(c)
            );
            let chart = Chart {
                x_label: "lr",
                y_label: "ELBO (nats/token)",
                x_scale: Scale::Log,
                ..Chart::new(&title, &series)
            };
            save(&args.out, &format!("lr_grid_{noise}"), &chart, files)?;
        }
        if !n.lr_vertices.is_empty() {
            let mut by_n: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
            for v in &n.lr_vertices {
                by_n.entry(v.n.to_bits())
                    .or_default()
                    .push((v.batch_tokens, v.eta));
            }
            let series: Vec<Series> = by_n
                .into_iter()
                .map(|(nn, p)| Series::dots(format!("N {:.2e}", f64::from_bits(nn)), p))
                .collect();
            let title = format!("η* vs batch, {} (all budgets)", n.noise);
            let chart = Chart::log_log(&title, "B·T (tokens/step)", "η*", &series);
            save(&args.out, &format!("eta_vs_b_{noise}"), &chart, files)?;
        }
        if let Ok((law, pts)) = &n.batch_law {
            let (lo, hi) = span(pts.iter().map(|p| p.0));
            let series = [
                Series::dots("B* vertices", pts.clone()),
                slope_line(
                    format!("B* ~ D^{:.3} ± {:.3}", law.slope, law.slope_ci99),
                    law,
                    lo,
                    hi,
                ),
            ];
            let title = format!("B* vs D, {} (iso-loss)", n.noise);
            let chart = Chart {
                legend: Corner::UpperLeft,
                ..Chart::log_log(&title, "tokens D", "B*·T (tokens/step)", &series)
            };
            save(&args.out, &format!("bstar_{noise}"), &chart, files)?;
        }
        if let Ok((law, pts)) = &n.lr_law {
            let (lo, hi) = span(pts.iter().map(|p| p.0));
            let series = [
                Series::dots("η* at B*", pts.clone()),
                slope_line(
                    format!("η* ~ B*^{:.3} ± {:.3}", law.slope, law.slope_ci99),
                    law,
                    lo,
                    hi,
                ),
            ];
            let title = format!("η* vs B*, {}", n.noise);
            let chart = Chart::log_log(&title, "B*·T (tokens/step)", "η*", &series);
            save(&args.out, &format!("eta_vs_bstar_{noise}"), &chart, files)?;
        }
        // tokens to each target loss vs B, min over lr, for the size with most batches
        let mut by_nb: BTreeMap<u64, BTreeMap<u64, BTreeMap<u64, f64>>> = BTreeMap::new();
        for r in a.iso_loss.iter().filter(|r| r.noise == n.noise) {
            let e = by_nb
                .entry(r.n.to_bits())
                .or_default()
                .entry(r.target_loss.to_bits())
                .or_default()
                .entry(r.batch)
                .or_insert(f64::INFINITY);
            *e = e.min(r.tokens);
        }
        let best = by_nb
            .iter()
            .max_by_key(|(_, t)| t.values().filter(|b| b.len() >= 2).count());
        if let Some((nn, targets)) = best.filter(|(_, t)| t.values().any(|b| b.len() >= 2)) {
            let keep: Vec<(&u64, &BTreeMap<u64, f64>)> =
                targets.iter().filter(|(_, b)| b.len() >= 2).collect();
            let stride = keep.len().div_ceil(6).max(1);
            let series: Vec<Series> = keep
                .iter()
                .step_by(stride)
                .map(|(l, b)| {
                    Series::line(
                        format!("loss {:.3}", f64::from_bits(**l)),
                        b.iter().map(|(bb, d)| (*bb as f64 * seq, *d)).collect(),
                    )
                })
                .collect();
            let title = format!(
                "tokens to a target loss vs batch, {} N {:.2e}",
                n.noise,
                f64::from_bits(*nn)
            );
            let chart = Chart::log_log(&title, "B·T (tokens/step)", "tokens D", &series);
            save(&args.out, &format!("tokens_vs_b_{noise}"), &chart, files)?;
        }
    }
    if let Ok((law, pts)) = &a.batch_law_all {
        let (lo, hi) = span(pts.iter().map(|p| p.0));
        let series = [
            Series::dots("B* vertices, every noise", pts.clone()),
            slope_line(
                format!("B* ~ D^{:.3} ± {:.3}", law.slope, law.slope_ci99),
                law,
                lo,
                hi,
            ),
        ];
        let chart = Chart {
            legend: Corner::UpperLeft,
            ..Chart::log_log("B* vs D, all noise types", "tokens D", "B*·T", &series)
        };
        save(&args.out, "bstar_all", &chart, files)?;
    }
    Ok(())
}

/// Item 7: constant-LR ELBO against its cooled twin's with the fitted y = k·x; both vs
/// lr; and the ELBO curves of each pair over steps (running means of 20 steps).
fn cooldown(
    a: &Analysis,
    runs: &[super::Run],
    args: &FitArgs,
    files: &mut Vec<String>,
) -> Result<()> {
    let pairs = cooldown_pairs(runs);
    let Ok(c) = &a.cooldown else { return Ok(()) };
    let pts: Vec<(f64, f64)> = pairs.iter().map(|p| (p.cooled, p.flat)).collect();
    let (lo, hi) = span(pts.iter().map(|p| p.0));
    let series = [
        Series::dots("pairs (final ELBO, mean of last 10)", pts.clone()),
        Series::line(
            format!("y = {:.4}·x", c.ratio),
            vec![(lo, c.ratio * lo), (hi, c.ratio * hi)],
        ),
        Series::line("y = x", vec![(lo, lo), (hi, hi)]).colored(4),
    ];
    let chart = Chart {
        x_label: "ELBO with cooldown",
        y_label: "ELBO, constant LR",
        legend: Corner::UpperLeft,
        ..Chart::new("cooldown: constant-LR vs cooled final ELBO", &series)
    };
    save(&args.out, "cooldown_pairs", &chart, files)?;
    let series = [
        Series::dots(
            "constant LR",
            pairs.iter().map(|p| (p.lr, p.flat)).collect(),
        ),
        Series::dots("cooled", pairs.iter().map(|p| (p.lr, p.cooled)).collect()),
    ];
    let chart = Chart {
        x_label: "lr",
        y_label: "final ELBO",
        x_scale: Scale::Log,
        ..Chart::new("cooldown: final ELBO vs lr", &series)
    };
    save(&args.out, "cooldown_lr", &chart, files)?;
    let smooth = |h: &[(f64, f64)]| -> Vec<(f64, f64)> {
        h.chunks(20)
            .map(|w| {
                let n = w.len() as f64;
                (
                    w.iter().map(|p| p.0).sum::<f64>() / n,
                    w.iter().map(|p| p.1).sum::<f64>() / n,
                )
            })
            .collect()
    };
    let mut series = Vec::new();
    for (i, p) in pairs.iter().take(5).enumerate() {
        series
            .push(Series::line(format!("{} constant", p.name), smooth(&p.flat_history)).colored(i));
        series
            .push(Series::line(format!("{} cooled", p.name), smooth(&p.cooled_history)).colored(i));
    }
    let chart = Chart {
        x_label: "step",
        y_label: "training ELBO",
        ..Chart::new("cooldown: ELBO vs steps (pairs)", &series)
    };
    save(&args.out, "cooldown_steps", &chart, files)?;
    Ok(())
}

/// The direct frontier of each noise type (§5): per-budget minima over every row and the
/// L = A·C^a fit with its 95% band, Method 1 blue and 6N orange.
fn direct(a: &Analysis, args: &FitArgs, files: &mut Vec<String>) -> Result<()> {
    for n in &a.noises {
        let mut series = Vec::new();
        for m in &n.methods {
            let Ok(f) = &m.frontier else { continue };
            let color = if m.method == "6n" { 5 } else { 0 };
            let (used, other): (Vec<_>, Vec<_>) = f.points.iter().zip(&f.used).partition(|p| *p.1);
            series.push(
                Series::dots(
                    format!("{} minima", m.method),
                    used.iter().map(|p| *p.0).collect(),
                )
                .colored(color),
            );
            series.push(
                Series::dots(
                    format!("{} outside window", m.method),
                    other.iter().map(|p| *p.0).collect(),
                )
                .colored(4),
            );
            let (lo, hi) = span(f.points.iter().map(|p| p.0));
            series.extend(law_lines(m.method, &f.law, lo, hi, color));
        }
        if series.is_empty() {
            continue;
        }
        let title = format!("direct frontier, {} (min loss per budget)", n.noise);
        let chart = Chart::log_log(&title, "FLOPs C", "L (nats/token)", &series);
        save(
            &args.out,
            &format!("frontier_direct_{}", slug(&n.noise)),
            &chart,
            files,
        )?;
    }
    Ok(())
}

/// Writes the charts of items 4, 6 and 7 that the analysis supports.
pub fn write_more(a: &Analysis, runs: &[super::Run], args: &FitArgs) -> Result<Vec<String>> {
    let mut files = Vec::new();
    frontiers(a, args, &mut files)?;
    direct(a, args, &mut files)?;
    lr_and_batch(a, args, &mut files)?;
    cooldown(a, runs, args, &mut files)?;
    Ok(files)
}
