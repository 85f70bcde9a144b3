"""1x1 convolutions, and others with few output tiles and a long K loop, become GEMMs on the cuda
backend (backends/cuda/conv_gemm.py): the legalized graph computes what the convolution did (numpy
reference, no GPU needed), the forms are the intended ones, the rest keeps its conv kernel, and on
a GPU (`pytest -m cuda`) a batch-1 ResNet stage through them agrees with the reference."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aitrace as ait
from aitrace.backends.cuda import gemm as cg
from aitrace.core.interpreter import eval_graph
from conftest import assert_close
from conv_cases import conv_weights
from test_cuda_backend import check
from test_cuda_few_channels import conv_channels, lowered

S = ait.ShapeDtype
f16, bf16 = ait.float16, ait.bfloat16
needs_cutlass = pytest.mark.skipif(cg.cutlass_include_dir() is None, reason="the CUTLASS headers are absent")


def conv(w, b, stride, padding, epilogue):
    def fn(x, *res):
        y = ait.conv2d(x, w, b, stride=stride, padding=padding)
        return ait.relu(y + res[0]) if epilogue == "residual" else ait.relu(y) if epilogue == "relu" else y
    return fn


def prims(g):
    return [e.prim.name for e in g.eqns]


@needs_cutlass
@settings(deadline=None, max_examples=30)
@given(st.sampled_from([f16, bf16]), st.integers(1, 2), st.integers(1, 8), st.integers(1, 8),
       st.sampled_from([(1, 1), (3, 3), (1, 3), (2, 2)]), st.integers(0, 2), st.sampled_from([8, 40, 136]),
       st.integers(1, 2), st.integers(0, 1), st.sampled_from(["none", "relu", "residual"]))
def test_legalized_graph_computes_the_convolution(dtype, n, h, w, kernel, extra_c, o, stride, pad, epilogue):
    kh, kw = kernel
    c = -(-2048 // (kh * kw * 8)) * 8 + 8 * extra_c          # K = KH*KW*C >= 2048: a long K loop
    h, w = max(h, kh), max(w, kw)
    rng = np.random.default_rng(0)
    wt, b = conv_weights(rng, o, kh, kw, c, dtype)
    fn = conv(wt, b, stride, pad, epilogue)
    args = [rng.standard_normal((n, h, w, c)).astype(dtype)]
    if epilogue == "residual":
        p, q = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        args.append(rng.standard_normal((n, p, q, o)).astype(dtype))
    g, lg = lowered(fn, *args)
    assert conv_channels(g) == [c] and conv_channels(lg) == []
    direct = kernel == (1, 1) and stride == 1 and pad == 0
    assert prims(lg) == ([] if direct else ["conv2d_patches"]) + ["fused_gemm"], prims(lg)  # the bias went along
    want = ait.jit(fn, backend="reference", passes=())(*args)
    (got,) = eval_graph(lg, args)
    assert_close(got, want, dtype)


@needs_cutlass
def test_the_forms_of_a_batch_1_resnet_stage():
    """At 7x7 pixels: the 3x3 conv over 512 channels (K = 4608) takes its patches, the 1x1 ones
    (K = 2048 and 512) read the activations as they are, all GEMMs over folded [K, O] weights
    with their epilogues."""
    rng = np.random.default_rng(1)
    w3, b3 = conv_weights(rng, 512, 3, 3, 512, f16)
    w1, b1 = conv_weights(rng, 512, 1, 1, 2048, f16)
    we, be = conv_weights(rng, 2048, 1, 1, 512, f16)

    def fn(x):
        y = ait.relu(ait.conv2d(x, w1, b1))
        y = ait.relu(ait.conv2d(y, w3, b3, padding=1))
        return ait.relu(ait.conv2d(y, we, be) + x)
    g, lg = lowered(fn, S((1, 7, 7, 2048), f16))
    assert prims(lg) == ["fused_gemm", "conv2d_patches", "fused_gemm", "fused_gemm"], prims(lg)
    g1, patches, g3, ge = lg.eqns
    assert g1.params["base"] == "matmul" and g1.invars[0] is lg.invars[0]
    assert g1.invars[1] in lg.constvars and g1.invars[1].aval.shape == (2048, 512)
    assert patches.outvars[0].aval.shape == (1, 7, 7, 4608) and patches.params["padding"] == ((1, 1), (1, 1))
    assert g3.params["base"] == "matmul" and g3.invars[0] is patches.outvars[0]
    assert g3.invars[1].aval.shape == (4608, 512)
    assert ge.params["base"] == "matmul" and ge.invars[0] is g3.outvars[0] and ge.invars[1].aval.shape == (512, 2048)
    np.testing.assert_array_equal(lg.consts[lg.constvars.index(g3.invars[1])],
                                  np.asarray(w3).reshape(512, -1).T)
    kinds = [k.split("_", 1)[1] for k in ait.jit(fn, backend="cuda", arch="sm_90a").lower(
        S((1, 7, 7, 2048), f16)).source_obj.info["kernels"]]
    assert kinds == ["fused_gemm", "conv2d_patches", "fused_gemm", "fused_gemm"], kinds
    # the strided 3x3 at the start of a stage (14x14 -> 7x7) too
    _, lg = lowered(lambda x: ait.conv2d(x, w3, b3, stride=2, padding=1), S((1, 14, 14, 512), f16))
    assert prims(lg) == ["conv2d_patches", "fused_gemm"] and lg.eqns[0].params["stride"] == (2, 2)


@needs_cutlass
@pytest.mark.parametrize("n, c, o", [(1, 64, 64), (1, 64, 256), (1, 256, 128), (1, 1024, 256), (8, 256, 1024)])
def test_pointwise_is_a_gemm(n, c, o):
    """A 1x1 conv reads its input as the GEMM's A, whatever its K and its number of tiles: no
    copy, and the GEMM's kernels (ping-pong 64x32 at batch 1, persistent cooperative ones at
    large batches) instead of the conv kernel."""
    rng = np.random.default_rng(2)
    wt, b = conv_weights(rng, o, 1, 1, c, f16)
    x = rng.standard_normal((n, 14, 14, c)).astype(f16)
    res = rng.standard_normal((n, 14, 14, o)).astype(f16)
    fn = conv(wt, b, 1, 0, "residual")
    g, lg = lowered(fn, x, res)
    assert prims(lg) == ["fused_gemm"] and lg.eqns[0].params["base"] == "matmul", prims(lg)
    assert lg.eqns[0].invars[0] is lg.invars[0]
    (got,) = eval_graph(lg, [x, res])
    assert_close(got, ait.jit(fn, backend="reference", passes=())(x, res), f16)


@needs_cutlass
def test_left_alone():
    """Non-pointwise convs with many output tiles (batch 64) or short K loops, strided 1x1s, fp32,
    groups and a dynamic batch keep the conv."""
    w3 = np.ones((512, 3, 3, 512), np.float16)
    cases = [(S((64, 7, 7, 512), f16), w3, 1),                                    # 100 tiles of 128x128
             (S((1, 7, 7, 64), f16), np.ones((64, 3, 3, 64), np.float16), 1),     # K = 576
             (S((1, 14, 14, 256), f16), np.ones((512, 1, 1, 256), np.float16), 2),    # 1x1 stride 2
             (S((1, 7, 7, 512), ait.float32), w3.astype(np.float32), 1),
             (S((1, 7, 7, 1024), f16), np.ones((512, 3, 3, 512), np.float16), 2),
             (S((ait.Dim("n", max=8), 7, 7, 512), f16), w3, 1)]
    for x, wt, arg in cases:
        kw = dict(stride=arg) if wt.shape[1] == 1 else dict(padding=1, groups=arg)
        g, lg = lowered(lambda x: ait.conv2d(x, wt, **kw), x)
        assert lg is g, x


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [f16, bf16])
def test_a_stage_matches_reference_on_the_gpu(dtype):
    rng = np.random.default_rng(3)
    w1, b1 = conv_weights(rng, 256, 1, 1, 2048, dtype)
    w3, b3 = conv_weights(rng, 256, 3, 3, 256, dtype)
    ws, bs = conv_weights(rng, 256, 3, 3, 256, dtype)

    def fn(x):
        y = ait.relu(ait.conv2d(x, w1, b1))                       # 1x1, K = 2048: A is x
        y = ait.relu(ait.conv2d(y, w3, b3, padding=1) + y)        # 3x3, K = 2304, a residual
        return ait.conv2d(y, ws, bs, stride=2, padding=1)         # strided 3x3: 5x5 -> 3x3
    x = (rng.standard_normal((1, 5, 5, 2048)) * 0.5).astype(dtype)
    check(fn, x, dtype=dtype)
