"""layout: transposes sink through elementwise ops and reductions and cancel; same numbers."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core.interpreter import eval_graph
from aitrace.passes.layout import layout
from conftest import assert_close

rng = np.random.default_rng(0)
W1 = (rng.standard_normal((8, 3, 3, 4)) / 6).astype(np.float32)
W2 = (rng.standard_normal((8, 3, 3, 8)) / 6).astype(np.float32)
BIAS = rng.standard_normal((8, 1, 1)).astype(np.float32)
nhwc = lambda t: ait.transpose(t, (0, 2, 3, 1))  # noqa: E731
nchw = lambda t: ait.transpose(t, (0, 3, 1, 2))  # noqa: E731


def nchw_model(x):
    """Written as PyTorch layers are: NCHW between layers, each channels-last conv wrapped."""
    h = nchw(ait.conv2d(nhwc(x), W1, padding=1))
    h = ait.relu(h + BIAS)
    h = nchw(ait.conv2d(nhwc(h), W2, padding=1)) + h
    return ait.mean(ait.relu(h), axis=(2, 3)), ait.max(h, axis=1, keepdims=True)


def names(g):
    return [e.prim.name for e in g.eqns]


def test_nchw_model_converts_its_input_once(backend):
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    g = ait.trace(nchw_model)(x)
    assert names(g).count("transpose") == 4
    out = layout(g)
    ait.typecheck(out)
    # the input once to NHWC; the keepdims max's result once back to NCHW (it is an output)
    assert names(out).count("transpose") == 2 and names(out)[0] == "transpose"
    for a, b in zip(eval_graph(out, [x]), eval_graph(g, [x])):
        assert_close(a, b, ait.float32)
    ours = ait.jit(nchw_model, backend=backend)(x)
    for a, b in zip(ours, ait.jit(nchw_model, backend="reference", passes=())(x)):
        assert_close(a, b, ait.float32)
    if backend == "cpu":
        kernels = ait.jit(nchw_model, backend="cpu").lower(x).source_obj.info["kernels"]
        assert sum("transpose" in k for k in kernels) == 2


def test_shared_transpose_is_not_duplicated():
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)

    def fn(a):
        t = ait.transpose(a, (2, 0, 1))
        return ait.relu(t), t @ np.ones((4, 2), np.float32)  # t also feeds a matmul
    out = layout(ait.trace(fn)(x))
    assert names(out) == ["transpose", "relu", "matmul"]


def test_transpose_pair_through_a_binary_op_with_a_constant_cancels():
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    c = rng.standard_normal((2,)).astype(np.float32)   # broadcast in the transposed layout
    fn = lambda a: ait.transpose(ait.tanh(ait.transpose(a, (1, 2, 0)) * c + 1.0), (2, 0, 1))  # noqa: E731
    g = ait.trace(fn)(x)
    out = layout(g)
    assert "transpose" not in names(out)
    assert_close(eval_graph(out, [x])[0], eval_graph(g, [x])[0], ait.float32)


PERMS = [(1, 0, 2), (2, 0, 1), (0, 2, 1), (1, 2, 0)]


@given(st.sampled_from(PERMS), st.lists(st.sampled_from(["relu", "exp", "addc", "mul2", "sum", "maxk"]),
                                         min_size=1, max_size=5), st.booleans())
def test_random_transpose_sinking_keeps_values(perm, ops, back):
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(np.float32)
    y = np.random.default_rng(2).standard_normal((2, 3, 4)).astype(np.float32)

    def fn(a, b):
        h = ait.transpose(a, perm) + ait.transpose(b, perm)
        for op in ops:
            if op == "relu":
                h = ait.relu(h)
            elif op == "exp":
                h = ait.exp(ait.tanh(h))
            elif op == "addc":
                h = h + np.arange(h.shape[-1], dtype=np.float32)
            elif op == "mul2":
                h = h * 2.0
            elif op == "sum" and h.ndim > 1:
                h = ait.sum(h, axis=0)
            elif op == "maxk":
                h = ait.max(h, axis=-1, keepdims=True)
        if back and h.ndim == 3:
            h = ait.transpose(h, tuple(int(i) for i in np.argsort(perm)))
        return h
    g = ait.trace(fn)(x, y)
    out = layout(g)
    ait.typecheck(out)
    assert names(out).count("transpose") <= names(g).count("transpose")
    assert_close(eval_graph(out, [x, y])[0], eval_graph(g, [x, y])[0], ait.float32)
