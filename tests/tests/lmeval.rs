//! lm-evaluation-harness (PyPI lm-eval) against `gidd serve` with its stock
//! `local-completions` model: scripts/lm-eval.sh runs both local tasks of tests/lmeval/ and
//! fails unless every loglikelihood lm-eval reports equals `gidd eval --requests` on the
//! same pair. Skipped (loudly) only when lm-eval cannot be installed; with
//! GIDD_REQUIRE_LMEVAL=1 (scripts/test.sh, which installs it first) that fails instead.

use std::process::Command;

#[test]
fn lm_eval_local_completions_equals_eval_requests() {
    let root = gidd_tests::workspace();
    let out = gidd_tests::TempDir::new("lmeval");
    let r = Command::new("bash")
        .arg(root.join("scripts/lm-eval.sh"))
        .current_dir(&root)
        .env("GIDD_BIN", gidd_tests::gidd_bin())
        .env("GIDD_LMEVAL_OUT", out.join("out"))
        .output()
        .expect("running bash scripts/lm-eval.sh");
    let stdout = String::from_utf8_lossy(&r.stdout);
    let stderr = String::from_utf8_lossy(&r.stderr);
    if r.status.code() == Some(3) {
        assert!(
            std::env::var("GIDD_REQUIRE_LMEVAL").as_deref() != Ok("1"),
            "GIDD_REQUIRE_LMEVAL=1 but lm-eval could not be installed: {stderr}"
        );
        gidd_tests::note_skip(
            "lm_eval_local_completions_equals_eval_requests",
            "lm-eval could not be installed (python3 -m venv + PyPI): run bash scripts/lm-eval.sh",
        );
        return;
    }
    eprintln!("{stdout}");
    assert!(
        r.status.success(),
        "scripts/lm-eval.sh failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("gidd_mc") && stdout.contains("gidd_gen"),
        "{stdout}"
    );
    assert!(stdout.contains(", 0 beyond it; 0 pairs"), "{stdout}");
}
