"""Reductions: sum, mean, max, min, argmax, var against independent float64 numpy formulations."""

import numpy as np
import pytest
from conftest import assert_close, random_array, shapes_st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aitrace as ait

# The `backend` fixture is a plain string, the same for every example: reusing it is safe.
hsettings = settings(suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])
F, I = [ait.float32, ait.float16, ait.bfloat16], [ait.int32, ait.int64]
seeds = st.integers(0, 2**32 - 1)


@st.composite
def axis_st(draw, ndim, allow_tuple=True):
    """None, one int or a tuple of distinct ints (each written positive or negative)."""
    kinds = ["none"] + (["int"] if ndim else []) + (["tuple"] if allow_tuple else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    sign = lambda k: draw(st.sampled_from([k, k - ndim]))  # noqa: E731
    if kind == "int":
        return sign(draw(st.integers(0, ndim - 1)))
    ks = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim)) if ndim else []
    return tuple(sign(k) for k in ks)


def np_axes(axis, ndim):
    """The test's own normalization: a tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))


def jit_run(fn, backend, *args):
    return ait.jit(fn, backend=backend)(*args)


def wide(x):
    """Exact float64 (or int64) copy of the rounded inputs, where the expectation is computed."""
    x = np.asarray(x)
    return x.astype(np.int64) if x.dtype.kind in "biu" else x.astype(np.float64)


# ---------------------------------------------------------------- sum / mean / max / min
@hsettings
@given(data=st.data(), shape=shapes_st(min_dims=0), dtype=st.sampled_from(F + I + [ait.bool_]),
       keepdims=st.booleans(), seed=seeds)
def test_sum(backend, data, shape, dtype, keepdims, seed):
    axis = data.draw(axis_st(len(shape)))
    x = random_array(np.random.default_rng(seed), shape, dtype)
    y = jit_run(lambda a: ait.sum(a, axis=axis, keepdims=keepdims), backend, x)
    expected = np.sum(wide(x), axis=np_axes(axis, x.ndim), keepdims=keepdims)
    assert y.dtype == (ait.int32 if dtype == ait.bool_ else dtype)
    assert_close(y, expected, dtype=y.dtype)


@hsettings
@given(data=st.data(), shape=shapes_st(min_dims=0), dtype=st.sampled_from(F + I + [ait.bool_]),
       keepdims=st.booleans(), seed=seeds)
def test_mean(backend, data, shape, dtype, keepdims, seed):
    axis = data.draw(axis_st(len(shape)))
    x = random_array(np.random.default_rng(seed), shape, dtype)
    y = jit_run(lambda a: ait.mean(a, axis, keepdims), backend, x)
    axes = np_axes(axis, x.ndim)
    count = int(np.prod([x.shape[k] for k in axes]))
    expected = np.sum(x.astype(np.float64), axis=axes, keepdims=keepdims) / count
    assert y.dtype == (dtype if dtype in F else ait.float32)
    assert_close(y, expected, dtype=y.dtype)


@pytest.mark.parametrize("op", ["max", "min"])
@hsettings
@given(data=st.data(), shape=shapes_st(min_dims=0), dtype=st.sampled_from(F + I + [ait.bool_]),
       keepdims=st.booleans(), seed=seeds)
def test_max_min(backend, op, data, shape, dtype, keepdims, seed):
    axis = data.draw(axis_st(len(shape)))
    x = random_array(np.random.default_rng(seed), shape, dtype)
    y = jit_run(lambda a: getattr(ait, op)(a, axis=axis, keepdims=keepdims), backend, x)
    axes = np_axes(axis, x.ndim)
    # max/min written as a sort: the last/first element along the (moved, flattened) axes
    w = np.moveaxis(wide(x), axes, tuple(range(x.ndim - len(axes), x.ndim)))
    w = np.sort(w.reshape(w.shape[:x.ndim - len(axes)] + (-1,)), axis=-1)
    expected = w[..., -1] if op == "max" else w[..., 0]
    if keepdims:
        expected = expected.reshape([1 if k in axes else d for k, d in enumerate(x.shape)])
    assert y.dtype == dtype
    np.testing.assert_array_equal(wide(y), expected)  # exact: no rounding in max/min


# ---------------------------------------------------------------- argmax
def first_argmax(row):
    best = 0
    for i, v in enumerate(row):
        if v > row[best]:
            best = i
    return best


@hsettings
@given(data=st.data(), shape=shapes_st(min_dims=0), dtype=st.sampled_from(F + I + [ait.bool_]),
       keepdims=st.booleans(), seed=seeds)
def test_argmax(backend, data, shape, dtype, keepdims, seed):
    ndim = len(shape)
    axis = data.draw(st.none() | st.integers(-ndim, ndim - 1)) if ndim else None
    x = random_array(np.random.default_rng(seed), shape, dtype)  # ints/low precision: many ties
    y = jit_run(lambda a: ait.argmax(a, axis=axis, keepdims=keepdims), backend, x)
    w = wide(x)
    if axis is None:
        expected = np.array(first_argmax(w.reshape(-1).tolist()))
        if keepdims:
            expected = expected.reshape((1,) * ndim)
    else:
        k = axis % ndim
        rows = np.moveaxis(w, k, -1)
        expected = np.array([first_argmax(r) for r in rows.reshape(-1, shape[k]).tolist()],
                            dtype=np.int64).reshape(rows.shape[:-1])
        if keepdims:
            expected = np.expand_dims(expected, k)
    assert y.dtype == ait.int64
    np.testing.assert_array_equal(y, expected)


# ---------------------------------------------------------------- var
@hsettings
@given(data=st.data(), shape=shapes_st(min_dims=0), dtype=st.sampled_from(F + I),
       keepdims=st.booleans(), ddof=st.sampled_from([0, 1, 2]), seed=seeds)
def test_var(backend, data, shape, dtype, keepdims, ddof, seed):
    axis = data.draw(axis_st(len(shape)))
    x = random_array(np.random.default_rng(seed), shape, dtype)
    y = jit_run(lambda a: ait.var(a, axis=axis, keepdims=keepdims, ddof=ddof), backend, x)
    axes, w = np_axes(axis, x.ndim), x.astype(np.float64)
    n = int(np.prod([x.shape[k] for k in axes]))
    d = w - np.sum(w, axis=axes, keepdims=True) / n
    with np.errstate(all="ignore"):  # n - ddof <= 0 gives inf/nan, as numpy
        expected = np.sum(d * d, axis=axes, keepdims=keepdims) / np.float64(max(n - ddof, 0))
    assert y.dtype == (dtype if dtype in F else ait.float32)
    assert_close(y, expected, dtype=y.dtype)


def test_var_graph_is_built_from_mean_sub_mul():
    g = ait.trace(lambda x: ait.var(x, axis=(-1, 0), ddof=1))(ait.ShapeDtype((4, 5, 6), ait.float32))
    names = [e.prim.name for e in g.eqns]
    assert names == ["reduce_mean", "sub", "mul", "reduce_mean", "mul"]
    assert g.eqns[0].params == {"axes": (0, 2), "keepdims": True}
    assert g.outvars[0].aval == ait.ShapeDtype((5,), ait.float32)


# ---------------------------------------------------------------- params, graphs, symbolic shapes
def test_params_are_normalized_hashable_tuples():
    g = ait.trace(lambda x: (ait.sum(x, axis=[-1, 0]), ait.max(x, 1, keepdims=True),
                             ait.argmax(x, -2), ait.mean(x)))(ait.ShapeDtype((2, 3, 4), ait.float32))
    ps = [(e.prim.name, e.params) for e in g.eqns]
    assert ps == [("reduce_sum", {"axes": (0, 2), "keepdims": False}),
                  ("reduce_max", {"axes": (1,), "keepdims": True}),
                  ("argmax", {"axis": 1, "keepdims": False}),
                  ("reduce_mean", {"axes": (0, 1, 2), "keepdims": False})]
    for _, p in ps:
        hash(tuple(p.items()))
    assert [str(v.aval) for v in g.outvars] == ["f32[3]", "f32[2,1,4]", "i64[2,4]", "f32[]"]


def test_symbolic_shapes():
    B = ait.Dim("B")
    g = ait.trace(lambda x: (ait.sum(x, 0), x.mean(-1, keepdims=True), ait.max(x),
                             ait.argmax(x), ait.argmax(x, 0, keepdims=True), ait.var(x, 0, ddof=1),
                             ait.mean(x, 0)))(ait.ShapeDtype((B, 8), ait.float16))
    ait.typecheck(g)
    outs = [v.aval for v in g.outvars]
    assert [o.shape for o in outs] == [(8,), (B, 1), (), (), (1, 8), (8,), (8,)]
    assert [o.dtype for o in outs] == [ait.float16] * 3 + [ait.int64] * 2 + [ait.float16] * 2
    mean_eqn = g.eqns[-1]
    assert mean_eqn.prim.name == "reduce_mean" and mean_eqn.params["axes"] == (0,)


@pytest.mark.parametrize("n", [1, 3, 10])
def test_symbolic_batch_runs(n):
    """One trace over a Dim batch, the count of mean/var read at run time."""
    B = ait.Dim("B", max=64)
    f = ait.jit(lambda x: (ait.mean(x, 0), ait.var(x, 0, ddof=1), ait.sum(x), ait.argmax(x, 0)),
                backend="reference", dynamic={0: {0: B}})
    x = random_array(np.random.default_rng(n), (n, 5), ait.float32)
    m, v, s, am = f(x)
    w = x.astype(np.float64)
    assert_close(m, w.sum(0) / n)
    with np.errstate(all="ignore"):
        expected_v = ((w - w.sum(0) / n) ** 2).sum(0) / (n - 1)
    assert_close(v, expected_v)
    assert_close(s, w.sum(), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(am, [first_argmax(c) for c in w.T.tolist()])
    assert len(f._cache) == 1


def test_tracer_methods(backend):
    x = random_array(np.random.default_rng(0), (3, 4, 5), ait.float32)

    def fn(a):
        return (a.sum(), a.sum(1), a.mean((0, 2), True), a.max(-1), a.min(axis=0, keepdims=True),
                a.argmax(), a.argmax(2))
    outs = jit_run(fn, backend, x)
    w = x.astype(np.float64)
    expected = [w.sum(), w.sum(1), w.mean((0, 2), keepdims=True), w.max(-1),
                w.min(0, keepdims=True), np.argmax(w), np.argmax(w, 2)]
    for y, e in zip(outs, expected):
        assert_close(y, e, atol=1e-4)


def test_tracer_var_method(backend):
    x = random_array(np.random.default_rng(1), (3, 4), ait.float32)
    y = jit_run(lambda a: a.var(0, ddof=1), backend, x)
    assert_close(y, np.var(x.astype(np.float64), 0, ddof=1))


# ---------------------------------------------------------------- eager
def test_eager_numpy():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    s = ait.sum(x)
    assert isinstance(s, np.ndarray) and s.dtype == np.float32 and s == 66
    np.testing.assert_array_equal(ait.sum(x, 0), [12, 15, 18, 21])
    np.testing.assert_array_equal(ait.max(x, 1, keepdims=True), [[3], [7], [11]])
    np.testing.assert_array_equal(ait.min(x, -1), [0, 4, 8])
    assert ait.argmax(x) == 11 and ait.argmax(x).dtype == np.int64
    np.testing.assert_allclose(ait.var(x, 1), [1.25] * 3)
    np.testing.assert_allclose(ait.var(x, 1, ddof=1), [5 / 3] * 3, rtol=1e-6)
    b = ait.sum(np.array([True, True, False]))
    assert b.dtype == np.int32 and b == 2
    m = ait.mean(np.array([1, 2], dtype=np.int64))
    assert m.dtype == np.float32 and m == 1.5
    assert ait.sum(np.ones((2, 3), np.float64)).dtype == np.float32  # float64 canonicalized


@pytest.mark.parametrize("name", ["sum", "mean", "var"])
def test_low_precision_accumulates_in_fp32(backend, name):
    fn = getattr(ait, name)
    big = np.array([30000, 30000, -30000, -30000], np.float16)  # f16 partial sums overflow (var: of the squares)
    y = jit_run(fn, backend, big / (150 if name == "var" else 1))
    w = (big / (150 if name == "var" else 1)).astype(np.float64)
    assert y.dtype == np.float16 and np.isfinite(y)
    assert_close(y, getattr(np, name)(w), dtype=np.float16)
    steps = np.array([256] + [1] * 8, ait.bfloat16)  # 256 + 1 == 256 in bf16
    offset = np.array([1000, 1004, 1008, 1012, 1016, 1020], ait.bfloat16)  # bf16 mean: 1010 -> 1008
    for x in (steps, offset):
        y = jit_run(fn, backend, x)
        assert y.dtype == ait.bfloat16
        assert_close(y, getattr(np, name)(x.astype(np.float64)), dtype=ait.bfloat16)


def test_sum_of_empty_axis_and_var_degenerate():
    x = np.zeros((0, 3), np.float32)
    np.testing.assert_array_equal(ait.sum(x, 0), [0, 0, 0])
    assert ait.sum(x, 1).shape == (0,)
    assert np.isnan(ait.var(np.ones(1, np.float32), ddof=1))
    assert np.isinf(ait.var(np.array([1.0, 2.0], np.float32), ddof=2))


# ---------------------------------------------------------------- errors
S = ait.ShapeDtype((2, 3), ait.float32)


@pytest.mark.parametrize("fn, exc, match", [
    (lambda x: ait.sum(x, 2), ValueError, r"sum: axis 2 is out of range for operand \[2,3\]"),
    (lambda x: ait.mean(x, -3), ValueError, r"mean: axis -3 is out of range for operand \[2,3\]"),
    (lambda x: ait.max(x, (0, -2)), ValueError, r"max: repeated axis .* operand \[2,3\]"),
    (lambda x: ait.min(x, 1.0), TypeError, r"min: axis must be None, an int or a tuple"),
    (lambda x: ait.sum(x, keepdims=1), TypeError, r"sum: keepdims must be a bool"),
    (lambda x: ait.argmax(x, (0, 1)), TypeError, r"argmax: axis must be None or an int"),
    (lambda x: ait.argmax(x, 5), ValueError, r"argmax: axis 5 is out of range for operand \[2,3\]"),
    (lambda x: ait.var(x, 0, ddof="1"), TypeError, r"var: ddof must be a number"),
    (lambda x: ait.var(x, (3,)), ValueError, r"var: axis 3 is out of range for operand \[2,3\]"),
])
def test_bad_arguments(fn, exc, match):
    with pytest.raises(exc, match=match):
        ait.trace(fn)(S)
    with pytest.raises(exc, match=match):  # eager calls validate too
        fn(np.zeros((2, 3), np.float32))


def test_scalar_axis_errors():
    with pytest.raises(ValueError, match=r"sum: axis 0 is out of range for operand \[\] \(rank 0\)"):
        ait.sum(np.float32(1), 0)


@pytest.mark.parametrize("op", ["max", "min", "argmax"])
def test_empty_axis_without_identity(op):
    x = np.zeros((2, 0), np.float32)
    with pytest.raises(ValueError, match=rf"{op}: cannot reduce axis 1 of size 0 .*\[2,0\]"):
        getattr(ait, op)(x, 1)
    with pytest.raises(ValueError, match=rf"{op}: cannot reduce axis .* of size 0"):
        ait.trace(lambda a: getattr(ait, op)(a))(ait.ShapeDtype((2, 0), ait.float32))


def test_primitive_abstract_eval_errors():
    from aitrace.ops import reduction as r
    i32 = ait.ShapeDtype((2, 3), ait.int32)
    with pytest.raises(TypeError, match=r"reduce_mean: unsupported operand dtype i32\[2,3\]"):
        r.reduce_mean_p.abstract_eval(i32, axes=(0,), keepdims=False)
    with pytest.raises(TypeError, match=r"reduce_sum: unsupported operand dtype bool\[2,3\]"):
        r.reduce_sum_p.abstract_eval(ait.ShapeDtype((2, 3), ait.bool_), axes=(0,), keepdims=False)
    with pytest.raises(ValueError, match=r"reduce_max: axes \(1, 0\) must be sorted.*\[2,3\]"):
        r.reduce_max_p.abstract_eval(S, axes=(1, 0), keepdims=False)
    with pytest.raises(ValueError, match=r"reduce_min: axes \(2,\) .*\[2,3\]"):
        r.reduce_min_p.abstract_eval(S, axes=(2,), keepdims=False)
    with pytest.raises(ValueError, match=r"argmax: axis must be an int in \[0, 2\).*\[2,3\]"):
        r.argmax_p.abstract_eval(S, axis=-1, keepdims=False)
