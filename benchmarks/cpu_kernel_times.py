"""Where a model's time goes on the cpu backend: each kernel's wall time, summed over calls
(a library built with kernel timing, AITRACE_KERNEL_TIMES=1), grouped by primitive, with each
GEMM's rate. Full-size models, fp32, random weights.

    python benchmarks/cpu_kernel_times.py [--models bert,vit,resnet] [--batch 1] [--threads 2] [--repeat 10] [--top 12]
"""
import argparse
import os
import time

import numpy as np
from timing import gemm_flops, kernel_table


def model(name, batch=1):
    from aitrace.nn.models import bert_base, resnet50, vit_base_patch16_224
    rng = np.random.default_rng(0)
    if name == "bert":
        ids = rng.integers(0, 30522, (batch, 128)).astype(np.int64)
        return "BERT-base s128", bert_base(), (ids, np.zeros_like(ids), np.ones_like(ids))
    x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
    return ("ViT-B/16", vit_base_patch16_224(), (x,)) if name == "vit" else ("ResNet-50", resnet50(), (x,))


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
        print(f"\n{title}: {wall:.3f} ms per call, threads={a.threads}")
        kernel_table(times, low.source_obj.info["kernel_eqns"], a.repeat, gemm_flops(low.graph), a.top)

if __name__ == "__main__":
    main()
