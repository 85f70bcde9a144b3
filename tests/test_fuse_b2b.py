"""fuse_b2b: GEMM -> elementwise -> GEMM through a small middle is one kernel; values unchanged."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core.interpreter import eval_graph
from aitrace.core.tracing import trace_to_graph
from aitrace.passes import run_pipeline
from aitrace.passes.fuse_b2b import MAX_MIDDLE, fuse_b2b
from aitrace.passes.fuse_elementwise import fuse_elementwise
from aitrace.passes.fuse_epilogue import fuse_epilogue
from aitrace.passes.simplify import simplify
from conftest import FLOAT_DTYPES, HOST_BACKENDS, assert_close, random_array

PASSES = (simplify, fuse_elementwise, fuse_epilogue, fuse_b2b)
rng = np.random.default_rng(0)


def weights(n_out, n_in, dtype=np.float32, seed=0):
    """linear's [out, in] weight scaled so outputs stay O(1), and a bias."""
    r = np.random.default_rng(seed)
    w = (r.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32).astype(dtype)
    return w, r.standard_normal(n_out).astype(np.float32).astype(dtype)


W1, B1 = weights(64, 32, seed=1)
W2, B2 = weights(48, 64, seed=2)


def mlp(x):
    return ait.linear(ait.gelu(ait.linear(x, W1, B1)), W2, B2)


def prims(fn, *args):
    g, _ = trace_to_graph(fn, args)
    f = run_pipeline(g, PASSES)
    ait.typecheck(f)
    return [e.prim.name for e in f.eqns]


def check(fn, backend, *args, dtype=None):
    """fn compiled with fuse_b2b on `backend` == fn unfused on the reference."""
    expected = ait.jit(fn, backend="reference", passes=())(*args)
    assert_close(ait.jit(fn, backend=backend, passes=PASSES)(*args), expected, dtype)


def test_mlp_is_one_kernel(backend):
    x = rng.standard_normal((2, 5, 32)).astype(np.float32)
    assert prims(mlp, x) == ["fused_b2b_gemm"]
    check(mlp, backend, x)
    if backend == "cpu":
        low = ait.jit(mlp, backend="cpu", passes=PASSES).lower(x)
        assert low.source_obj.info["kernels"] == ["k0_fused_b2b_gemm"]
        assert "ait::b2b_gemm(" in low.source and "fused_b2b_gemm[" in low.source


def test_pass_output_typechecks_and_prints_its_operands():
    g, _ = trace_to_graph(mlp, (rng.standard_normal((7, 32)).astype(np.float32),))
    f = run_pipeline(g, PASSES)
    ait.typecheck(f)
    (e,) = f.eqns
    assert e.params["n_first_extra"] == 1 and len(e.invars) == 5  # x w1 b1 w2 b2
    assert [v.aval.shape for v in e.invars] == [(7, 32), (32, 64), (64,), (64, 48), (48,)]
    assert "first_epilogue={" in str(f) and "second_epilogue={" in str(f)
    assert fuse_b2b(fuse_b2b(run_pipeline(g, PASSES[:-1]))).eqns[0].prim.name == "fused_b2b_gemm"


def test_not_fused():
    x = rng.standard_normal((5, 32)).astype(np.float32)
    wide1, wide2 = weights(1024, 32)[0], weights(48, 1024)[0]
    assert MAX_MIDDLE < 1024
    assert prims(lambda x: ait.linear(ait.relu(ait.linear(x, wide1)), wide2), x) == ["fused_gemm", "matmul"]

    def middle_returned(x):
        h = ait.gelu(ait.linear(x, W1, B1))
        return ait.linear(h, W2, B2), h
    assert prims(middle_returned, x) == ["fused_gemm", "fused_gemm"]

    def middle_reduced_too(x):  # the middle has a second, non-matmul consumer
        h = ait.gelu(ait.linear(x, W1, B1))
        return ait.linear(h, W2, B2) + ait.sum(h, axis=-1, keepdims=True)
    assert "fused_b2b_gemm" not in prims(middle_reduced_too, x)

    def middle_normalized(x):  # consumed by a non-matmul, which feeds the second GEMM
        h = ait.layer_norm(ait.linear(x, W1, B1), np.ones(64, np.float32), np.zeros(64, np.float32))
        return ait.linear(h, W2, B2)
    assert "fused_b2b_gemm" not in prims(middle_normalized, x)

    w_left = rng.standard_normal((3, 5)).astype(np.float32)
    assert "fused_b2b_gemm" not in prims(lambda x: w_left @ ait.relu(ait.linear(x, W1)), x)  # right operand
    w2_batched = rng.standard_normal((2, 64, 48)).astype(np.float32)
    assert "fused_b2b_gemm" not in prims(lambda x: ait.relu(ait.linear(x, W1)) @ w2_batched, x)
    xi = rng.integers(-3, 3, (5, 32)).astype(np.int32)
    wi1, wi2 = rng.integers(-3, 3, (32, 8)).astype(np.int32), rng.integers(-3, 3, (8, 4)).astype(np.int32)
    assert prims(lambda x: (x @ wi1) @ wi2, xi) == ["matmul", "matmul"]


EPILOGUE_CASES = {
    "both": mlp,
    "first only": lambda x: ait.linear(ait.relu(ait.linear(x, W1, B1)), W2),
    "second only": lambda x: ait.sigmoid(ait.linear(ait.linear(x, W1), W2, B2)),
    "none": lambda x: (x @ W1.T) @ W2.T,
}


@pytest.mark.parametrize("case", list(EPILOGUE_CASES))
def test_epilogue_variants(backend, case):
    x = rng.standard_normal((3, 7, 32)).astype(np.float32)
    assert prims(EPILOGUE_CASES[case], x) == ["fused_b2b_gemm"]
    check(EPILOGUE_CASES[case], backend, x)


def test_full_shaped_epilogue_operands_and_runtime_weights(backend):
    x = rng.standard_normal((2, 9, 32)).astype(np.float32)
    r1 = rng.standard_normal((2, 9, 64)).astype(np.float32)
    r2 = rng.standard_normal((2, 9, 48)).astype(np.float32)
    w1 = np.ascontiguousarray(W1.T)

    def fn(x, r1, r2, w1, w2):  # residuals by (row, column); w1 [K, N1] as given, w2 transposed
        return ait.linear(ait.silu(x @ w1 + r1) * 0.5, w2, B2) + r2
    assert prims(fn, x, r1, r2, w1, W2) == ["transpose", "fused_b2b_gemm"]
    check(fn, backend, x, r1, r2, w1, W2)


def test_middle_cast_to_another_dtype(backend):
    x = rng.standard_normal((13, 32)).astype(np.float32)
    w2 = W2.T.astype(ait.float16)
    fn = lambda x: ait.relu(ait.linear(x, W1, B1)).astype(ait.float16) @ w2  # noqa: E731
    assert prims(fn, x) == ["fused_b2b_gemm"]
    check(fn, backend, x, dtype=ait.float16)


def test_chain_of_three_fuses_the_first_pair(backend):
    w3, b3 = weights(16, 48, seed=3)
    fn = lambda x: ait.linear(ait.relu(mlp(x)), w3, b3)  # noqa: E731
    x = rng.standard_normal((130, 32)).astype(np.float32)
    assert prims(fn, x) == ["fused_b2b_gemm", "fused_gemm"]
    check(fn, backend, x)


@pytest.mark.skipif("cpu" not in HOST_BACKENDS, reason="needs the cpu backend")
def test_dynamic_rows_on_cpu():
    f = ait.jit(mlp, backend="cpu", passes=PASSES, dynamic={0: {0: ait.Dim("B", min=1, max=512)}})
    ref = ait.jit(mlp, backend="reference", passes=())
    for n in (1, 7, 130, 300):
        x = rng.standard_normal((n, 32)).astype(np.float32)
        assert_close(f(x), ref(x))
    assert f.lower(x).source_obj.info["kernels"] == ["k0_fused_b2b_gemm"]


@given(m=st.one_of(st.sampled_from([1, 7, 130]), st.integers(1, 160)), k=st.integers(1, 80),
       n1=st.one_of(st.sampled_from([1, 17, 64, MAX_MIDDLE]), st.integers(1, 96)), n2=st.integers(1, 90),
       dtype=st.sampled_from(FLOAT_DTYPES), first=st.booleans(), second=st.booleans(),
       batch=st.sampled_from([(), (2,)]))
def test_random_sizes_keep_values(m, k, n1, n2, dtype, first, second, batch):
    r = np.random.default_rng(m * 7919 + k * 31 + n1 * 7 + n2)
    x = random_array(r, batch + (m, k), dtype, -1.0, 1.0)
    w1, b1 = weights(n1, k, dtype, seed=k)
    w2, b2 = weights(n2, n1, dtype, seed=n2)

    def make(dt):
        def fn(x):
            h = ait.linear(x, w1.astype(dt), b1.astype(dt) if first else None)
            h = ait.gelu(h, approximate="tanh") if first else h
            y = ait.linear(h, w2.astype(dt))
            return ait.relu(y + b2.astype(dt)) - 0.5 * y if second else y
        return fn
    fn = make(dtype)
    g, _ = trace_to_graph(fn, (x,))
    f = run_pipeline(g, PASSES)
    ait.typecheck(f)
    assert [e.prim.name for e in f.eqns] == ["fused_b2b_gemm"]
    expected = eval_graph(g, [x])[0]
    assert_close(eval_graph(f, [x])[0], expected, dtype)  # the pass: reference values unchanged
    if "cpu" not in HOST_BACKENDS:
        return
    y = ait.jit(fn, backend="cpu", passes=PASSES)(x)
    # The kernel keeps the middle in fp32 where the unfused graph rounds it to fp16/bf16 (as
    # fused_gemm keeps its product): against the graph evaluated with an fp32 middle, the
    # dtype's tolerance; against the unfused graph itself, room for the middle's rounding too.
    g32, _ = trace_to_graph(make(np.float32), (x.astype(np.float32),))
    assert_close(y, eval_graph(g32, [x.astype(np.float32)])[0].astype(dtype), dtype)
    tol = 1e-5 if dtype == ait.float32 else 4e-2
    assert_close(y, expected, dtype, rtol=tol, atol=tol)
