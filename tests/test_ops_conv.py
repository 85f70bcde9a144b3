"""conv2d (NHWC) and its patches (conv2d_patches, im2col) against independent loop formulations,
on every host backend."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aitrace as ait
from aitrace.core import shapes
from conftest import FLOAT_DTYPES, TOLERANCE, assert_close, random_array


# `backend` is a function-scoped fixture holding only a name: safe to share across examples
fixture_ok = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------- independent numpy formulation
def torch_same_pads(kernel, dilation):
    """torch's padding='same': total d*(k-1) split with the extra unit at the end."""
    return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation))


def ref_conv2d(x, w, b, stride, pads, dilation, groups):
    """Cross-correlation by explicit loops over output positions, output channels and taps, in
    float64. Positions outside the input are the zero padding (skipped)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    og = o // groups
    (pt, pb), (pl, pr) = pads

    def count(size, lo, hi, k, s, d):  # how many window positions fit in the padded extent
        m = 0
        while m * s + d * (k - 1) <= size + lo + hi - 1:
            m += 1
        return m
    oh_n = count(h, pt, pb, kh, stride[0], dilation[0])
    ow_n = count(wd, pl, pr, kw, stride[1], dilation[1])
    out = np.zeros((n, oh_n, ow_n, o))
    for oh in range(oh_n):
        for ow in range(ow_n):
            for oc in range(o):
                g = oc // og
                acc = np.zeros(n)
                for i in range(kh):
                    ih = oh * stride[0] - pt + i * dilation[0]
                    if not 0 <= ih < h:
                        continue
                    for j in range(kw):
                        iw = ow * stride[1] - pl + j * dilation[1]
                        if 0 <= iw < wd:
                            acc += x[:, ih, iw, g * cg:(g + 1) * cg] @ w[oc, i, j, :]
                out[:, oh, ow, oc] = acc + (0.0 if b is None else float(b[oc]))
    return out


# ---------------------------------------------------------------- strategies
@st.composite
def conv_cases(draw):
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "dense":
        groups, cg, og = 1, draw(st.integers(1, 4)), draw(st.integers(1, 4))
    elif kind == "grouped":
        groups, cg, og = draw(st.integers(2, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    else:  # depthwise: one input channel per group, a channel multiplier of outputs
        groups, cg, og = draw(st.integers(1, 4)), 1, draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = draw(st.sampled_from([1, 2, (1, 2), (2, 1)]))
    dil = (dilation, dilation) if isinstance(dilation, int) else dilation
    pad_kind = draw(st.sampled_from(["int", "pair", "nested", "valid", "same"]))
    if pad_kind == "same":
        stride = draw(st.sampled_from([1, (1, 1)]))
        pads = torch_same_pads(kernel, dil)
        padding = "same"
    else:
        stride = draw(st.sampled_from([1, 2, 3, (1, 2), (2, 1)]))
        if pad_kind == "int":
            padding = draw(st.integers(0, 2))
            pads = ((padding, padding),) * 2
        elif pad_kind == "pair":
            padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
            pads = tuple((p, p) for p in padding)
        elif pad_kind == "nested":
            padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
            pads = padding
        else:
            padding, pads = "valid", ((0, 0), (0, 0))
    st2 = (stride, stride) if isinstance(stride, int) else stride
    sizes = []
    for a in range(2):
        span = dil[a] * (kernel[a] - 1) + 1
        least = max(1, span - sum(pads[a]))
        sizes.append(draw(st.integers(least, least + 6)))
    return dict(dtype=dtype, n=draw(st.integers(1, 2)), hw=tuple(sizes), c=cg * groups,
                o=og * groups, kernel=kernel, groups=groups, stride=stride, stride2=st2,
                padding=padding, pads=pads, dilation=dilation, dil2=dil,
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@fixture_ok
@given(case=conv_cases())
def test_conv2d_matches_loops(backend, case):
    rng = np.random.default_rng(case["seed"])
    dt = case["dtype"]
    x = random_array(rng, (case["n"], *case["hw"], case["c"]), dt)
    w = random_array(rng, (case["o"], *case["kernel"], case["c"] // case["groups"]), dt)
    b = random_array(rng, (case["o"],), dt) if case["bias"] else None
    kw = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"],
              groups=case["groups"])
    if b is None:
        f = ait.jit(lambda x, w: ait.conv2d(x, w, **kw), backend=backend)
        y = f(x, w)
    else:
        f = ait.jit(lambda x, w, b: ait.conv2d(x, w, b, **kw), backend=backend)
        y = f(x, w, b)
    expected = ref_conv2d(x, w, b, case["stride2"], case["pads"], case["dil2"], case["groups"])
    assert y.dtype == dt
    if case["padding"] == "same":
        assert y.shape[1:3] == case["hw"]
    assert_close(y, expected, dt)


def test_conv2d_same_even_kernel_is_asymmetric():
    """An even kernel's odd total padding goes at the end (bottom/right), as torch does."""
    x = np.arange(1 * 4 * 4 * 1, dtype=np.float32).reshape(1, 4, 4, 1)
    w = np.zeros((1, 2, 2, 1), np.float32)
    w[0, 0, 0, 0] = 1.0  # picks the top-left tap: with padding at the end this is x itself
    np.testing.assert_array_equal(ait.conv2d(x, w, padding="same"), x)
    w3 = np.zeros((1, 1, 4, 1), np.float32)
    w3[0, 0, 1, 0] = 1.0  # total padding 3 -> 1 left, 2 right: tap 1 is again x itself
    np.testing.assert_array_equal(ait.conv2d(x, w3, padding="same"), x)


def test_conv2d_depthwise_is_per_channel(backend):
    rng = np.random.default_rng(0)
    x = random_array(rng, (2, 5, 6, 3), np.float32)
    w = random_array(rng, (3, 3, 3, 1), np.float32)
    y = ait.jit(lambda x, w: ait.conv2d(x, w, padding=1, groups=3), backend=backend)(x, w)
    for ch in range(3):
        one = ait.conv2d(x[..., ch:ch + 1], w[ch:ch + 1], padding=1)
        assert_close(y[..., ch:ch + 1], one)


# ---------------------------------------------------------------- eager, dtypes, graph
def test_conv2d_eager_numpy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 5, 4))  # float64 -> float32, as every entry point
    w = rng.standard_normal((8, 3, 2, 2)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    y = ait.conv2d(x, w, b, stride=(2, 1), padding=(1, 0), groups=2)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (2, 3, 4, 8)
    assert_close(y, ref_conv2d(x.astype(np.float32), w, b, (2, 1), ((1, 1), (0, 0)), (1, 1), 2))


def test_conv2d_int_inputs_compute_in_float32():
    x = np.ones((1, 3, 3, 2), np.int32)
    w = np.ones((1, 2, 2, 2), np.int32)
    y = ait.conv2d(x, w)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.full((1, 2, 2, 1), 8.0, np.float32))


def test_conv2d_graph_one_primitive_and_bias_add():
    sd = ait.ShapeDtype
    g = ait.trace(lambda x, w, b: ait.conv2d(x, w, b, stride=2, padding="valid"))(
        sd((1, 8, 8, 3), ait.float16), sd((4, 3, 3, 3), ait.float16), sd((4,), ait.float16))
    assert [e.prim.name for e in g.eqns] == ["conv2d", "add"]
    p = g.eqns[0].params
    assert p == dict(stride=(2, 2), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1)
    hash(tuple(p.items()))
    assert g.out_avals == [sd((1, 3, 3, 4), ait.float16)]
    ait.typecheck(g)


def test_conv2d_fp16_accumulates_in_fp32():
    # 2048 products of 1 + 2^-10: an fp16 accumulator would stall at 2048 (ulp 2 there)
    x = np.full((1, 1, 1, 2048), 1 + 2 ** -10, np.float16)
    w = np.ones((1, 1, 1, 2048), np.float16)
    y = ait.conv2d(x, w)
    assert y.dtype == np.float16 and float(y[0, 0, 0, 0]) == 2050.0


# ---------------------------------------------------------------- symbolic shapes
def test_conv2d_symbolic_shapes(backend):
    N, H, W = ait.Dim("N"), ait.Dim("H"), ait.Dim("W")
    sd = ait.ShapeDtype
    w = sd((8, 3, 3, 3), ait.float32)
    g = ait.trace(lambda x, w: ait.conv2d(x, w, stride=2, padding=1))(sd((N, 16, 16, 3), ait.float32), w)
    assert g.out_avals[0].shape == (N, 8, 8, 8)
    g = ait.trace(lambda x, w: ait.conv2d(x, w, stride=(2, 3), padding=1, dilation=(1, 2)))(
        sd((N, H, W, 3), ait.float32), w)
    (n, oh, ow, o) = g.out_avals[0].shape
    assert n == N and o == 8
    for size in range(3, 20):
        assert shapes.evaluate(oh, {H: size}) == (size + 2 - 3) // 2 + 1
        assert shapes.evaluate(ow, {W: size + 2}) == (size + 4 - 5) // 3 + 1
    g = ait.trace(lambda x, w: ait.conv2d(x, w, padding="same"))(sd((N, H, W, 3), ait.float32), w)
    assert all(shapes.equal(a, b) for a, b in zip(g.out_avals[0].shape, (N, H, W, 8)))

    # one trace serves every size: run it at two and compare with the loops
    f = ait.jit(lambda x, w: ait.conv2d(x, w, stride=2, padding=1), backend=backend,
                dynamic={0: {0: N, 1: H, 2: W}})
    rng = np.random.default_rng(2)
    wv = random_array(rng, (8, 3, 3, 3), np.float32)
    for shape in [(1, 7, 9, 3), (3, 10, 4, 3)]:
        xv = random_array(rng, shape, np.float32)
        assert_close(f(xv, wv), ref_conv2d(xv, wv, None, (2, 2), ((1, 1), (1, 1)), (1, 1), 1))


# ---------------------------------------------------------------- errors
X = np.zeros((2, 7, 6, 4), np.float32)


@pytest.mark.parametrize("make, kw, exc, match", [
    (lambda: (X[0], np.zeros((6, 3, 3, 4), np.float32)), {}, ValueError,
     r"conv2d: .*rank 4.*\[7,6,4\].*\[6,3,3,4\]"),
    (lambda: (X, np.zeros((6, 3, 4), np.float32)), {}, ValueError,
     r"conv2d: .*rank 4.*\[2,7,6,4\].*\[6,3,4\]"),
    (lambda: (X, np.zeros((6, 3, 3, 3), np.float32)), {}, ValueError,
     r"conv2d: input \[2,7,6,4\] and weight \[6,3,3,3\].*4 channels"),
    (lambda: (X, np.zeros((6, 3, 3, 1), np.float32)), dict(groups=3), ValueError,
     r"conv2d: groups=3 must divide the 4 input channels.*\[2,7,6,4\].*\[6,3,3,1\]"),
    (lambda: (X, np.zeros((5, 3, 3, 2), np.float32)), dict(groups=2), ValueError,
     r"conv2d: groups=2 must divide the 5 output channels.*\[5,3,3,2\].*\[2,7,6,4\]"),
    (lambda: (X, np.zeros((6, 8, 3, 4), np.float32)), {}, ValueError,
     r"conv2d: kernel .* larger than the padded input.*\[2,7,6,4\].*\[6,8,3,4\]"),
    (lambda: (X, np.zeros((6, 3, 3, 4), np.float32)), dict(dilation=4), ValueError,
     r"conv2d: kernel of extent 9 .*dilation 4.*\[2,7,6,4\].*\[6,3,3,4\]"),
    (lambda: (X, np.zeros((6, 3, 3, 4), np.float32)), dict(stride=2, padding="same"), ValueError,
     r"conv2d: padding='same' is not supported for strided"),
    (lambda: (X, np.zeros((6, 3, 3, 4), np.float32)), dict(padding="full"), ValueError,
     r"conv2d: padding must be"),
    (lambda: (X, np.zeros((6, 3, 3, 4), np.float32)), dict(padding=-1), ValueError,
     r"conv2d: padding must be non-negative"),
    (lambda: (X, np.zeros((6, 3, 3, 4), np.float32)), dict(stride=0), ValueError,
     r"conv2d: stride must be positive"),
    (lambda: (X, np.zeros((6, 3, 3, 4), np.float32)), dict(stride=(1, 2, 3)), TypeError,
     r"conv2d: stride must be an int or a pair"),
    (lambda: (X, np.zeros((6, 3, 3, 4), np.float32)), dict(groups=0), ValueError,
     r"conv2d: groups must be a positive int"),
    (lambda: (X, np.zeros((6, 3, 3, 4), np.float32)), dict(b=np.zeros(5, np.float32)), ValueError,
     r"conv2d: bias must be \[6\] for weight \[6,3,3,4\], got \[5\]"),
])
@pytest.mark.parametrize("mode", ["eager", "traced"])
def test_conv2d_errors(make, kw, exc, match, mode):
    x, w = make()
    if mode == "eager":
        with pytest.raises(exc, match=match):
            ait.conv2d(x, w, **kw)
    else:
        with pytest.raises(exc, match=match):
            ait.trace(lambda x, w: ait.conv2d(x, w, **kw))(x, w)


def test_conv2d_primitive_rejects_mixed_dtypes():
    from aitrace.ops.conv import conv2d_p
    sd = ait.ShapeDtype
    with pytest.raises(TypeError, match=r"conv2d: .*share a dtype.*f16\[1,4,4,2\].*f32\[1,1,1,2\]"):
        conv2d_p.abstract_eval(sd((1, 4, 4, 2), ait.float16), sd((1, 1, 1, 2), ait.float32),
                               stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1)


def test_conv2d_symbolic_kernel_too_large_when_provable():
    N = ait.Dim("N")
    sd = ait.ShapeDtype
    with pytest.raises(ValueError, match=r"conv2d: kernel .*\[N,2,2,3\].*\[4,3,3,3\]"):
        ait.trace(lambda x, w: ait.conv2d(x, w))(sd((N, 2, 2, 3), ait.float32), sd((4, 3, 3, 3), ait.float32))


# ---------------------------------------------------------------- conv2d_patches (im2col)
def ref_patches(x, kernel, stride, pads, dilation):
    """[N, OH, OW, KH*KW*C] by loops over output positions and taps; zeros in the padding."""
    n, h, wd, c = x.shape
    (kh, kw), (pt, pb), (pl, pr) = kernel, *pads
    oh_n = (h + pt + pb - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow_n = (wd + pl + pr - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, oh_n, ow_n, kh, kw, c), x.dtype)
    for oh in range(oh_n):
        for ow in range(ow_n):
            for i in range(kh):
                for j in range(kw):
                    ih, iw = oh * stride[0] - pt + i * dilation[0], ow * stride[1] - pl + j * dilation[1]
                    if 0 <= ih < h and 0 <= iw < wd:
                        out[:, oh, ow, i, j] = x[:, ih, iw]
    return out.reshape(n, oh_n, ow_n, kh * kw * c)


@fixture_ok
@given(case=conv_cases())
def test_conv2d_patches_match_loops(backend, case):
    """The patches are exact copies; with groups 1, patches @ W[O, KH*KW*C].T is the conv."""
    rng = np.random.default_rng(case["seed"])
    dt, kernel = case["dtype"], case["kernel"]
    x = random_array(rng, (case["n"], *case["hw"], case["c"]), dt)
    f = ait.jit(lambda x: ait.ops.conv2d_patches(x, kernel, case["stride"], case["padding"], case["dilation"]),
                backend=backend)
    p = f(x)
    want = ref_patches(x, kernel, case["stride2"], case["pads"], case["dil2"])
    assert p.dtype == dt and p.shape == want.shape
    np.testing.assert_array_equal(p, want)
    w = random_array(rng, (5, *kernel, case["c"]), dt)
    conv = ref_conv2d(x, w, None, case["stride2"], case["pads"], case["dil2"], 1)
    assert_close(p.astype(np.float64) @ w.reshape(5, -1).T.astype(np.float64), conv, np.float32)


def test_conv2d_patches_symbolic_shapes(backend):
    N, H, W = ait.Dim("N"), ait.Dim("H"), ait.Dim("W")
    f = ait.jit(lambda x: ait.ops.conv2d_patches(x, 3, stride=2, padding=1), backend=backend,
                dynamic={0: {0: N, 1: H, 2: W}})
    rng = np.random.default_rng(3)
    for shape in [(1, 7, 9, 2), (2, 4, 11, 2)]:
        x = random_array(rng, shape, np.float32)
        np.testing.assert_array_equal(f(x), ref_patches(x, (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1)))


@pytest.mark.parametrize("x, kw, exc, match", [
    (X[0], dict(kernel_size=3), ValueError, r"conv2d_patches: input must be NHWC .*\[7,6,4\]"),
    (X, dict(kernel_size=8), ValueError, r"conv2d_patches: kernel of extent 8 .*input \[2,7,6,4\]"),
    (X, dict(kernel_size=(3, 0)), ValueError, r"conv2d_patches: kernel_size must be positive"),
    (X, dict(kernel_size=3, stride=2, padding="same"), ValueError, r"conv2d_patches: padding='same' is not"),
    (X, dict(kernel_size=3, dilation=(1, 2, 3)), TypeError, r"conv2d_patches: dilation must be an int or a pair"),
])
def test_conv2d_patches_errors(x, kw, exc, match):
    with pytest.raises(exc, match=match):
        ait.ops.conv2d_patches(x, **kw)
    with pytest.raises(exc, match=match):
        ait.trace(lambda x: ait.ops.conv2d_patches(x, **kw))(x)


# ---------------------------------------------------------------- torch parity (where installed)
@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@given(case=conv_cases())
def test_conv2d_matches_torch(torch, case):
    rng = np.random.default_rng(case["seed"])
    x = random_array(rng, (case["n"], *case["hw"], case["c"]), np.float32)
    w = random_array(rng, (case["o"], *case["kernel"], case["c"] // case["groups"]), np.float32)
    b = random_array(rng, (case["o"],), np.float32)
    padding = case["padding"]
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):  # torch pads symmetric only
        (t, bo), (le, r) = padding
        xt = torch.nn.functional.pad(xt, (le, r, t, bo))
        tpad = 0
    else:
        tpad = padding
    # torch is given the dilated filter itself (zeros between the taps) and dilation 1, the same
    # sums: torch 2.13's CPU dilated convolution segfaults on some shapes (e.g. input [2,1,3,1],
    # filter [1,1,3,1], stride (1,2), padding (0,1), dilation (1,2), with a bias), which took
    # down the pytest worker
    dh, dw = case["dil2"]
    wd = np.zeros((w.shape[0], (w.shape[1] - 1) * dh + 1, (w.shape[2] - 1) * dw + 1, w.shape[3]), w.dtype)
    wd[:, ::dh, ::dw] = w
    expected = torch.nn.functional.conv2d(xt, torch.from_numpy(wd).permute(0, 3, 1, 2),
                                          torch.from_numpy(b), stride=case["stride"], padding=tpad,
                                          groups=case["groups"])
    y = ait.conv2d(x, w, b, stride=case["stride"], padding=padding, dilation=case["dilation"],
                   groups=case["groups"])
    assert_close(y, expected.permute(0, 2, 3, 1).numpy(), np.float32, atol=1e-4)


# ---------------------------------------------------------------- cpu Winograd F(4x4, 3x3) path
@st.composite
def winograd_cases(draw):
    """3x3, stride 1, dilation 1, groups 1, C >= 16, O >= 8, outputs >= 7x7: shapes the cpu
    backend runs through Winograd (ait/winograd.h), odd sizes and channel counts included."""
    pad = draw(st.sampled_from([0, 1, ((1, 0), (2, 1))]))
    pads = ((pad, pad),) * 2 if isinstance(pad, int) else pad
    hw = tuple(draw(st.integers(9 - sum(p), 14)) for p in pads)
    return dict(dtype=draw(st.sampled_from(FLOAT_DTYPES)), n=draw(st.integers(1, 2)), hw=hw,
                c=draw(st.integers(16, 70)), o=draw(st.integers(8, 70)), padding=pad, pads=pads,
                const_weight=draw(st.booleans()),
                epilogue=draw(st.sampled_from(["none", "bias", "bias_relu_residual"])),
                seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=12)
@given(case=winograd_cases())
def test_conv2d_winograd_matches_loops(case):
    """cpu vs the float64 loops, within 1e-4 of the output's scale in fp32 (measured <= 1e-5),
    with the weight a model constant (transform cached) or an argument (transformed per call),
    and bias / relu / residual fused into the output transform's epilogue."""
    rng = np.random.default_rng(case["seed"])
    dt = case["dtype"]
    x = random_array(rng, (case["n"], *case["hw"], case["c"]), dt)
    w = random_array(rng, (case["o"], 3, 3, case["c"]), dt)
    b = random_array(rng, (case["o"],), dt)
    expected = ref_conv2d(x, w, None, (1, 1), case["pads"], (1, 1), 1)
    r = random_array(rng, expected.shape, dt)
    form = case["epilogue"]
    if form != "none":
        expected = expected + b.astype(np.float64)
    if form == "bias_relu_residual":
        expected = np.maximum(expected, 0) + r.astype(np.float64)

    def net(x, w, r):
        y = ait.conv2d(x, w, b if form != "none" else None, padding=case["padding"])
        return ait.relu(y) + r if form == "bias_relu_residual" else y
    if case["const_weight"]:
        f = ait.jit(lambda x, r: net(x, w, r), backend="cpu")
        args = (x, r)
    else:
        f = ait.jit(net, backend="cpu")
        args = (x, w, r)
    src = f.lower(*args).source
    assert (", true);" in src or ", true, static_cast<const float*>(packed_w));" in src) == case["const_weight"]
    y = f(*args)
    assert y.dtype == dt
    scale = float(np.abs(expected).max())
    tol = 1e-4 if dt == np.float32 else TOLERANCE[np.dtype(dt)]
    assert_close(y, expected, dt, rtol=tol, atol=tol * scale)
