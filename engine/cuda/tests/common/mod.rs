//! Shared test support: the tools and the device the cuda tests need, or a loud skip.

#![allow(dead_code)]

use std::path::PathBuf;
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
            let _ = writeln!(f, "{test}: {why}");
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
