"""CUTLASS 2.x sm80 implicit-GEMM convolution (backends/cuda/conv_sm80.py) for conv2d and
fused_gemm[base=conv2d] on sm_8x: the kernel source and its visitor-tree epilogue, the target
picking it, the convs that keep the direct kernel, and one nvcc build of a model of three convs
(compile-only: CI has nvcc but no GPU; skipped where nvcc or the CUTLASS headers are absent). On a
GPU (`pytest -m cuda`): built for sm_80 (Hopper JIT-compiles the compute_80 PTX) against the
numpy reference over strides, padding, dilation, odd sizes and channels 8..128."""
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aitrace as ait
from aitrace.backends.cuda import conv_sm80, nvcc
from aitrace.backends.cuda.gemm import cutlass_include_dir
from conftest import assert_close
from conv_cases import conv_weights, random_convs
from test_cuda_gemm_sm80 import _device, _host

S = ait.ShapeDtype
f16, bf16 = ait.float16, ait.bfloat16
needs_cutlass = pytest.mark.skipif(cutlass_include_dir() is None, reason="the CUTLASS headers are absent")
needs_toolchain = pytest.mark.skipif(cutlass_include_dir() is None or nvcc() is None,
                                     reason="needs nvcc and the CUTLASS headers")


def _eqn(fn, *args):
    g = ait.jit(fn, backend="reference").lower(*args).graph
    assert len(g.eqns) == 1, [e.prim.name for e in g.eqns]
    return g.eqns[0]


rng = np.random.default_rng(0)
W3, B3 = conv_weights(rng, 64, 3, 3, 16, f16)           # 3x3, pad 1
W13 = conv_weights(rng, 64, 1, 3, 64, f16)[0]           # 1x3 (a 1x1 would be a GEMM: conv_gemm.py)
W3S2, B3S2 = conv_weights(rng, 128, 3, 3, 64, bf16)     # 3x3, stride 2


def model(x, r, xb):
    """Three convs, three distinct CUTLASS kernels: bias+relu, a residual (an AuxLoad), bf16 stride 2."""
    y1 = ait.relu(ait.conv2d(x, W3, B3, padding=1))
    y2 = ait.conv2d(y1, W13, padding=((0, 0), (1, 1))) + r
    y3 = ait.conv2d(xb, W3S2, B3S2, stride=2, padding=1)
    return y2, y3


MODEL_ARGS = (S((2, 15, 17, 16), f16), S((2, 15, 17, 64), f16), S((2, 15, 17, 64), bf16))


def test_kernel_source_and_evt():
    e = _eqn(lambda x: ait.relu(ait.conv2d(x, W3, B3, padding=1)), S((2, 9, 9, 16), f16))
    k = conv_sm80.conv_kernel("k_conv", e)
    assert k.evt == "relu(add(acc, RowBroadcast(x0)))"
    assert k.config == conv_sm80.CONFIGS[1]  # O = 64: the 128x64 tile
    d = k.definition
    for s in ("// ait-unit-begin k_conv", "cutlass::conv::kernel::DefaultConv2dFprop<",
              "cutlass::conv::IteratorAlgorithm::kOptimized", "cutlass::conv::StrideSupport::kStrided",
              "cutlass::arch::Sm80", "tb::EpilogueWithVisitorCallbacks<typename ConvBase::Epilogue, EVT",
              "ait_cuda_conv::Conv2dFpropWithVisitor<typename ConvBase::Mma, Epilogue, Swizzle>",
              "tb::VisitorRowBroadcast<OutputTileThreadMap, cutlass::half_t", "static cudaError_t k_conv(",
              "if (!ConvKernel::can_implement(params)) return cudaErrorInvalidValue;", "// ait-unit-end k_conv"):
        assert s in d, s
    assert k.params[:3] == ["const void* activation", "const void* filter", "const void* x0"]
    # a residual and a scaled second one: both AuxLoads, pixels as rows of stride ld_x<j>
    w, b = conv_weights(rng, 128, 3, 3, 64, bf16)
    e = _eqn(lambda x, r, r2: ait.conv2d(x, w, b, stride=2, padding=1) + r + r2 * 0.5,
             S((2, 9, 9, 64), bf16), S((2, 5, 5, 128), bf16), S((2, 5, 5, 128), bf16))
    k = conv_sm80.conv_kernel("k2", e)
    assert k.evt == "add(add(add(acc, RowBroadcast(x0)), AuxLoad(x1)), mul(AuxLoad(x2), 0.5))"
    assert k.config == conv_sm80.CONFIGS[0]
    assert "using EpiX2 = tb::VisitorAuxLoad<OutputTileThreadMap, cutlass::bfloat16_t, StrideMNL>;" in k.definition
    assert "!ait_cuda_gemm::aligned<cutlass::bfloat16_t>(x1, AlignmentD, ld_x1, 0)" in k.definition
    assert k.params[-6:-3] == ["int64_t ldd", "int64_t ld_x1", "int64_t ld_x2"]


def test_refusals_are_named():
    e = _eqn(lambda x: ait.conv2d(x, np.ones((16, 3, 3, 4), np.float16), groups=2), S((1, 8, 8, 8), f16))
    with pytest.raises(NotImplementedError, match=r"cuda conv \(sm80\): groups=2 \(only 1\)"):
        conv_sm80.conv_kernel("k", e)
    e = _eqn(lambda x: ait.conv2d(x, np.ones((16, 3, 3, 12), np.float16)), S((1, 8, 8, 12), f16))
    with pytest.raises(NotImplementedError, match=r"cuda conv \(sm80\): C=12"):
        conv_sm80.conv_kernel("k", e)


@needs_cutlass
def test_the_target_picks_the_kernel():
    src = ait.jit(model, backend="cuda", arch="sm_80").lower(*MODEL_ARGS).source
    assert src.count("cutlass_status = cutlass_conv_sm80_") == 3
    assert '#include "ait/cutlass_sm80.h"' in src and "ait/cutlass_sm90.h" not in src
    assert src.count("ait::gpu::conv2d(") == 3  # the direct kernel stays behind each
    src = ait.jit(model, backend="cuda", arch="sm_90a").lower(*MODEL_ARGS).source
    assert "cutlass_conv_sm80_" not in src and src.count("cutlass_status = cutlass_conv_") == 3
    # grouped and unaligned convs: the direct kernel only
    fn = lambda x: (ait.conv2d(x, np.ones((16, 3, 3, 4), np.float16), groups=2),  # noqa: E731
                    ait.conv2d(x[..., :3], np.ones((12, 3, 3, 3), np.float16)))  # (C = 3, O = 8: few_channels.py)
    src = ait.jit(fn, backend="cuda", arch="sm_86").lower(S((1, 8, 8, 8), f16)).source
    assert "cutlass_conv_" not in src and src.count("ait::gpu::conv2d(") == 2


@needs_toolchain
def test_model_builds_for_sm80():
    low = ait.jit(model, backend="cuda", arch="sm_80").lower(*MODEL_ARGS)
    assert low.source.count("ait_cuda_conv::Conv2dFpropWithVisitor<") == 3
    t0 = time.time()
    path = low.build()
    assert path is not None and time.time() - t0 < 120


# ---------------------------------------------------------------------------------------------
# On a GPU: built for sm_80, torch CUDA tensors, against the reference

def _run(fn, args, dtype, convs, cutlass=True):
    """fn on the cuda backend (sm_80) against the reference; asserts that each conv tried the
    CUTLASS conv first and whether it ran (where the profiler sees kernels)."""
    torch = pytest.importorskip("torch")
    f = ait.jit(fn, backend="cuda", arch="sm_80")
    assert f.lower(*args).source.count("cutlass_status = cutlass_conv_sm80_") == convs
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        got = f(*[_device(a) for a in args])
        torch.cuda.synchronize()
    ran = [e.name for e in prof.events() if "Kernel" in e.name]
    if ran:  # (none at all: a profiler without CUPTI)
        assert any("Conv2dFpropWithVisitor" in n for n in ran) == cutlass, [n[:100] for n in ran]
    want = ait.jit(fn, backend="reference")(*args)
    got, want = (got, want) if isinstance(got, (tuple, list)) else ((got,), (want,))
    for g, w in zip(got, want):
        assert_close(_host(g).astype(np.float32), np.asarray(w, np.float32), dtype, atol=1e-2)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [f16, bf16])
def test_model_matches_reference(dtype):
    r = np.random.default_rng(1)
    w3, b3 = conv_weights(r, 64, 3, 3, 16, dtype)
    w3s2, b3s2 = conv_weights(r, 128, 3, 3, 64, dtype)
    w1, b1 = conv_weights(r, 64, 1, 1, 64, dtype)
    w5, b5 = conv_weights(r, 32, 5, 5, 64, dtype)

    def fn(x, res):
        y1 = ait.relu(ait.conv2d(x, w3, b3, padding=1))
        return (ait.relu(ait.conv2d(y1, w3s2, b3s2, stride=2, padding=1) + res),
                ait.conv2d(y1, w1, b1) * 0.5,
                ait.conv2d(y1, w5, b5, padding=((1, 2), (0, 3)), dilation=2))     # asymmetric padding
    x = r.standard_normal((3, 15, 17, 16)).astype(dtype)
    res = (r.standard_normal((3, 8, 9, 128)) * 0.5).astype(dtype)
    _run(fn, [x, res], dtype, convs=4)


CONV_CASES = st.tuples(
    st.sampled_from([1, 3]), st.integers(1, 19), st.integers(1, 19),                 # batch, H, W
    st.sampled_from([8, 16, 24, 64, 128]), st.sampled_from([8, 16, 40, 64, 128]),   # C, O
    st.sampled_from([(1, 1), (3, 3), (5, 5), (1, 3)]),                                # KH, KW
    st.sampled_from([1, 2, 3]), st.integers(0, 3), st.sampled_from([1, 2]),           # stride, pad, dilation
    st.sampled_from(["bias_relu", "residual", "none"]))


@pytest.mark.cuda
@settings(deadline=None, max_examples=5)
@given(st.sampled_from([f16, bf16]), st.lists(CONV_CASES, min_size=3, max_size=3))
def test_convs_match_reference(dtype, cases):
    """Three random convs per model (one nvcc build): sizes are run-time arguments of the kernels."""
    fn, args = random_convs(cases, dtype)
    _run(fn, args, dtype, convs=len(cases))


@pytest.mark.cuda
def test_refused_sizes_take_the_direct_kernel():
    """Written in place into a concatenation with 4 more channels: pixels 68 apart, which the
    8-element stores cannot take; the launch returns cudaErrorInvalidValue, the direct kernel runs."""
    r = np.random.default_rng(2)
    fn = lambda x, z: ait.concatenate([ait.relu(ait.conv2d(x, W3, B3, padding=1)), z], axis=-1)  # noqa: E731
    x, z = r.standard_normal((2, 9, 11, 16)).astype(f16), r.standard_normal((2, 9, 11, 4)).astype(f16)
    assert ", 68, stream, nullptr, 0)" in ait.jit(fn, backend="cuda", arch="sm_80").lower(x, z).source
    _run(fn, [x, z], f16, convs=1, cutlass=False)
