"""Shared test helpers: the backends to run on, tolerances by dtype, hypothesis strategies."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import aitrace as ait

# GEMM-config profiling compiles and times ~7 candidates per new GEMM size: tests use the
# heuristic unless they turn it on (tests/test_cuda_profiler.py).
os.environ.setdefault("AITRACE_PROFILE", "0")

settings.register_profile("ci", max_examples=int(os.environ.get("AITRACE_HYPOTHESIS_EXAMPLES", 20)),
                          deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("ci")

# Host backends every op test runs on; GPU backends have their own `cuda`-marked tests.
HOST_BACKENDS = [b for b in ait.backends.available() if b in ("reference", "cpu")]
FLOAT_DTYPES = [ait.float32, ait.float16, ait.bfloat16]
TOLERANCE = {ait.float32: 1e-5, ait.float16: 1e-2, ait.bfloat16: 1e-2}


@pytest.fixture(params=HOST_BACKENDS)
def backend(request):
    return request.param


def pytest_collection_modifyitems(config, items):
    from aitrace.backends.cuda import gpu_arch
    have_gpu = "cuda" in ait.backends.available() and gpu_arch() is not None  # nvcc alone: build only
    for item in items:
        if "cuda" in item.keywords and not have_gpu:
            item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU and nvcc"))


def assert_close(actual, expected, dtype=None, rtol=None, atol=None):
    """Compare in float64 with the tolerance of `dtype` (default: expected's dtype)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    dtype = np.dtype(dtype or actual.dtype)
    tol = TOLERANCE.get(dtype, 0)
    rtol = tol if rtol is None else rtol
    atol = tol if atol is None else atol
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if tol == 0 and rtol == 0 and atol == 0:
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64),
                                   rtol=rtol, atol=atol)


def shapes_st(min_dims=1, max_dims=4, min_side=1, max_side=7):
    return st.lists(st.integers(min_side, max_side), min_size=min_dims,
                    max_size=max_dims).map(tuple)


def random_array(rng, shape, dtype, low=-2.0, high=2.0):
    """Random data of any aitrace dtype (ints in [-5, 5], bools half True)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-5, 6, size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(np.float32).astype(dtype)
