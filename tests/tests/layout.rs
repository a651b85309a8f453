//! The layout of ../shared/DESIGN.md, checked: the top level is the design card's, crate
//! dependencies point one way (kernels <- engine <- model <- train; ports <- train; executor
//! crates use engine and kernels only; no sideways imports), and no source file outgrows
//! the size a reader can hold (700 lines).

#![allow(clippy::unwrap_used)] // tests may unwrap

use gidd_tests::workspace;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each workspace crate and the workspace crates it may depend on (normal dependencies;
/// dev-dependencies are test-only and free).
const ALLOWED: &[(&str, &[&str])] = &[
    ("gidd-kernels", &[]),
    ("gidd-engine", &["gidd-kernels"]),
    ("gidd-xla", &["gidd-engine", "gidd-kernels"]),
    ("gidd-wgpu", &["gidd-engine", "gidd-kernels"]),
    ("gidd-cuda", &["gidd-engine", "gidd-kernels"]),
    ("gidd-model", &["gidd-engine"]),
    ("gidd-ports", &["gidd-engine"]),
    (
        "gidd-train",
        &[
            "gidd-engine",
            "gidd-model",
            "gidd-ports",
            "gidd-xla",
            "gidd-wgpu",
            "gidd-cuda",
        ],
    ),
    (
        "gidd-benches",
        &[
            "gidd-kernels",
            "gidd-engine",
            "gidd-model",
            "gidd-ports",
            "gidd-train",
            "gidd-xla",
            "gidd-wgpu",
            "gidd-cuda",
        ],
    ),
    (
        "gidd",
        &[
            "gidd-engine",
            "gidd-model",
            "gidd-ports",
            "gidd-train",
            "gidd-xla",
            "gidd-wgpu",
            "gidd-cuda",
            "gidd-benches",
        ],
    ),
    (
        "gidd-tests",
        &[
            "gidd-engine",
            "gidd-model",
            "gidd-ports",
            "gidd-train",
            "gidd-xla",
            "gidd-wgpu",
            "gidd-cuda",
        ],
    ),
];

/// (crate, its workspace dependencies of kind "normal"), from `cargo metadata`.
fn workspace_deps() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(workspace())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null()) // null = normal; "dev" / "build" otherwise
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|n| members.contains(n))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn dependencies_point_one_way() {
    let deps = workspace_deps();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for (krate, ds) in &deps {
        let Some(ok) = allowed.get(krate.as_str()) else {
            panic!(
                "{krate} is not in the layout's list: add it to ALLOWED with the crates it may use"
            );
        };
        for d in ds {
            assert!(
                ok.contains(&d.as_str()),
                "{krate} depends on {d}: not allowed by DESIGN.md's layout (allowed: {ok:?})"
            );
        }
    }
    for k in allowed.keys() {
        assert!(
            deps.contains_key(*k),
            "{k} is listed but not a workspace member"
        );
    }
}

#[test]
fn the_top_level_is_the_design_cards() {
    let card: BTreeSet<&str> = [
        "engine", "kernels", "model", "train", "ports", "tests", "benches", "scripts",
    ]
    .into_iter()
    .collect();
    // What a run leaves in the working tree (runs/, caches) is ignored by git: not layout.
    let gitignore = std::fs::read_to_string(workspace().join(".gitignore")).unwrap_or_default();
    let ignored: BTreeSet<&str> = gitignore
        .lines()
        .filter_map(|l| l.strip_prefix('/'))
        .collect();
    for e in std::fs::read_dir(workspace()).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if !e.file_type().unwrap().is_dir()
            || name.starts_with('.')
            || ignored.contains(name.as_str())
        {
            continue;
        }
        assert!(
            card.contains(name.as_str()),
            "top-level folder {name}/ is not in DESIGN.md's layout"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "golden" {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_source_file_is_over_700_lines() {
    let mut files = vec![];
    rust_files(&workspace(), &mut files);
    assert!(files.len() > 50, "found only {} .rs files", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 700).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 700 lines: {long:?}");
}
