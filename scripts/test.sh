#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test in the workspace.
# Nothing is skipped: the XLA tests need the XLA CPU PJRT plugin (a PyPI wheel, ~63 MB,
# fetched once into .xla-plugin/), and with GIDD_REQUIRE_XLA=1 a missing plugin fails the
# run instead of skipping. Extra arguments go to cargo test (e.g. `-p gidd-kernels`).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
if ! plugin="$(bash engine/xla/install-plugin.sh)"; then
  echo "could not install the XLA CPU plugin (needs python3 with pip and PyPI);" >&2
  echo "point GIDD_PJRT_PLUGIN at a PJRT plugin .so instead, or run plain" >&2
  echo "'cargo test --release --workspace' to run the rest (XLA tests then say SKIPPED)" >&2
  exit 1
fi
echo "XLA CPU plugin: $plugin"
export GIDD_REQUIRE_XLA=1
skipped=target/gidd-skipped.txt
rm -f "$skipped"
# --no-fail-fast: one failing test binary does not hide the others' results.
cargo test --release --workspace --no-fail-fast "$@"
if [ -s "$skipped" ]; then
  echo "SKIPPED tests (and how to run them):"
  cat "$skipped"
fi
