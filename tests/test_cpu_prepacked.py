"""The cpu backend packs a GEMM's constant B once at create (ait::pack_gemm_b) and frees the
original where nothing else reads it; and libraries built with kernel timing report each
kernel's time."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import aitrace as ait
from conftest import assert_close, random_array

pytestmark = pytest.mark.skipif("cpu" not in ait.backends.available(), reason="no C++ compiler")
HALF_OR_FLOAT = [ait.float32, ait.float16, ait.bfloat16]


def run_both(fn, *args):
    """(cpu result, reference result, generated source)."""
    f = ait.jit(fn, backend="cpu")
    out = f(*args)
    ref = ait.jit(fn, backend="reference")(*args)
    return out, ref, f.lower(*args).source


@given(m=st.integers(1, 40), k=st.integers(1, 450), n=st.integers(1, 300),
       dtype=st.sampled_from(HALF_OR_FLOAT), layout=st.sampled_from(["kn", "nk", "slice"]),
       seed=st.integers(0, 2**16))
def test_constant_b_is_packed_at_create(m, k, n, dtype, layout, seed):
    """Plain [K, N], transposed ([N, K] read as w.T: K-contiguous columns) and a column slice
    of a wider constant (a view with an offset): the same numbers as the reference."""
    rng = np.random.default_rng(seed)
    x = random_array(rng, (m, k), dtype)
    if layout == "kn":
        w = random_array(rng, (k, n), dtype)
        fn = lambda x: x @ w  # noqa: E731
    elif layout == "nk":
        wt = random_array(rng, (n, k), dtype)
        fn = lambda x: ait.linear(x, wt)  # noqa: E731
    else:
        wide = random_array(rng, (k, n + 5), dtype)
        fn = lambda x: x @ wide[:, 3:3 + n]  # noqa: E731
    out, ref, src = run_both(fn, x)
    assert "_pack_b(m->consts)" in src
    assert_close(out, ref, dtype, rtol=3e-2 if dtype != ait.float32 else 1e-4,
                 atol=3e-2 if dtype != ait.float32 else 1e-4)


@pytest.mark.parametrize("m,k,n", [(64, 400, 4200), (130, 1000, 70), (29, 8, 4100)])
def test_packed_b_across_column_and_depth_blocks(m, k, n):
    """Wider than one column block (NC = 4096), several depth blocks, threads splitting N: every
    block reads its part of the whole packed B."""
    rng = np.random.default_rng(m + k + n)
    w = rng.standard_normal((k, n)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    out, _, src = run_both(lambda x: x @ w, x)
    assert "_pack_b(m->consts)" in src
    assert_close(out, x.astype(np.float64) @ w, rtol=1e-4, atol=1e-3)


def test_conv_weight_packed_where_the_gemm_paths_read_it():
    """1x1 and im2col convs read the weight packed at create; a Winograd conv gets none."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 9, 9, 24)).astype(np.float32)
    w1 = rng.standard_normal((40, 1, 1, 24)).astype(np.float32)      # pointwise
    w3 = rng.standard_normal((16, 3, 3, 40)).astype(np.float32)      # 3x3 stride 2: im2col
    w5 = rng.standard_normal((16, 3, 3, 16)).astype(np.float32)      # 3x3 stride 1 on 5x5: few tiles
    fn = lambda x: ait.conv2d(ait.relu(ait.conv2d(ait.conv2d(x, w1), w3, stride=2, padding=1)), w5, padding=1)  # noqa: E731
    out, ref, src = run_both(fn, x)
    assert src.count("_pack_w(m->consts)") == 3 and "conv2d_takes_packed_weight" in src
    assert_close(out, ref, rtol=1e-4, atol=1e-3)


def test_original_weight_is_freed_only_where_nothing_else_reads_it():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 48)).astype(np.float32)
    x = rng.standard_normal((16, 64)).astype(np.float32)
    _, _, only_gemm = run_both(lambda x: ait.relu(x @ w), x)
    assert "std::free(m->consts[0])" in only_gemm
    xs = rng.standard_normal((64, 64)).astype(np.float32)
    out, ref, returned = run_both(lambda x: (x @ w, w * x[:, :1]), xs)   # w also read elementwise
    assert "std::free(m->consts" not in returned
    for a, b in zip(out, ref):
        assert_close(a, b, rtol=1e-5, atol=1e-4)
    out, ref, as_output = run_both(lambda x: (x @ w, w), x)        # w returned as is
    assert "std::free(m->consts" not in as_output
    np.testing.assert_array_equal(out[1], w)


def test_dynamic_rows_keep_the_original_for_thin_calls():
    """With M symbolic, a call may have M <= 4, where ait::gemm streams B itself: the original
    must stay alongside the packed copy."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((96, 40)).astype(np.float32)
    fn = lambda x: x @ w  # noqa: E731
    f = ait.jit(fn, backend="cpu", dynamic={0: {0: ait.Dim("m", max=64)}})
    src = f.lower(np.zeros((8, 96), np.float32)).source
    assert "_pack_b(m->consts)" in src and "std::free(m->consts" not in src
    for rows in (1, 3, 5, 37, 64):
        x = rng.standard_normal((rows, 96)).astype(np.float32)
        assert_close(f(x), x.astype(np.float64) @ w, rtol=1e-4, atol=1e-4)


def test_batched_matmul_with_a_shared_constant_b():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((32, 24)).astype(np.float32)
    x = rng.standard_normal((3, 5, 20, 32)).astype(np.float32)
    out, ref, src = run_both(lambda x: x @ w + 1.0, x)
    assert "_pack_b(m->consts)" in src
    assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_runtime_b_is_not_packed_at_create():
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((20, 30)).astype(np.float32), rng.standard_normal((30, 10)).astype(np.float32))
    out, ref, src = run_both(lambda a, b: a @ b, a, b)
    assert "_pack_b" not in src
    assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_kernel_times_per_kernel_and_reset():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((128, 128)).astype(np.float32)
    fn = lambda x: ait.softmax(ait.gelu(x @ w), axis=-1)  # noqa: E731
    x = rng.standard_normal((64, 128)).astype(np.float32)
    f = ait.jit(fn, backend="cpu", kernel_times=True)
    low = f.lower(x)
    assert "AIT_TIMED(0, " in low.source
    for _ in range(3):
        assert_close(f(x), ait.jit(fn, backend="reference")(x), rtol=1e-4, atol=1e-5)
    times = low.compile().kernel_times()
    assert [name for name, _ in times] == low.source_obj.info["kernels"]
    assert all(ms >= 0 for _, ms in times) and sum(ms for _, ms in times) > 0
    assert all(ms == 0 for _, ms in low.compile().kernel_times())  # read resets


def test_kernel_times_needs_a_timed_build():
    x = np.ones((4, 4), np.float32)
    f = ait.jit(lambda x: x * 2.0, backend="cpu")
    f(x)
    assert "AIT_TIMED" not in f.lower(x).source
    with pytest.raises(RuntimeError, match="built without kernel timing"):
        f.lower(x).compile().kernel_times()


def test_grouped_gemms_pass_the_prepared_weights_on():
    """Independent GEMMs of one stage become one `grouped` kernel, which hands its members the
    packed weights; a weight another member reads directly is kept."""
    rng = np.random.default_rng(5)
    w1, w2 = (rng.standard_normal((48, 40)).astype(np.float32) for _ in range(2))
    x, y = (rng.standard_normal((24, 48)).astype(np.float32) for _ in range(2))
    out, ref, src = run_both(lambda x, y: (x @ w1, y @ w2), x, y)
    assert "grouped" in src and "void* const* prepared" in src
    for a, b in zip(out, ref):
        assert_close(a, b, rtol=1e-4, atol=1e-4)

