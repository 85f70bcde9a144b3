"""Back-to-back GEMM fusion on the cpu: linear(gelu(linear(x, w1, b1)), w2, b2) with a narrow
middle, compiled with fuse_b2b (one fused_b2b_gemm kernel) and without it (two fused_gemm
kernels and the [rows, N1] middle in memory).

    python benchmarks/cpu_b2b.py [--rows 4096] [--k 768] [--mid 64] [--n 768] [--repeat 20] [--rounds 5]
Each round times both (median of --repeat calls), alternating, so a shared machine's load hits
both alike; reported: the median and the best round. OMP_NUM_THREADS sets the threads.
"""
import argparse
import os

import numpy as np
from timing import median_ms

import aitrace as ait
from aitrace.passes.fuse_b2b import fuse_b2b
from aitrace.passes.fuse_elementwise import fuse_elementwise
from aitrace.passes.fuse_epilogue import fuse_epilogue
from aitrace.passes.simplify import simplify

BASE = (simplify, fuse_elementwise, fuse_epilogue)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--k", type=int, default=768)
    p.add_argument("--mid", type=int, default=64)
    p.add_argument("--n", type=int, default=768)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is kept")
    p.add_argument("--dtype", default="float32")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    dt = np.dtype(ait.bfloat16 if a.dtype == "bfloat16" else a.dtype)
    x = rng.standard_normal((a.rows, a.k)).astype(np.float32).astype(dt)
    w1 = (rng.standard_normal((a.mid, a.k)) / np.sqrt(a.k)).astype(np.float32).astype(dt)
    w2 = (rng.standard_normal((a.n, a.mid)) / np.sqrt(a.mid)).astype(np.float32).astype(dt)
    b1, b2 = rng.standard_normal(a.mid).astype(dt), rng.standard_normal(a.n).astype(dt)

    def mlp(x):
        return ait.linear(ait.gelu(ait.linear(x, w1, b1)), w2, b2)

    fused = ait.jit(mlp, backend="cpu", passes=BASE + (fuse_b2b,))
    unfused = ait.jit(mlp, backend="cpu", passes=BASE)
    np.testing.assert_allclose(np.asarray(fused(x), np.float32), np.asarray(unfused(x), np.float32),
                               rtol=1e-2 if dt != np.float32 else 1e-4, atol=1e-2 if dt != np.float32 else 1e-4)
    flop = 2 * a.rows * a.mid * (a.k + a.n)
    print(f"threads={os.environ.get('OMP_NUM_THREADS', os.cpu_count())} x[{a.rows},{a.k}] -> {a.mid} -> {a.n} {dt}")
    # alternate the two in rounds: a shared machine's load then hits both alike
    runs = {"without fuse_b2b": (unfused, []), "with fuse_b2b": (fused, [])}
    for _ in range(a.rounds):
        for f, ts in runs.values():
            ts.append(median_ms(lambda: f(x), a.repeat))
    for name, (f, ts) in runs.items():
        ms = float(np.median(ts))
        print(f"{name:17s} kernels={f.lower(x).source_obj.info['kernels']}  median {ms:.3f} ms "
              f"({flop / ms / 1e6:.1f} GFLOP/s), best round {min(ts):.3f} ms  "
              f"(rounds: {' '.join(f'{t:.2f}' for t in ts)})")


if __name__ == "__main__":
    main()
