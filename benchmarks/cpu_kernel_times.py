"""Where a model's time goes on the cpu backend: each kernel's wall time, summed over calls
(a library built with kernel timing, AITRACE_KERNEL_TIMES=1), grouped by primitive, with each
GEMM's rate. Full-size models, fp32, random weights.

    python benchmarks/cpu_kernel_times.py [--models bert,vit,resnet] [--batch 1] [--threads 2] [--repeat 10] [--top 12]
"""
import argparse
import os
import re
import time
from collections import defaultdict

import numpy as np


def model(name, batch=1):
    from aitrace.nn.models import bert_base, resnet50, vit_base_patch16_224
    rng = np.random.default_rng(0)
    if name == "bert":
        ids = rng.integers(0, 30522, (batch, 128)).astype(np.int64)
        return "BERT-base s128", bert_base(), (ids, np.zeros_like(ids), np.ones_like(ids))
    x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
    return ("ViT-B/16", vit_base_patch16_224(), (x,)) if name == "vit" else ("ResNet-50", resnet50(), (x,))


def gemm_flops(graph) -> float:
    """2*M*N*K summed over the graph's matmul / fused_gemm eqns (static shapes)."""
    total = 0.0
    for e in graph.eqns:
        if e.prim.name == "matmul" or (e.prim.name == "fused_gemm" and e.params.get("base") == "matmul"):
            total += 2.0 * float(np.prod(e.outvars[0].aval.shape)) * e.invars[0].aval.shape[-1]
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="bert,vit,resnet")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--batch", type=int, default=1)
    a = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import aitrace as ait
    for name in a.models.split(","):
        title, m, args = model(name, a.batch)
        title += f" bs{a.batch}"
        f = ait.jit(m, backend="cpu", kernel_times=True)
        low = f.lower(*args)
        lib = low.compile()
        f(*args)
        lib.kernel_times()  # drop the warm-up call
        t0 = time.perf_counter()
        for _ in range(a.repeat):
            f(*args)
        wall = (time.perf_counter() - t0) * 1e3 / a.repeat
        times = lib.kernel_times()
        eqns = low.source_obj.info["kernel_eqns"]
        by_prim = defaultdict(lambda: [0.0, 0])
        for (k, ms), _ in zip(times, eqns):
            prim = re.sub(r"^k\d+_", "", k)
            by_prim[prim][0] += ms / a.repeat
            by_prim[prim][1] += 1
        total = sum(ms for _, ms in times) / a.repeat
        print(f"\n{title}: {wall:.2f} ms per call, kernels {total:.2f} ms ({len(times)} kernels), threads={a.threads}")
        print(f"{'primitive':24s} {'kernels':>7s} {'ms':>8s} {'share':>6s}")
        for prim, (ms, n) in sorted(by_prim.items(), key=lambda kv: -kv[1][0]):
            print(f"{prim:24s} {n:7d} {ms:8.2f} {ms / total:6.1%}")
        gemm_ms = by_prim["matmul"][0] + by_prim["fused_gemm"][0]
        if gemm_ms:
            print(f"GEMMs: {gemm_flops(low.graph) / 1e9:.2f} GFLOP in {gemm_ms:.2f} ms = "
                  f"{gemm_flops(low.graph) / gemm_ms / 1e6:.0f} GFLOP/s")
        print(f"top {a.top} kernels:")
        for (k, ms), eq in sorted(zip(times, eqns), key=lambda t: -t[0][1])[:a.top]:
            print(f"  {ms / a.repeat:7.3f} ms  {k:22s} {eq[:110]}")


if __name__ == "__main__":
    main()
