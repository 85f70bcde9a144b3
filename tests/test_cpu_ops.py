"""Every cpu lowering against the reference backend, in fp32, fp16 and bf16."""
import pytest

import aitrace as ait
from cpu_cases import cases, compare

pytestmark = pytest.mark.skipif("cpu" not in ait.backends.available(), reason="no C++ compiler")
NAMES = [c[0] for c in cases(ait.float32)]


@pytest.mark.parametrize("dtype", [ait.float32, ait.float16, ait.bfloat16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("name", NAMES)
def test_cpu_matches_reference(name, dtype):
    (_, fn, args, tol), = [c for c in cases(dtype) if c[0] == name]
    compare(fn, args, tol)


def test_dynamic_batch_matmul_and_softmax():
    import numpy as np
    B = ait.Dim("B", min=1, max=32)
    w = np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)
    fn = lambda a: ait.softmax(ait.relu(a @ w), axis=-1)  # noqa: E731
    f, ref = ait.jit(fn, backend="cpu", dynamic={0: {0: B}}), ait.jit(fn, backend="reference")
    for n in (1, 5, 32):
        a = np.random.default_rng(n).standard_normal((n, 3, 16)).astype(np.float32)
        np.testing.assert_allclose(f(a), ref(a), rtol=1e-5, atol=1e-6)
