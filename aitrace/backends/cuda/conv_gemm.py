"""Convolutions run as GEMMs.

  - 1x1, stride 1, no padding, at any size: the NHWC input already is the GEMM's A, [N*H*W, C],
    so this costs no copy, and the GEMM has what CUTLASS's sm90 convolution lacks: a persistent
    cooperative kernel with two consumer warp groups and clusters for large problems, ping-pong
    tiles of 64x32 and 64x64 for small ones, and the profiler choosing among them;
  - other convolutions with few output tiles and a long K loop (batch 1 at the 14x14 and 7x7
    stages of a ResNet: M = 196 or 49 pixels, K = 2304 or 4608): the conv kernel, not
    persistent, would walk that K loop in a handful of CTAs while most SMs idle (~28 us for a
    7x7x512 3x3 conv on an H100, 2026-12-06). Their patches (`conv2d_patches`, im2col: M x K
    values, a few hundred KB at these sizes) and a GEMM over them, the weight as [KH*KW*C, O],
    get the GEMM's small tiles. With a short K loop the round trip through memory would cost more
    than it gains: the conv kernel stays, with small tiles of its own (conv.default_config).
The epilogue of a fused_gemm goes along unchanged: the output keeps its shape."""
from __future__ import annotations

from ... import ops
from ...core import dtypes
from ..lowering import legalizer
from .conv import conv_params
from .few_channels import rebind
from .profiler import SMS, ctas

_ALIGN = 8       # 16-byte rows of fp16/bf16 (TMA)
_LONG_K = 2048   # 32 steps of 64: a K loop worth the patches' round trip through memory


def as_gemm(e) -> str | None:
    """"direct" (1x1: the input is A), "patches" (im2col first), or None (the conv kernel)."""
    if e.prim.name == "fused_gemm" and e.params["base"] != "conv2d":
        return None
    from .gemm import cutlass_include_dir
    (x, w), (y,) = e.invars[:2], e.outvars
    dims = (*y.aval.shape, *w.aval.shape)
    p = conv_params(e)
    if (cutlass_include_dir() is None or p["groups"] != 1 or not all(isinstance(d, int) for d in dims)
            or x.aval.dtype not in (dtypes.float16, dtypes.bfloat16) or w.aval.dtype != x.aval.dtype):
        return None
    n, ph, pw, o = y.aval.shape
    _, kh, kw, c = w.aval.shape
    if c % _ALIGN or o % _ALIGN:
        return None
    if (kh, kw) == (1, 1) and tuple(p["stride"]) == (1, 1) and not any(v for pr in p["padding"] for v in pr):
        return "direct"
    few_tiles = ctas(n * ph * pw, o, 128, 128) < SMS // 2  # counted in the conv kernel's biggest tile
    return "patches" if few_tiles and kh * kw * c >= _LONG_K else None


@legalizer("cuda", "conv2d", "fused_gemm")
def legalize_conv_as_gemm(e):
    form = as_gemm(e)
    if form is None:
        return None
    w = e.invars[1]
    o, kh, kw, c = w.aval.shape
    p = conv_params(e)

    def fn(x, w, *extra):
        a = x if form == "direct" else ops.conv2d_patches(x, (kh, kw), p["stride"], p["padding"], p["dilation"])
        return rebind(e, a, ops.transpose(ops.reshape(w, (o, kh * kw * c))), extra, "matmul")
    return fn
