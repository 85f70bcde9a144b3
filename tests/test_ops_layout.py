"""Layout ops and indexing: reshape, transpose, broadcast_to, expand_dims, squeeze, concatenate,
split, pad, take and `x[...]`, against numpy on the same arrays (layout ops move values
without arithmetic, so results must be bit-exact)."""
import numpy as np
import pytest
import sympy
from conftest import shapes_st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aitrace as ait

# The `backend` fixture is a plain string, the same for every example: reusing it is safe.
hsettings = settings(suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])
f32, f16, bf16, i32, i64, b_ = ait.float32, ait.float16, ait.bfloat16, ait.int32, ait.int64, ait.bool_
ALL = [f32, f16, bf16, i32, i64, b_]
dtypes_st = st.sampled_from(ALL)
S = ait.ShapeDtype


def arange(shape, dtype=f32):
    """Distinct values where the dtype allows, so a misplaced element is always seen."""
    n = int(np.prod(shape))
    if np.dtype(dtype) == b_:
        return (np.arange(n) % 3 == 0).reshape(shape)
    if np.dtype(dtype) in (f16, bf16):  # exactly representable: small ints and halves
        return ((np.arange(n) % 128) / 2 - 20).astype(dtype).reshape(shape)
    return (np.arange(n) - n // 2).astype(dtype).reshape(shape)


def run(fn, backend, *args):
    ait.typecheck(ait.trace(fn)(*args))
    return ait.jit(fn, backend=backend)(*args)


def same(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(actual, expected)


# ---------------------------------------------------------------- reshape
@st.composite
def reshape_case(draw):
    shape = draw(shapes_st(0, 4, 1, 6))
    n = int(np.prod(shape))
    factors = [p for p in (2, 3, 5) for _ in range(20) if n % p ** (_ + 1) == 0]
    k = draw(st.integers(1, 4))
    new = [1] * k
    for p in factors:  # distribute the prime factors over k dims
        new[draw(st.integers(0, k - 1))] *= p
    if draw(st.booleans()):
        new[draw(st.integers(0, k - 1))] = -1
    return shape, tuple(new)


@hsettings
@given(case=reshape_case(), dtype=dtypes_st)
def test_reshape(backend, case, dtype):
    shape, new = case
    x = arange(shape, dtype)
    same(run(lambda v: ait.reshape(v, new), backend, x), x.reshape(new))
    same(run(lambda v: v.reshape(new), backend, x), x.reshape(new))
    same(run(lambda v: v.reshape(*new), backend, x), x.reshape(new))
    same(ait.reshape(x, new), x.reshape(new))  # eager


def test_reshape_forms_and_errors(backend):
    x = arange((2, 3, 4))
    same(run(lambda v: v.reshape(-1), backend, x), x.reshape(-1))
    same(run(lambda v: v.reshape(24), backend, x), x.reshape(24))
    same(run(lambda v: v.reshape([4, -1]), backend, x), x.reshape(4, -1))
    same(run(lambda v: v.reshape(np.int64(6), 4), backend, x), x.reshape(6, 4))
    same(run(lambda v: v.reshape(0, 5), backend, np.zeros((3, 0), np.float32)),
         np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match="reshape"):  # -1 is ambiguous on size 0, as in numpy
        ait.trace(lambda v: v.reshape(0, 3, -1))(S((3, 0), f32))
    s = S((2, 3, 4), f32)
    with pytest.raises(ValueError, match=r"reshape.*\[2,3,4\].*\[5,5\]"):
        ait.trace(lambda v: v.reshape(5, 5))(s)
    with pytest.raises(ValueError, match=r"reshape.*\[2,3,4\].*\[5,-1\]"):
        ait.trace(lambda v: v.reshape(5, -1))(s)
    with pytest.raises(ValueError, match=r"reshape.*\[2,3,4\].*\[5,5\]"):
        ait.reshape(x, (5, 5))  # eager
    with pytest.raises(ValueError, match="only one -1"):
        ait.trace(lambda v: v.reshape(-1, -1))(s)
    with pytest.raises(ValueError, match="non-negative"):
        ait.trace(lambda v: v.reshape(-2, 12))(s)


def test_reshape_symbolic(backend):
    B = ait.Dim("B", max=32)
    g = ait.trace(lambda v: v.reshape(2 * B, -1))(S((B, 8), f32))
    assert g.out_avals == [S((2 * B, 4), f32)]
    assert g.eqns[0].params["new_sizes"] == (2 * B, 4)  # kept symbolic, not evaluated
    assert ait.trace(lambda v: v.reshape(-1))(S((B, 8), f16)).out_avals == [S((8 * B,), f16)]
    assert ait.trace(lambda v: v.reshape(B, 2, 4))(S((B, 8), f16)).out_avals == [S((B, 2, 4), f16)]
    with pytest.raises(ValueError, match=r"reshape.*\[B,6\]"):
        ait.trace(lambda v: v.reshape(4, -1))(S((B, 6), f32))  # 6B/4 is not an integer for all B
    with pytest.raises(ValueError, match="reshape"):
        ait.trace(lambda v: v.reshape(B, 4))(S((B, 8), f32))
    f = ait.jit(lambda v: v.reshape(2 * B, -1), backend=backend, dynamic={0: {0: B}})
    for n in (1, 3):
        x = arange((n, 8))
        same(f(x), x.reshape(2 * n, -1))


# ---------------------------------------------------------------- transpose
@hsettings
@given(shape=shapes_st(0, 5, 1, 5), dtype=dtypes_st, data=st.data())
def test_transpose(backend, shape, dtype, data):
    x = arange(shape, dtype)
    nd = len(shape)
    perm = data.draw(st.permutations(range(nd)))
    written = tuple(p - nd if data.draw(st.booleans()) else p for p in perm)  # negative axes too
    same(run(lambda v: ait.transpose(v, written), backend, x), np.transpose(x, perm))
    same(run(lambda v: ait.transpose(v), backend, x), x.T)
    same(run(lambda v: v.T, backend, x), x.T)
    same(run(lambda v: v.transpose(), backend, x), x.T)
    if nd:
        same(run(lambda v: v.transpose(*written), backend, x), np.transpose(x, perm))
    same(run(lambda v: v.transpose(tuple(written)), backend, x), np.transpose(x, perm))
    same(run(lambda v: v.transpose(list(written)), backend, x), np.transpose(x, perm))
    same(ait.transpose(x, written), np.transpose(x, perm))  # eager


def test_transpose_forms_and_errors(backend):
    x = arange((2, 3, 4))
    same(run(lambda v: v.transpose(1, 0, 2), backend, x), x.transpose(1, 0, 2))
    same(run(lambda v: v.transpose((1, 0, 2)), backend, x), x.transpose(1, 0, 2))
    g = ait.trace(lambda v: v.transpose(0, 1, 2))(S((2, 3, 4), f32))
    assert not g.eqns  # the identity permutation is no op
    s = S((2, 3, 4), f32)
    for bad in [(0, 0, 1), (1, 0)]:
        with pytest.raises(ValueError, match=r"transpose.*not a permutation.*\[2,3,4\]"):
            ait.trace(lambda v: ait.transpose(v, bad))(s)
    with pytest.raises(ValueError, match="transpose: axis 3 is out of range"):
        ait.trace(lambda v: ait.transpose(v, (0, 1, 3)))(s)
    B = ait.Dim("B")
    assert ait.trace(lambda v: v.T)(S((B, 3), f16)).out_avals == [S((3, B), f16)]


# ---------------------------------------------------------------- broadcast_to / expand_dims / squeeze
@hsettings
@given(out=shapes_st(0, 4, 1, 5), dtype=dtypes_st, data=st.data())
def test_broadcast_to(backend, out, dtype, data):
    nd = data.draw(st.integers(0, len(out)))
    src = tuple(1 if data.draw(st.booleans()) else d for d in out[len(out) - nd:])
    x = arange(src, dtype)
    same(run(lambda v: ait.broadcast_to(v, out), backend, x), np.broadcast_to(x, out))


def test_broadcast_to_errors_and_symbolic():
    with pytest.raises(ValueError, match=r"broadcast_to.*\[2,3\].*\[4,3\]"):
        ait.trace(lambda v: ait.broadcast_to(v, (4, 3)))(S((2, 3), f32))
    with pytest.raises(ValueError, match=r"broadcast_to: cannot broadcast \[2,3\] to \[3\]"):
        ait.trace(lambda v: ait.broadcast_to(v, (3,)))(S((2, 3), f32))
    B = ait.Dim("B")
    assert ait.trace(lambda v: ait.broadcast_to(v, (B, 2, 3)))(S((1, 3), f32)).out_avals == \
        [S((B, 2, 3), f32)]


@hsettings
@given(shape=shapes_st(0, 4, 1, 4), dtype=dtypes_st, data=st.data())
def test_expand_dims(backend, shape, dtype, data):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    x = arange(shape, dtype)
    same(run(lambda v: ait.expand_dims(v, axis), backend, x), np.expand_dims(x, axis))


@hsettings
@given(shape=shapes_st(0, 5, 1, 3), dtype=dtypes_st, data=st.data())
def test_squeeze(backend, shape, dtype, data):
    x = arange(shape, dtype)
    ones = [i for i, d in enumerate(shape) if d == 1]
    same(run(lambda v: ait.squeeze(v), backend, x), np.squeeze(x))
    if ones:
        axes = tuple(data.draw(st.lists(st.sampled_from(ones), min_size=1, unique=True)))
        written = tuple(a - len(shape) if data.draw(st.booleans()) else a for a in axes)
        same(run(lambda v: ait.squeeze(v, written), backend, x), np.squeeze(x, axes))
        same(run(lambda v: ait.squeeze(v, written[0]), backend, x), np.squeeze(x, axes[0]))


def test_expand_dims_squeeze_errors():
    s = S((1, 3, 1), f32)
    with pytest.raises(ValueError, match="expand_dims: axis 4 is out of range"):
        ait.trace(lambda v: ait.expand_dims(v, 4))(s)
    with pytest.raises(ValueError, match=r"squeeze: axis 1 of \[1,3,1\] has size 3"):
        ait.trace(lambda v: ait.squeeze(v, 1))(s)
    with pytest.raises(ValueError, match="squeeze: repeated axis"):
        ait.trace(lambda v: ait.squeeze(v, (0, -3)))(s)
    B = ait.Dim("B")
    assert ait.trace(ait.squeeze)(S((B, 1, 4), f32)).out_avals == [S((B, 4), f32)]
    with pytest.raises(ValueError, match="squeeze: axis 0"):
        ait.trace(lambda v: ait.squeeze(v, 0))(S((B, 1, 4), f32))


# ---------------------------------------------------------------- concatenate / split
def promoted(*dts):  # the documented rule (see test_ops_elementwise.STRONG)
    fl = {np.dtype(d) for d in dts} & {f32, f16, bf16}
    if fl:
        return fl.pop() if len(fl) == 1 else f32
    if {np.dtype(d) for d in dts} & {i32, i64}:
        return i64 if i64 in dts else i32
    return b_


@hsettings
@given(base=shapes_st(1, 4, 1, 4), data=st.data())
def test_concatenate(backend, base, data):
    axis = data.draw(st.integers(-len(base), len(base) - 1))
    n = data.draw(st.integers(1, 4))
    dts = [data.draw(dtypes_st) for _ in range(n)]
    xs = []
    for k, d in enumerate(dts):
        s = list(base)
        s[axis] = data.draw(st.integers(0, 4))
        xs.append(arange(s, d) if d == b_ else arange(s, d) + d.type(k))
    rd = promoted(*dts)
    expected = np.concatenate([x.astype(rd) for x in xs], axis=axis)
    same(run(lambda *vs: ait.concatenate(vs, axis=axis), backend, *xs), expected)
    same(run(lambda *vs: ait.concatenate(list(vs), axis), backend, *xs), expected)


def test_concatenate_constants_symbolic_and_errors(backend):
    x = arange((2, 3), f16)
    c = np.ones((1, 3), np.float16)
    same(run(lambda v: ait.concatenate([c, v, c]), backend, x), np.concatenate([c, x, c]))
    B = ait.Dim("B")
    g = ait.trace(lambda a, b: ait.concatenate([a, b, a], axis=0))(S((B, 3), f32), S((2, 3), f32))
    assert g.out_avals == [S((2 * B + 2, 3), f32)]
    with pytest.raises(ValueError, match=r"concatenate.*f32\[2,3\].*f32\[2,4\].*axis 0"):
        ait.trace(lambda a, b: ait.concatenate([a, b]))(S((2, 3), f32), S((2, 4), f32))
    with pytest.raises(ValueError, match=r"concatenate.*f16\[2,3\].*f16\[3\]"):
        ait.trace(lambda a, b: ait.concatenate([a, b]))(S((2, 3), f16), S((3,), f16))
    with pytest.raises(ValueError, match=r"concatenate: zero-dimensional.*\[\]"):
        ait.trace(lambda a: ait.concatenate([a, a]))(S((), f32))
    with pytest.raises(ValueError, match="concatenate: axis 2 is out of range"):
        ait.trace(lambda a: ait.concatenate([a, a], axis=2))(S((2, 3), f32))
    with pytest.raises(ValueError, match="at least one"):
        ait.concatenate([])


@hsettings
@given(shape=shapes_st(1, 3, 1, 9), dtype=dtypes_st, data=st.data())
def test_split(backend, shape, dtype, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    x = arange(shape, dtype)
    size = data.draw(st.integers(1, n + 2))  # the last chunk may be smaller
    ys = run(lambda v: ait.split(v, size, axis=axis), backend, x)
    assert isinstance(ys, tuple)
    exp = np.split(x, list(range(size, n, size)), axis=axis)
    assert len(ys) == len(exp) == -(-n // size)
    for y, e in zip(ys, exp):
        same(y, e)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4)))
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [n])]  # zeros allowed
    ys = run(lambda v: ait.split(v, sizes, axis), backend, x)
    assert [y.shape[axis] for y in ys] == sizes
    for y, e in zip(ys, np.split(x, cuts, axis=axis)):
        same(y, e)


def test_split_errors_and_symbolic(backend):
    s = S((2, 3, 4), f32)
    with pytest.raises(ValueError, match=r"split: sizes \[1, 2\] do not sum to axis 2 of \[2,3,4\]"):
        ait.trace(lambda v: ait.split(v, [1, 2], axis=-1))(s)
    with pytest.raises(ValueError, match="non-negative"):
        ait.trace(lambda v: ait.split(v, [6, -2], axis=-1))(s)
    with pytest.raises(ValueError, match="positive"):
        ait.trace(lambda v: ait.split(v, 0))(s)
    with pytest.raises(ValueError, match="split: axis 3 is out of range"):
        ait.trace(lambda v: ait.split(v, 1, axis=3))(s)
    B = ait.Dim("B", max=16)
    with pytest.raises(ValueError, match="symbolic"):
        ait.trace(lambda v: ait.split(v, 2))(S((B, 3), f32))
    g = ait.trace(lambda v: ait.split(v, [B, 2]))(S((B + 2, 3), f32))
    assert g.out_avals == [S((B, 3), f32), S((2, 3), f32)]
    g = ait.trace(lambda v: ait.split(v, 2, axis=1))(S((B, 3), f32))
    assert g.out_avals == [S((B, 2), f32), S((B, 1), f32)]
    f = ait.jit(lambda v: ait.split(v, [1, v.shape[0] - 1], axis=0), backend=backend,
                dynamic={0: {0: B}})
    for n in (1, 4):
        x = arange((n, 2))
        a, b = f(x)
        same(a, x[:1])
        same(b, x[1:])


# ---------------------------------------------------------------- pad
@st.composite
def pad_case(draw):
    shape = draw(shapes_st(1, 3, 1, 4))
    w = st.integers(0, 3)
    form = draw(st.sampled_from(["int", "(n,)", "pair", "((a,b),)", "per-axis"]))
    if form == "int":
        return shape, draw(w)
    if form == "(n,)":
        return shape, (draw(w),)
    if form == "pair":
        return shape, (draw(w), draw(w))
    if form == "((a,b),)":
        return shape, ((draw(w), draw(w)),)
    return shape, tuple((draw(w), draw(w)) for _ in shape)


@hsettings
@given(case=pad_case(), dtype=dtypes_st, value=st.sampled_from([0, 1, -2.5, 7]))
def test_pad(backend, case, dtype, value):
    shape, width = case
    x = arange(shape, dtype)
    y = run(lambda v: ait.pad(v, width, value=value), backend, x)
    same(y, np.pad(x, width, constant_values=np.asarray(value).astype(dtype)))
    same(run(lambda v: ait.pad(v, width), backend, x), np.pad(x, width))


def test_pad_errors_and_symbolic():
    s = S((2, 3), f32)
    with pytest.raises(ValueError, match="pad: negative"):
        ait.trace(lambda v: ait.pad(v, -1))(s)
    with pytest.raises(ValueError, match="pad: pad_width .* does not fit rank 2"):
        ait.trace(lambda v: ait.pad(v, ((1, 2), (3, 4), (5, 6))))(s)
    with pytest.raises(ValueError, match="pad: pad_width .* does not fit rank 2"):
        ait.trace(lambda v: ait.pad(v, (1, 2, 3)))(s)
    B = ait.Dim("B")
    assert ait.trace(lambda v: ait.pad(v, ((1, 2), (0, 1))))(S((B, 3), f16)).out_avals == \
        [S((B + 3, 4), f16)]


# ---------------------------------------------------------------- take
@hsettings
@given(shape=shapes_st(1, 3, 1, 5), idx_shape=shapes_st(0, 2, 1, 4), dtype=dtypes_st,
       idx_dtype=st.sampled_from([i32, i64]), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_take(backend, shape, idx_shape, dtype, idx_dtype, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    table = arange(shape, dtype)
    idx = np.random.default_rng(seed).integers(-n, n, size=idx_shape).astype(idx_dtype)
    exp = np.take(table, idx, axis=axis)
    same(run(lambda t, i: ait.take(t, i, axis=axis), backend, table, idx), exp)  # runtime idx
    same(run(lambda t: ait.take(t, idx, axis=axis), backend, table), exp)  # constant idx
    same(ait.take(table, idx, axis=axis), exp)  # eager


def test_take_forms(backend):
    table = arange((4, 3))
    same(run(lambda t: ait.take(t, [0, -1, 2]), backend, table), table[[0, -1, 2]])
    same(run(lambda t: ait.take(t, 1, axis=1), backend, table), table[:, 1])
    same(run(lambda t: ait.take(t, [], axis=1), backend, table), np.take(table, [], axis=1).astype(f32))
    # documented: out-of-range runtime indices are clamped (numpy would raise)
    same(run(lambda t, i: ait.take(t, i), backend, table, np.array([7, -9])), table[[3, 0]])
    with pytest.raises(TypeError, match=r"take: indices must be int32 or int64, got f32\[1\]"):
        ait.trace(lambda t: ait.take(t, np.array([0.0])))(S((4, 3), f32))
    with pytest.raises(TypeError, match="take: indices must be int32 or int64"):
        ait.take(table, np.array([0.0]))  # eager calls run the same shape rule
    B = ait.Dim("B")
    g = ait.trace(lambda t, i: ait.take(t, i, axis=0))(S((100, 8), f16), S((B, 7), i64))
    assert g.out_avals == [S((B, 7, 8), f16)]


# ---------------------------------------------------------------- indexing
@st.composite
def index_case(draw):
    """An array shape and an index tuple numpy accepts: ints (negative too), slices with any
    steps and out-of-range bounds, None, at most one Ellipsis and one integer-array index."""
    shape = draw(shapes_st(0, 4, 1, 5))
    nd = len(shape)
    n_lead = draw(st.integers(0, nd))
    n_trail = draw(st.integers(0, nd - n_lead))  # axes indexed after an Ellipsis
    axes = list(range(n_lead)) + list(range(nd - n_trail, nd))
    n_idx = len(axes)
    items = []
    array_at = draw(st.integers(0, n_idx - 1)) if n_idx and draw(st.booleans()) else None
    for k, ax in enumerate(axes):
        n = shape[ax]
        if k == array_at:
            ishape = draw(shapes_st(0, 2, 1, 3))
            vals = draw(st.lists(st.integers(-n, n - 1), min_size=int(np.prod(ishape)),
                                 max_size=int(np.prod(ishape))))
            arr = np.array(vals, dtype=draw(st.sampled_from([np.int32, np.int64]))).reshape(ishape)
            items.append(arr.tolist() if draw(st.booleans()) and arr.ndim else arr)
            continue
        kind = draw(st.sampled_from(["int", "slice", "slice", "full"]))
        if kind == "int":
            items.append(draw(st.integers(-n, n - 1)))
        elif kind == "full":
            items.append(slice(None))
        else:
            bound = st.none() | st.integers(-n - 2, n + 2)
            step = st.none() | st.integers(-3, 3).filter(bool)
            items.append(slice(draw(bound), draw(bound), draw(step)))
    if n_trail or draw(st.booleans()):  # the Ellipsis stands for the axes not indexed
        items.insert(n_lead, Ellipsis)
    for _ in range(draw(st.integers(0, 2))):
        items.insert(draw(st.integers(0, len(items))), None)
    return shape, tuple(items)


@hsettings
@given(case=index_case(), dtype=dtypes_st)
def test_getitem_matches_numpy(backend, case, dtype):
    shape, idx = case
    x = arange(shape, dtype)
    expected = x[idx]
    same(run(lambda v: v[idx], backend, x), expected)
    if len(idx) == 1:
        same(run(lambda v: v[idx[0]], backend, x), expected)  # a bare (non-tuple) index
    arrays = [i for i in idx if isinstance(i, np.ndarray)]
    if arrays:  # the same index array as a runtime input (a Tracer index)
        k = next(j for j, i in enumerate(idx) if isinstance(i, np.ndarray))
        same(run(lambda v, i: v[idx[:k] + (i,) + idx[k + 1:]], backend, x, arrays[0]), expected)


ADVANCED = [  # integer scalars next to an array index are advanced indices too (numpy rules)
    (0, slice(None), [1, 2]), ([1, 0], slice(None), 0), (slice(None), 0, [1, 2]), (0, [1, 2]),
    (0, None, [1, 2]), (0, Ellipsis, [1, 0]), ([0, 1], Ellipsis, 0), (None, 1, [[0, 1], [2, 0]]),
    (slice(None), 1, slice(None, None, -1), [3, 0]), (Ellipsis, [2, 0], 1), (np.array(1), slice(None), 0),
    (np.array([[1], [0]]), slice(1, None), 2), ([-1, 0, 1],), (slice(None), []),
]


@pytest.mark.parametrize("idx", ADVANCED, ids=str)
def test_getitem_advanced_combinations(backend, idx):
    x = arange((2, 3, 4, 5)) if len(idx) == 4 else arange((2, 3, 4))
    same(run(lambda v: v[idx], backend, x), x[idx])


def test_getitem_forms(backend):
    x = arange((4, 5, 6))
    same(run(lambda v: v[1:, ::2], backend, x), x[1:, ::2])
    same(run(lambda v: v[::-1, -2::-3, 4:0:-2], backend, x), x[::-1, -2::-3, 4:0:-2])
    same(run(lambda v: v[..., None, -1], backend, x), x[..., None, -1])
    same(run(lambda v: v[()], backend, x), x)
    same(run(lambda v: v[...], backend, x), x)
    same(run(lambda v: v[np.int64(2), np.int32(-1)], backend, x), x[2, -1])
    same(run(lambda v: v[3:1], backend, x), x[3:1])  # empty
    same(run(lambda v: v[10:], backend, x), x[10:])
    same(run(lambda v, i: v[:, i], backend, x, np.array([[4, -5]], np.int32)), x[:, [[4, -5]]])
    g = ait.trace(lambda v: v[:, :])(S((4, 5), f32))
    assert not g.eqns  # a full slice is no op


def test_getitem_symbolic(backend):
    B = ait.Dim("B", max=32)
    s = S((B, 8), f32)
    t = lambda fn: ait.trace(fn)(s).out_avals[0].shape  # noqa: E731
    assert t(lambda v: v[1:, ::2]) == (B - 1, 4)
    assert t(lambda v: v[:-1]) == (B - 1, 8)
    assert t(lambda v: v[-1]) == (8,)
    assert t(lambda v: v[:, None, 3]) == (B, 1)
    assert t(lambda v: v[..., [0, 7, 1]]) == (B, 3)
    assert t(lambda v: v[::3]) == (sympy.ceiling(B / 3), 8)
    with pytest.raises(ValueError, match="negative slice step on symbolic axis"):
        ait.trace(lambda v: v[::-1])(s)
    f = ait.jit(lambda v: (v[1:, ::2], v[-1], v[::2]), backend=backend, dynamic={0: {0: B}})
    for n in (2, 5):
        x = arange((n, 8))
        a, b, c = f(x)
        same(a, x[1:, ::2])
        same(b, x[-1])
        same(c, x[::2])


def test_getitem_errors():
    s = S((2, 3, 4), f32)

    def raises(exc, match, idx):
        with pytest.raises(exc, match=match):
            ait.trace(lambda v: v[idx])(s)
        with pytest.raises(exc):
            arange((2, 3, 4))[idx]  # numpy agrees it is an error
    raises(IndexError, "index 2 is out of bounds for axis 0 with size 2", 2)
    raises(IndexError, "index -3 is out of bounds for axis 0 with size 2", -3)
    raises(IndexError, "index 4 is out of bounds for axis 2 with size 4", (0, 0, 4))
    raises(IndexError, "index 3 is out of bounds for axis 1 with size 3", (slice(None), [0, 3]))
    raises(IndexError, "index -4 is out of bounds for axis 1", (0, np.array([-4])))
    raises(IndexError, r"too many indices \(4\)", (0, 0, 0, 0))
    raises(IndexError, r"too many indices", (None, 0, Ellipsis, 0, 0, 0))
    raises(IndexError, "single ellipsis", (Ellipsis, 0, Ellipsis))
    raises(ValueError, "slice step cannot be zero", slice(None, None, 0))
    # numpy accepts these, aitrace refuses them clearly
    with pytest.raises(IndexError, match="only one integer-array index"):
        ait.trace(lambda v: v[[0, 1], [1, 2]])(s)
    with pytest.raises(IndexError, match="boolean masks"):
        ait.trace(lambda v: v[np.array([True, False])])(s)
    with pytest.raises(IndexError, match="boolean masks"):
        ait.trace(lambda v, m: v[m])(s, S((2,), b_))
    with pytest.raises(IndexError, match="unsupported index"):
        ait.trace(lambda v: v["a"])(s)


def test_tracer_len_and_iter(backend):
    x = arange((3, 2))
    same(np.stack(run(lambda v: list(v), backend, x)), x)
    assert run(lambda v: v[len(v) - 1], backend, x).tolist() == x[-1].tolist()
