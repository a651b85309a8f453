//! Support for the cross-crate tests in `tests/tests/`: the `gidd` binary they run, the
//! golden fixtures (in `tests/golden/`, copied from the reference's outputs so every clone
//! runs the audits), scratch directories that clean up after themselves, and the rule for
//! the XLA and wgpu tests (run when a PJRT plugin / a Vulkan adapter is installed, fail when
//! GIDD_REQUIRE_XLA=1 / GIDD_REQUIRE_WGPU=1 and none is, and otherwise say loudly that they
//! were skipped).

#![allow(clippy::unwrap_used)] // test support: a failure here is a test failure

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The golden cases (each a directory with an HF checkpoint, golden.safetensors and
/// MANIFEST.json), in name order.
pub fn golden_cases() -> Vec<PathBuf> {
    let root = workspace().join("tests/golden");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("golden.safetensors").exists())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no golden cases under {}", root.display());
    v
}

/// One golden case by name (`mask-small`, `unif-small`).
pub fn golden_case(name: &str) -> PathBuf {
    let p = workspace().join("tests/golden").join(name);
    assert!(p.is_dir(), "{} missing", p.display());
    p
}

/// The `gidd` binary of this build, built on first use. Cargo gives `CARGO_BIN_EXE_*` only
/// to tests of the binary's own package, and the CLI's package is `gidd` (train/cli): so
/// the first test that needs it asks cargo to build it into this test's target directory,
/// with this test's profile (a no-op when it is up to date).
pub fn gidd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test exe>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let target = profile_dir.parent().unwrap().to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut c = Command::new(cargo);
        c.current_dir(workspace())
            .args(["build", "--quiet", "-p", "gidd", "--bin", "gidd"])
            .env("CARGO_TARGET_DIR", &target);
        if release {
            c.arg("--release");
        }
        let st = c.status().expect("running cargo to build the gidd binary");
        assert!(st.success(), "cargo build -p gidd failed");
        let bin = profile_dir.join(format!("gidd{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.exists(), "{} not built", bin.display());
        bin
    })
    .clone()
}

/// `gidd train` on a 1-layer d 32 model over rows of 32 with no samples at the end, the
/// vocabulary size to follow: the smallest run the CLI tests train.
pub const SMALL_TRAIN: [&str; 12] = [
    "train",
    "--num_layers",
    "1",
    "--hidden_size",
    "32",
    "--num_attn_heads",
    "2",
    "--max_seq_len",
    "32",
    "--num_samples",
    "0",
    "--vocab_size",
];

/// A `gidd` command, run from the workspace root.
pub fn gidd() -> Command {
    let mut c = Command::new(gidd_bin());
    c.current_dir(workspace());
    c
}

/// A scratch directory under the system temp dir, removed when dropped (also when the test
/// fails, so failed runs leave nothing behind either).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let k = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("gidd-test-{tag}-{}-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The seed of a randomized test: `GIDD_TEST_SEED` when set (to replay a failure), else
/// `default`; printed either way so a failure names the seed that made it.
pub fn seed(default: u64) -> u64 {
    let s = std::env::var("GIDD_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    eprintln!("seed {s} (GIDD_TEST_SEED={s} replays this test)");
    s
}

/// Whether the XLA tests can run: a PJRT plugin is found. With GIDD_REQUIRE_XLA=1 (CI)
/// a missing plugin panics; otherwise the skip is announced on stderr and in
/// `target/gidd-skipped.txt`, which the README's test command prints at the end.
pub fn xla_available(test: &str) -> bool {
    if gidd_xla::find_plugin(None).is_ok() {
        return true;
    }
    assert!(
        std::env::var("GIDD_REQUIRE_XLA").as_deref() != Ok("1"),
        "GIDD_REQUIRE_XLA=1 but no PJRT plugin was found (run engine/xla/install-plugin.sh)"
    );
    note_skip(
        test,
        "no PJRT plugin: run `bash engine/xla/install-plugin.sh`",
    );
    false
}

/// Whether the wgpu tests can run: a Vulkan/Metal/DX12 adapter opens (lavapipe counts). With
/// GIDD_REQUIRE_WGPU=1 (CI) a missing adapter panics; otherwise the skip is announced as the
/// XLA tests' are.
pub fn wgpu_available(test: &str) -> bool {
    static OPENED: OnceLock<Result<String, String>> = OnceLock::new();
    let opened = OPENED.get_or_init(|| {
        use gidd_engine::Executor;
        gidd_wgpu::WgpuExecutor::new()
            .map(|x| x.name())
            .map_err(|e| e.to_string())
    });
    match opened {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var("GIDD_REQUIRE_WGPU").as_deref() != Ok("1"),
                "GIDD_REQUIRE_WGPU=1 but {e}"
            );
            note_skip(test, e);
            false
        }
    }
}

/// Records a skipped test where the test command's summary finds it.
pub fn note_skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    let exe = std::env::current_exe().unwrap();
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
