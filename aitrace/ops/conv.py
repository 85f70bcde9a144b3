"""conv2d: torch's F.conv2d semantics on channels-last (NHWC) data.

x `[N, H, W, C]`, w `[O, KH, KW, C/groups]`, out `[N, OH, OW, O]`. The primitive carries the
normalized geometry (stride, padding as ((top, bottom), (left, right)), dilation, groups); the
bias is an elementwise `add` after it, so fusion passes see it as such.
"""
from __future__ import annotations

import numbers

import numpy as np
import sympy

from ..core import dtypes, shapes
from ..core.ir import Primitive, ShapeDtype
from ..core.shapes import shape_str
from ._common import aval, promote, tuple2, up


def conv_out_size(size, k, stride: int, pad_lo: int, pad_hi: int, dilation: int, op: str, what):
    """floor((size + pads - dilation*(k-1) - 1) / stride) + 1, symbolic-aware; raises when the
    (dilated) kernel is provably larger than the padded input. `what()` names the shapes."""
    span = dilation * (k - 1) + 1
    room = size + pad_lo + pad_hi - span
    if isinstance(room, sympy.Basic):
        room = sympy.expand(room)
        if room.is_number:
            room = int(room)
    if (isinstance(room, int) and room < 0) or (isinstance(room, sympy.Basic) and room.is_negative):
        raise ValueError(f"{op}: kernel of extent {span} (size {k}, dilation {dilation}) is larger "
                         f"than the padded input ({size} + {pad_lo + pad_hi} padding) for {what()}")
    return shapes.dim(shapes.floordiv(room, stride) + 1)


def _conv2d_abstract(x, w, *, stride, padding, dilation, groups):
    def what():
        return f"input {shape_str(x.shape)} and weight {shape_str(w.shape)}"
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d: input must be NHWC [N, H, W, C] and weight [O, KH, KW, C/groups] "
                         f"(both rank 4), got {what()}")
    if x.dtype != w.dtype:
        raise TypeError(f"conv2d: input and weight must share a dtype, got {x} and {w}")
    if not dtypes.is_float(x.dtype):
        raise TypeError(f"conv2d: operands must be floating point, got {x} and {w}")
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    if not shapes.equal(cg * groups, c):
        raise ValueError(f"conv2d: {what()} with groups={groups}: input has {c} channels, weight "
                         f"expects {cg} per group x {groups} groups = {cg * groups}")
    if isinstance(o, int) and o % groups:
        raise ValueError(f"conv2d: groups={groups} must divide the {o} output channels of {what()}")
    oh = conv_out_size(h, kh, stride[0], *padding[0], dilation[0], "conv2d", what)
    ow = conv_out_size(wd, kw, stride[1], *padding[1], dilation[1], "conv2d", what)
    return ShapeDtype((n, oh, ow, o), x.dtype)


def _conv2d_impl(x, w, *, stride, padding, dilation, groups):
    x, wt = up(x), up(w)
    acc_dtype = np.float32 if x.dtype == np.float32 else x.dtype
    n, h, wd, c = x.shape
    o, kh, kw, cg = wt.shape
    (pt, pb), (pl, pr) = padding
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    # one [G, M, Cg] @ [G, Cg, Og] matmul per kernel tap, accumulated in fp32
    wg = wt.reshape(groups, og, kh, kw, cg).astype(acc_dtype)
    out = np.zeros((groups, n * oh * ow, og), dtype=acc_dtype)
    for i in range(kh):
        for j in range(kw):
            tap = xp[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
            tap = tap.reshape(n * oh * ow, groups, cg).transpose(1, 0, 2).astype(acc_dtype)
            out += np.matmul(tap, wg[:, :, i, j, :].transpose(0, 2, 1))
    out = out.transpose(1, 0, 2).reshape(n, oh, ow, o)
    return out.astype(w.dtype)


conv2d_p = Primitive("conv2d", _conv2d_abstract, _conv2d_impl)


def _positive_pair(v, op: str, name: str) -> tuple[int, int]:
    t = tuple2(v, op, name)
    if any(i < 1 for i in t):
        raise ValueError(f"{op}: {name} must be positive, got {v!r}")
    return t


def _conv_padding(padding, kernel, dilation, stride, op: str):
    """((top, bottom), (left, right)) from an int, a pair, a pair of pairs, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding != "same":
            raise ValueError(f"{op}: padding must be 'valid', 'same', an int or a pair, got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"{op}: padding='same' is not supported for strided convolutions "
                             f"(stride={stride}), as in torch")
        pads = []
        for k, d in zip(kernel, dilation):
            if not isinstance(k, int):
                raise ValueError(f"{op}: padding='same' needs a static kernel size, got {k}")
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))  # torch puts the odd one at the end
        return tuple(pads)
    if (isinstance(padding, (tuple, list)) and len(padding) == 2
            and all(isinstance(p, (tuple, list)) for p in padding)):
        pads = tuple(tuple2(p, op, "padding") for p in padding)
    else:
        pads = tuple((p, p) for p in tuple2(padding, op, "padding"))
    if any(p < 0 for pair in pads for p in pair):
        raise ValueError(f"{op}: padding must be non-negative, got {padding!r}")
    return pads


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as torch.nn.functional.conv2d) on NHWC input.

    x `[N, H, W, C]`, w `[O, KH, KW, C/groups]`, optional bias b `[O]`; returns `[N, OH, OW, O]`.
    stride, dilation: int or pair; padding: int, pair, ((top, bottom), (left, right)), 'valid'
    or 'same' (stride 1 only; an odd total padding puts the extra row/column at the end, as
    torch). Int operands compute in float32; fp16/bf16 accumulate in fp32.
    """
    if b is None:
        x, w = promote("conv2d", x, w, to_float=True)
    else:
        x, w, b = promote("conv2d", x, w, b, to_float=True)
    xa, wa = aval(x), aval(w)
    if xa.ndim != 4 or wa.ndim != 4:
        raise ValueError(f"conv2d: input must be NHWC [N, H, W, C] and weight [O, KH, KW, C/groups] "
                         f"(both rank 4), got input {shape_str(xa.shape)} and weight "
                         f"{shape_str(wa.shape)}")
    stride = _positive_pair(stride, "conv2d", "stride")
    dilation = _positive_pair(dilation, "conv2d", "dilation")
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    c, o = xa.shape[3], wa.shape[0]
    if isinstance(c, int) and c % groups:
        raise ValueError(f"conv2d: groups={groups} must divide the {c} input channels of input "
                         f"{shape_str(xa.shape)} (weight {shape_str(wa.shape)})")
    if isinstance(o, int) and o % groups:
        raise ValueError(f"conv2d: groups={groups} must divide the {o} output channels of weight "
                         f"{shape_str(wa.shape)} (input {shape_str(xa.shape)})")
    padding = _conv_padding(padding, wa.shape[1:3], dilation, stride, "conv2d")
    y = conv2d_p.bind(x, w, stride=stride, padding=padding, dilation=dilation,
                     groups=groups)
    if b is not None:
        ba = aval(b)
        if ba.ndim != 1 or not shapes.equal(ba.shape[0], o):
            raise ValueError(f"conv2d: bias must be [{o}] for weight {shape_str(wa.shape)}, "
                             f"got {shape_str(ba.shape)}")
        from .elementwise import add
        y = add(y, b)
    return y


def _patches_abstract(x, *, kernel_size, stride, padding, dilation):
    if x.ndim != 4:
        raise ValueError(f"conv2d_patches: input must be NHWC [N, H, W, C], got {shape_str(x.shape)}")
    n, h, wd, c = x.shape
    (kh, kw) = kernel_size

    def what():
        return f"input {shape_str(x.shape)} and kernel_size {kernel_size}"
    oh = conv_out_size(h, kh, stride[0], *padding[0], dilation[0], "conv2d_patches", what)
    ow = conv_out_size(wd, kw, stride[1], *padding[1], dilation[1], "conv2d_patches", what)
    return ShapeDtype((n, oh, ow, kh * kw * c), x.dtype)


def _patches_impl(x, *, kernel_size, stride, padding, dilation):
    n, h, wd, c = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    xp = np.pad(x, ((0, 0), *padding, (0, 0)))
    oh = (h + sum(padding[0]) - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + sum(padding[1]) - dw * (kw - 1) - 1) // sw + 1
    taps = [xp[:, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw, :]
            for i in range(kh) for j in range(kw)]
    return np.concatenate(taps, axis=-1)


conv2d_patches_p = Primitive("conv2d_patches", _patches_abstract, _patches_impl)


def conv2d_patches(x, kernel_size, stride=1, padding=0, dilation=1):
    """The patches a conv2d multiplies (im2col), NHWC: `[N, OH, OW, KH*KW*C]`, the last axis
    ordered (kh, kw, c) as a `[O, KH, KW, C]` weight reshaped to `[O, KH*KW*C]`, zeros where a
    tap falls in the padding. So `conv2d(x, w, ...)` is `conv2d_patches(x, ...) @ w.reshape(O, -1).T`
    (groups 1). Arguments as conv2d's."""
    xa = aval(x)
    if xa.ndim != 4:
        raise ValueError(f"conv2d_patches: input must be NHWC [N, H, W, C], got {shape_str(xa.shape)}")
    kernel_size = _positive_pair(kernel_size, "conv2d_patches", "kernel_size")
    stride = _positive_pair(stride, "conv2d_patches", "stride")
    dilation = _positive_pair(dilation, "conv2d_patches", "dilation")
    padding = _conv_padding(padding, kernel_size, dilation, stride, "conv2d_patches")
    return conv2d_patches_p.bind(x, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)


__all__ = ["conv2d", "conv2d_patches"]
