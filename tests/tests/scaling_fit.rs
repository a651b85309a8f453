//! `gidd fit` end to end on a synthetic RESULTS file: fit.json and the charts, and the
//! errors of bad input.

#![allow(clippy::unwrap_used)] // tests may unwrap

use gidd_train::scaling::synth::{to_jsonl, Synth};
use rand::SeedableRng;
use std::path::Path;

/// Two noise types on a 6-size ladder, plus cooled twins of two masked runs.
fn write_results(path: &Path) {
    let masked = Synth::default();
    let uniform = Synth {
        a: 120.0,
        e: 1.9,
        seed: 1,
        ..Synth::default()
    };
    let ladder = [64, 96, 128, 192, 256, 384];
    let mut runs = masked.ladder("masked", -1000.0, &ladder, 32, 10_000_000);
    runs.extend(uniform.ladder("uniform", 1000.0, &ladder, 32, 10_000_000));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for d in [64, 128] {
        for cd in [0.0, 0.2] {
            runs.push(masked.run("masked", -1000.0, (d / 32, d), 8, 0.5, 5000, cd, &mut rng));
        }
    }
    // An LR grid at one size and two batch sizes, with η* = 0.5 built in.
    let lr_effect = Synth {
        lr_curv: 0.02,
        lr_opt: 0.5,
        ..masked.clone()
    };
    for b in [8, 16] {
        for lr in [0.125, 0.25, 1.0, 2.0] {
            runs.push(lr_effect.run("masked", -1000.0, (3, 96), b, lr, 5000, 0.0, &mut rng));
        }
    }
    let text: String = runs.iter().map(|r| to_jsonl(r) + "\n").collect();
    std::fs::write(path, text).unwrap();
}

const TOY: &[&str] = &[
    "--min_step",
    "100",
    "--select_min_steps",
    "0",
    "--select_max_steps",
    "1e12",
    "--loss_cap",
    "100",
    "--c_lo",
    "0",
    "--c_hi",
    "1e30",
    "--bootstrap",
    "200",
];

#[test]
fn fit_writes_json_and_charts() {
    let dir = gidd_tests::TempDir::new("fit-e2e");
    let results = dir.path().join("results.jsonl");
    write_results(&results);
    let out = dir.path().join("fit");
    let o = gidd_tests::gidd()
        .arg("fit")
        .arg(&results)
        .arg("--out")
        .arg(&out)
        .args(TOY)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("masked") && stdout.contains("M*~C^"),
        "{stdout}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("fit.json")).unwrap()).unwrap();
    for k in [
        "settings", "budgets", "runs", "skipped", "warnings", "noises", "iso_loss", "cooldown",
    ] {
        assert!(j.get(k).is_some(), "fit.json lacks {k}");
    }
    for noise in ["masked", "uniform"] {
        for method in ["method1", "6n"] {
            let m = &j["noises"][noise][method];
            assert!(m["iso_flop"].as_array().is_some_and(|a| !a.is_empty()));
            let law = &m["sq"]["laws"]["M"];
            let (a, ci) = (law["a"].as_f64().unwrap(), &law["a_ci"]);
            assert!(a > 0.3 && a < 0.8, "{noise} {method} M* exponent {a}");
            assert!(ci[0].as_f64().unwrap() <= a && a <= ci[1].as_f64().unwrap());
            assert!(m["surface"]["params"]["alpha"].as_f64().is_some());
        }
    }
    // The cooled twins: the synthetic cooldown gain is 1.02.
    let r = j["cooldown"]["ratio"].as_f64().unwrap();
    assert!((r - 1.02).abs() < 1e-3, "cooldown ratio {r}");
    // Every run reports 4 bytes per token; the direct frontier and the M-N law are fitted.
    assert_eq!(j["bytes_per_token"].as_f64(), Some(4.0));
    let m1 = &j["noises"]["masked"]["method1"];
    let fa = m1["direct_frontier"]["law"]["a"].as_f64().unwrap();
    assert!(fa < 0.0, "frontier exponent {fa}");
    let k = m1["m_n_conversion"]["law"]["slope"].as_f64().unwrap();
    assert!(k > 0.9 && k < 1.1, "ln M ~ ln N slope {k}");
    let six = &j["noises"]["masked"]["6n"]["m_n_conversion"]["law"];
    assert!((six["slope"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    // η* = 0.5 of the LR grid, at both batch sizes and every budget both cover.
    let etas = j["noises"]["masked"]["lr_vertices"].as_array().unwrap();
    assert!(etas.len() >= 2, "{etas:?}");
    for v in etas {
        let eta = v["eta"].as_f64().unwrap();
        assert!((eta / 0.5 - 1.0).abs() < 1e-6, "η* {eta}");
    }
    for name in [
        "isoflop_masked",
        "law_M_sq_masked",
        "law_L_raw_uniform",
        "exponents",
        "allocation",
        "frontier_compute",
        "frontier_tokens",
        "frontier_direct_masked",
        "lr_grid_masked",
        "eta_vs_b_masked",
        "cooldown_pairs",
        "cooldown_lr",
        "cooldown_steps",
    ] {
        for ext in ["png", "svg"] {
            let p = out.join(format!("{name}.{ext}"));
            assert!(
                std::fs::metadata(&p).is_ok_and(|m| m.len() > 100),
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn bad_results_fail_naming_the_problem() {
    let dir = gidd_tests::TempDir::new("fit-bad");
    let results = dir.path().join("results.jsonl");
    write_results(&results);
    let text = std::fs::read_to_string(&results).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut v: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    v.as_object_mut().unwrap().remove("flops_per_token");
    lines[2] = v.to_string();
    let cases = [
        (
            lines.join("\n"),
            vec!["line 3", "flops_per_token", "missing"],
        ),
        (String::new(), vec!["no runs"]),
    ];
    for (content, wants) in cases {
        std::fs::write(&results, content).unwrap();
        let o = gidd_tests::gidd()
            .arg("fit")
            .arg(&results)
            .arg("--out")
            .arg(dir.path().join("fit"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "bad input accepted");
        for w in wants {
            assert!(stderr.contains(w), "stderr lacks {w:?}: {stderr}");
        }
    }
}
