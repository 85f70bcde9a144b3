"""Run under AddressSanitizer + UBSan by test_cpu_runtime: a representative subset of ops,
compiled for the cpu backend with AITRACE_SANITIZE=1, each checked against the reference."""
import numpy as np

import aitrace as ait

rng = np.random.default_rng(0)


def check(fn, *args, tol=1e-4):
    got = ait.jit(fn, backend="cpu")(*args)
    want = ait.jit(fn, backend="reference")(*args)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), rtol=tol, atol=tol)


x = rng.standard_normal((3, 5, 7)).astype(np.float32)
y = rng.standard_normal((5, 7)).astype(np.float32)
check(lambda a, b: (ait.gelu(a * 2.0 + b) - ait.exp(b), a > b), x, y)
check(lambda a: ait.where(a > 0, a, a * 0.1).astype(ait.float16), x, tol=1e-2)
print("all ok")
