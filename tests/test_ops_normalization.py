"""softmax, layer_norm, batch_norm against independent float64 numpy formulations."""
import numpy as np
import pytest
from conftest import FLOAT_DTYPES, assert_close, random_array, shapes_st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aitrace as ait

# The `backend` fixture is a plain string, the same for every example: reusing it is safe.
hsettings = settings(suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])
seeds = st.integers(0, 2**32 - 1)
eps_st = st.sampled_from([1e-5, 1e-6, 1e-3, 0.1, 1.0])


def f64(x):
    return None if x is None else np.asarray(x).astype(np.float64)


def jit_run(fn, backend, *args):
    return ait.jit(fn, backend=backend)(*args)


# ---------------------------------------------------------------- softmax
def np_softmax(x, axis):
    x = f64(x)
    z = x - x.max(axis=axis, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=axis, keepdims=True)


@hsettings
@given(data=st.data(), shape=shapes_st(), dtype=st.sampled_from(FLOAT_DTYPES),
       scale=st.sampled_from([1.0, 10.0]), seed=seeds)
def test_softmax(backend, data, shape, dtype, scale, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = random_array(np.random.default_rng(seed), shape, dtype, -2 * scale, 2 * scale)
    y = jit_run(lambda a: ait.softmax(a, axis=axis), backend, x)
    assert y.dtype == dtype
    assert_close(y, np_softmax(x, axis), dtype=dtype)


def test_softmax_default_axis_and_stability(backend):
    x = np.array([[1000.0, 1001.0, 999.0], [-1e4, -1e4, -1e4]], np.float32)
    y = jit_run(ait.softmax, backend, x)  # no overflow: the max is subtracted first
    assert np.isfinite(y).all()
    assert_close(y, np_softmax(x, -1))
    h = jit_run(ait.softmax, backend, x.astype(np.float16) / 100)  # exp(10) would overflow f16 sums
    assert h.dtype == np.float16 and np.isfinite(h).all()
    assert_close(h, np_softmax(x.astype(np.float16) / 100, -1))


# ---------------------------------------------------------------- layer_norm
def np_layer_norm(x, w, b, eps):
    x = f64(x)
    mu = x.sum(-1, keepdims=True) / x.shape[-1]
    var = ((x - mu) ** 2).sum(-1, keepdims=True) / x.shape[-1]  # biased, as torch
    y = (x - mu) / np.sqrt(var + eps)
    if w is not None:
        y = y * f64(w)
    if b is not None:
        y = y + f64(b)
    return y


@hsettings
@given(shape=shapes_st(), dtype=st.sampled_from(FLOAT_DTYPES), eps=eps_st,
       has_w=st.booleans(), has_b=st.booleans(), seed=seeds)
def test_layer_norm(backend, shape, dtype, eps, has_w, has_b, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, shape, dtype, -3, 5)
    w = random_array(rng, shape[-1:], dtype) if has_w else None
    b = random_array(rng, shape[-1:], dtype) if has_b else None
    args = [a for a in (x, w, b) if a is not None]

    def fn(*a):
        it = iter(a)
        xx = next(it)
        ww = next(it) if has_w else None
        bb = next(it) if has_b else None
        return ait.layer_norm(xx, ww, bb, eps=eps)
    y = jit_run(fn, backend, *args)
    assert y.dtype == dtype
    assert_close(y, np_layer_norm(x, w, b, eps), dtype=dtype)


def test_layer_norm_statistics(backend):
    """With no affine, every row has mean 0 and (biased) variance 1/(1 + eps/var)."""
    x = random_array(np.random.default_rng(7), (4, 6, 32), ait.float32, 10, 20)
    y = jit_run(lambda a: ait.layer_norm(a, None, None, 1e-5), backend, x)
    assert_close(y.mean(-1), np.zeros((4, 6)), atol=1e-5)
    v = f64(x).var(-1)
    assert_close(f64(y).var(-1), v / (v + 1e-5), rtol=1e-4)


# ---------------------------------------------------------------- batch_norm
def np_batch_norm(x, mean, var, w, b, eps):
    y = (f64(x) - f64(mean)) / np.sqrt(f64(var) + eps)
    if w is not None:
        y = y * f64(w)
    if b is not None:
        y = y + f64(b)
    return y


@hsettings
@given(shape=shapes_st(), dtype=st.sampled_from(FLOAT_DTYPES), eps=eps_st,
       has_w=st.booleans(), has_b=st.booleans(), seed=seeds)
def test_batch_norm(backend, shape, dtype, eps, has_w, has_b, seed):
    rng = np.random.default_rng(seed)
    c = shape[-1:]
    x = random_array(rng, shape, dtype)
    mean, var = random_array(rng, c, dtype), random_array(rng, c, dtype, 0.05, 3.0)
    w = random_array(rng, c, dtype) if has_w else None
    b = random_array(rng, c, dtype) if has_b else None
    args = [a for a in (x, mean, var, w, b) if a is not None]

    def fn(*a):
        it = iter(a)
        xx, mm, vv = next(it), next(it), next(it)
        ww = next(it) if has_w else None
        bb = next(it) if has_b else None
        return ait.batch_norm(xx, mm, vv, ww, bb, eps=eps)
    y = jit_run(fn, backend, *args)
    assert y.dtype == dtype
    assert_close(y, np_batch_norm(x, mean, var, w, b, eps), dtype=dtype)


# ---------------------------------------------------------------- fp32 compute for fp16/bf16
def test_low_precision_computes_in_fp32(backend):
    # softmax: a row whose sum of exps (70000) overflows f16
    x = np.zeros((1, 70000), np.float16)
    y = jit_run(ait.softmax, backend, x)
    assert_close(y, np_softmax(x, -1), rtol=1e-2, atol=0)
    # layer_norm: squares of f16 deviations overflow; bf16 rounds the mean 1010 to 1008
    x = np.array([[300, -300] * 4], np.float16)
    assert_close(jit_run(ait.layer_norm, backend, x), np_layer_norm(x, None, None, 1e-5))
    x = np.array([[1000, 1004, 1008, 1012, 1016, 1020]], ait.bfloat16)
    assert_close(jit_run(ait.layer_norm, backend, x), np_layer_norm(x, None, None, 1e-5))
    # batch_norm: x - mean overflows f16 (the normalized value, ~490, does not)
    x, m, v = (np.array([[a]], np.float16)[0] for a in (60000, -60000, 60000))
    y = jit_run(ait.batch_norm, backend, x[None], m, v)
    assert y.dtype == np.float16
    assert_close(y, np_batch_norm(x[None], m, v, None, None, 1e-5))


# ---------------------------------------------------------------- graphs, symbolic, eager
def test_each_is_one_primitive():
    x, v = ait.ShapeDtype((2, 3, 8), ait.float16), ait.ShapeDtype((8,), ait.float16)
    g = ait.trace(lambda x, w, b: (ait.softmax(x, 1), ait.layer_norm(x, w, None, eps=1e-3),
                                   ait.batch_norm(x, w, b, None, b)))(x, v, v)
    assert [(e.prim.name, e.params) for e in g.eqns] == [
        ("softmax", {"axis": 1}),
        ("layer_norm", {"eps": 1e-3, "has_weight": True, "has_bias": False}),
        ("batch_norm", {"eps": 1e-5, "has_weight": False, "has_bias": True})]
    assert [len(e.invars) for e in g.eqns] == [1, 2, 4]
    assert all(v.aval == x for v in g.outvars)


def test_symbolic_shapes():
    B, C = ait.Dim("B"), ait.Dim("C")
    g = ait.trace(lambda x, w: (ait.softmax(x, 0), ait.softmax(x), ait.layer_norm(x, w, w),
                                ait.batch_norm(x, w, w, w, w)))(
        ait.ShapeDtype((B, 8), ait.bfloat16), ait.ShapeDtype((8,), ait.bfloat16))
    ait.typecheck(g)
    assert all(v.aval.shape == (B, 8) and v.aval.dtype == ait.bfloat16 for v in g.outvars)
    g = ait.trace(lambda x, w: ait.layer_norm(x, w, None))(
        ait.ShapeDtype((B, 4, C), ait.float32), ait.ShapeDtype((C,), ait.float32))
    assert g.outvars[0].aval.shape == (B, 4, C)
    with pytest.raises(ValueError, match=r"layer_norm: weight must have shape \[C\].*\[B,4,C\].*\[8\]"):
        ait.trace(lambda x, w: ait.layer_norm(x, w))(
            ait.ShapeDtype((B, 4, C), ait.float32), ait.ShapeDtype((8,), ait.float32))


@pytest.mark.parametrize("n", [1, 5])
def test_symbolic_batch_runs(n):
    B = ait.Dim("B", max=16)
    f = ait.jit(lambda x, w, b: (ait.softmax(x, 0), ait.layer_norm(x, w, b)),
                backend="reference", dynamic={0: {0: B}})
    rng = np.random.default_rng(n)
    x, w, b = (random_array(rng, s, ait.float32) for s in ((n, 6), (6,), (6,)))
    s, ln = f(x, w, b)
    assert_close(s, np_softmax(x, 0))
    assert_close(ln, np_layer_norm(x, w, b, 1e-5))
    assert len(f._cache) == 1


def test_eager_numpy():
    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], np.float32)
    s = ait.softmax(x)
    assert isinstance(s, np.ndarray) and s.dtype == np.float32
    assert_close(s, np_softmax(x, -1))
    assert_close(ait.softmax(x, axis=0), np_softmax(x, 0))
    ln = ait.layer_norm(x)
    assert_close(ln, [[-1.2247356, 0.0, 1.2247356], [0.0, 0.0, 0.0]])
    bn = ait.batch_norm(x, np.ones(3, np.float32), np.full(3, 4.0, np.float32), eps=0.0)
    assert_close(bn, [[0.0, 0.5, 1.0], [-0.5, -0.5, -0.5]])
    h = ait.layer_norm(x.astype(ait.bfloat16), np.full(3, 2, ait.bfloat16), eps=1e-5)
    assert h.dtype == ait.bfloat16
    assert_close(h, 2 * np_layer_norm(x, None, None, 1e-5), dtype=ait.bfloat16)


def test_operands_promote_as_numpy():
    x = np.ones((2, 4), np.float16)
    w = np.ones(4, np.float32)
    assert ait.layer_norm(x, w, None).dtype == np.float32  # f16 with f32 weight -> f32
    assert ait.batch_norm(x, np.zeros(4, np.float16), np.ones(4, np.float16)).dtype == np.float16
    assert ait.softmax(np.ones(3)).dtype == np.float32  # float64 canonicalized


# ---------------------------------------------------------------- errors
F = ait.ShapeDtype((2, 3), ait.float32)
V3, V4 = ait.ShapeDtype((3,), ait.float32), ait.ShapeDtype((4,), ait.float32)


@pytest.mark.parametrize("fn, args, exc, match", [
    (ait.softmax, [ait.ShapeDtype((2, 3), ait.int32)], TypeError,
     r"softmax: input must be floating point.*i32\[2,3\]"),
    (lambda x: ait.softmax(x, 2), [F], ValueError, r"softmax: axis 2 is out of range for input \[2,3\]"),
    (lambda x: ait.softmax(x, None), [F], TypeError, r"softmax: axis must be an int"),
    (ait.softmax, [ait.ShapeDtype((), ait.float32)], ValueError, r"softmax: input must have rank >= 1"),
    (ait.layer_norm, [ait.ShapeDtype((2, 3), ait.int64)], TypeError,
     r"layer_norm: input must be floating point.*i64\[2,3\]"),
    (ait.layer_norm, [F, V4], ValueError,
     r"layer_norm: weight must have shape \[3\] \(the last dim of input \[2,3\]\), got \[4\]"),
    (lambda x, b: ait.layer_norm(x, None, b), [F, ait.ShapeDtype((1, 3), ait.float32)], ValueError,
     r"layer_norm: bias must have shape \[3\].*\[2,3\].*got \[1,3\]"),
    (lambda x: ait.layer_norm(x, eps=-1e-5), [F], ValueError, r"layer_norm: eps must be a non-negative"),
    (ait.layer_norm, [ait.ShapeDtype((), ait.float32)], ValueError, r"layer_norm: input must have rank >= 1"),
    (ait.batch_norm, [ait.ShapeDtype((2, 3), ait.int32), V3, V3], TypeError,
     r"batch_norm: input must be floating point.*i32\[2,3\]"),
    (ait.batch_norm, [F, V3, V4], ValueError,
     r"batch_norm: var must have shape \[3\] \(the last dim of input \[2,3\]\), got \[4\]"),
    (ait.batch_norm, [F, V3, V3, V3, V4], ValueError, r"batch_norm: bias must have shape \[3\].*got \[4\]"),
    (lambda x, m, v: ait.batch_norm(x, m, v, eps=float("nan")), [F, V3, V3], ValueError,
     r"batch_norm: eps must be a non-negative"),
])
def test_bad_arguments(fn, args, exc, match):
    with pytest.raises(exc, match=match):
        ait.trace(fn)(*args)
    concrete = [np.zeros(tuple(a.shape), a.dtype) for a in args]
    with pytest.raises(exc, match=match):  # eager calls validate too
        fn(*concrete)


def test_primitive_abstract_eval_errors():
    from aitrace.ops import normalization as n
    f16 = ait.ShapeDtype((2, 3), ait.float16)
    with pytest.raises(TypeError, match=r"layer_norm: weight f32\[3\] must have the input's dtype \(f16\[2,3\]\)"):
        n.layer_norm_p.abstract_eval(f16, V3, eps=1e-5, has_weight=True, has_bias=False)
    with pytest.raises(ValueError, match=r"batch_norm: 0 affine operands for has_weight=True"):
        n.batch_norm_p.abstract_eval(F, V3, V3, eps=1e-5, has_weight=True, has_bias=False)
    with pytest.raises(ValueError, match=r"softmax: axis must be an int in \[0, 2\) for input \[2,3\]"):
        n.softmax_p.abstract_eval(F, axis=-1)
