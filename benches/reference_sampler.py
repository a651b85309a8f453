#!/usr/bin/env python3
"""Sampling speed side by side: `gidd generate` vs the reference's PyTorch sampler
(`GiddForDiffusionLM.generate` of the public repo dvruette/gidd-easydel), on the same
HF checkpoint, prompts and settings, interleaved in one run.

Optional tooling (not on the product path, not in CI). The reference's code is NOT part of
this repository: pass a clone of it (`--reference DIR`); its two PyTorch files
(gidd_easydel/model/modeling_gidd_hf.py, configuration_gidd.py) are imported from there as
they are (the package's own __init__ pulls in JAX/EasyDeL, so it is bypassed).

Needs: torch, transformers, safetensors (e.g. the bench venv of ../shared/baselines plus
`pip install transformers`).

    python benches/reference_sampler.py --reference /path/to/gidd-easydel \
        --checkpoint CK --gidd target/release/gidd --repeats 3

Both sides: the same prompt ids (4 prompts of 16 random non-special ids by default), the
whole canvas after the prompt generated (`min_length = max_length`, so no row stops early at
an EOS and both generate the same number of tokens), blocks of --block_length x --steps
ancestral steps, temperature 1, the checkpoint's dtype (f32), 2 threads. Time is the
generation call only (model loading excluded on both sides): `generate()` on the reference,
the time `gidd generate` prints (after loading the checkpoint; program compilation included).
"""
import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def load_reference(ref_dir):
    """The reference's HF model class, imported from its files without its package __init__."""
    model_dir = os.path.join(ref_dir, "gidd_easydel", "model")
    files = ("configuration_gidd.py", "modeling_gidd_hf.py")
    for f in files:
        if not os.path.isfile(os.path.join(model_dir, f)):
            sys.exit(f"--reference {ref_dir}: no {os.path.join('gidd_easydel/model', f)} "
                     "(pass a clone of github.com/dvruette/gidd-easydel)")
    pkg = tempfile.mkdtemp(prefix="gidd_ref_")
    os.makedirs(os.path.join(pkg, "gidd_ref"))
    open(os.path.join(pkg, "gidd_ref", "__init__.py"), "w").close()
    for f in files:
        os.symlink(os.path.join(os.path.abspath(model_dir), f), os.path.join(pkg, "gidd_ref", f))
    sys.path.insert(0, pkg)
    from gidd_ref.configuration_gidd import GiddConfig  # noqa: E402
    from gidd_ref.modeling_gidd_hf import GiddForDiffusionLM  # noqa: E402
    return GiddConfig, GiddForDiffusionLM


def reference_child(args):
    import torch
    from safetensors.torch import load_file

    torch.set_num_threads(args.threads)
    GiddConfig, GiddForDiffusionLM = load_reference(args.reference)
    with open(os.path.join(args.checkpoint, "config.json")) as f:
        cfg = json.load(f)
    # eager attention: flex_attention compiles per shape on CPU (minutes), not what a user
    # sampling on a CPU would run
    cfg["attn_performer"] = "eager"
    cfg["torch_dtype"] = "float32"
    config = GiddConfig(**cfg)
    model = GiddForDiffusionLM(config)
    sd = load_file(os.path.join(args.checkpoint, "model.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        sys.exit(f"reference: checkpoint does not fit the model: missing {missing[:5]}, "
                 f"unexpected {unexpected[:5]}")
    model.eval()
    prompts = torch.tensor(json.loads(args.prompt_ids_json), dtype=torch.long)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    out = model.generate(
        inputs=prompts,
        max_length=args.max_length,
        min_length=args.max_length,
        temperature=1.0,
        block_length=args.block_length,
        steps=args.steps,
        sampling_method="ancestral",
        noise_schedule="cosine",
    )
    secs = time.perf_counter() - t0
    new = int(out.shape[0] * (out.shape[1] - prompts.shape[1]))
    print(json.dumps(dict(impl="reference", tokens=new, secs=secs, tokens_per_s=new / secs)))


def gidd_run(args, binary, prompts):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for p in prompts:
            f.write(json.dumps({"prompt_ids": p}) + "\n")
        pf = f.name
    cmd = [binary, "generate", "--checkpoint", args.checkpoint, "--prompts_file", pf,
           "--batch_size", str(len(prompts)), "--max_length", str(args.max_length),
           "--min_length", str(args.max_length), "--block_length", str(args.block_length),
           "--steps", str(args.steps), "--sampling_method", "ancestral",
           "--noise_schedule", "cosine", "--temperature", "1", "--seed", str(args.seed)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    os.unlink(pf)
    m = re.search(r"generated (\d+) tokens .* in ([0-9.]+)s", r.stderr)
    if r.returncode != 0 or not m:
        sys.exit(f"gidd generate failed (rc {r.returncode}): {r.stderr[-2000:]}")
    tokens, secs = int(m.group(1)), float(m.group(2))
    return dict(tokens=tokens, secs=secs, tokens_per_s=tokens / secs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="a clone of github.com/dvruette/gidd-easydel")
    ap.add_argument("--checkpoint", required=True, help="an HF checkpoint dir gidd wrote (config.json, model.safetensors)")
    ap.add_argument("--gidd", action="append", metavar="[NAME=]PATH",
                    help="a gidd binary (repeatable, e.g. gidd_before=/tmp/old/gidd; default target/release/gidd)")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--prompt_len", type=int, default=16)
    ap.add_argument("--max_length", type=int, default=0, help="tokens generated per prompt (0: the rest of the canvas)")
    ap.add_argument("--block_length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prompt_ids_json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return reference_child(args)

    with open(os.path.join(args.checkpoint, "config.json")) as f:
        cfg = json.load(f)
    canvas, vocab = cfg["max_position_embeddings"], cfg["vocab_size"]
    if args.max_length <= 0:
        args.max_length = canvas - args.prompt_len
    if args.prompt_len + args.max_length > canvas:
        sys.exit(f"--prompt_len + --max_length = {args.prompt_len + args.max_length} > the model's {canvas} positions")
    import random

    rng = random.Random(args.seed)
    prompts = [[rng.randrange(4, vocab) for _ in range(args.prompt_len)] for _ in range(args.prompts)]
    impls = []
    for g in args.gidd or ["target/release/gidd"]:
        name, _, path = g.rpartition("=")
        impls.append((name or "gidd", path))
    names = ["reference"] + [n for n, _ in impls]
    rows = []
    for rep in range(args.repeats):
        child = [sys.executable, os.path.abspath(__file__), "--child", "--prompt_ids_json", json.dumps(prompts)]
        for k in ("reference", "checkpoint", "max_length", "block_length", "steps", "threads", "seed"):
            child += [f"--{k}", str(getattr(args, k))]
        r = subprocess.run(child, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"reference sampler failed: {r.stderr[-3000:]}")
        got = [json.loads(r.stdout.strip().splitlines()[-1])]
        for name, path in impls:
            got.append(dict(gidd_run(args, path, prompts), impl=name))
        for x in got:
            x["repeat"] = rep
            rows.append(x)
            print(json.dumps(x), file=sys.stderr)
    med = {i: statistics.median(x["tokens_per_s"] for x in rows if x["impl"] == i) for i in names}
    toks = {i: sorted({x["tokens"] for x in rows if x["impl"] == i}) for i in names}
    print(f"{args.prompts} prompts of {args.prompt_len}, {args.max_length} tokens each, blocks of "
          f"{args.block_length} x {args.steps} ancestral steps, {args.threads} threads, {args.repeats} repeats "
          f"(tokens per run: {toks})")
    print("| impl | tokens/s (median) | all | vs reference |")
    print("|---|---:|---|---:|")
    for i in names:
        allv = ", ".join(f"{x['tokens_per_s']:.1f}" for x in rows if x["impl"] == i)
        print(f"| {i} | {med[i]:.1f} | {allv} | {med[i] / med['reference']:.2f}x |")


if __name__ == "__main__":
    main()
