#!/usr/bin/env bash
# Downloads the XLA CPU PJRT plugin (PyPI `lammps-jax-pjrt-cpu`, PJRT C API 0.115)
# into <workspace>/.xla-plugin/ and prints the path of pjrt_c_api_cpu_plugin.so.
# Tests and `gidd --backend xla` find it there, or wherever GIDD_PJRT_PLUGIN points.
# Usage: engine/xla/install-plugin.sh [VERSION]   (default: the version the tests were written against)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="$root/.xla-plugin"
version="${1:-0.11.2}"
so="$dest/lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so"
if [[ -f "$so" ]]; then
  echo "$so"
  exit 0
fi
mkdir -p "$dest"
py="$(command -v python3 || command -v python)"
"$py" -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "$dest" "lammps-jax-pjrt-cpu==$version" >&2
whl="$(ls "$dest"/lammps_jax_pjrt_cpu-*.whl | head -n 1)"
"$py" -m zipfile -e "$whl" "$dest" >&2
rm -f "$whl"
if [[ ! -f "$so" ]]; then
  echo "install-plugin.sh: $whl did not contain lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so" >&2
  exit 1
fi
echo "$so"
