//! Golden quantities: the audit of a golden case (the reference's logits, loss terms and
//! gradients of a tiny model) through [`crate::audit`], on the executor under check.

use super::{Row, Status};
use crate::audit::{audit_files, GoldenFiles};
use gidd_engine::{DType, Executor};
use std::path::{Path, PathBuf};

/// The case `gidd check` audits when no --golden is given.
const CASE: &str = "tests/golden/mask-small";

/// The quantities shown (failures of any other are shown too).
const SHOWN: [&str; 6] = [
    "logits",
    "loss",
    "kl_loss",
    "elbo",
    "total_loss",
    "grad.logits",
];
/// Parameter gradients shown, besides those.
const SHOWN_GRADS: usize = 3;

/// `explicit`, or the golden case of the workspace the binary or the current directory
/// sits in.
pub(crate) fn find(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let mut roots: Vec<PathBuf> = vec![];
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    roots
        .into_iter()
        .map(|r| r.join(CASE))
        .find(|d| d.join("golden.safetensors").is_file())
}

/// Audits the golden case in `dir` in f32 (forward, loss, gradients, schedule and
/// generation; the optimizer and likelihood files are `gidd audit`'s) and returns the
/// shown quantities as rows; a failed audit is one FAIL row.
pub(crate) fn rows<E: Executor + Clone>(exec: &E, dir: &Path) -> anyhow::Result<Vec<Row>> {
    let golden = dir.join("golden.safetensors");
    if !golden.is_file() || !dir.join("config.json").is_file() {
        anyhow::bail!(
            "--golden {}: expected a golden case (config.json, model.safetensors, golden.safetensors)",
            dir.display()
        );
    }
    let case = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files = GoldenFiles {
        golden,
        optim: None,
        likelihood: None,
    };
    let audit = match audit_files(exec, dir, &files, DType::F32) {
        Ok(rows) => rows,
        Err(e) => {
            return Ok(vec![Row::failed(
                "golden audit",
                "golden",
                "f32".into(),
                case,
                &format!("{e:#}"),
            )])
        }
    };
    let mut grads = 0;
    Ok(audit
        .into_iter()
        .filter(|r| {
            let param_grad = r.quantity.starts_with("grad.") && r.quantity != "grad.logits";
            let shown = SHOWN.contains(&r.quantity.as_str())
                || (param_grad && {
                    grads += 1;
                    grads <= SHOWN_GRADS
                });
            shown || !r.pass
        })
        .map(|r| Row {
            op: r.quantity,
            value: "golden",
            dtype: "f32".into(),
            shape: case.clone(),
            max_abs: r.max_abs,
            rel: r.rel_l2,
            tol: r.tol,
            // a quantity passes within its bar, or below the audit's zero floor
            margin: if r.pass {
                (r.rel_l2 / r.tol).min(1.0)
            } else {
                f64::INFINITY
            },
            status: if r.pass { Status::Pass } else { Status::Fail },
            note: r.note,
        })
        .collect())
}
