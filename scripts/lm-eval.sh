#!/usr/bin/env bash
# lm-evaluation-harness against `gidd serve` with its stock `local-completions` model, on the
# two local tasks of tests/lmeval/ (multiple choice by loglikelihood; generate_until), then
# every loglikelihood lm-eval logged is compared with `gidd eval --requests` on the same
# (context, continuation) pair (tests/lmeval/compare.py; tolerance there).
#
#   bash scripts/lm-eval.sh              # install if needed, train a small model if needed, run
#   bash scripts/lm-eval.sh --install    # only install lm-eval; prints the venv's python
#   GIDD_LMEVAL_CHECKPOINT=DIR bash scripts/lm-eval.sh   # a checkpoint with a tokenizer.json
#
# lm-eval (PyPI lm-eval, pinned below; it no longer pulls torch or transformers) goes into a
# venv under target/lmeval-venv. Exit 3: lm-eval could not be installed (no PyPI).
# Outputs (lm-eval's results and logged samples, the server's log) go to $GIDD_LMEVAL_OUT
# (default target/lmeval-out).
set -euo pipefail
cd "$(dirname "$0")/.."
LMEVAL_VERSION=0.4.13
venv=target/lmeval-venv
out=${GIDD_LMEVAL_OUT:-target/lmeval-out}
if [ ! -x "$venv/bin/lm_eval" ] || ! "$venv/bin/python" -c "import importlib.metadata as m, tenacity, aiohttp; assert m.version('lm_eval') == '$LMEVAL_VERSION'" 2>/dev/null; then
  start=$(date +%s)
  echo "installing lm-eval $LMEVAL_VERSION into $venv" >&2
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >&2 || ! "$venv/bin/pip" install --quiet "lm-eval[api]==$LMEVAL_VERSION" >&2; then
    echo "could not install lm-eval $LMEVAL_VERSION (python3 -m venv, pip and PyPI needed)" >&2
    rm -rf "$venv"
    exit 3
  fi
  echo "installed lm-eval in $(( $(date +%s) - start )) s" >&2
fi
if [ "${1:-}" = "--install" ]; then
  echo "$venv/bin/python"
  exit 0
fi

gidd=${GIDD_BIN:-target/release/gidd}
if [ ! -x "$gidd" ]; then
  cargo build --release -p gidd >&2
fi
mkdir -p "$out"
ck=${GIDD_LMEVAL_CHECKPOINT:-}
if [ -z "$ck" ]; then
  # the smallest model that learns a little of the embedded language: 1 layer, d 64,
  # canvas 64 (a prompt and its eos must fit), a 512-token BPE
  run=target/lmeval-run
  ck=$run/checkpoint-300
  if [ ! -f "$ck/tokenizer.json" ]; then
    "$gidd" train --num_layers 1 --hidden_size 64 --num_attn_heads 2 --max_seq_len 64 \
      --vocab_size 512 --batch_size 16 --num_samples 0 --max_training_steps 300 \
      --save_directory "$run" >&2
  fi
fi

log=$out/serve.log
# 32 noise levels a score instead of 128 (lm-eval cannot send num_denoising_steps): the
# comparison passes the same to `gidd eval`; 4x less work, the same equality
levels=32
"$gidd" serve --checkpoint "$ck" --port 0 --model_name gidd --num_denoising_steps $levels > "$out/serve.addr" 2> "$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  grep -q "^listening on " "$out/serve.addr" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$log" >&2; echo "gidd serve did not start" >&2; exit 1; }
  sleep 0.1
done
base=$(sed -n 's/^listening on //p' "$out/serve.addr")
echo "gidd serve at $base (checkpoint $ck)" >&2

# Stock local-completions. tokenizer_backend=remote: lm-eval counts context tokens with the
# server's own /tokenize; tokenized_requests=False: it sends text, which the server prefixes
# with bos as `eval --requests` does a text prompt. max_length: the model's canvas.
t=$("$venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['max_position_embeddings'])" "$ck/config.json")
rm -rf "$out/results"
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$venv/bin/lm_eval" --model local-completions \
  --model_args "model=gidd,base_url=$base/v1/completions,tokenizer_backend=remote,tokenized_requests=False,max_length=$t" \
  --tasks gidd_mc,gidd_gen --include_path tests/lmeval \
  --output_path "$out/results" --log_samples | tee "$out/table.txt"

"$venv/bin/python" tests/lmeval/compare.py --gidd "$gidd" --checkpoint "$ck" --base "$base" \
  --samples "$out/results" --seed 1234 --levels $levels
