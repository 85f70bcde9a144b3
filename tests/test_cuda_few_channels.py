"""Convolutions over few input channels on the cuda backend (backends/cuda/few_channels.py): the
legalized graph computes what the convolution did (numpy reference, no GPU needed), no conv with
unaligned channels is left for the direct kernel, the weights are folded at build time, and on a
GPU (`pytest -m cuda`) the CUTLASS kernels that now run agree with the reference."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aitrace as ait
from aitrace.backends.cuda import gemm as cg
from aitrace.backends.lowering import legalize
from aitrace.core.interpreter import eval_graph
from conftest import assert_close
from conv_cases import conv_weights
from test_cuda_backend import check

S = ait.ShapeDtype
f16, bf16 = ait.float16, ait.bfloat16
needs_cutlass = pytest.mark.skipif(cg.cutlass_include_dir() is None, reason="the CUTLASS headers are absent")


def stem(w, b, stride, padding, epilogue):
    def fn(x, *res):
        y = ait.conv2d(x, w, b, stride=stride, padding=padding)
        return ait.relu(y + res[0]) if epilogue == "residual" else ait.relu(y) if epilogue == "relu" else y
    return fn


def lowered(fn, *args):
    """(graph after the pass pipeline, the same graph legalized for the cuda backend)"""
    g = ait.jit(fn, backend="reference").lower(*args).graph
    return g, legalize(g, "cuda")


def conv_channels(g):
    return [e.invars[0].aval.shape[-1] for e in g.eqns
            if e.prim.name == "conv2d" or e.prim.name == "fused_gemm" and e.params["base"] == "conv2d"]


@needs_cutlass
@settings(deadline=None, max_examples=40)
@given(st.sampled_from([f16, bf16]), st.integers(1, 2), st.integers(1, 13), st.integers(1, 13),
       st.sampled_from([1, 2, 3, 5]), st.sampled_from([8, 16, 24]), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3), st.integers(0, 2), st.sampled_from(["none", "relu", "residual"]), st.data())
def test_legalized_graph_computes_the_convolution(dtype, n, h, w, c, o, kh, kw, stride, pad, epilogue, data):
    if data.draw(st.booleans(), "patches"):  # stride = filter, no padding: the GEMM-over-patches form
        stride, pad = kh, 0
        kw = kh
    h, w = max(h, kh), max(w, kw)
    rng = np.random.default_rng(0)
    wt, b = conv_weights(rng, o, kh, kw, c, dtype)
    fn = stem(wt, b, stride, pad, epilogue)
    args = [rng.standard_normal((n, h, w, c)).astype(dtype)]
    if epilogue == "residual":
        p, q = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        args.append(rng.standard_normal((n, p, q, o)).astype(dtype))
    g, lg = lowered(fn, *args)
    assert conv_channels(g) == [c]
    assert all(ch % 8 == 0 for ch in conv_channels(lg))  # nothing left for the direct kernel
    assert not any(e.prim.name in ("pad", "transpose") and e.invars[0] in lg.constvars for e in lg.eqns)
    want = ait.jit(fn, backend="reference", passes=())(*args)
    (got,) = eval_graph(lg, args)
    assert_close(got, want, dtype)


@needs_cutlass
def test_the_three_forms():
    """ViT's patch embedding becomes a layout change and one GEMM over a folded [K, O] weight;
    ResNet's 7x7/2 stem its patches (a zero tap per filter row) and one GEMM; a 3x3 over C = 3
    a pad of the input's channels and a conv over C = 8."""
    rng = np.random.default_rng(1)
    wp, bp = conv_weights(rng, 64, 16, 16, 3, f16)
    _, lg = lowered(lambda x: ait.conv2d(x, wp, bp, stride=16), S((2, 64, 48, 3), f16))
    names = [e.prim.name for e in lg.eqns]
    assert names == ["reshape", "transpose", "reshape", "fused_gemm"], names
    (gemm,) = [e for e in lg.eqns if e.prim.name == "fused_gemm"]
    assert gemm.params["base"] == "matmul" and gemm.invars[1] in lg.constvars
    assert gemm.invars[1].aval.shape == (768, 64) and gemm.outvars[0].aval.shape == (2, 4, 3, 64)
    assert len(lg.constvars) == 2 and wp.size not in [np.size(c) for c in lg.consts if c.shape != (768, 64)]
    # rows and columns past the last whole patch are dropped, as the convolution drops them
    _, lg = lowered(lambda x: ait.conv2d(x, wp, bp, stride=16), S((1, 40, 35, 3), f16))
    assert [e.prim.name for e in lg.eqns][:2] == ["slice", "slice"]

    ws, bs = conv_weights(rng, 64, 7, 7, 3, f16)
    stem = lambda x: ait.relu(ait.conv2d(x, ws, bs, stride=2, padding=3))  # noqa: E731
    _, lg = lowered(stem, S((1, 32, 32, 3), f16))
    assert [e.prim.name for e in lg.eqns] == ["conv2d_patches", "fused_gemm"]
    patches, gemm = lg.eqns
    assert patches.params["kernel_size"] == (7, 8) and patches.params["padding"] == ((3, 3), (3, 4))
    assert patches.outvars[0].aval.shape == (1, 16, 16, 168)  # one zero tap per filter row: K = 7*8*3
    assert gemm.params["base"] == "matmul" and gemm.invars[1] in lg.constvars
    wk = lg.consts[lg.constvars.index(gemm.invars[1])].reshape(7, 8, 3, 64)
    np.testing.assert_array_equal(wk[:, 7], 0)
    np.testing.assert_array_equal(wk[:, :7], np.asarray(ws).transpose(1, 2, 3, 0))
    # NCHW images: the patches read the NHWC transpose as a view, so no transpose kernel runs
    nchw = lambda x: stem(ait.transpose(x, (0, 2, 3, 1)))  # noqa: E731
    kinds = [k.split("_", 1)[1] for k in ait.jit(nchw, backend="cuda", arch="sm_90a").lower(
        S((1, 3, 32, 32), f16)).source_obj.info["kernels"]]
    assert kinds == ["conv2d_patches", "fused_gemm"], kinds

    # a 3x3 over C = 3: padding C to 8 gives the smaller K (72, as 3*8*3 would), and the conv kernel
    w3, b3 = conv_weights(rng, 64, 3, 3, 3, f16)
    _, lg = lowered(lambda x: ait.relu(ait.conv2d(x, w3, b3, stride=2, padding=1)), S((1, 32, 32, 3), f16))
    assert [e.prim.name for e in lg.eqns] == ["pad", "fused_gemm"]
    conv = lg.eqns[1]
    assert conv.params["base"] == "conv2d" and conv.invars[1] in lg.constvars
    assert conv.invars[0].aval.shape == (1, 32, 32, 8) and conv.invars[1].aval.shape == (64, 3, 3, 8)
    np.testing.assert_array_equal(lg.consts[lg.constvars.index(conv.invars[1])][..., 3:], 0)
    fn = lambda x: ait.relu(ait.conv2d(ait.transpose(x, (0, 2, 3, 1)), w3, b3, padding=1))  # noqa: E731
    kinds = [k.split("_", 1)[1] for k in ait.jit(fn, backend="cuda", arch="sm_90a").lower(
        S((1, 3, 32, 32), f16)).source_obj.info["kernels"]]
    assert kinds == ["pad", "fused_gemm"], kinds  # the pad reads the transpose as a view too


@needs_cutlass
def test_left_alone():
    """fp32, grouped, unaligned outputs and aligned channels keep their convolution as it is."""
    cases = [(S((1, 8, 8, 3), ait.float32), np.ones((8, 3, 3, 3), np.float32), 1),
             (S((1, 8, 8, 6), f16), np.ones((8, 3, 3, 3), np.float16), 2),
             (S((1, 8, 8, 3), f16), np.ones((12, 3, 3, 3), np.float16), 1),
             (S((1, 8, 8, 16), f16), np.ones((8, 3, 3, 16), np.float16), 1)]
    for x, wt, groups in cases:
        g, lg = lowered(lambda x: ait.conv2d(x, wt, groups=groups), x)
        assert lg is g


@needs_cutlass
def test_cuda_source_uses_cutlass_for_all():
    rng = np.random.default_rng(2)
    wp, bp = conv_weights(rng, 64, 8, 8, 3, f16)
    ws, bs = conv_weights(rng, 64, 7, 7, 3, f16)
    w3, b3 = conv_weights(rng, 64, 3, 3, 3, f16)
    fn = lambda x: (ait.gelu(ait.conv2d(x, wp, bp, stride=8)), ait.relu(ait.conv2d(x, ws, bs, stride=2, padding=3)),  # noqa: E731
                    ait.conv2d(x, w3, b3, padding=1))
    src = ait.jit(fn, backend="cuda", arch="sm_90a").lower(S((1, 32, 32, 3), f16)).source
    assert src.count("cutlass_status = cutlass_conv_") == 1 and src.count("cutlass_status = cutlass_gemm_") == 2
    assert src.count("ait::gpu::conv2d_patches<") == 1


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [f16, bf16])
def test_stems_match_reference_on_the_gpu(dtype):
    rng = np.random.default_rng(3)
    wp, bp = conv_weights(rng, 96, 16, 16, 3, dtype)
    ws, bs = conv_weights(rng, 64, 7, 7, 3, dtype)
    w2, b2 = conv_weights(rng, 40, 3, 3, 2, dtype)
    w3, b3 = conv_weights(rng, 16, 3, 3, 3, dtype)

    def fn(x, r):
        return (ait.conv2d(x, wp, bp, stride=16),                                    # ViT's patches
                ait.relu(ait.conv2d(x, ws, bs, stride=2, padding=3)),                  # ResNet's stem
                ait.relu(ait.conv2d(x[..., :2], w2, b2, padding=1) + r),              # C = 2 (patches), a residual
                ait.conv2d(x, w3, b3, stride=(1, 2), padding=1))                       # C padded to 8
    x = rng.standard_normal((2, 72, 56, 3)).astype(dtype)
    r = (rng.standard_normal((2, 72, 56, 40)) * 0.5).astype(dtype)
    check(fn, x, r, dtype=dtype)
