"""fuse_epilogue: elementwise work after a GEMM/conv runs in its epilogue; values unchanged."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core.interpreter import eval_graph
from aitrace.core.tracing import trace_to_graph
from aitrace.passes import run_pipeline
from conftest import assert_close

rng = np.random.default_rng(0)
W, BIAS = rng.standard_normal((24, 16)).astype(np.float32) / 4, rng.standard_normal(24).astype(np.float32)
WC = rng.standard_normal((8, 3, 3, 4)).astype(np.float32) / 4
TAILS = [lambda y, r: ait.gelu(y), lambda y, r: ait.relu(y), lambda y, r: y * 0.5, lambda y, r: y + r,
         lambda y, r: ait.gelu(y, approximate="tanh"), lambda y, r: ait.silu(y), lambda y, r: ait.sigmoid(y),
         lambda y, r: ait.tanh(y)]


def kernels(fn, *args):
    return [e.prim.name for e in ait.jit(fn, backend="reference").lower(*args).graph.eqns]


@pytest.mark.parametrize("dtype", [ait.float32, ait.float16])
def test_linear_bias_gelu_scale_residual_is_one_kernel(backend, dtype):
    x = rng.standard_normal((2, 5, 16)).astype(dtype)
    r = rng.standard_normal((2, 5, 24)).astype(dtype)
    w, b = W.astype(dtype), BIAS.astype(dtype)
    fn = lambda x, r: ait.gelu(ait.linear(x, w, b)) * 0.5 + r  # noqa: E731
    assert kernels(fn, x, r) == ["fused_gemm"]
    assert_close(ait.jit(fn, backend=backend)(x, r), ait.jit(fn, backend="reference", passes=())(x, r), dtype)
    if backend == "cpu":
        assert ait.jit(fn, backend="cpu").lower(x, r).source_obj.info["kernels"] == ["k0_fused_gemm"]


def test_conv_bias_relu_and_cast_is_one_kernel(backend):
    x = rng.standard_normal((2, 7, 7, 4)).astype(np.float32)
    fn = lambda x: ait.relu(ait.conv2d(x, WC, BIAS[:8], stride=2, padding=1)).astype(ait.float16)  # noqa: E731
    assert kernels(fn, x) == ["fused_gemm"]
    assert_close(ait.jit(fn, backend=backend)(x), ait.jit(fn, backend="reference", passes=())(x), ait.float16)


def test_not_fused_when_the_product_is_needed_elsewhere_or_broadcast_by_column():
    x = rng.standard_normal((5, 16)).astype(np.float32)
    col = rng.standard_normal((5, 1)).astype(np.float32)
    wt = np.ascontiguousarray(W.T)

    def both(x):
        y = x @ wt
        return y, ait.relu(y)
    assert kernels(both, x) == ["matmul", "relu"]
    assert kernels(lambda x: x @ wt + col, x) == ["matmul", "add"]


@given(st.lists(st.integers(0, len(TAILS) - 1), min_size=1, max_size=5), st.booleans(),
       st.sampled_from([(3, 16), (2, 3, 16), (1, 16)]))
def test_random_epilogues_keep_values(tails, with_bias, shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    r = np.random.default_rng(2).standard_normal(shape[:-1] + (24,)).astype(np.float32)

    def fn(x, r):
        y = ait.linear(x, W, BIAS if with_bias else None)
        for t in tails:
            y = TAILS[t](y, r)
        return y
    g, _ = trace_to_graph(fn, (x, r))
    f = run_pipeline(g)
    ait.typecheck(f)
    assert [e.prim.name for e in f.eqns] == ["fused_gemm"]
    assert_close(eval_graph(f, [x, r])[0], eval_graph(g, [x, r])[0], ait.float32)


def test_sum_of_two_products_fuses_into_one_gemm_only(backend):
    x = rng.standard_normal((5, 16)).astype(np.float32)
    w1, w2 = np.ascontiguousarray(W.T), np.ascontiguousarray(W.T[::-1])
    fn = lambda a, b: ait.relu(a @ w1 + b @ w2)  # noqa: E731
    g = ait.jit(fn, backend="reference").lower(x, x).graph
    ait.typecheck(g)
    assert [e.prim.name for e in g.eqns] == ["matmul", "fused_gemm"]
    assert_close(ait.jit(fn, backend=backend)(x, x), ait.jit(fn, backend="reference", passes=())(x, x), ait.float32)


def test_conv_batch_norm_relu_is_one_conv_with_folded_weights(backend):
    x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    stats = [rng.standard_normal(8).astype(np.float32) for _ in range(4)]
    stats[1] = np.abs(stats[1]) + 0.5
    fn = lambda x: ait.relu(ait.batch_norm(ait.conv2d(x, WC, padding=1), *stats))  # noqa: E731
    low = ait.jit(fn, backend=backend).lower(x)
    assert [e.prim.name for e in low.graph.eqns] == ["fused_gemm"]
    (conv,) = low.graph.eqns
    assert not any(np.array_equal(c, WC) for c in low.graph.consts)  # the weights were rescaled
    assert dict(conv.params["base_params"])["groups"] == 1 and conv.params["base"] == "conv2d"
    assert_close(ait.jit(fn, backend=backend)(x), ait.jit(fn, backend="reference", passes=())(x), ait.float32)
    if backend == "cpu":
        assert low.source_obj.info["kernels"] == ["k0_fused_gemm"]
