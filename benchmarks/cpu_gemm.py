"""SGEMM through ait.jit (cpu backend) vs numpy.matmul (OpenBLAS) at the same thread count.

    python benchmarks/cpu_gemm.py [--threads 2] [--sizes 256 512 1024 2048]
Each side runs in its own process: OpenBLAS's and OpenMP's thread pools busy-wait after a call
and would steal each other's cores in one process. Reported: median GFLOP/s of 3 rounds."""
import argparse
import json
import os
import subprocess
import sys
import time


def worker(side, sizes, reps):
    import numpy as np
    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        a, b = rng.standard_normal((n, n)).astype(np.float32), rng.standard_normal((n, n)).astype(np.float32)
        if side == "ait":
            import aitrace as ait
            f = ait.jit(lambda x, y: x @ y, backend="cpu")
            np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-3, atol=1e-3)
            fn = lambda: f(a, b)  # noqa: E731
        else:
            fn = lambda: a @ b  # noqa: E731
        fn()
        ts = []
        for _ in range(reps(n)):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        out[n] = 2 * n ** 3 / sorted(ts)[len(ts) // 2] / 1e9
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--worker", choices=["ait", "numpy"])
    a = p.parse_args()
    reps = lambda n: max(5, int(2e10 / (2 * n ** 3)))  # noqa: E731
    if a.worker:
        return worker(a.worker, a.sizes, reps)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads),
               AITRACE_PROGRESS="0")
    runs = {"ait": [], "numpy": []}
    for _ in range(3):
        for side in runs:
            res = subprocess.run([sys.executable, __file__, "--worker", side, "--sizes", *map(str, a.sizes)],
                                 env=env, capture_output=True, text=True, check=True)
            runs[side].append({int(k): v for k, v in json.loads(res.stdout).items()})
    print(f"threads={a.threads}")
    print(f"{'n':>6s} {'aitrace GFLOP/s':>16s} {'numpy GFLOP/s':>14s} {'ait/numpy':>10s}")
    for n in a.sizes:
        g = {s: sorted(r[n] for r in runs[s])[1] for s in runs}
        print(f"{n:6d} {g['ait']:16.1f} {g['numpy']:14.1f} {g['ait'] / g['numpy']:10.2f}")


if __name__ == "__main__":
    main()
