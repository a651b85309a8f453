"""Compares the loglikelihoods lm-eval logged (--log_samples) with `gidd eval --requests`.

For every loglikelihood request lm-eval made (context, continuation), `gidd eval --requests`
scores the same pair as text (prompt = bos + context, completion = continuation + eos) in a
file of its own: a one-request file draws as request 0, as the server draws the single
prompt of each of lm-eval's requests (batch_size 1), with lm-eval's seed (1234) and the
server's number of noise levels (--levels = its --num_denoising_steps).

Tolerance 1e-9 nats, absolute: the served per-token values are differences
S_c - S_(c+1) of the eval's own sums (f64), which lm-eval adds up again, so the two totals
differ only by f64 rounding in that re-summation (a few ulps of |S| ~ 1e2: ~1e-13); a
different draw, level or boundary moves a total by far more than 1e-9.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

TOL = 1e-9


def tokenize(base, text):
    req = urllib.request.Request(
        f"{base}/tokenize",
        data=json.dumps({"prompt": text, "add_special_tokens": False}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        return json.load(r)["tokens"]


def pairs(samples_dir):
    files = glob.glob(os.path.join(samples_dir, "**", "samples_gidd_mc_*.jsonl"), recursive=True)
    if not files:
        sys.exit(f"no samples_gidd_mc_*.jsonl under {samples_dir}: did lm-eval run with --log_samples?")
    out = []
    for line in open(sorted(files)[-1]):
        s = json.loads(line)
        args = s["arguments"]
        args = [args[k] for k in sorted(args, key=lambda k: int(k.rsplit("_", 1)[1]))] if isinstance(args, dict) else args
        for a, r in zip(args, s["resps"]):
            ctx, cont = (a["arg_0"], a["arg_1"]) if isinstance(a, dict) else (a[0], a[1])
            lp = r[0][0] if isinstance(r[0], (list, tuple)) else r[0]
            out.append((ctx, cont, float(lp)))
    return out


def split_like_lm_eval(ctx, cont):
    # lm-eval moves the context's trailing spaces to the continuation before encoding
    n = len(ctx) - len(ctx.rstrip())
    return (ctx[:-n], ctx[-n:] + cont) if n else (ctx, cont)


def eval_one(gidd, ck, seed, levels, ctx, cont):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "r.jsonl")
        with open(p, "w") as f:
            f.write(json.dumps({"prompt": ctx, "completion": cont}) + "\n")
        r = subprocess.run(
            [gidd, "eval", "--checkpoint", ck, "--requests", p, "--seed", str(seed),
             "--num_denoising_steps", str(levels)],
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            sys.exit(f"gidd eval failed on {ctx!r} / {cont!r}: {r.stderr}")
        return json.loads(r.stdout)["logprob"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gidd", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--levels", type=int, default=128)
    a = ap.parse_args()
    ps = pairs(a.samples)
    bad_split = 0
    for ctx, cont, _ in ps:
        c, k = split_like_lm_eval(ctx, cont)
        if tokenize(a.base, c) + tokenize(a.base, k) != tokenize(a.base, c + k):
            bad_split += 1
            print(f"tokenization merges across the boundary: {c!r} | {k!r}")
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        evals = list(ex.map(lambda p: eval_one(a.gidd, a.checkpoint, a.seed, a.levels, *split_like_lm_eval(p[0], p[1])), ps))
    worst, fails = 0.0, 0
    for (ctx, cont, lm), ev in zip(ps, evals):
        d = abs(lm - ev)
        worst = max(worst, d)
        if d > TOL:
            fails += 1
            print(f"DIFFERENT: {ctx!r} + {cont!r}: lm-eval {lm!r}, gidd eval {ev!r}, diff {d:.3e}")
    print(f"lm-eval vs gidd eval --requests: {len(ps)} loglikelihoods, worst |diff| {worst:.3e} "
          f"(tolerance {TOL:g}), {fails} beyond it; {bad_split} pairs whose tokens merge across the boundary")
    for ctx, cont, lm in ps[:3]:
        print(f"  e.g. {ctx!r} + {cont!r}: {lm!r}")
    sys.exit(1 if fails or bad_split or not ps else 0)


if __name__ == "__main__":
    main()
