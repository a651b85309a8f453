//! Shared test support: the tools and the device the cuda tests need, or a loud skip.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Records a skipped test where scripts/test.sh's summary finds it (target/gidd-skipped.txt),
/// and says so on stderr: a skip is never silent.
pub fn note_skip(test: &str, why: &str) {
    eprintln!(
        "\n==================================================================\n\
         SKIPPED {test}: {why}\n\
         ==================================================================\n"
    );
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    if let Some(target) = exe.ancestors().nth(3) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target.join("gidd-skipped.txt"))
        {
            // one write(2) per line: with O_APPEND, tests skipping at once never interleave
            let _ = f.write_all(format!("{test}: {why}\n").as_bytes());
        }
    }
}

fn required(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// ptxas: $PTXAS, else the PyPI package nvidia-cuda-nvcc-cu12 in any of python3's
/// site-packages, else `ptxas` on PATH. None (after a loud skip) when there is none; with
/// GIDD_REQUIRE_PTXAS=1 (CI) a missing ptxas fails the test instead.
pub fn ptxas(test: &str) -> Option<PathBuf> {
    let works = |p: &PathBuf| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let mut candidates: Vec<PathBuf> = std::env::var_os("PTXAS")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    let py = "import site, sys; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))";
    if let Ok(o) = Command::new("python3").args(["-c", py]).output() {
        for dir in String::from_utf8_lossy(&o.stdout).lines() {
            candidates.push(PathBuf::from(dir).join("nvidia/cuda_nvcc/bin/ptxas"));
        }
    }
    candidates.push(PathBuf::from("ptxas"));
    if let Some(p) = candidates.into_iter().find(works) {
        return Some(p);
    }
    let why = "no ptxas: `python3 -m pip install nvidia-cuda-nvcc-cu12`, or set PTXAS";
    assert!(
        !required("GIDD_REQUIRE_PTXAS"),
        "GIDD_REQUIRE_PTXAS=1 but {why}"
    );
    note_skip(test, why);
    None
}

/// The GPU the device tests run on; None (after a loud skip) without a driver or device.
/// With GIDD_REQUIRE_CUDA=1 a missing device fails the test instead.
pub fn cuda(test: &str) -> Option<&'static gidd_cuda::CudaExecutor> {
    static X: std::sync::OnceLock<Result<gidd_cuda::CudaExecutor, String>> =
        std::sync::OnceLock::new();
    match X.get_or_init(|| gidd_cuda::CudaExecutor::new(0).map_err(|e| e.to_string())) {
        Ok(x) => Some(x),
        Err(e) => {
            assert!(
                !required("GIDD_REQUIRE_CUDA"),
                "GIDD_REQUIRE_CUDA=1 but {e}"
            );
            note_skip(test, &format!("no CUDA device: {e}"));
            None
        }
    }
}

/// One function's line of the resource report.
#[derive(Debug, Default)]
pub struct Usage {
    pub function: String,
    pub entry: bool,
    pub registers: u32,
    pub smem: u32,
    pub stack: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

fn number_before(line: &str, unit: &str) -> Option<u32> {
    let i = line.find(unit)?;
    line[..i].split_whitespace().last()?.parse().ok()
}

/// Parses `ptxas -v` output: "Compiling entry function 'f'", "Function properties for f",
/// "N bytes stack frame, N bytes spill stores, N bytes spill loads", "Used N registers, ...
/// N bytes smem".
pub fn parse(out: &str) -> Vec<Usage> {
    let mut v: Vec<Usage> = vec![];
    let mut entry = String::new();
    for line in out.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            entry = rest.split('\'').next().unwrap_or("").to_string();
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            let f = rest.trim().to_string();
            v.push(Usage {
                entry: f == entry,
                function: f,
                ..Default::default()
            });
        } else if line.contains("bytes spill stores") {
            if let Some(u) = v.last_mut() {
                u.stack = number_before(line, "bytes stack frame").unwrap_or(0);
                u.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
                u.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
            }
        } else if line.contains("Used ") && line.contains("registers") {
            if let Some(u) = v.iter_mut().rev().find(|u| u.function == entry) {
                u.registers = number_before(line, "registers").unwrap_or(0);
                u.smem = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    v
}

/// (success, stdout + stderr) of ptxas on one file for one architecture.
pub fn assemble(ptxas: &Path, file: &Path, arch: &str) -> (bool, String) {
    let cubin = file.with_extension(format!("{arch}.cubin"));
    let o = Command::new(ptxas)
        .arg(format!("-arch={arch}"))
        .arg("-v")
        .arg("-o")
        .arg(&cubin)
        .arg(file)
        .output()
        .expect("running ptxas");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}
