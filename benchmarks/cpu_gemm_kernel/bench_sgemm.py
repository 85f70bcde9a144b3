"""Benchmark ait::gemm (aitrace/backends/cpu/include/ait/gemm.h) against numpy.matmul (OpenBLAS).

Builds a tiny shared library exposing `sgemm(M, N, K, A, B, C)` (row-major float32, C = A @ B)
with the CPU backend's flags, loads it through ctypes and times it and numpy.matmul at the same
thread count (OMP_NUM_THREADS == OPENBLAS_NUM_THREADS).

Timing: each library runs in its own worker process (their thread pools busy-wait after each
call, and OpenBLAS's also right after it starts, so they would steal cores from each other
inside one process); worker runs of the two
libraries alternate ROUNDS times so that load from other processes spreads over both. Each
shape gets a warm-up call and then `reps / ROUNDS` timed calls per round; reported: the median
time per call. The ait worker also checks its results against numpy.

    python benchmarks/cpu_gemm_kernel/bench_sgemm.py [--threads N] [--sizes 256 512 ...]
                                                     [--reps R] [--extra]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INCLUDE = os.path.join(HERE, "..", "..", "aitrace", "backends", "cpu", "include")
FLAGS = ["-std=c++17", "-O3", "-march=native", "-fopenmp", "-fPIC"]
ROUNDS = 3

SOURCE = r"""
#include "ait/gemm.h"
extern "C" void sgemm(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  ait::gemm(1, M, N, K, A, 0, K, 1, B, 0, N, 1, ait::StoreEpilogue<float>{C, 0, N});
}
// C[b] = A[b] @ B[b] (trans_b: B[b] stored [N, K], i.e. A @ B^T); a_bs = 0 broadcasts A
extern "C" void bgemm(int64_t batch, int64_t M, int64_t N, int64_t K, const float* A, int64_t a_bs,
                      const float* B, int trans_b, float* C) {
  if (trans_b)
    ait::gemm(batch, M, N, K, A, a_bs, K, 1, B, N * K, 1, K, ait::StoreEpilogue<float>{C, M * N, N});
  else
    ait::gemm(batch, M, N, K, A, a_bs, K, 1, B, K * N, N, 1, ait::StoreEpilogue<float>{C, M * N, N});
}
"""

# (name, batch, M, N, K, B stored transposed, A broadcast over the batch)
EXTRA = [("attn P@V", 12, 128, 64, 128, 0, 0), ("attn Q@K^T", 12, 128, 128, 64, 1, 0),
         ("attn P@V", 12, 384, 64, 384, 0, 0), ("attn Q@K^T", 12, 384, 384, 64, 1, 0),
         ("linear x@W^T", 1, 384, 768, 768, 1, 0), ("linear x@W^T", 1, 384, 3072, 768, 1, 0),
         ("linear x@W^T", 1, 384, 768, 3072, 1, 0), ("bcast A", 8, 96, 200, 150, 0, 1),
         ("gemv x@W^T", 1, 1, 4096, 1024, 1, 0), ("gemv x@W", 1, 1, 4096, 1024, 0, 0),
         ("skinny", 1, 4096, 16, 512, 0, 0)]


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--reps", type=int, default=15, help="timed calls per library and shape")
    p.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    p.add_argument("--extra", action="store_true",
                   help="also time batched / transposed / thin shapes (attention, linear layers)")
    p.add_argument("--worker", choices=["numpy", "ait"], help=argparse.SUPPRESS)
    p.add_argument("--lib", help=argparse.SUPPRESS)
    return p.parse_args()


def build(cxx: str) -> str:
    import tempfile
    d = tempfile.mkdtemp(prefix="ait_sgemm_")
    src, lib = os.path.join(d, "sgemm.cpp"), os.path.join(d, "libsgemm.so")
    with open(src, "w") as f:
        f.write(SOURCE)
    subprocess.run([cxx, *FLAGS, "-shared", "-I", INCLUDE, src, "-o", lib], check=True)
    return lib


def cases(args):
    out = [(f"{n}", 1, n, n, n, 0, 0) for n in args.sizes]
    return out + (EXTRA if args.extra else [])


def worker(args):
    """Times one library on every case; prints {case: [seconds...]} and max errors as JSON."""
    import ctypes
    import time
    import numpy as np
    use_ait = args.worker == "ait"
    if use_ait:
        lib = ctypes.CDLL(args.lib)
        fp = ctypes.POINTER(ctypes.c_float)
        lib.bgemm.argtypes = [ctypes.c_int64] * 4 + [fp, ctypes.c_int64, fp, ctypes.c_int, fp]
        lib.bgemm.restype = None
    rng = np.random.default_rng(0)
    times, errs = {}, {}
    per_round = max(1, -(-args.reps // ROUNDS))
    for i, (name, nb, m, n, k, tb, ba) in enumerate(cases(args)):
        a = rng.standard_normal((1 if ba else nb, m, k), dtype=np.float32)
        bm = rng.standard_normal((nb, n, k) if tb else (nb, k, n), dtype=np.float32)
        c = np.empty((nb, m, n), np.float32)
        if use_ait:
            pa, pb, pc = (x.ctypes.data_as(fp) for x in (a, bm, c))
            fn = lambda: lib.bgemm(nb, m, n, k, pa, 0 if ba else m * k, pb, tb, pc)
        else:
            bview = bm.transpose(0, 2, 1) if tb else bm
            fn = lambda: np.matmul(a, bview, out=c)
        reps = per_round if m * n * k < 2048 ** 3 else max(2, per_round // 2)
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
        times[i] = ts
        if use_ait:
            ref = np.matmul(a, bm.transpose(0, 2, 1) if tb else bm)
            errs[i] = float(np.max(np.abs(c - ref)) / np.max(np.abs(ref)))
    json.dump({"times": times, "errs": errs, "numpy": np.__version__, "blas": blas_name(np)}, sys.stdout)


def blas_name(np):
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas.get('version', '')}"
    except Exception:  # older numpy
        return "?"


def main():
    args = parse()
    if args.worker:
        return worker(args)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    lib = build(args.cxx)
    base = [sys.executable, os.path.abspath(__file__), "--threads", str(args.threads), "--reps",
            str(args.reps), "--sizes", *map(str, args.sizes), "--lib", lib] + (["--extra"] if args.extra else [])
    times = {"numpy": {}, "ait": {}}
    errs, info = {}, {}
    # The ait worker imports numpy only for data and the final check: one OpenBLAS thread there,
    # since a freshly started OpenBLAS pool busy-waits for a while and would steal our cores.
    envs = {"numpy": env, "ait": dict(env, OPENBLAS_NUM_THREADS="1")}
    for _ in range(ROUNDS):
        for w in ("numpy", "ait"):
            r = json.loads(subprocess.run(base + ["--worker", w], env=envs[w], check=True,
                                          capture_output=True, text=True).stdout)
            for i, ts in r["times"].items():
                times[w].setdefault(int(i), []).extend(ts)
            errs.update({int(i): e for i, e in r["errs"].items()})
            info = r
    med = lambda xs: sorted(xs)[len(xs) // 2]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"{cpu}; threads={args.threads}; numpy {info['numpy']} ({info['blas']}); "
          f"median of ~{args.reps} calls in {ROUNDS} alternating worker processes")
    print(f"{'case':<14} {'batch x M x N x K':>20} {'numpy GFLOP/s':>14} {'ait GFLOP/s':>12} "
          f"{'ait/numpy':>10} {'max rel err':>12}")
    for i, (name, nb, m, n, k, tb, ba) in enumerate(cases(args)):
        fl = 2e-9 * nb * m * n * k
        t_np, t_ait = med(times["numpy"][i]), med(times["ait"][i])
        label = "sgemm NN" if i < len(args.sizes) else name
        print(f"{label:<14} {f'{nb}x{m}x{n}x{k}':>20} {fl / t_np:>14.1f} {fl / t_ait:>12.1f} "
              f"{t_np / t_ait:>10.2f} {errs[i]:>12.2e}")
    worst = max(errs.values())
    if worst > 1e-4:
        print(f"ERROR: results differ from numpy (max rel err {worst:.2e})")
        sys.exit(1)


if __name__ == "__main__":
    main()
