"""attention (torch's scaled_dot_product_attention) against an independent per-row formulation."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aitrace as ait
from conftest import FLOAT_DTYPES, assert_close, random_array

# `backend` is a function-scoped fixture holding only a name: safe to share across examples
fixture_ok = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------- independent numpy formulation
def ref_attention(q, k, v, mask=None, causal=False, scale=None):
    """One query row at a time in float64: scores of the keys it may see, a max-shifted
    softmax over them, the weighted sum of values. A row that sees no key gives zeros."""
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    b, h, sq, d = q.shape
    sk, dv = k.shape[2], v.shape[3]
    scale = 1 / math.sqrt(d) if scale is None else scale
    m = None if mask is None else np.broadcast_to(mask, (b, h, sq, sk))
    out = np.zeros((b, h, sq, dv))
    for bi in range(b):
        for hi in range(h):
            for i in range(sq):
                scores = []
                for j in range(sk):
                    s = float(np.dot(q[bi, hi, i], k[bi, hi, j])) * scale
                    if causal and j > i:
                        s = -math.inf
                    if m is not None:
                        if m.dtype == np.bool_:
                            s = s if m[bi, hi, i, j] else -math.inf
                        else:
                            s = s + float(m[bi, hi, i, j])
                    scores.append(s)
                scores = np.array(scores)
                if np.all(np.isneginf(scores)):
                    continue
                wts = np.exp(scores - scores.max())
                out[bi, hi, i] = (wts / wts.sum()) @ v[bi, hi]
    return out


# ---------------------------------------------------------------- strategies
@st.composite
def attention_cases(draw):
    b, h = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    sq, sk = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    d, dv = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    kind = draw(st.sampled_from([None, "bool", "additive"]))
    mask_shape = None
    if kind is not None:
        full = [b, h, sq, sk]
        keep = draw(st.lists(st.booleans(), min_size=4, max_size=4))
        mask_shape = [n if kp else 1 for n, kp in zip(full, keep)]
        mask_shape = tuple(mask_shape[draw(st.integers(0, 2)):])  # leading dims may be absent
    return dict(dtype=draw(st.sampled_from(FLOAT_DTYPES)), q=(b, h, sq, d), k=(b, h, sk, d),
                v=(b, h, sk, dv), kind=kind, mask_shape=mask_shape, causal=draw(st.booleans()),
                scale=draw(st.one_of(st.none(), st.floats(0.05, 2.0))),
                seed=draw(st.integers(0, 2**32 - 1)))


def make_inputs(case, dtype=None):
    rng = np.random.default_rng(case["seed"])
    dtype = dtype or case["dtype"]
    q, k, v = (random_array(rng, case[n], dtype) for n in "qkv")
    mask = None
    if case["kind"] == "bool":
        mask = rng.random(case["mask_shape"]) < 0.7
    elif case["kind"] == "additive":
        mask = rng.uniform(-3, 3, case["mask_shape"]).astype(np.float32)
        mask[rng.random(case["mask_shape"]) < 0.2] = -np.inf
        mask = mask.astype(dtype)
    return q, k, v, mask


@fixture_ok
@given(case=attention_cases())
def test_attention_matches_rows(backend, case):
    q, k, v, mask = make_inputs(case)
    kw = dict(causal=case["causal"], scale=case["scale"])
    if mask is None:
        y = ait.jit(lambda q, k, v: ait.attention(q, k, v, **kw), backend=backend)(q, k, v)
    else:
        y = ait.jit(lambda q, k, v, m: ait.attention(q, k, v, m, **kw), backend=backend)(q, k, v, mask)
    assert y.dtype == case["dtype"]
    assert np.isfinite(y.astype(np.float32)).all()
    assert_close(y, ref_attention(q, k, v, mask, **kw), case["dtype"])


def test_attention_causal_top_left_aligned():
    """Sq > Sk and Sq < Sk: query i sees keys 0..i (torch's tril of ones(Sq, Sk))."""
    rng = np.random.default_rng(5)
    for sq, sk in [(5, 3), (3, 5)]:
        q = random_array(rng, (1, 1, sq, 4), np.float32)
        k = random_array(rng, (1, 1, sk, 4), np.float32)
        v = np.eye(sk, dtype=np.float32)[None, None]  # output row = attention weights
        p = ait.attention(q, k, v, causal=True)
        for i in range(sq):
            assert (p[0, 0, i, i + 1:] == 0).all() and p[0, 0, i, :i + 1].sum() == pytest.approx(1, 1e-6)


def test_attention_fully_masked_rows_are_zero(backend):
    rng = np.random.default_rng(6)
    q, k, v = (random_array(rng, (1, 2, 3, 4), np.float32) for _ in range(3))
    mask = np.ones((3, 3), bool)
    mask[1] = False
    f = ait.jit(lambda q, k, v, m: ait.attention(q, k, v, m), backend=backend)
    y = f(q, k, v, mask)
    assert (y[:, :, 1] == 0).all() and np.isfinite(y).all()
    y2 = f(q, k, v, np.where(mask, 0.0, -np.inf).astype(np.float32))  # the same mask, additive
    assert_close(y2, y)


def test_attention_bool_and_additive_masks_agree():
    rng = np.random.default_rng(7)
    q, k, v = (random_array(rng, (2, 2, 4, 8), np.float16) for _ in range(3))
    m = rng.random((2, 1, 4, 4)) < 0.6
    m[..., 0] = True
    a = ait.attention(q, k, v, m, causal=True)
    b = ait.attention(q, k, v, np.where(m, 0, -np.inf).astype(np.float32), causal=True)
    assert a.dtype == b.dtype == np.float16
    np.testing.assert_array_equal(a, b)


def test_attention_stable_softmax_large_scores():
    q = np.full((1, 1, 2, 4), 100.0, np.float32)
    k = np.full((1, 1, 3, 4), 100.0, np.float32)
    v = np.arange(6, dtype=np.float32).reshape(1, 1, 3, 2)
    y = ait.attention(q, k, v, scale=1.0)  # scores 4e4: exp would overflow without the shift
    assert_close(y, np.broadcast_to(v.mean(axis=2, keepdims=True), (1, 1, 2, 2)))


def test_attention_eager_numpy():
    rng = np.random.default_rng(8)
    q, k = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 5))  # float64 -> f32
    v = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    mask = rng.standard_normal((4, 6))  # additive, float64 -> cast to q's float32
    y = ait.attention(q, k, v, mask=mask)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (2, 3, 4, 7)
    f32 = np.float32
    assert_close(y, ref_attention(q.astype(f32), k.astype(f32), v, mask.astype(f32)))
    assert_close(ait.attention(q, k, v), ref_attention(q.astype(f32), k.astype(f32), v))


def test_attention_graph():
    sd = ait.ShapeDtype
    g = ait.trace(lambda q, k, v, m: ait.attention(q, k, v, m, causal=True))(
        sd((2, 4, 8, 16), ait.bfloat16), sd((2, 4, 10, 16), ait.bfloat16),
        sd((2, 4, 10, 32), ait.bfloat16), sd((2, 1, 1, 10), ait.float32))
    assert [e.prim.name for e in g.eqns] == ["cast", "attention"]  # additive mask cast to q's dtype
    assert g.eqns[-1].params == dict(causal=True, scale=0.25, mask_kind="additive")
    assert g.out_avals == [sd((2, 4, 8, 32), ait.bfloat16)]
    ait.typecheck(g)
    g = ait.trace(lambda q, k, v: ait.attention(q, k, v, scale=0.5))(
        sd((1, 1, 3, 4), ait.float32), sd((1, 1, 3, 4), ait.float32), sd((1, 1, 3, 4), ait.float32))
    assert len(g.eqns[0].invars) == 3
    assert g.eqns[0].params == dict(causal=False, scale=0.5, mask_kind=None)


# ---------------------------------------------------------------- symbolic shapes
def test_attention_symbolic_shapes(backend):
    B, S, T = ait.Dim("B"), ait.Dim("S"), ait.Dim("T")
    sd = ait.ShapeDtype
    g = ait.trace(lambda q, k, v, m: ait.attention(q, k, v, m, causal=True))(
        sd((B, 2, S, 8), ait.float16), sd((B, 2, T, 8), ait.float16), sd((B, 2, T, 4), ait.float16),
        sd((B, 1, 1, T), ait.bool_))
    assert g.out_avals == [sd((B, 2, S, 4), ait.float16)]

    f = ait.jit(lambda q, k, v, m: ait.attention(q, k, v, m, causal=True), backend=backend,
                dynamic={0: {0: B, 2: S}, 1: {0: B, 2: T}, 2: {0: B, 2: T}, 3: {0: B, 3: T}})
    rng = np.random.default_rng(9)
    for b, s, t in [(1, 3, 5), (2, 6, 2)]:
        q = random_array(rng, (b, 2, s, 8), np.float32)
        k = random_array(rng, (b, 2, t, 8), np.float32)
        v = random_array(rng, (b, 2, t, 4), np.float32)
        m = rng.random((b, 1, 1, t)) < 0.8
        assert_close(f(q, k, v, m), ref_attention(q, k, v, m, causal=True))


# ---------------------------------------------------------------- errors
def _sd(shape, dtype=ait.float32):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize("args, kw, exc, match", [
    ((_sd((2, 3, 4)), _sd((2, 3, 4)), _sd((2, 3, 4))), {}, ValueError,
     r"attention: q must be .*rank 4.*q \[2,3,4\], k \[2,3,4\], v \[2,3,4\]"),
    ((_sd((2, 3, 4, 8)), _sd((2, 3, 5, 8, 1)), _sd((2, 3, 5, 8))), {}, ValueError,
     r"attention: .*rank 4.*k \[2,3,5,8,1\]"),
    ((_sd((2, 3, 4, 8)), _sd((2, 3, 5, 6)), _sd((2, 3, 5, 8))), {}, ValueError,
     r"attention: q and k head_dim differ \(8 vs 6\): q \[2,3,4,8\], k \[2,3,5,6\], v \[2,3,5,8\]"),
    ((_sd((2, 3, 4, 8)), _sd((2, 3, 5, 8)), _sd((2, 3, 6, 8))), {}, ValueError,
     r"attention: k and v sequence lengths differ \(5 vs 6\)"),
    ((_sd((2, 3, 4, 8)), _sd((1, 3, 5, 8)), _sd((1, 3, 5, 8))), {}, ValueError,
     r"attention: batch dims differ: q \[2,3,4,8\], k \[1,3,5,8\]"),
    ((_sd((2, 3, 4, 8)), _sd((2, 2, 5, 8)), _sd((2, 2, 5, 8))), {}, ValueError,
     r"attention: heads dims differ"),
    ((_sd((2, 3, 4, 8)), _sd((2, 3, 5, 8)), _sd((2, 3, 5, 8))), dict(mask=_sd((4, 4), bool)), ValueError,
     r"attention: mask \[4,4\] does not broadcast to .*\[2,3,4,5\]"),
    ((_sd((2, 3, 4, 8)), _sd((2, 3, 5, 8)), _sd((2, 3, 5, 8))), dict(mask=_sd((2, 3, 2, 5))), ValueError,
     r"attention: mask \[2,3,2,5\] does not broadcast"),
    ((_sd((2, 3, 4, 8)), _sd((2, 3, 5, 8)), _sd((2, 3, 5, 8))), dict(mask=_sd((1, 2, 3, 4, 5), bool)),
     ValueError, r"attention: mask \[1,2,3,4,5\] does not broadcast"),
    ((_sd((2, 3, 4, 8)), _sd((2, 3, 5, 8)), _sd((2, 3, 5, 8))), dict(mask=_sd((4, 5), np.int32)), TypeError,
     r"attention: mask must be boolean .* got i32\[4,5\]"),
    ((_sd((2, 3, 4, 8)), _sd((2, 3, 5, 8)), _sd((2, 3, 5, 8))), dict(scale="big"), TypeError,
     r"attention: scale must be a float"),
])
@pytest.mark.parametrize("mode", ["eager", "traced"])
def test_attention_errors(args, kw, exc, match, mode):
    with pytest.raises(exc, match=match):
        if mode == "eager":
            ait.attention(*args, **kw)
        else:
            ait.trace(lambda *a: ait.attention(*a, **kw))(*args)


def test_attention_symbolic_head_dim_needs_scale():
    D = ait.Dim("D")
    sd = ait.ShapeDtype
    args = [sd((1, 1, 4, D), ait.float32)] * 3
    with pytest.raises(ValueError, match=r"attention: default scale needs a static head_dim.*\[1,1,4,D\]"):
        ait.trace(lambda q, k, v: ait.attention(q, k, v))(*args)
    g = ait.trace(lambda q, k, v: ait.attention(q, k, v, scale=0.1))(*args)
    assert g.out_avals == [sd((1, 1, 4, D), ait.float32)]


def test_attention_primitive_checks_mask_dtype():
    from aitrace.ops.attention import attention_p
    sd = ait.ShapeDtype
    q = sd((1, 1, 2, 4), ait.float16)
    with pytest.raises(TypeError, match=r"attention: additive mask must be f16, got f32\[2,2\]"):
        attention_p.abstract_eval(q, q, q, sd((2, 2), ait.float32), causal=False, scale=1.0,
                                  mask_kind="additive")
    with pytest.raises(TypeError, match=r"attention: q, k, v must share a dtype"):
        attention_p.abstract_eval(q, sd((1, 1, 2, 4), ait.float32), q, causal=False, scale=1.0,
                                  mask_kind=None)


# ---------------------------------------------------------------- torch parity (where installed)
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@given(case=attention_cases())
def test_attention_matches_torch(torch, case):
    q, k, v, mask = make_inputs(case, np.float32)
    tm, is_causal = mask, case["causal"]
    if is_causal and mask is not None:  # torch takes attn_mask or is_causal: fold causal in
        tri = np.tri(q.shape[2], k.shape[2], dtype=bool)
        tm = (mask & tri) if mask.dtype == bool else np.where(tri, mask, -np.inf).astype(np.float32)
        is_causal = False
    tm = None if tm is None else torch.from_numpy(np.ascontiguousarray(tm))
    want = torch.nn.functional.scaled_dot_product_attention(
        *(torch.from_numpy(a) for a in (q, k, v)), attn_mask=tm, is_causal=is_causal,
        scale=case["scale"]).numpy()
    want = np.nan_to_num(want, nan=0.0)  # fully masked rows: 0 in torch's math path, NaN in others
    got = ait.attention(q, k, v, mask, causal=case["causal"], scale=case["scale"])
    assert_close(got, want, atol=1e-5)
