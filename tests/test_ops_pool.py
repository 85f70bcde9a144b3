"""max_pool2d / avg_pool2d / global_avg_pool2d (NHWC) against independent loops."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core import shapes
from conftest import FLOAT_DTYPES, assert_close, random_array

# `backend` is a function-scoped fixture holding only a name: safe to share across examples
fixture_ok = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ---------------------------------------------------------------- independent numpy formulation
def ref_pool(x, kernel_size, stride, padding, mode, count_include_pad=True):
    """Explicit loops over output positions; each window clipped to the real input. Max pooling
    ignores the padding (it is -inf); average pooling divides by the kernel area, or by the
    number of real inputs when count_include_pad is False."""
    x = x.astype(np.float64)
    (kh, kw), (ph, pw) = pair(kernel_size), pair(padding)
    sh, sw = pair(kernel_size if stride is None else stride)
    n, h, w, c = x.shape
    out_rows = [r for r in range(0, h + 2 * ph - kh + 1, sh)]  # window starts in padded coords
    out_cols = [s for s in range(0, w + 2 * pw - kw + 1, sw)]
    out = np.zeros((n, len(out_rows), len(out_cols), c))
    for a, r in enumerate(out_rows):
        for b, s in enumerate(out_cols):
            r0, r1 = max(r - ph, 0), min(r - ph + kh, h)
            s0, s1 = max(s - pw, 0), min(s - pw + kw, w)
            win = x[:, r0:r1, s0:s1, :]
            if mode == "max":
                out[:, a, b, :] = win.max(axis=(1, 2))
            else:
                div = kh * kw if count_include_pad else (r1 - r0) * (s1 - s0)
                out[:, a, b, :] = win.sum(axis=(1, 2)) / div
    return out


# ---------------------------------------------------------------- strategies
@st.composite
def pool_cases(draw):
    k = draw(st.sampled_from([1, 2, 3, 4, (2, 3), (3, 1), (1, 2)]))
    kh, kw = pair(k)
    stride = draw(st.sampled_from([None, 1, 2, 3, (1, 2), (2, 1)]))
    padding = draw(st.sampled_from([0, 1, (0, 1), (1, 0), 2]))
    ph, pw = pair(padding)
    ph, pw = min(ph, kh // 2), min(pw, kw // 2)  # torch: padding at most half the kernel
    padding = (ph, pw) if not isinstance(padding, int) or ph != pw else ph
    h = draw(st.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + 6))
    w = draw(st.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + 6))
    return dict(dtype=draw(st.sampled_from(FLOAT_DTYPES)), shape=(draw(st.integers(1, 2)), h, w,
                draw(st.integers(1, 4))), kernel_size=k, stride=stride, padding=padding,
                count_include_pad=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


def _kwargs(case):
    kw = dict(kernel_size=case["kernel_size"], padding=case["padding"])
    if case["stride"] is not None:
        kw["stride"] = case["stride"]
    return kw


@fixture_ok
@given(case=pool_cases())
def test_max_pool2d_matches_loops(backend, case):
    x = random_array(np.random.default_rng(case["seed"]), case["shape"], case["dtype"])
    kw = _kwargs(case)
    y = ait.jit(lambda x: ait.max_pool2d(x, **kw), backend=backend)(x)
    assert y.dtype == case["dtype"]
    expected = ref_pool(x, case["kernel_size"], case["stride"], case["padding"], "max")
    assert_close(y, expected, case["dtype"], rtol=0, atol=0)  # max is exact


@fixture_ok
@given(case=pool_cases())
def test_avg_pool2d_matches_loops(backend, case):
    x = random_array(np.random.default_rng(case["seed"]), case["shape"], case["dtype"])
    kw = _kwargs(case)
    cip = case["count_include_pad"]
    y = ait.jit(lambda x: ait.avg_pool2d(x, count_include_pad=cip, **kw), backend=backend)(x)
    assert y.dtype == case["dtype"]
    expected = ref_pool(x, case["kernel_size"], case["stride"], case["padding"], "avg", cip)
    assert_close(y, expected, case["dtype"])


def test_max_pool2d_all_negative_ignores_padding(backend):
    x = -np.arange(1, 1 + 1 * 3 * 3 * 2, dtype=np.float32).reshape(1, 3, 3, 2)
    y = ait.jit(lambda x: ait.max_pool2d(x, 3, stride=1, padding=1), backend=backend)(x)
    assert y.shape == (1, 3, 3, 2) and np.isfinite(y).all() and (y < 0).all()
    np.testing.assert_array_equal(y[0, 0, 0], x[0, :2, :2].max(axis=(0, 1)))


def test_avg_pool2d_count_include_pad_divisors():
    x = np.ones((1, 2, 2, 1), np.float32)
    inc = ait.avg_pool2d(x, 2, stride=1, padding=1)
    exc = ait.avg_pool2d(x, 2, stride=1, padding=1, count_include_pad=False)
    np.testing.assert_allclose(inc[0, :, :, 0], [[.25, .5, .25], [.5, 1, .5], [.25, .5, .25]])
    np.testing.assert_array_equal(exc, np.ones((1, 3, 3, 1), np.float32))


def test_pool_eager_numpy_and_dtypes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6, 3))  # float64 -> float32
    y = ait.max_pool2d(x, 2)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (2, 2, 3, 3)
    assert_close(y, ref_pool(x.astype(np.float32), 2, None, 0, "max"))
    xi = rng.integers(-50, 50, (1, 4, 4, 2)).astype(np.int32)
    yi = ait.max_pool2d(xi, 3, stride=1, padding=1)  # max pooling keeps integer dtypes
    assert yi.dtype == np.int32
    np.testing.assert_array_equal(yi, ref_pool(xi, 3, 1, 1, "max"))
    ya = ait.avg_pool2d(xi, 2)  # average pooling computes in float32
    assert ya.dtype == np.float32
    assert_close(ya, ref_pool(xi, 2, None, 0, "avg"))


def test_pool_graph_params():
    sd = ait.ShapeDtype
    g = ait.trace(lambda x: (ait.max_pool2d(x, 3, 2, 1), ait.avg_pool2d(x, (2, 3), padding=(1, 0),
                                                                       count_include_pad=False)))(
        sd((1, 9, 9, 4), ait.bfloat16))
    assert [e.prim.name for e in g.eqns] == ["max_pool2d", "avg_pool2d"]
    assert g.eqns[0].params == dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))
    assert g.eqns[1].params == dict(count_include_pad=False, kernel_size=(2, 3), stride=(2, 3),
                                    padding=(1, 0))
    assert g.out_avals == [sd((1, 5, 5, 4), ait.bfloat16), sd((1, 5, 3, 4), ait.bfloat16)]
    ait.typecheck(g)


# ---------------------------------------------------------------- global average pooling
@fixture_ok
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 5)),
       dtype=st.sampled_from(FLOAT_DTYPES), keepdims=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_global_avg_pool2d(backend, shape, dtype, keepdims, seed):
    x = random_array(np.random.default_rng(seed), shape, dtype)
    y = ait.jit(lambda x: ait.global_avg_pool2d(x, keepdims=keepdims), backend=backend)(x)
    expected = np.zeros((shape[0], shape[3]))
    for i in range(shape[1]):
        for j in range(shape[2]):
            expected += x[:, i, j, :].astype(np.float64)
    expected /= shape[1] * shape[2]
    if keepdims:
        expected = expected[:, None, None, :]
    assert y.dtype == dtype
    assert_close(y, expected, dtype)


def test_global_avg_pool2d_symbolic_and_errors():
    N, H, W = ait.Dim("N"), ait.Dim("H"), ait.Dim("W")
    sd = ait.ShapeDtype
    g = ait.trace(lambda x: ait.global_avg_pool2d(x))(sd((N, H, W, 8), ait.float16))
    assert g.out_avals == [sd((N, 8), ait.float16)]
    g = ait.trace(lambda x: ait.global_avg_pool2d(x, keepdims=True))(sd((N, H, W, 8), ait.float16))
    assert g.out_avals == [sd((N, 1, 1, 8), ait.float16)]
    with pytest.raises(ValueError, match=r"global_avg_pool2d: .*rank 4.*\[2,3,4\]"):
        ait.global_avg_pool2d(np.zeros((2, 3, 4), np.float32))


# ---------------------------------------------------------------- symbolic shapes
@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_pool_symbolic_shapes(backend, op):
    N, H, W = ait.Dim("N"), ait.Dim("H"), ait.Dim("W")
    sd = ait.ShapeDtype
    fn = getattr(ait, op)
    g = ait.trace(lambda x: fn(x, 2))(sd((N, 16, 16, 3), ait.float32))
    assert g.out_avals[0].shape == (N, 8, 8, 3)
    g = ait.trace(lambda x: fn(x, 3, stride=(2, 1), padding=1))(sd((N, H, W, 3), ait.float32))
    n, oh, ow, c = g.out_avals[0].shape
    assert n == N and c == 3 and shapes.equal(ow, W)
    for size in range(1, 20):
        assert shapes.evaluate(oh, {H: size}) == (size + 2 - 3) // 2 + 1

    f = ait.jit(lambda x: fn(x, 3, stride=2, padding=1), backend=backend, dynamic={0: {0: N, 1: H, 2: W}})
    rng = np.random.default_rng(4)
    for shape in [(1, 7, 5, 2), (2, 4, 9, 2)]:
        x = random_array(rng, shape, np.float32)
        assert_close(f(x), ref_pool(x, 3, 2, 1, "max" if op == "max_pool2d" else "avg"))


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("shape, kw, exc, match", [
    ((4, 4, 3), dict(kernel_size=2), ValueError, r"{op}: .*rank 4.*\[4,4,3\]"),
    ((1, 4, 4, 3), dict(kernel_size=5), ValueError,
     r"{op}: kernel .*larger than the padded input.*\[1,4,4,3\]"),
    ((1, 4, 4, 3), dict(kernel_size=(2, 7), padding=(0, 1)), ValueError,
     r"{op}: kernel .*larger than the padded input.*\[1,4,4,3\]"),
    ((1, 4, 4, 3), dict(kernel_size=3, padding=2), ValueError,
     r"{op}: padding \(2, 2\) must be .*at most half"),
    ((1, 4, 4, 3), dict(kernel_size=2, padding=-1), ValueError, r"{op}: padding .*non-negative"),
    ((1, 4, 4, 3), dict(kernel_size=0), ValueError, r"{op}: kernel_size must be positive"),
    ((1, 4, 4, 3), dict(kernel_size=2, stride=0), ValueError, r"{op}: stride must be positive"),
    ((1, 4, 4, 3), dict(kernel_size=(1, 2, 3)), TypeError, r"{op}: kernel_size must be an int or a pair"),
])
@pytest.mark.parametrize("mode", ["eager", "traced"])
def test_pool_errors(op, shape, kw, exc, match, mode):
    fn = getattr(ait, op)
    x = np.zeros(shape, np.float32)
    with pytest.raises(exc, match=match.format(op=op)):
        if mode == "eager":
            fn(x, **kw)
        else:
            ait.trace(lambda x: fn(x, **kw))(x)


def test_max_pool2d_rejects_bool():
    with pytest.raises(TypeError, match=r"max_pool2d: boolean input bool\[1,2,2,1\]"):
        ait.max_pool2d(np.zeros((1, 2, 2, 1), bool), 2)


# ---------------------------------------------------------------- torch parity (where installed)
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@given(case=pool_cases())
def test_pool_matches_torch(torch, case):
    F = torch.nn.functional
    x = random_array(np.random.default_rng(case["seed"]), case["shape"], np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    kw = _kwargs(case)
    want = F.max_pool2d(xt, **kw).permute(0, 2, 3, 1).numpy()
    assert_close(ait.max_pool2d(x, **kw), want)
    want = F.avg_pool2d(xt, count_include_pad=case["count_include_pad"], **kw).permute(0, 2, 3, 1).numpy()
    assert_close(ait.avg_pool2d(x, count_include_pad=case["count_include_pad"], **kw), want)
