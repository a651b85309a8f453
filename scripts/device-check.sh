#!/usr/bin/env bash
# The device check: one call on a GPU machine (driver, PyTorch and JAX's XLA CUDA plugin; no
# Rust), given a stripped release `gidd`, in under 8 minutes; one short table printed last.
#
#   bash scripts/device-check.sh .device/gidd            # on the GPU machine: --backend cuda
#   bash scripts/device-check.sh target/release/gidd cpu # the rehearsal, on any machine
#
# Steps (each under its own time limit; a step that fails, times out or does not exist yet is
# a row of the table, never the end of the run):
#   1. gidd check --backend B                 the op conformance suite against the cpu executor
#   2. gidd audit --backend B --dtype f32     on every golden case (tests/golden/*)
#   3. gidd bench step --backend B            the tiny synthetic step, f32 and bf16
#   3b. gidd bench step --profile            the bf16 step's slowest kernel (cuda: event times)
#   4. gidd bench kernels --backend B         GEMM 256..4096, attention, softmax, rms_norm, the
#                                             loss as one-op programs (and --backend wgpu on a
#                                             cuda run: WGSL on the GPU's Vulkan driver); on cuda
#                                             attention and the loss (also at V 131072) run the
#                                             fused PTX kernels, which step 1 (gidd check) first
#                                             compares with the cpu executor: their first run
#                                             on hardware
#   5. gidd bench step --backend xla          the same step through PJRT: on a cuda run the
#                                             image's XLA CUDA plugin, in a rehearsal whatever
#                                             gidd finds ($GIDD_PJRT_PLUGIN or .xla-plugin/)
#   6. gpu_anchors.sh --only micro            PyTorch's bf16 GEMM and copy ceilings (cuda runs;
#                                             a rehearsal runs --cpu-smoke when torch is there)
# Logs and JSON go to $OUT (a temporary folder when unset). Exit status: 0 when every step
# that ran passed.
set -uo pipefail
BIN=${1:?usage: device-check.sh GIDD_BINARY [BACKEND (cuda)]}
BACKEND=${2:-cuda}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SHARED=${SHARED:-}
for s in "$ROOT/shared" "$ROOT/../shared"; do
    [ -z "$SHARED" ] && [ -f "$s/baselines/gpu_anchors.sh" ] && SHARED=$s
done
# seconds per step: the sum stays under 8 minutes with room for the table
T_CHECK=${T_CHECK:-80} T_AUDIT=${T_AUDIT:-30} T_BENCH=${T_BENCH:-45} T_KERNELS=${T_KERNELS:-30} T_XLA=${T_XLA:-75} T_ANCHORS=${T_ANCHORS:-105}
START=$(date +%s)
ROWS=()
FAILED=0

# row STEP STATUS SECONDS NOTE
row() { ROWS+=("$(printf '%-28s %-8s %5ss  %s' "$1" "$2" "$3" "$4")"); }

# run NAME LIMIT LOG CMD...: runs CMD under a time limit, logs it and adds its row (callers
# append the result to ${ROWS[-1]})
run() {
    local name=$1 limit=$2 log=$3
    shift 3
    local t0 rc status
    t0=$(date +%s)
    echo "== $name: $*" | tee -a "$OUT/device-check.log"
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    tail -n 25 "$log" | tee -a "$OUT/device-check.log"
    if [ $rc -eq 0 ]; then status=PASS
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=TIMEOUT; FAILED=1
    elif grep -q "unrecognized subcommand" "$log"; then status=MISSING
    else status=FAIL; FAILED=1
    fi
    row "$name" "$status" "$(( $(date +%s) - t0 ))" ""
    return $rc
}

# One bench-step JSON line as "ms/step, tokens/s, % of peak".
summarize() {
    python3 - "$1" <<'EOF' 2>/dev/null || echo "no result line"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
r = rows[-1]
frac = r.get("frac_peak")
print(f"{r['ms_per_step']:.1f} ms/step, {r['tokens_per_s']:.0f} tok/s" + (f", {100 * frac:.1f}% of peak" if frac else ""))
EOF
}

# The `bench kernels --json` lines as "best GEMM f32/bf16 GFLOP/s (% of peak), attention fwd".
summarize_kernels() {
    python3 - "$1" <<'EOF' 2>/dev/null || echo "no result line"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
out = []
for dt in ("f32", "bf16"):
    g = [r for r in rows if r["kernel"] == "gemm" and r["dtype"] == dt and r.get("gflops")]
    if g:
        b = max(g, key=lambda r: r["gflops"])
        f = b.get("frac_of_peak")
        out.append(f"gemm {dt} {b['gflops']:.0f} GFLOP/s at {b['shape']}" + (f" ({100 * f:.0f}%)" if f else ""))
for k, name in (("attention_fwd", "attn fwd"), ("attention_fwd+bwd", "attn fwd+bwd")):
    # the issue's bar is at head dim 128, L 2048 (cuda: the PTX flash kernels, SIMT for f32,
    # tensor cores for bf16)
    for dt in ("f32", "bf16"):
        a = [r for r in rows if r["kernel"] == k and r.get("dtype", "f32") == dt and r.get("gflops")]
        at = [r for r in a if r["shape"].endswith("L2048 D128")]
        if a:
            b = at[0] if at else max(a, key=lambda r: r["gflops"])
            out.append(f"{name} {dt} {b['gflops'] / 1e3:.2f} TFLOP/s at {b['shape']}")
kl = [r for r in rows if r["kernel"] == "diffusion_kl" and r.get("gb_s")]
if kl:
    b = max(kl, key=lambda r: int(r["shape"].split("x")[1]))
    out.append(f"loss {b['gb_s']:.0f} GB/s at {b['shape']}")
print("; ".join(out) or "no rows")
EOF
}

# The XLA CUDA plugin of the image's JAX (jax_plugins.xla_cuda13 or xla_cuda12).
xla_cuda_plugin() {
    python3 - <<'EOF' 2>/dev/null
import glob, importlib, os
for m in ("jax_plugins.xla_cuda13", "jax_plugins.xla_cuda12"):
    try:
        d = os.path.dirname(importlib.import_module(m).__file__)
    except Exception:
        continue
    so = sorted(glob.glob(os.path.join(d, "*.so")))
    if so:
        print(so[0])
        break
EOF
}

{
    echo "device check: $(date -u +%FT%TZ), backend $BACKEND, binary $BIN ($(du -h "$BIN" | cut -f1))"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$BIN" --version
} 2>&1 | tee "$OUT/device-check.log"

run "check" "$T_CHECK" "$OUT/check.log" "$BIN" check --backend "$BACKEND"

for case in tests/golden/*/; do
    case=${case%/}
    [ -f "$case/golden.safetensors" ] || continue
    log="$OUT/audit-$(basename "$case").log"
    run "audit $(basename "$case") f32" "$T_AUDIT" "$log" \
        "$BIN" audit --backend "$BACKEND" --dtype f32 --checkpoint "$case" --golden "$case/golden.safetensors"
    ROWS[-1]="${ROWS[-1]}$(grep -E "quantities, .* passed" "$log" | tail -n 1)"
done

for dtype in f32 bf16; do
    log="$OUT/bench-$BACKEND-$dtype.jsonl"
    run "bench step $BACKEND $dtype" "$T_BENCH" "$log" \
        "$BIN" bench step --backend "$BACKEND" --dtype "$dtype" --steps 5 --warmup 2
    ROWS[-1]="${ROWS[-1]}$(summarize "$log")"
done

# per-kernel event times of the bf16 step (cuda: CUDA events around each launch, no graph;
# the plain rows above replay one CUDA graph per step and print its counts in their logs)
if [ "$BACKEND" = cuda ] || [ "$BACKEND" = cpu ]; then
    log="$OUT/profile-$BACKEND-bf16.log"
    run "bench step $BACKEND bf16 --profile" "$T_BENCH" "$log" \
        "$BIN" bench step --backend "$BACKEND" --dtype bf16 --steps 3 --warmup 1 --profile
    ROWS[-1]="${ROWS[-1]}$(grep -m1 "ms/step" "$log" | sed 's/  */ /g')"
fi

KERNEL_BACKENDS=("$BACKEND")
[ "$BACKEND" = cuda ] && KERNEL_BACKENDS+=(wgpu)
for kb in "${KERNEL_BACKENDS[@]}"; do
    [ "$kb" = cpu ] && continue # the cpu table is `gidd bench kernels` without --backend
    log="$OUT/kernels-$kb.jsonl"
    run "bench kernels $kb" "$T_KERNELS" "$log" \
        "$BIN" bench kernels --backend "$kb" --json --max_seq 2048
    ROWS[-1]="${ROWS[-1]}$(summarize_kernels "$log")"
done

XLA_ARGS=()
if [ "$BACKEND" = cuda ]; then
    plugin=$(xla_cuda_plugin)
    [ -n "$plugin" ] && XLA_ARGS=(--pjrt_plugin "$plugin")
fi
if [ "$BACKEND" = cuda ] && [ ${#XLA_ARGS[@]} -eq 0 ]; then
    row "bench step xla bf16" SKIPPED 0 "no jax_plugins.xla_cuda13/12 in python3"
else
    log="$OUT/bench-xla-bf16.jsonl"
    run "bench step xla bf16" "$T_XLA" "$log" \
        "$BIN" bench step --backend xla "${XLA_ARGS[@]}" --dtype bf16 --steps 5 --warmup 2
    ROWS[-1]="${ROWS[-1]}$(summarize "$log")"
fi

if [ -z "$SHARED" ]; then
    row "gpu anchors (torch)" SKIPPED 0 "no shared/baselines/gpu_anchors.sh (set SHARED)"
elif ! python3 -c "import torch" 2>/dev/null; then
    row "gpu anchors (torch)" SKIPPED 0 "no torch in python3"
else
    ANCHOR_ARGS=(--only micro --budget-s 30 --deadline-s $((T_ANCHORS - 15)))
    [ "$BACKEND" = cuda ] || ANCHOR_ARGS+=(--cpu-smoke)
    run "gpu anchors (torch)" "$T_ANCHORS" "$OUT/anchors.log" \
        env OUT="$OUT/anchors" bash "$SHARED/baselines/gpu_anchors.sh" "${ANCHOR_ARGS[@]}"
    ROWS[-1]="${ROWS[-1]}$(grep -iE "gemm|copy" "$OUT/anchors/anchors.md" 2>/dev/null | head -n 2 | tr -s ' |' ' ' | paste -sd ';')"
fi

{
    echo
    echo "device check, backend $BACKEND: $(( $(date +%s) - START )) s; logs in $OUT"
    printf '%-28s %-8s %6s  %s\n' step status time result
    printf '%s\n' "${ROWS[@]}"
} | tee -a "$OUT/device-check.log"
exit $FAILED
