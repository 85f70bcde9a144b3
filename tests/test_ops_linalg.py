"""matmul (numpy semantics) and linear (torch's F.linear) against float64 numpy on the same
rounded inputs; low-precision inputs accumulate in fp32, so only the output rounding shows."""
import numpy as np
import pytest
from conftest import TOLERANCE, assert_close, shapes_st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aitrace as ait

# The `backend` fixture is a plain string, the same for every example: reusing it is safe.
hsettings = settings(suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])
f32, f16, bf16, i32, i64 = ait.float32, ait.float16, ait.bfloat16, ait.int32, ait.int64
F, I = [f32, f16, bf16], [i32, i64]
S = ait.ShapeDtype
seeds = st.integers(0, 2**32 - 1)


def gen(rng, shape, dtype):
    if np.dtype(dtype) in I:
        return rng.integers(-5, 6, size=shape).astype(dtype)
    return rng.uniform(-2, 2, size=shape).astype(np.float32).astype(dtype)


def run(fn, backend, *args):
    ait.typecheck(ait.trace(fn)(*args))
    return ait.jit(fn, backend=backend)(*args)


def check_mm(actual, a, b, dtype, bias=None):
    """`actual` against matmul of the float64 inputs (+ bias); the absolute tolerance scales
    with sum |a_ik b_kj|, the size a correctly accumulated result's error is measured by."""
    A, B = np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64)
    expected, scale = np.matmul(A, B), np.matmul(np.abs(A), np.abs(B))
    if bias is not None:
        expected = expected + np.asarray(bias).astype(np.float64)
    actual = np.asarray(actual)
    assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    if np.dtype(dtype) in I:
        np.testing.assert_array_equal(actual, expected.astype(dtype))
    else:
        tol = TOLERANCE[np.dtype(dtype)]
        assert_close(actual, expected, dtype, atol=tol * max(1.0, float(np.max(scale, initial=0))))


@st.composite
def matmul_shapes(draw):
    """Shapes numpy.matmul accepts: 1-D on either side, batch dims that broadcast."""
    m, k, n = draw(st.integers(1, 6)), draw(st.integers(1, 9)), draw(st.integers(1, 6))
    batch = draw(shapes_st(0, 3, 1, 4))

    def operand_batch():
        nd = draw(st.integers(0, len(batch)))
        return tuple(1 if draw(st.booleans()) else d for d in batch[len(batch) - nd:])
    a1, b1 = draw(st.booleans()) and draw(st.booleans()), draw(st.booleans()) and draw(st.booleans())
    sa = (k,) if a1 else operand_batch() + (m, k)
    sb = (k,) if b1 else operand_batch() + (k, n)
    return sa, sb


@hsettings
@given(shapes=matmul_shapes(), dtype=st.sampled_from(F + I), seed=seeds)
def test_matmul(backend, shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = gen(rng, shapes[0], dtype), gen(rng, shapes[1], dtype)
    check_mm(run(ait.matmul, backend, a, b), a, b, dtype)
    check_mm(run(lambda x, y: x @ y, backend, a, b), a, b, dtype)
    check_mm(run(lambda x: a @ x, backend, b), a, b, dtype)  # numpy constant on the left
    check_mm(run(lambda x: x @ b, backend, a), a, b, dtype)
    check_mm(ait.matmul(a, b), a, b, dtype)  # eager


def test_matmul_1d_cases(backend):
    v, w = np.arange(4, dtype=np.float32), np.arange(4, dtype=np.float32)[::-1].copy()
    m = np.arange(12, dtype=np.float32).reshape(4, 3)
    t = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for a, b, shape in [(v, w, ()), (v, m, (3,)), (m.T.copy(), v, (3,)), (v, t.transpose(0, 2, 1).copy(), (2, 3)),
                        (t, v, (2, 3))]:
        y = run(ait.matmul, backend, a, b)
        assert y.shape == shape
        check_mm(y, a, b, f32)


@hsettings
@given(k=st.integers(1, 64), dtype=st.sampled_from([f16, bf16]), seed=seeds)
def test_low_precision_accumulates_in_fp32(backend, k, dtype, seed):
    """Long sums of low-precision products: the only rounding is the final one."""
    rng = np.random.default_rng(seed)
    a, b = gen(rng, (3, k), dtype), gen(rng, (k, 2), dtype)
    y = run(ait.matmul, backend, a, b)
    assert y.dtype == dtype
    A, B = a.astype(np.float64), b.astype(np.float64)
    exact, scale = A @ B, np.abs(A) @ np.abs(B)
    # one rounding to the output dtype (half an ulp, relative), plus fp32 accumulation error
    half_ulp = 2.0 ** (-11 if dtype == f16 else -8)
    bound = half_ulp * np.abs(exact) * 1.001 + k * 2.0 ** -24 * scale + 1e-7
    np.testing.assert_array_less(np.abs(y.astype(np.float64) - exact), bound)


def test_fp16_sum_beyond_fp16_precision(backend):
    # 2048 + 1 + 1 + ... is not representable as partial fp16 sums: fp32 accumulation keeps it
    a = np.ones((1, 4097), np.float16)
    b = np.ones((4097, 1), np.float16)
    b[0, 0] = 2048
    y = run(ait.matmul, backend, a, b)
    assert y.dtype == f16
    assert y[0, 0] == np.float16(2048 + 4096)  # 6144 is exact in fp16; fp16 partials stop at 2048


def test_int_matmul_is_exact(backend):
    a = np.array([[1, -2, 3], [4, 5, -6]], np.int32)
    b = np.array([[7, 8], [-9, 10], [11, 12]], np.int32)
    y = run(ait.matmul, backend, a, b)
    assert y.dtype == i32
    np.testing.assert_array_equal(y, [[58, 24], [-83, 10]])
    big = np.full((2, 2), 100_000, np.int64)
    y = run(ait.matmul, backend, big, big)
    assert y.dtype == i64 and (y == 2 * 10**10).all()  # no int32 (or float) round trip


def test_matmul_promotion(backend):
    a, b = np.ones((2, 3), np.float16), np.ones((3, 2), ait.bfloat16)
    assert run(ait.matmul, backend, a, b).dtype == f32  # f16 @ bf16 -> f32
    assert run(ait.matmul, backend, a, np.ones((3, 2), np.int32)).dtype == f16
    assert run(ait.matmul, backend, np.ones((2, 3), np.int32), np.ones((3, 2), np.int64)).dtype == i64
    assert run(lambda x: x @ np.ones((3, 2)), backend, a).dtype == f32  # float64 const -> f32


# ---------------------------------------------------------------- linear
@hsettings
@given(batch=shapes_st(0, 3, 1, 4), k=st.integers(1, 9), n=st.integers(1, 6),
       with_bias=st.booleans(), dtype=st.sampled_from(F), seed=seeds)
def test_linear(backend, batch, k, n, with_bias, dtype, seed):
    """torch.nn.functional.linear: y = x @ w.T + b with w [out_features, in_features]."""
    rng = np.random.default_rng(seed)
    x, w = gen(rng, batch + (k,), dtype), gen(rng, (n, k), dtype)
    bias = gen(rng, (n,), dtype) if with_bias else None
    if with_bias:
        y = run(ait.linear, backend, x, w, bias)
        y2 = run(lambda x_: ait.linear(x_, w, bias), backend, x)  # weights as constants
    else:
        y = run(ait.linear, backend, x, w)
        y2 = run(lambda x_: ait.linear(x_, w), backend, x)
    assert y.shape == batch + (n,)
    check_mm(y, x, w.T, dtype, bias)
    check_mm(y2, x, w.T, dtype, bias)
    check_mm(ait.linear(x, w, bias), x, w.T, dtype, bias)  # eager


# ---------------------------------------------------------------- errors
def test_matmul_errors():
    def raises(match, sa, sb):
        with pytest.raises(ValueError, match=match):
            ait.trace(ait.matmul)(S(sa, f32), S(sb, f32))
        with pytest.raises(ValueError):  # numpy agrees it is an error
            np.matmul(np.ones(sa), np.ones(sb))
    raises(r"matmul: contraction dims differ: \[3,4\] @ \[5,6\] \(4 vs 5\)", (3, 4), (5, 6))
    raises(r"matmul: contraction dims differ: \[3\] @ \[4\]", (3,), (4,))
    raises(r"matmul: contraction dims differ: \[3\] @ \[4,3\]", (3,), (4, 3))
    raises(r"matmul: contraction dims differ: \[2,5,3\] @ \[4\]", (2, 5, 3), (4,))
    raises(r"matmul: batch dims of \[2,2,3\] and \[3,3,2\] do not broadcast", (2, 2, 3), (3, 3, 2))
    raises(r"matmul: operands must not be scalars, got \[\] and \[3,4\]", (), (3, 4))
    with pytest.raises(ValueError, match=r"contraction dims differ: \[3,4\] @ \[5,6\]"):
        ait.matmul(np.ones((3, 4), np.float32), np.ones((5, 6), np.float32))  # eager


def test_linear_errors():
    x = S((2, 4), f32)
    with pytest.raises(ValueError, match=r"linear: weight must be \[out_features, in_features\], got \[3,4,1\]"):
        ait.trace(ait.linear)(x, S((3, 4, 1), f32))
    with pytest.raises(ValueError, match=r"linear: weight .*got \[4\]"):
        ait.trace(ait.linear)(x, S((4,), f32))
    with pytest.raises(ValueError, match=r"linear: input \[2,4\] has 4 features, weight \[3,5\] expects 5"):
        ait.trace(ait.linear)(x, S((3, 5), f32))
    with pytest.raises(ValueError, match=r"linear: bias must be \[3\], got \[4\]"):
        ait.trace(ait.linear)(x, S((3, 4), f32), S((4,), f32))
    with pytest.raises(ValueError, match=r"linear: bias must be \[3\], got \[1,3\]"):
        ait.trace(ait.linear)(x, S((3, 4), f32), S((1, 3), f32))
    with pytest.raises(ValueError, match="linear: input must have at least one dim"):
        ait.trace(ait.linear)(S((), f32), S((3, 4), f32))


# ---------------------------------------------------------------- symbolic shapes
def test_symbolic_shapes():
    B, T = ait.Dim("B"), ait.Dim("T")
    w = np.ones((8, 3), np.float32)
    g = ait.trace(lambda x: x @ w)(S((B, 8), f32))
    assert g.out_avals == [S((B, 3), f32)]
    assert [e.prim.name for e in g.eqns] == ["matmul"]
    assert ait.trace(lambda x: x @ np.ones(8, np.float32))(S((B, 8), f32)).out_avals == [S((B,), f32)]
    assert ait.trace(ait.matmul)(S((B, T, 8), f16), S((8, 2), f16)).out_avals == [S((B, T, 2), f16)]
    assert ait.trace(ait.matmul)(S((B, 1, T, 8), bf16), S((4, 8, T), bf16)).out_avals == \
        [S((B, 4, T, T), bf16)]
    assert ait.trace(ait.matmul)(S((4, B), f32), S((B, 2), f32)).out_avals == [S((4, 2), f32)]
    assert ait.trace(lambda q, k: q @ k.transpose(0, 2, 1))(S((B, T, 8), f32), S((B, T, 8), f32)) \
        .out_avals == [S((B, T, T), f32)]
    lin = ait.trace(lambda x: ait.linear(x, np.ones((3, 8), np.float16), np.ones(3, np.float16)))
    assert lin(S((B, 8), f16)).out_avals == [S((B, 3), f16)]
    assert lin(S((B, T, 8), f16)).out_avals == [S((B, T, 3), f16)]
    with pytest.raises(ValueError, match=r"matmul: contraction dims differ: \[B,8\] @ \[7,3\]"):
        ait.trace(lambda x: x @ np.ones((7, 3), np.float32))(S((B, 8), f32))
    with pytest.raises(ValueError, match=r"matmul: contraction dims differ: \[4,B\] @ \[T,2\]"):
        ait.trace(ait.matmul)(S((4, B), f32), S((T, 2), f32))
    with pytest.raises(ValueError, match=r"linear: input \[B,7\] has 7 features"):
        lin(S((B, 7), f16))


def test_dynamic_batch_runs(backend):
    B = ait.Dim("B", max=64)
    rng = np.random.default_rng(0)
    w, bias = gen(rng, (5, 8), f32), gen(rng, (5,), f32)
    f = ait.jit(lambda x: ait.linear(x, w, bias), backend=backend, dynamic={0: {0: B}})
    for n in (1, 7, 33):
        x = gen(rng, (n, 8), f32)
        check_mm(f(x), x, w.T, f32, bias)
