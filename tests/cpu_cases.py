"""Representative graphs for every cpu lowering (shared by test_cpu_ops and the sanitizer run)."""
import numpy as np

import aitrace as ait


def cases(dtype, seed=0):
    """(name, fn, args, tolerance) for graphs covering every primitive family."""
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(np.float32).astype(dtype)  # noqa: E731
    x, y = r(2, 6, 5, 8), r(5, 8)
    w, b = r(8), r(8)
    wc, wl, q = r(4, 3, 3, 4), r(3, 8), r(2, 3, 17, 8)
    w1x1, wdw = r(5, 1, 1, 8), r(8, 3, 3, 1)  # weights are drawn once: each trace must see the same
    mask = rng.random((17, 17)) < 0.7
    tol = 1e-4 if dtype == ait.float32 else 3e-2
    return [
        ("elementwise", lambda a, c: (ait.gelu(a * 2.0 + c) - ait.exp(c), a > c,
                                      ait.where(a > 0, a, a * 0.1).astype(ait.float32)), (x, y), tol),
        ("reductions", lambda a: (a.sum((1, 2)), a.mean(-1), a.max(0), a.min((2, 3), keepdims=True),
                                  ait.argmax(a, 1)), (x,), tol * 10),
        ("softmax", lambda a: (ait.softmax(a, 1), ait.softmax(a)), (x,), tol),
        ("norms", lambda a: (ait.layer_norm(a, w, b), ait.batch_norm(a, w, np.abs(b) + 0.5, w, b)), (x,), tol * 5),
        ("pooling", lambda a: (ait.max_pool2d(a, 3, 2, 1), ait.avg_pool2d(a, 2), ait.global_avg_pool2d(a)),
         (x,), tol),
        ("conv2d", lambda a: (ait.conv2d(a, wc, stride=2, padding=1, groups=2), ait.conv2d(a, w1x1),
                              ait.conv2d(a, wdw, padding="same", groups=8)), (x,), tol * 10),
        ("attention", lambda a: (ait.attention(a, a, a, causal=True), ait.attention(a, a, a, mask=mask)),
         (q,), tol),
        ("layout", lambda a: (a.transpose(0, 3, 1, 2), a[:, 1::2, ::-1], ait.concatenate([a, a * 2], 2),
                              ait.pad(a, 1, 3.0), ait.take(a, np.array([3, 0, -1]), 1),
                              ait.broadcast_to(a[:, :1], (2, 6, 5, 8)), a.reshape(12, -1)), (x,), 0),
        ("matmul", lambda a, c: (ait.linear(a, wl), a @ c.T, a[0, 0] @ c.T), (x, y), tol * 10),
    ]


def compare(fn, args, tol):
    got = ait.jit(fn, backend="cpu")(*args)
    want = ait.jit(fn, backend="reference")(*args)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        np.testing.assert_allclose(np.asarray(g, np.float64), np.asarray(w, np.float64), rtol=tol, atol=tol)
