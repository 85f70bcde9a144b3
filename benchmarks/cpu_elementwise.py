"""A chain of 6 elementwise ops on 4M floats: aitrace cpu vs numpy, side by side in one run.

    python benchmarks/cpu_elementwise.py [--n 4194304] [--repeat 50]
The elementwise-fusion pass makes the chain one kernel: one read of x and y, one write."""
import argparse
import os

import numpy as np
from timing import median_ms

import aitrace as ait


def chain(x, y):
    return ait.tanh(ait.relu(x * 1.5 + y) - y * 0.5) * x


def chain_np(x, y):
    return np.tanh(np.maximum(x * 1.5 + y, 0) - y * 0.5) * x


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
