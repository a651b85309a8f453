//! fit.json and the printed summary of an `Analysis`.

use super::{bits_per_byte, Analysis, FitArgs, MethodFit, Variant};
use serde_json::{json, Value};
use std::fmt::Write;

fn variant_json(v: &Variant) -> Value {
    let optima: Vec<Value> = v
        .optima
        .iter()
        .zip(&v.used)
        .map(|(o, u)| {
            let mut j = serde_json::to_value(o).unwrap_or(Value::Null);
            j["used"] = json!(u);
            j
        })
        .collect();
    json!({ "optima": optima, "laws": v.laws })
}

fn method_json(m: &MethodFit) -> Value {
    let surface = match &m.surface {
        Ok(s) => {
            let (em, ed) = s.exponents();
            json!({
                "params": s,
                "m_star_exponent": em,
                "d_star_exponent": ed,
                "allocation": m.sq.optima.iter().map(|o| {
                    let (mm, d, l) = s.optimal(o.c);
                    json!({"c": o.c, "m": mm, "d": d, "loss": l})
                }).collect::<Vec<_>>(),
            })
        }
        Err(why) => json!({ "skipped": why }),
    };
    let frontier = match &m.frontier {
        Ok(f) => json!({
            "law": f.law,
            "points": f.points.iter().zip(&f.used)
                .map(|(p, u)| json!({"c": p.0, "loss": p.1, "used": u}))
                .collect::<Vec<_>>(),
        }),
        Err(why) => json!({ "skipped": why }),
    };
    // N* of each sq. optimum converted from its M* by the ln M ~ ln N law
    let conversion = match &m.conversion {
        Ok(c) => json!({
            "law": c,
            "n_from_m": m.sq.optima.iter().map(|o| json!({"c": o.c, "m": o.m, "n": c.inverse(o.m)}))
                .collect::<Vec<_>>(),
        }),
        Err(why) => json!({ "skipped": why }),
    };
    json!({
        "iso_flop": m.rows,
        "sq": variant_json(&m.sq),
        "raw": variant_json(&m.raw),
        "surface": surface,
        "direct_frontier": frontier,
        "m_n_conversion": conversion,
    })
}

fn result_json<T: serde::Serialize>(r: &Result<T, String>) -> Value {
    match r {
        Ok(v) => serde_json::to_value(v).unwrap_or(Value::Null),
        Err(why) => json!({ "skipped": why }),
    }
}

/// Every fitted number with its interval, the tables and the warnings.
pub fn fit_json(a: &Analysis, args: &FitArgs) -> Value {
    let runs: Vec<Value> = a
        .fits
        .iter()
        .map(|f| {
            json!({"run": f.run.run, "noise": f.run.noise, "n": f.run.n_params, "batch": f.run.batch,
                   "lr": f.run.lr, "steps": f.run.steps, "ema_elbo": f.ema, "curve": f.curve})
        })
        .collect();
    let noises: serde_json::Map<String, Value> = a
        .noises
        .iter()
        .map(|n| {
            let mut j = json!({
                "shift": n.shift,
                "batch_law": result_json(&n.batch_law.as_ref().map(|b| &b.0).map_err(Clone::clone)),
                "lr_law": result_json(&n.lr_law.as_ref().map(|l| &l.0).map_err(Clone::clone)),
                "lr_vertices": n.lr_vertices,
            });
            for m in &n.methods {
                j[m.method] = method_json(m);
            }
            (n.noise.clone(), j)
        })
        .collect();
    json!({
        "settings": args,
        "thresholds": args.thresholds(),
        "budgets": a.budgets,
        "target_losses": a.losses,
        "runs": runs,
        "skipped": a.skipped.iter().map(|(r, w)| json!({"run": r, "why": w})).collect::<Vec<_>>(),
        "warnings": a.warnings,
        "noises": noises,
        "iso_loss": a.iso_loss,
        "batch_law_all": result_json(&a.batch_law_all.as_ref().map(|b| &b.0).map_err(Clone::clone)),
        "cooldown": result_json(&a.cooldown),
        "bytes_per_token": result_json(&a.bytes_per_token),
    })
}

/// The printed summary: exponents per noise with their 95% bootstrap intervals.
pub fn summary(a: &Analysis) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} runs fitted, {} skipped, {} budgets, {} warnings",
        a.fits.len(),
        a.skipped.len(),
        a.budgets.len(),
        a.warnings.len()
    );
    for n in &a.noises {
        let _ = writeln!(s, "\n{} (shift {})", n.noise, n.shift);
        for m in &n.methods {
            for (kind, v) in [("sq", &m.sq), ("raw", &m.raw)] {
                let mut line = format!("  {:7} {:3}", m.method, kind);
                for name in ["M", "D", "N", "L"] {
                    match v.laws.get(name) {
                        Some(l) => {
                            let _ = write!(
                                line,
                                "  {name}*~C^{:.4} [{:.4}, {:.4}]",
                                l.exponent, l.exponent_ci[0], l.exponent_ci[1]
                            );
                        }
                        None => {
                            let _ = write!(line, "  {name}*: -");
                        }
                    }
                }
                let _ = writeln!(s, "{line}");
            }
            match &m.frontier {
                Ok(f) => {
                    let _ = writeln!(
                        s,
                        "  {:7} direct frontier L ~ {:.4}·C^{:.4} [{:.4}, {:.4}] ({} budgets)",
                        m.method,
                        f.law.coef,
                        f.law.exponent,
                        f.law.exponent_ci[0],
                        f.law.exponent_ci[1],
                        f.law.points
                    );
                }
                Err(why) => {
                    let _ = writeln!(s, "  {:7} direct frontier: skipped ({why})", m.method);
                }
            }
            if let Ok(c) = &m.conversion {
                let _ = writeln!(
                    s,
                    "  {:7} M ~ {:.4}·N^{:.4} over {} sizes (R² {:.4})",
                    m.method,
                    c.intercept.exp(),
                    c.slope,
                    c.points,
                    c.r2
                );
            }
            match &m.surface {
                Ok(f) => {
                    let (em, ed) = f.exponents();
                    let _ = writeln!(
                        s,
                        "  {:7} surface a={:.4e} alpha={:.4} b={:.4e} beta={:.4} E={:.4}: M*~K^{em:.4}, D*~K^{ed:.4}",
                        m.method, f.a, f.alpha, f.b, f.beta, f.e
                    );
                }
                Err(why) => {
                    let _ = writeln!(s, "  {:7} surface: skipped ({why})", m.method);
                }
            }
        }
        match &n.batch_law {
            Ok((b, _)) => {
                let _ = writeln!(
                    s,
                    "  B*_tok ~ D^{:.4} ± {:.4} (99%), R² {:.3}",
                    b.slope, b.slope_ci99, b.r2
                );
            }
            Err(why) => {
                let _ = writeln!(s, "  B*(D): skipped ({why})");
            }
        }
        match &n.lr_law {
            Ok((l, _)) => {
                let _ = writeln!(
                    s,
                    "  eta* ~ B*^{:.4} ± {:.4} (99%), R² {:.3}",
                    l.slope, l.slope_ci99, l.r2
                );
            }
            Err(why) => {
                let _ = writeln!(s, "  eta*(B*): skipped ({why})");
            }
        }
    }
    if let Ok(b) = &a.bytes_per_token {
        let _ = writeln!(
            s,
            "\nbytes per token {b:.4}: 1 nat/token = {:.4} bits/byte",
            bits_per_byte(1.0, *b)
        );
    }
    match &a.cooldown {
        Ok(c) => {
            let _ = writeln!(
                s,
                "\ncooldown factor (no-cd / cd) {:.4} ± {:.4} (99%, {} pairs)",
                c.ratio, c.ci99, c.pairs
            );
        }
        Err(why) => {
            let _ = writeln!(s, "\ncooldown factor: skipped ({why})");
        }
    }
    s
}
