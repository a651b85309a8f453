#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test in the workspace.
# Nothing is skipped: the lm-eval test needs lm-eval in a venv (scripts/lm-eval.sh), the XLA
# tests the XLA CPU PJRT plugin (a PyPI wheel, ~63 MB, fetched once into .xla-plugin/), the
# wgpu tests a Vulkan driver (lavapipe, Mesa's software Vulkan, installed with apt-get when no
# Vulkan driver is present and we are root); with GIDD_REQUIRE_LMEVAL=1, GIDD_REQUIRE_XLA=1
# and GIDD_REQUIRE_WGPU=1 a missing one fails the run instead of skipping. Extra arguments
# go to cargo test (e.g. `-p gidd-kernels`).
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
# ptxas (PyPI, ~95 MB, no GPU needed) assembles every PTX module of the cuda executor.
if ! python3 -m pip install --quiet nvidia-cuda-nvcc-cu12 >&2; then
  echo "could not install ptxas (python3 -m pip install nvidia-cuda-nvcc-cu12); or set PTXAS" >&2
  exit 1
fi
export GIDD_REQUIRE_PTXAS=1
# lm-evaluation-harness (PyPI lm-eval[api], no torch; ~1.5-2.5 min into target/lmeval-venv
# once) for the test that runs it against `gidd serve` (tests/tests/lmeval.rs).
if ! bash scripts/lm-eval.sh --install >/dev/null; then
  echo "could not install lm-eval (bash scripts/lm-eval.sh --install: python3 -m venv and PyPI)" >&2
  exit 1
fi
export GIDD_REQUIRE_LMEVAL=1
# The wgpu executor's tests run on any Vulkan driver; lavapipe (CPU) when there is no GPU.
if ! compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null && ! compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "no Vulkan driver: installing lavapipe (mesa-vulkan-drivers)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  else
    echo "no Vulkan driver: install mesa-vulkan-drivers and libvulkan1 (lavapipe) for the wgpu tests," >&2
    echo "or run plain 'cargo test --release --workspace' (wgpu tests then say SKIPPED)" >&2
    exit 1
  fi
fi
export GIDD_REQUIRE_WGPU=1
# Mesa complains on stderr without a runtime dir; give it a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"
  chmod 700 "$XDG_RUNTIME_DIR"
  export XDG_RUNTIME_DIR
fi
skipped=target/gidd-skipped.txt
rm -f "$skipped"
# --no-fail-fast: one failing test binary does not hide the others' results.
cargo test --release --workspace --no-fail-fast "$@"
if [ -s "$skipped" ]; then
  echo "SKIPPED tests (and how to run them):"
  cat "$skipped"
fi
