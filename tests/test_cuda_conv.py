"""CUTLASS sm90a convolution (backends/cuda/conv.py) for conv2d and fused_gemm[base=conv2d]: the
kernel source and its EVT epilogue, which convs keep the direct kernel, one definition per distinct
kernel, and one nvcc compile of a model with several convs (compile-only: CI has nvcc but no GPU;
skipped where nvcc or the CUTLASS headers are absent). On a GPU (`pytest -m cuda`): the cuda
backend against the numpy reference over strides, padding, dilation, odd sizes and channels."""
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aitrace as ait
from aitrace.backends.cuda import conv as cc
from aitrace.backends.cuda import gemm as cg
from conv_cases import conv_weights, random_convs
from test_cuda_backend import check, cuda_array

S = ait.ShapeDtype
f16, bf16 = ait.float16, ait.bfloat16
has_cutlass = cg.cutlass_include_dir() is not None and cg.cutlass_util_include_dir() is not None
needs_cutlass = pytest.mark.skipif(not has_cutlass, reason="the CUTLASS headers (nvidia-cutlass) are absent")


def _eqn(fn, *args):
    g = ait.jit(fn, backend="reference").lower(*args).graph
    assert len(g.eqns) == 1, [e.prim.name for e in g.eqns]
    return g.eqns[0]


rng = np.random.default_rng(0)
W3, B3 = conv_weights(rng, 64, 3, 3, 16, f16)           # 3x3, pad 1
W7, B7 = conv_weights(rng, 64, 7, 7, 8, f16)            # 7x7/2, C = 3 padded to 8
W1, B1 = conv_weights(rng, 64, 1, 1, 64, f16)           # 1x1
W3S2, B3S2 = conv_weights(rng, 128, 3, 3, 64, bf16)     # 3x3, stride 2


def model(x, img, xb, r, r2):
    """Four convs, two distinct CUTLASS kernels: the f16 ones with bias+relu share one (sizes are
    run-time arguments; all three take 64x32 tiles); the bf16 one adds two residuals (CUTLASS's
    C, then an AuxLoad), over 92x92 pixels: 67 CTAs of 128x128, so the big tile is built too."""
    y1 = ait.relu(ait.conv2d(x, W3, B3, padding=1))
    y2 = ait.relu(ait.conv2d(img, W7, B7, stride=2, padding=3))
    y3 = ait.relu(ait.conv2d(y1, W1, B1, stride=2))  # (a 1x1 of stride 1 with few tiles is a GEMM)
    y4 = ait.relu(ait.conv2d(xb, W3S2, B3S2, stride=2, padding=1) + r + r2)
    return y2, y3, y4


MODEL_ARGS = (S((2, 15, 17, 16), f16), S((1, 21, 21, 8), f16), S((1, 183, 183, 64), bf16),
              S((1, 92, 92, 128), bf16), S((1, 92, 92, 128), bf16))


# ---------------------------------------------------------------------------------------------
# The kernel source

def test_kernel_source_and_evt():
    e = _eqn(lambda x: ait.relu(ait.conv2d(x, W3, B3, padding=1)), S((2, 9, 9, 16), f16))
    k = cc.conv_kernel("k_conv", e)
    assert k.evt == "relu(add(acc, RowBroadcast(x0)))"
    assert k.config == cc.ConvConfig((64, 32, 64))  # 162 pixels: the smallest tile
    d = k.definition
    for s in ("cutlass::conv::collective::CollectiveBuilder", "cutlass::conv::Operator::kFprop",
              "cutlass::conv::KernelImplicitTmaWarpSpecializedSm90", "cutlass::conv::kernel::ConvUniversal",
              "using LayoutA = cutlass::layout::TensorNHWC;", "Shape<_64, _32, Shape<_64>>",
              "fusion::Sm90RowBroadcast<0, TileShape, cutlass::half_t", "static cudaError_t k_conv("):
        assert s in d, s
    assert k.params[:3] == ["const void* activation", "const void* filter", "const void* x0"]
    assert "int64_t ldd" in k.params and not any("ld_x" in p for p in k.params)
    # two residuals: C (SrcFetch, ((Q, P, N), C) strides) and an AuxLoad (pixels as rows)
    w, b = conv_weights(rng, 128, 3, 3, 64, bf16)
    e = _eqn(lambda x, r, r2: ait.conv2d(x, w, b, stride=2, padding=1) + r + r2 * 0.5,
             S((2, 9, 9, 64), bf16), S((2, 5, 5, 128), bf16), S((2, 5, 5, 128), bf16))
    k = cc.conv_kernel("k2", e, cc.CONFIGS[0])
    assert k.evt == "add(add(add(acc, RowBroadcast(x0)), SrcFetch(x1)), mul(AuxLoad(x2), 0.5))"
    assert k.config == cc.CONFIGS[0] and "Shape<_128, _128, Shape<_64>>" in k.definition
    assert "using EpiX2 = fusion::Sm90AuxLoad<0, EpilogueTile, cutlass::bfloat16_t," in k.definition
    assert "cute::make_stride(ld_x2, cute::Int<1>{}, int64_t(0))" in k.definition
    assert "StrideC dC = pixel_stride(ld_x1, Q, P);" in k.definition
    assert k.params[-7:-3] == ["int64_t ldd", "int64_t ld_x1", "int64_t ld_x2", "bool pdl"]
    assert cc.launch_dims(e) == [2, 9, 9, 64, 128, 3, 3, 5, 5, 1, 1, 1, 1, 2, 2, 1, 1, 128, 128, 128]


def test_tiles_by_ctas():
    """The largest tile whose CTAs fill half the SMs (66 of the H100's 132), else the smallest;
    no 128-wide tile for O <= 64; symbolic sizes take the big tiles."""
    pick = lambda pixels, o: cc.default_config(pixels, o).tile[:2]  # noqa: E731
    assert pick(100352, 256) == (128, 128)      # ResNet-50 bs32 layer 1: 784 x 2 CTAs
    assert pick(12544, 64) == (128, 64)         # O = 64: never 128 wide
    assert pick(3136, 256) == (128, 64)         # 50 CTAs of 128x128, 100 of 128x64
    assert pick(784, 512) == (64, 64)           # 28, 56, then 104
    assert pick(3136, 64) == (64, 32)           # bs1 layer 1 3x3: 25, 49, then 98
    assert pick(784, 128) == (64, 32)           # bs1 layer 2 3x3: 7 CTAs of 128x128, 52 of 64x32
    assert pick(8, 8) == (64, 32)               # nothing fills the GPU: the smallest
    assert pick(None, 256) == (128, 128) and pick(None, 64) == (128, 64) and pick(784, ait.Dim("o")) == (128, 128)
    e = _eqn(lambda x: ait.relu(ait.conv2d(x, W1, B1)), S((1, 56, 56, 64), f16))
    assert cc.conv_kernel("k", e).config.tile == (64, 32, 64)
    e = _eqn(lambda x: ait.relu(ait.conv2d(x, W1, B1)), S((ait.Dim("n", max=64), 56, 56, 64), f16))
    assert cc.conv_kernel("k", e).config.tile == (128, 64, 64)


def test_unsupported_are_named():
    x8 = S((1, 8, 8, 8), f16)
    e = _eqn(lambda x: ait.conv2d(x, np.ones((16, 3, 3, 4), np.float16), groups=2), x8)
    assert cc.unsupported_reason(e) == "groups=2 (only 1)"
    e = _eqn(lambda x: ait.conv2d(x, np.ones((8, 3, 3, 1), np.float16), groups=8), x8)  # depthwise
    assert "groups=8" in cc.unsupported_reason(e)
    e = _eqn(lambda x: ait.conv2d(x, np.ones((16, 3, 3, 12), np.float16)), S((1, 8, 8, 12), f16))
    assert "C=12" in cc.unsupported_reason(e)
    e = _eqn(lambda x: ait.conv2d(x, np.ones((12, 3, 3, 8), np.float16)), x8)
    assert "O=12" in cc.unsupported_reason(e)
    e = _eqn(lambda x: ait.conv2d(x, np.ones((16, 3, 3, 8), np.float32)), S((1, 8, 8, 8), ait.float32))
    assert "fp16/bf16" in cc.unsupported_reason(e)
    with pytest.raises(NotImplementedError, match="cuda conv: operand dtypes"):
        cc.conv_kernel("k", e)
    e = _eqn(lambda x: x @ np.ones((8, 16), np.float16), S((4, 8), f16))
    assert cc.unsupported_reason(e) == "primitive matmul"


@needs_cutlass
def test_lowering_defines_each_distinct_kernel_once():
    low = ait.jit(model, backend="cuda", arch="sm_90a").lower(*MODEL_ARGS)
    src = low.source
    assert src.count("cutlass_status = cutlass_conv_") == 4
    defined = re.findall(r"static cudaError_t (cutlass_conv_\w+)\(", src)
    assert len(defined) == len(set(defined)) == 2
    assert "#include <cutlass/conv/kernel/conv_universal.hpp>" in src  # in the kernel's own unit
    # the direct kernel stays behind each, for sizes CUTLASS refuses at run time
    assert src.count("ait::gpu::conv2d(") == 4
    # a symbolic batch: a run-time argument
    src = ait.jit(lambda x: ait.relu(ait.conv2d(x, W3, B3, padding=1)), backend="cuda", arch="sm_90a").lower(
        S((ait.Dim("B", max=8), 9, 9, 16), f16)).source
    assert re.search(r"cutlass_conv_\w+\(v_\w+, v_\w+, v_\w+, v_\w+, \w*B, 9, 9, 16, 64, 3, 3, 9, 9, ", src)
    # written in place into a concatenation: rows (pixels) 64 + 8 apart
    fn = lambda x, z: ait.concatenate([ait.relu(ait.conv2d(x, W3, B3, padding=1)), z], axis=-1)  # noqa: E731
    src = ait.jit(fn, backend="cuda", arch="sm_90a").lower(S((2, 9, 9, 16), f16), S((2, 9, 9, 8), f16)).source
    assert ", 9, 9, 1, 1, 1, 1, 1, 1, 1, 1, 72, ait::gpu::pdl_enabled(), stream, nullptr, 0);" in src


@needs_cutlass
def test_direct_kernel_where_cutlass_does_not_apply():
    fn = lambda x: (ait.conv2d(x, np.ones((16, 3, 3, 4), np.float16), groups=2),  # noqa: E731
                    ait.conv2d(x[..., :3], np.ones((12, 3, 3, 3), np.float16)))  # (C = 3, O = 8: few_channels.py)
    src = ait.jit(fn, backend="cuda", arch="sm_90a").lower(S((1, 8, 8, 8), f16)).source
    assert "cutlass_conv_" not in src and src.count("ait::gpu::conv2d(") == 2
    # not on Ampere (CUTLASS 3's sm90 convolution only; conv_sm80.py's there)
    src = ait.jit(model, backend="cuda", arch="sm_80").lower(*MODEL_ARGS).source
    assert "KernelImplicitTmaWarpSpecializedSm90" not in src


# ---------------------------------------------------------------------------------------------
# nvcc: the model (four convs, two CUTLASS kernels, their direct fallbacks) as one translation
# unit with the backend's own flags, ptxas -v

@needs_cutlass
def test_model_compiles_for_sm90a_without_wgmma_serialization(tmp_path):
    from aitrace.backends.cuda import flags, nvcc, split_units
    if nvcc() is None:
        pytest.skip("needs nvcc")
    low = ait.jit(model, backend="cuda", arch="sm_90a").lower(*MODEL_ARGS)
    cu = tmp_path / "model.cu"
    cu.write_text("".join(u for _, u in split_units(low.source)[1]))  # the CUTLASS kernels' units, as one
    cmd = [nvcc(), *flags("sm_90a"), "-Xptxas", "-v", "-keep", f"-keep-dir={tmp_path}", str(cu),
           "-o", str(tmp_path / "model.so")]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    print(f"\nnvcc: model with 2 CUTLASS sm90a convs in {time.time() - t0:.0f} s", file=sys.stderr)
    assert "C7510" not in out and "serializ" not in out.lower(), out[-6000:]
    convs = re.findall(r"Compiling entry function '(\w*ConvUniversal\w*)' for 'sm_90a'", out)
    assert len(convs) == 2, out[-3000:]
    assert all("KernelImplicitTmaWarpSpecializedSm90" in c and "SM90_TMA_LOAD_IM2COL" in c for c in convs)
    assert re.findall(r"config (conv_\w+);", low.source) == ["conv_64x32x64_c1x1x1", "conv_128x128x64_c1x1x1"]
    ptx = "".join(f.read_text() for f in tmp_path.glob("*.ptx"))
    assert ptx.count("wgmma.mma_async") >= 2 and "cp.async.bulk.tensor.4d.shared::cluster.global.im2col" in ptx


# ---------------------------------------------------------------------------------------------
# On a GPU: the cuda backend against the reference

def _check(fn, *args, dtype, convs):
    low = ait.jit(fn, backend="cuda").lower(*args)
    assert low.source.count("cutlass_status = cutlass_conv_") == convs  # CUTLASS tried first for each
    check(fn, *args, dtype=dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [f16, bf16])
def test_model_matches_reference(dtype):
    r = np.random.default_rng(1)
    w3, b3 = conv_weights(r, 64, 3, 3, 16, dtype)
    w3s2, b3s2 = conv_weights(r, 128, 3, 3, 64, dtype)
    w1, b1 = conv_weights(r, 64, 1, 3, 64, dtype)
    w5, b5 = conv_weights(r, 32, 5, 5, 64, dtype)

    def fn(x, res, z):
        y1 = ait.relu(ait.conv2d(x, w3, b3, padding=1))
        return (ait.relu(ait.conv2d(y1, w3s2, b3s2, stride=2, padding=1) + res),
                ait.concatenate([ait.relu(ait.conv2d(y1, w1, b1, padding=((0, 0), (1, 1)))), z], axis=-1),  # rows 72 apart
                ait.conv2d(y1, w5, b5, padding=((1, 2), (0, 3)), dilation=2))     # asymmetric padding
    x = r.standard_normal((3, 15, 17, 16)).astype(dtype)
    res = (r.standard_normal((3, 8, 9, 128)) * 0.5).astype(dtype)
    z = r.standard_normal((3, 15, 17, 8)).astype(dtype)
    assert ", 64, 1, 3, 15, 17, 0, 0, 1, 1, 1, 1, 1, 1, 72, " in ait.jit(fn, backend="cuda", arch="sm_90a").lower(
        x, res, z).source
    _check(fn, x, res, z, dtype=dtype, convs=4)


CONV_CASES = st.tuples(
    st.sampled_from([1, 3]), st.integers(1, 19), st.integers(1, 19),                 # batch, H, W
    st.sampled_from([8, 16, 24, 64, 136, 256]), st.sampled_from([8, 16, 40, 64, 128, 256]),  # C, O
    st.sampled_from([(1, 1), (3, 3), (5, 5), (7, 7), (1, 3), (3, 1)]),                # KH, KW
    st.sampled_from([1, 2, 3]), st.integers(0, 3), st.sampled_from([1, 2]),           # stride, pad, dilation
    st.sampled_from(["bias_relu", "residual", "none"]))


@pytest.mark.cuda
@settings(deadline=None, max_examples=5)
@given(st.sampled_from([f16, bf16]), st.lists(CONV_CASES, min_size=3, max_size=3))
def test_convs_match_reference(dtype, cases):
    """Three random convs per model (one nvcc build): sizes are run-time arguments of the kernels."""
    fn, args = random_convs(cases, dtype)
    _check(fn, *args, dtype=dtype, convs=len(cases))


@pytest.mark.cuda
def test_cutlass_kernel_runs_on_the_gpu():
    """The CUTLASS convolution (not the direct fallback) is what runs for supported sizes."""
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(2)
    w, b = conv_weights(r, 64, 3, 3, 32, f16)
    f = ait.jit(lambda x: ait.relu(ait.conv2d(x, w, b, padding=1)), backend="cuda")
    x = cuda_array(r.standard_normal((2, 16, 16, 32)).astype(f16))
    f(x)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        f(x)
        torch.cuda.synchronize()
    names = [e.key for e in prof.key_averages()]
    assert any("ConvUniversal" in n or "WaitingConvKernel" in n for n in names), names  # PDL: the waiting wrapper
