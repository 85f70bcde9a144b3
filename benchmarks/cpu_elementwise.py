"""A chain of 6 elementwise ops on 4M floats: aitrace cpu vs numpy, side by side in one run.

    python benchmarks/cpu_elementwise.py [--n 4194304] [--repeat 50]
Until the fusion pass lands (issue 4), each op is its own kernel: this measures the kernels and
the call overhead, not fusion."""
import argparse
import os
import time

import numpy as np

import aitrace as ait


def chain(x, y):
    return ait.tanh(ait.relu(x * 1.5 + y) - y * 0.5) * x


def chain_np(x, y):
    return np.tanh(np.maximum(x * 1.5 + y, 0) - y * 0.5) * x


def median_ms(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4 * 1024 * 1024)
    p.add_argument("--repeat", type=int, default=50)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(a.n).astype(np.float32), rng.standard_normal(a.n).astype(np.float32)
    f = ait.jit(chain, backend="cpu")
    np.testing.assert_allclose(f(x, y), chain_np(x, y), rtol=1e-5, atol=1e-5)
    t_ait, t_np = median_ms(lambda: f(x, y), a.repeat), median_ms(lambda: chain_np(x, y), a.repeat)
    print(f"threads={os.environ.get('OMP_NUM_THREADS', os.cpu_count())} n={a.n} kernels={len(f.lower(x, y).source_obj.info['kernels'])}")
    print(f"aitrace cpu {t_ait:.2f} ms   numpy {t_np:.2f} ms   speedup {t_np / t_ait:.2f}x")


if __name__ == "__main__":
    main()
