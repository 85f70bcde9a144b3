"""Elementwise ops, Tracer operators and the dtype promotion rule, against independent numpy.

Every expectation is computed here in float64 from the same (already rounded) inputs, converted
first to the dtype the promotion rule documented in aitrace/core/dtypes.py gives; the op's own
numpy reference is never used.
"""
import math

import numpy as np
import pytest
from conftest import assert_close, shapes_st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aitrace as ait
from aitrace.ops import elementwise

# The `backend` fixture is a plain string, the same for every example: reusing it is safe.
hsettings = settings(suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])
F = [ait.float32, ait.float16, ait.bfloat16]
I = [ait.int32, ait.int64]
ALL = F + I + [ait.bool_]
seeds = st.integers(0, 2**32 - 1)
f32, f16, bf16, i32, i64, b_ = ait.float32, ait.float16, ait.bfloat16, ait.int32, ait.int64, ait.bool_


# ---------------------------------------------------------------- independent helpers
def promoted(*dts):
    """The documented rule, written out: bool < int < float; floats of different widths/kinds
    meet at f32 (so f16 + bf16 -> f32); ints meet at the widest; a float beats any int."""
    dts = [np.dtype(d) for d in dts]
    floats = {d for d in dts if d in F}
    if floats:
        return floats.pop() if len(floats) == 1 else f32
    if any(d in I for d in dts):
        return i64 if i64 in dts else i32
    return b_


def gen(rng, shape, dtype, low=-3.0, high=3.0):
    """Data of any dtype in [low, high] (ints: the integers in it; bools: random)."""
    dtype = np.dtype(dtype)
    if dtype == b_:
        return rng.random(shape) < 0.5
    if dtype in I:
        return rng.integers(math.ceil(low), math.floor(high) + 1, size=shape).astype(dtype)
    return rng.uniform(low, high, size=shape).astype(np.float32).astype(dtype)


def f64(x, dtype=None):
    """x converted to `dtype` (as the op's promotion does), then exactly to float64."""
    x = np.asarray(x)
    return (x if dtype is None else x.astype(dtype)).astype(np.float64)


def run(fn, backend, *args):
    """Trace (and typecheck) fn, then run it jitted on the backend."""
    ait.typecheck(ait.trace(fn)(*args))
    return ait.jit(fn, backend=backend)(*args)


def check(actual, expected64, dtype):
    """Result dtype is exactly `dtype`; values within its tolerance (ints and bools exact)."""
    actual = np.asarray(actual)
    assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    if dtype in F:
        assert_close(actual, np.asarray(expected64, np.float64), dtype)
    else:
        np.testing.assert_array_equal(actual, np.asarray(expected64).astype(dtype))


@st.composite
def broadcast_pair(draw, max_dims=4):
    """Two shapes that broadcast together (dims dropped from the left, or set to 1)."""
    out = draw(shapes_st(0, max_dims, 1, 5))

    def derive():
        nd = draw(st.integers(0, len(out)))
        return tuple(1 if draw(st.booleans()) else d for d in out[len(out) - nd:])
    return derive(), derive()


erf64 = np.vectorize(math.erf, otypes=[np.float64])

# name -> (float64 formula, input domain, float-only: ints/bools compute in f32)
UNARY = {
    "neg": (np.negative, (-3, 3), False),
    "abs": (np.abs, (-3, 3), False),
    "relu": (lambda x: np.where(x > 0, x, 0.0), (-3, 3), False),
    "exp": (np.exp, (-4, 4), True),
    "log": (np.log, (0.05, 5), True),
    "sqrt": (np.sqrt, (0, 5), True),
    "rsqrt": (lambda x: 1 / np.sqrt(x), (0.05, 5), True),
    "tanh": (np.tanh, (-4, 4), True),
    "erf": (erf64, (-3, 3), True),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), (-8, 8), True),
    "silu": (lambda x: x / (1 + np.exp(-x)), (-8, 8), True),
    "gelu": (lambda x: 0.5 * x * (1 + erf64(x / math.sqrt(2))), (-4, 4), True),
    "logical_not": (lambda x: x == 0, (-2, 2), False),
}
BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "maximum": np.maximum, "minimum": np.minimum, "pow": np.power,
}
COMPARE = {"equal": np.equal, "not_equal": np.not_equal, "less": np.less,
           "less_equal": np.less_equal, "greater": np.greater, "greater_equal": np.greater_equal}


def test_every_public_op_is_covered():
    covered = set(UNARY) | set(BINARY) | set(COMPARE) | {"gelu", "where", "cast", "logical_and",
                                                          "logical_or"}
    assert set(elementwise.__all__) == covered
    for name in elementwise.__all__:
        assert getattr(ait, name) is getattr(elementwise, name)


# ---------------------------------------------------------------- unary
@pytest.mark.parametrize("name", sorted(UNARY))
@hsettings
@given(shape=shapes_st(0, 4, 1, 6), dtype=st.sampled_from(ALL), seed=seeds)
def test_unary(backend, name, shape, dtype, seed):
    ref, (lo, hi), float_only = UNARY[name]
    if name == "neg" and dtype == b_:
        return  # refused, see test_bool_arithmetic_is_refused
    x = gen(np.random.default_rng(seed), shape, dtype, lo, hi)
    out_dtype = b_ if name == "logical_not" else (
        dtype if dtype in F or not float_only else f32)
    y = run(getattr(ait, name), backend, x)
    with np.errstate(divide="ignore"):  # bool inputs reach log(0), 1/sqrt(0): inf both sides
        check(y, ref(f64(x)), out_dtype)


def gelu_tanh64(x):  # torch.nn.functional.gelu(x, approximate="tanh")
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


@hsettings
@given(shape=shapes_st(0, 3, 1, 8), dtype=st.sampled_from(F + I), seed=seeds,
       approximate=st.sampled_from(["none", "tanh"]))
def test_gelu_exact_and_tanh(backend, shape, dtype, approximate, seed):
    x = gen(np.random.default_rng(seed), shape, dtype, -5, 5)
    y = run(lambda v: ait.gelu(v, approximate=approximate), backend, x)
    ref = gelu_tanh64 if approximate == "tanh" else UNARY["gelu"][0]
    check(y, ref(f64(x)), dtype if dtype in F else f32)


def test_gelu_known_values(backend):
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0], np.float32)
    # torch.nn.functional.gelu at these points (both flavours)
    exact = [-0.00404969, -0.15865526, 0.0, 0.34573123, 1.95449974]
    tanh = [-0.00363752, -0.15880801, 0.0, 0.34571401, 1.95459769]
    assert_close(run(ait.gelu, backend, x), np.array(exact), ait.float32, atol=1e-6)
    assert_close(run(lambda v: ait.gelu(v, "tanh"), backend, x), np.array(tanh), ait.float32,
                 atol=1e-6)
    assert_close(run(ait.erf, backend, np.float32(0.5)), np.float64(math.erf(0.5)))  # 0-d
    with pytest.raises(ValueError, match="approximate"):
        ait.gelu(x, approximate="fast")


def test_sigmoid_silu_saturate_without_nan(backend):
    x = np.array([-100.0, -30.0, 0.0, 30.0, 100.0], np.float32)
    s = run(ait.sigmoid, backend, x)
    assert not np.isnan(s).any()
    assert_close(s, 1 / (1 + np.exp(-f64(x))))
    assert_close(run(ait.silu, backend, x), f64(x) / (1 + np.exp(-f64(x))))


# ---------------------------------------------------------------- binary
def binary_operands(rng, name, sa, sb, da, db):
    if name == "pow":  # a sane domain: positive bases, small exponents (ints: non-negative)
        a = gen(rng, sa, da, 0.5, 3) if da != b_ else np.ones(sa, bool)
        b = gen(rng, sb, db, 0 if promoted(da, db) not in F else -2, 3)
        return a, b
    a = gen(rng, sa, da)
    if name == "div":  # no zero divisors
        b = gen(rng, sb, db, 0.5, 3) * np.where(rng.random(sb) < 0.5, -1, 1).astype(db) \
            if db != b_ else np.ones(sb, bool)
        return a, b.astype(db)
    return a, gen(rng, sb, db)


@pytest.mark.parametrize("name", sorted(BINARY))
@hsettings
@given(shapes=broadcast_pair(), da=st.sampled_from(ALL), db=st.sampled_from(ALL), seed=seeds)
def test_binary(backend, name, shapes, da, db, seed):
    (sa, sb), rd = shapes, promoted(da, db)
    if name == "sub" and rd == b_:
        return  # refused, see test_bool_arithmetic_is_refused
    a, b = binary_operands(np.random.default_rng(seed), name, sa, sb, da, db)
    y = run(getattr(ait, name), backend, a, b)
    out_dtype = f32 if name == "div" and rd not in F else rd
    check(y, BINARY[name](f64(a, rd), f64(b, rd)), out_dtype)


@pytest.mark.parametrize("name", sorted(COMPARE))
@hsettings
@given(shapes=broadcast_pair(), da=st.sampled_from(ALL), db=st.sampled_from(ALL), seed=seeds)
def test_compare(backend, name, shapes, da, db, seed):
    rng = np.random.default_rng(seed)
    # values on a half-integer grid, so equal elements are common in every dtype
    a, b = [(rng.integers(-4, 5, size=s) / (2 if d in F else 1)).astype(d) if d != b_
            else rng.random(s) < 0.5 for s, d in zip(shapes, (da, db))]
    rd = promoted(da, db)
    y = run(getattr(ait, name), backend, a, b)
    check(y, COMPARE[name](f64(a, rd), f64(b, rd)), b_)


@pytest.mark.parametrize("name", ["logical_and", "logical_or"])
@hsettings
@given(shapes=broadcast_pair(), da=st.sampled_from(ALL), db=st.sampled_from(ALL), seed=seeds)
def test_logical(backend, name, shapes, da, db, seed):
    rng = np.random.default_rng(seed)
    a, b = gen(rng, shapes[0], da, -1, 1), gen(rng, shapes[1], db, -1, 1)
    ref = np.logical_and if name == "logical_and" else np.logical_or
    check(run(getattr(ait, name), backend, a, b), ref(f64(a) != 0, f64(b) != 0), b_)


@hsettings
@given(data=st.data(), dc=st.sampled_from(ALL), dx=st.sampled_from(ALL),
       dy=st.sampled_from(ALL), seed=seeds)
def test_where(backend, data, dc, dx, dy, seed):
    out = data.draw(shapes_st(0, 3, 1, 5))
    sc, sx, sy = [tuple(1 if data.draw(st.booleans()) else d
                        for d in out[len(out) - data.draw(st.integers(0, len(out))):])
                  for _ in range(3)]
    rng = np.random.default_rng(seed)
    c, x, y = gen(rng, sc, dc, -1, 1), gen(rng, sx, dx), gen(rng, sy, dy)
    rd = promoted(dx, dy)
    got = run(ait.where, backend, c, x, y)
    check(got, np.where(f64(c) != 0, x.astype(rd), y.astype(rd)), rd)  # non-bool c: c != 0


def test_where_with_python_scalars(backend):
    c = np.array([True, False, True])
    x = np.array([1, 2, 3], np.float16)
    check(run(lambda c, x: ait.where(c, x, 0.5), backend, c, x), [1, 0.5, 3], f16)
    check(run(lambda c: ait.where(c, 1.0, 0), backend, c), [1.0, 0.0, 1.0], f32)
    check(run(lambda c: ait.where(c, 7, -1), backend, c), [7, -1, 7], i32)


# ---------------------------------------------------------------- cast
@hsettings
@given(shape=shapes_st(0, 3, 1, 6), src=st.sampled_from(ALL), dst=st.sampled_from(ALL), seed=seeds)
def test_cast_between_all_dtypes(backend, shape, src, dst, seed):
    rng = np.random.default_rng(seed)
    lim = 6e4 if f16 in (src, dst) else 1e6  # wide enough that any narrower route would round
    x = np.where(rng.random(shape) < 0.5, gen(rng, shape, src, -3, 3),
                 gen(rng, shape, src, -lim, lim)).astype(src)
    if src in F + I:
        x = np.where(rng.random(shape) < 0.2, 0, x).astype(src)  # some exact zeros for bool
    x64 = f64(x)
    if dst == b_:
        expected = x64 != 0
    elif dst in I:
        expected = np.trunc(x64)  # floats truncate toward zero
    else:
        expected = x64
    y = run(lambda v: ait.cast(v, dst), backend, x)
    assert y.dtype == dst and y.shape == x.shape
    # one rounding from the (exact) float64 value: bit-exact, whatever the route
    np.testing.assert_array_equal(y, expected.astype(dst))
    y2 = run(lambda v: v.astype(dst), backend, x)
    np.testing.assert_array_equal(y2, y)


def test_cast_truncates_toward_zero_and_accepts_names(backend):
    x = np.array([-2.7, -0.5, 0.5, 2.7, 3.0, -3.0], np.float32)
    for name in ("int32", "i32", "int", ait.int32, np.int32):
        y = run(lambda v: ait.cast(v, name), backend, x)
        assert y.dtype == np.int32
        np.testing.assert_array_equal(y, [-2, 0, 0, 2, 3, -3])
    assert run(lambda v: v.astype("int64"), backend, x).dtype == np.int64
    np.testing.assert_array_equal(run(lambda v: v.astype("bool"), backend, x), [1, 1, 1, 1, 1, 1])
    assert run(lambda v: v.astype("bf16"), backend, x).dtype == bf16
    g = ait.trace(lambda v: v.astype(ait.float32))(ait.ShapeDtype((3,), f32))
    assert not g.eqns  # a cast to the same dtype is no op at all
    with pytest.raises(TypeError, match="unsupported dtype"):
        ait.trace(lambda v: v.astype(np.uint8))(ait.ShapeDtype((3,), f32))


# ---------------------------------------------------------------- Tracer operators
@hsettings
@given(shapes=broadcast_pair(3), dtype=st.sampled_from(F), seed=seeds)
def test_operators_match_functions(backend, shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    a = gen(rng, shapes[0], dtype, 0.5, 2.5)
    b = gen(rng, shapes[1], dtype, 0.5, 2.5) * np.where(rng.random(shapes[1]) < 0.5, -1, 1).astype(dtype)
    b = b.astype(dtype)
    A, B = f64(a), f64(b)

    def fn(x, y):
        return (x + y, x - y, x * y, x / y, x ** y, -x, abs(y), x < y, x <= y, x > y, x >= y,
                x == y, x != y)
    outs = run(fn, backend, a, b)
    exps = (A + B, A - B, A * B, A / B, A ** B, -A, np.abs(B), A < B, A <= B, A > B, A >= B,
            A == B, A != B)
    for o, e in zip(outs, exps):
        check(o, e, b_ if e.dtype == bool else dtype)


@hsettings
@given(shape=shapes_st(1, 3, 1, 5), dtype=st.sampled_from(F), seed=seeds)
def test_reflected_operators(backend, shape, dtype, seed):
    """Python scalars and numpy arrays on the left keep the operand order."""
    rng = np.random.default_rng(seed)
    x = gen(rng, shape, dtype, 0.5, 2.5)
    c = rng.uniform(0.5, 2.5, size=shape[-1:]).astype(dtype)  # numpy constant, same dtype
    X, C = f64(x), f64(c)

    def fn(v):
        return (2 + v, 2 - v, 2 * v, 2 / v, 2 ** v, 1.5 - v, 3 / v, c + v, c - v, c * v, c / v,
                c ** v, 1 < v, c < v, c >= v, c == v)
    outs = run(fn, backend, x)
    exps = (2 + X, 2 - X, 2 * X, 2 / X, 2 ** X, 1.5 - X, 3 / X, C + X, C - X, C * X, C / X,
            C ** X, 1 < X, C < X, C >= X, C == X)
    for o, e in zip(outs, exps):
        check(o, e, b_ if e.dtype == bool else dtype)


def test_reflected_operator_graph_keeps_order():
    g = ait.trace(lambda v: 2.0 - v)(ait.ShapeDtype((3,), f16))
    (e,) = g.eqns
    assert e.prim.name == "sub" and e.invars[1] is g.invars[0]
    assert e.invars[0].value == 2 and e.invars[0].aval.dtype == f16  # weak: took v's dtype
    c = np.ones(3, np.float32)
    g = ait.trace(lambda v: c / v)(ait.ShapeDtype((3,), f32))
    (e,) = g.eqns
    assert e.prim.name == "div" and e.invars == [g.constvars[0], g.invars[0]]


def test_bool_operators(backend):
    a = np.array([True, True, False, False])
    b = np.array([True, False, True, False])
    outs = run(lambda x, y: (x & y, x | y, ~x, x & True, False | y, True & y), backend, a, b)
    for o, e in zip(outs, (a & b, a | b, ~a, a, b, b)):
        check(o, e, b_)


def test_bitwise_operators_on_ints_are_refused():
    s = ait.ShapeDtype((3,), i32)
    for fn in (lambda x: ~x, lambda x: x & x, lambda x: x | 1, lambda x: 1 & x):
        with pytest.raises(TypeError, match="bool operands"):
            ait.trace(fn)(s)


def test_bool_arithmetic_is_refused():
    s = ait.ShapeDtype((3,), b_)
    with pytest.raises(TypeError, match="neg.*bool"):
        ait.trace(lambda x: -x)(s)
    with pytest.raises(TypeError, match="sub.*bool"):
        ait.trace(lambda x, y: x - y)(s, s)
    with pytest.raises(TypeError, match="sub.*bool"):
        ait.sub(np.array([True]), np.array([False]))


def test_tracer_has_no_truth_value():
    with pytest.raises(TypeError, match="where"):
        ait.trace(lambda x: x if x > 0 else -x)(ait.ShapeDtype((3,), f32))


# ---------------------------------------------------------------- promotion
STRONG = [  # (a, b, result): symmetric; the whole 6x6 table
    (f32, f32, f32), (f32, f16, f32), (f32, bf16, f32), (f32, i32, f32), (f32, i64, f32),
    (f32, b_, f32), (f16, f16, f16), (f16, bf16, f32), (f16, i32, f16), (f16, i64, f16),
    (f16, b_, f16), (bf16, bf16, bf16), (bf16, i32, bf16), (bf16, i64, bf16), (bf16, b_, bf16),
    (i32, i32, i32), (i32, i64, i64), (i32, b_, i32), (i64, i64, i64), (i64, b_, i64),
    (b_, b_, b_),
]
WEAK = [  # (array dtype, Python scalar, result): scalars lift the kind, never the width
    (f16, 2.0, f16), (f16, 2, f16), (f16, True, f16), (bf16, 2.5, bf16), (f32, 1, f32),
    (i32, 2, i32), (i32, 2.5, f32), (i32, True, i32), (i64, 2, i64), (i64, 2.5, f32),
    (b_, True, b_), (b_, 2, i32), (b_, 2.5, f32),
]


@pytest.mark.parametrize("da,db,expected", STRONG)
def test_promotion_strong(da, db, expected):
    sa, sb = ait.ShapeDtype((2, 3), da), ait.ShapeDtype((3,), db)
    fns = [lambda x, y: x + y, lambda x, y: y * x, ait.maximum, lambda x, y: ait.where(x == x, x, y)]
    if expected != b_:
        fns.append(lambda x, y: x - y)
    for fn in fns:
        assert ait.trace(fn)(sa, sb).out_avals == [ait.ShapeDtype((2, 3), expected)]
        assert ait.trace(fn)(sb, sa).out_avals[0].dtype == expected
    assert ait.trace(lambda x, y: x < y)(sa, sb).out_avals[0].dtype == b_
    div = expected if expected in F else f32  # true division
    assert ait.trace(lambda x, y: x / y)(sa, sb).out_avals[0].dtype == div


@pytest.mark.parametrize("d,scalar,expected", WEAK)
def test_promotion_weak_scalars(d, scalar, expected):
    s = ait.ShapeDtype((4,), d)
    for fn in (lambda x: x + scalar, lambda x: scalar + x, lambda x: ait.maximum(scalar, x)):
        assert ait.trace(fn)(s).out_avals[0].dtype == expected


def test_promotion_documented_cases(backend):
    h = np.array([1.5, 2.5], np.float16)
    bh = np.array([1.5, 2.5], ait.bfloat16)
    i = np.array([3, 4], np.int32)
    b = np.array([True, False])
    check(run(lambda x: x * 2.0, backend, h), [3.0, 5.0], f16)
    check(run(lambda x, y: x + y, backend, h, bh), [3.0, 5.0], f32)
    check(run(lambda x, y: x + y, backend, i, h), [4.5, 6.5], f16)
    check(run(lambda x, y: x / y, backend, i, np.array([2, 8], np.int32)), [1.5, 0.5], f32)
    check(run(lambda x: x + 2.5, backend, i), [5.5, 6.5], f32)
    check(run(lambda x: x / 2, backend, i), [1.5, 2.0], f32)
    check(run(lambda x, y: x + y, backend, b, b), [True, False], b_)
    check(run(lambda x, y: x * y, backend, b, ~b), [False, False], b_)
    check(run(lambda x: x + 1, backend, b), [2, 1], i32)
    check(run(lambda x: x + 1.0, backend, b), [2.0, 1.0], f32)
    check(run(lambda x, y: x / y, backend, b, b | True), [1.0, 0.0], f32)
    check(run(lambda x, y: x + y, backend, i, i.astype(np.int64)), [6, 8], i64)
    check(run(ait.exp, backend, np.array([0, 1], np.int64)), [1.0, math.e], f32)


def test_float64_arrays_canonicalize_to_float32(backend):
    x64 = np.array([1.0, 2.0, 3.0])
    assert ait.ShapeDtype((3,), np.float64).dtype == f32
    y = run(lambda x: x * 2, backend, x64)
    check(y, [2.0, 4.0, 6.0], f32)
    # a closed-over float64 constant is a strong f32 operand: f16 + it -> f32
    h = np.array([1, 2, 3], np.float16)
    check(run(lambda x: x + x64, backend, h), [2.0, 4.0, 6.0], f32)
    g = ait.trace(lambda x: x + x64)(ait.ShapeDtype((3,), f16))
    assert g.constvars[0].aval == ait.ShapeDtype((3,), f32)
    assert ait.add(x64, x64).dtype == f32  # eager too


# ---------------------------------------------------------------- eager, symbolic, errors
def test_eager_evaluation_on_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    y = ait.add(a, b)
    assert isinstance(y, np.ndarray) and y.dtype == f32
    assert_close(y, f64(a) + f64(b))
    assert_close(ait.exp(a), np.exp(f64(a)))
    assert_close(ait.gelu(a, "tanh"), gelu_tanh64(f64(a)))
    check(ait.where(a > 0, a, 0.0), np.where(a > 0, f64(a), 0), f32)
    check(ait.cast(a, "int32"), np.trunc(f64(a)), i32)
    check(ait.less(a, b), f64(a) < f64(b), b_)
    check(ait.add(2, 3), 5, i32)
    check(ait.mul(np.array([1, 2], np.float16), 0.5), [0.5, 1.0], f16)


def test_symbolic_broadcasting():
    B, S = ait.Dim("B"), ait.Dim("S")
    g = ait.trace(lambda x, y: (x + y, x * 2.0, x < y, ait.where(x > 0, x, y)))(
        ait.ShapeDtype((B, 1), f16), ait.ShapeDtype((1, S), f16))
    assert g.out_avals == [ait.ShapeDtype((B, S), f16), ait.ShapeDtype((B, 1), f16),
                           ait.ShapeDtype((B, S), b_), ait.ShapeDtype((B, S), f16)]
    with pytest.raises(ValueError, match=r"add.*\[B,8\].*\[S\]"):
        ait.trace(lambda x, y: x + y)(ait.ShapeDtype((B, 8), f32), ait.ShapeDtype((S,), f32))


def test_dynamic_dims_run(backend):
    B = ait.Dim("B", max=16)
    f = ait.jit(lambda x, y: ait.silu(x) * y + 1, backend=backend, dynamic={0: {0: B}})
    y = np.linspace(-1, 1, 4).astype(np.float32)
    for n in (1, 5):
        x = np.linspace(-3, 3, n * 4).astype(np.float32).reshape(n, 4)
        X = f64(x)
        assert_close(f(x, y), X / (1 + np.exp(-X)) * f64(y) + 1)


def test_errors():
    s = ait.ShapeDtype((2, 3), f32)
    with pytest.raises(ValueError, match=r"mul: shapes \[2,3\], \[4\] are not broadcast"):
        ait.trace(lambda x: x * np.ones(4, np.float32))(s)
    with pytest.raises(TypeError, match="add"):
        ait.trace(lambda x: x + "a")(s)
    with pytest.raises(TypeError, match="add"):
        ait.trace(lambda x: x + [1.0, 2.0, 3.0])(s)
    with pytest.raises(TypeError, match="condition must be bool"):  # the primitive is strict
        ait.trace(lambda x: elementwise.where_p.bind(x, x, x))(s)
    with pytest.raises(TypeError, match="share a dtype"):
        ait.trace(lambda x: elementwise.BINARY_PRIMS["add"].bind(x, x.astype("f16")))(s)
    with pytest.raises(ValueError, match=r"where.*\[2,3\].*\[5\]"):
        ait.trace(lambda x: ait.where(x > 0, x, np.ones(5, np.float32)))(s)
