#!/usr/bin/env python3
"""torch.matmul bf16 (oneDNN) GFLOP per CPU-second on ONE thread, over the shapes of
`GemmShape::bench_ladder` (same names), for side-by-side runs with gemm_cputime.rs on a
machine shared with other work (thread CPU time, best call over ~1 CPU-second per shape).
Optional tooling, not on the product path. Usage: PY gemm_torch_cputime.py [SHAPE-SUBSTRING]
"""
import json
import sys
import time

import torch


def ladder():
    out = [(f"{n}x{n}x{n}", n, n, n, False, False) for n in (256, 512, 1024, 2048)]
    t = 2048
    for n, k in ((256, 256), (1024, 256), (4096, 256), (256, 1024)):
        out.append((f"{t}x{n}x{k} (model)", t, n, k, False, True))
        out.append((f"{t}x{k}x{n} (model dX)", t, k, n, False, False))
        out.append((f"{n}x{k}x{t} (model dW)", n, k, t, True, False))
    return out


def main():
    torch.set_num_threads(1)
    filt = sys.argv[1] if len(sys.argv) > 1 else ""
    g = torch.Generator().manual_seed(0)
    for name, m, n, k, ta, tb in ladder():
        if filt not in name:
            continue
        a = torch.randn(*((k, m) if ta else (m, k)), generator=g).bfloat16()
        b = torch.randn(*((n, k) if tb else (k, n)), generator=g).bfloat16()
        a = a.t() if ta else a
        b = b.t() if tb else b
        torch.matmul(a, b)
        best, start, calls = float("inf"), time.thread_time(), 0
        while calls < 3 or time.thread_time() - start < 1.0:
            t0 = time.thread_time()
            torch.matmul(a, b)
            best = min(best, time.thread_time() - t0)
            calls += 1
        gf = 2.0 * m * n * k / best / 1e9
        print(json.dumps(dict(kernel="torch_matmul", dtype="bf16", shape=name, gflops_per_cpu_s=round(gf, 1))))


if __name__ == "__main__":
    main()
