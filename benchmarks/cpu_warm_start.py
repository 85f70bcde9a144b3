"""Cold and warm compile of one graph in fresh processes (the disk cache's job).

    python benchmarks/cpu_warm_start.py
Runs the same script three times in new processes against one new cache directory: the first
builds everything (precompiled kernels and header included), the second and third find it all."""
import os
import subprocess
import sys
import tempfile
import time

SCRIPT = """
import time, numpy as np
t0 = time.perf_counter()
import aitrace as ait
w = np.ones((256, 256), np.float32)
f = ait.jit(lambda x: ait.softmax(ait.gelu(x @ w + 1.0)), backend="cpu")
f(np.ones((8, 256), np.float32))
print(f"{time.perf_counter() - t0:.3f}")
"""


def main():
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, AITRACE_CACHE_DIR=d, AITRACE_PROGRESS="0")
        for label in ("cold", "warm", "warm"):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                                 check=True).stdout.strip()
            print(f"{label}: import + trace + compile + first call {float(out):.2f} s "
                  f"(process wall {time.perf_counter() - t:.2f} s)")


if __name__ == "__main__":
    main()
