"""Convolutions over few input channels (the RGB first layer of an image model), rewritten into
forms the CUTLASS kernels take. CUTLASS's convolutions read channel rows by TMA, 16 bytes at least,
so C = 3 fell to the direct SIMT kernel: 0.178 ms of ResNet-50's 0.85 (the 7x7 stem) and 0.643 ms
of ViT-B/16's 1.49 (the patch embedding) on an H100 at batch 1 (2026-12-06).

  - stride equal to the filter, no padding or dilation (ViT's patches): the patches are a layout
    change, x[N, P*KH, Q*KW, C] -> [N, P, Q, KH*KW*C], and the convolution one GEMM over them with
    the weight as [KH*KW*C, O];
  - otherwise, where it is the smaller K: the patches (`conv2d_patches`, im2col) and one GEMM
    over them, with zero taps appended to each filter row so that K = KH*(KW+t)*C is a multiple
    of 8 (ResNet's 7x7 stem: K = 7*8*3 = 168; its input padded on the right to keep the output
    width). Padding C to 8 instead would make K 392, and CUTLASS's conv over C = 8 took 38 us
    for ResNet-50's stem on an H200 (2026-12-06);
  - otherwise (small filters: a 3x3 over C = 3): C zero-padded to a multiple of 8, the input by a
    pad kernel at run time, the weight at build time (legalize folds it), and the conv kernel.
The epilogue of a fused_gemm goes along unchanged: the output keeps its shape."""
from __future__ import annotations

from ... import ops
from ...core import dtypes
from ...core.ir import PRIMITIVES
from ...ops.layout import slice_axis
from ...passes.fuse_epilogue import fused_gemm_p
from ..lowering import legalizer
from .conv import conv_params

_ALIGN = 8  # 16-byte rows of fp16/bf16


def _static(*ds) -> bool:
    return all(isinstance(d, int) for d in ds)


def _applies(e) -> bool:
    from .gemm import cutlass_include_dir
    if e.prim.name == "fused_gemm" and e.params["base"] != "conv2d":
        return False
    x, w = e.invars[:2]
    c, o = x.aval.shape[-1], w.aval.shape[0]
    return (cutlass_include_dir() is not None and conv_params(e)["groups"] == 1
            and x.aval.dtype in (dtypes.float16, dtypes.bfloat16) and w.aval.dtype == x.aval.dtype
            and _static(c, o, *w.aval.shape[1:3]) and c % _ALIGN != 0 and o % _ALIGN == 0)


def _is_patchify(e) -> bool:
    p = conv_params(e)
    x, w = e.invars[:2]
    kh, kw = w.aval.shape[1:3]
    return (tuple(p["stride"]) == (kh, kw) and tuple(p["dilation"]) == (1, 1)
            and all(v == 0 for pair in p["padding"] for v in pair)
            and _static(*x.aval.shape[1:3]) and (kh * kw * x.aval.shape[-1]) % _ALIGN == 0)


def rebind(e, x, w, extra, base: str):
    """e's convolution (conv2d or fused_gemm) over new operands; `base` matmul or conv2d."""
    if e.prim.name == "fused_gemm":
        params = dict(e.params, base=base, base_params=() if base == "matmul" else e.params["base_params"])
        return fused_gemm_p.bind(x, w, *extra, **params)[0]
    return PRIMITIVES["matmul"].bind(x, w) if base == "matmul" else PRIMITIVES["conv2d"].bind(x, w, **e.params)


@legalizer("cuda", "conv2d", "fused_gemm")
def legalize_few_channels(e):
    if not _applies(e):
        return None
    (x, w), (y,) = e.invars[:2], e.outvars
    o, kh, kw, c = w.aval.shape
    if _is_patchify(e):
        n, p, q = y.aval.shape[:3]
        h, wd = x.aval.shape[1:3]

        def fn(x, w, *extra):
            if (h, wd) != (p * kh, q * kw):  # rows and columns past the last whole patch
                x = slice_axis(slice_axis(x, 1, 0, p * kh), 2, 0, q * kw)
            patches = ops.reshape(ops.transpose(ops.reshape(x, (n, p, kh, q, kw, c)), (0, 1, 3, 2, 4, 5)),
                                  (n, p, q, kh * kw * c))
            return rebind(e, patches, ops.transpose(ops.reshape(w, (o, kh * kw * c))), extra, "matmul")
        return fn
    t = _extra_taps(kh, kw, c)
    if kh * (kw + t) * c < kh * kw * (c + -c % _ALIGN):
        p = conv_params(e)
        (pt, pb), (pl, pr) = p["padding"]
        padding = ((pt, pb), (pl, pr + t * p["dilation"][1]))  # the extra taps' reach: same output width

        def fn(x, w, *extra):
            w = ops.pad(w, ((0, 0), (0, 0), (0, t), (0, 0)))
            patches = ops.conv2d_patches(x, (kh, kw + t), p["stride"], padding, p["dilation"])
            return rebind(e, patches, ops.transpose(ops.reshape(w, (o, kh * (kw + t) * c))), extra, "matmul")
        return fn
    pad = ((0, 0), (0, 0), (0, 0), (0, -c % _ALIGN))

    def fn(x, w, *extra):
        return rebind(e, ops.pad(x, pad), ops.pad(w, pad), extra, "conv2d")
    return fn


def _extra_taps(kh, kw, c) -> int:
    """Zero taps t appended to each filter row so that K = KH*(KW+t)*C is a multiple of 8."""
    return next(t for t in range(_ALIGN) if kh * (kw + t) * c % _ALIGN == 0)
