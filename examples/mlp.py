"""A two-layer MLP with a symbolic batch: trace it, print the IR, compile it and check the result.

    python examples/mlp.py [--backend cpu|reference] [--batch-size 8] [--dtype float32]
"""
import argparse
import time

import numpy as np

import aitrace as ait


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="cpu", help=f"one of {ait.backends.available()} (host arrays: cpu or reference)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = p.parse_args()

    rng = np.random.default_rng(0)
    dtype = ait.core.dtypes.dtype(args.dtype)
    w1 = (rng.standard_normal((256, 64)) / 8).astype(dtype)   # [out, in], as torch's Linear
    b1 = rng.standard_normal(256).astype(dtype)
    w2 = (rng.standard_normal((10, 256)) / 16).astype(dtype)

    def mlp(x):
        h = ait.gelu(ait.linear(x, w1, b1))
        return ait.softmax(ait.linear(h, w2), axis=-1)

    batch = ait.Dim("batch", min=1, max=1024)
    print("Traced graph:")
    print(ait.trace(mlp)(ait.ShapeDtype((batch, 64), dtype)))

    f = ait.jit(mlp, backend=args.backend, dynamic={0: {0: batch}})
    x = rng.standard_normal((args.batch_size, 64)).astype(dtype)
    t0 = time.perf_counter()
    y = f(x)
    t1 = time.perf_counter()
    y = f(x)
    t2 = time.perf_counter()

    # the same network written directly in numpy, in float64
    x64 = x.astype(np.float64)
    h = x64 @ w1.T.astype(np.float64) + b1.astype(np.float64)
    h = 0.5 * h * (1 + np.vectorize(__import__("math").erf)(h / np.sqrt(2)))
    z = h @ w2.T.astype(np.float64)
    want = np.exp(z - z.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    err = float(np.max(np.abs(y.astype(np.float64) - want)))
    print(f"backend={f.backend.name} batch={args.batch_size} dtype={args.dtype}: output {y.shape} "
          f"{y.dtype}, max |error| vs numpy float64 = {err:.2e}")
    print(f"first call (trace + compile + run) {1e3 * (t1 - t0):.1f} ms, second call {1e3 * (t2 - t1):.2f} ms")
    tol = 1e-5 if args.dtype == "float32" else 2e-2
    if err > tol:
        raise SystemExit(f"error {err:.2e} above tolerance {tol}")


if __name__ == "__main__":
    main()
