"""2-D pooling on channels-last (NHWC) data, with torch's F.max_pool2d / F.avg_pool2d semantics
(ceil_mode=False): stride defaults to kernel_size, symmetric padding of at most half the kernel;
max pooling pads with -inf, average pooling counts the zero padding unless told otherwise."""
from __future__ import annotations

import numpy as np

from ..core import dtypes
from ..core.ir import Primitive, ShapeDtype
from ..core.shapes import shape_str
from ._common import as_array, aval, check_rank, promote, tuple2, up
from .conv import conv_out_size


def _pool_abstract(op, x, kernel_size, stride, padding):
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be NHWC [N, H, W, C] (rank 4), got {shape_str(x.shape)}")
    n, h, w, c = x.shape

    def what():
        return f"input {shape_str(x.shape)} and kernel_size {kernel_size}"
    oh = conv_out_size(h, kernel_size[0], stride[0], padding[0], padding[0], 1, op, what)
    ow = conv_out_size(w, kernel_size[1], stride[1], padding[1], padding[1], 1, op, what)
    return ShapeDtype((n, oh, ow, c), x.dtype)


def _windows(xp, kernel_size, stride, oh, ow):
    """Yield the strided [N, OH, OW, C] view of each kernel tap of padded input `xp`."""
    (kh, kw), (sh, sw) = kernel_size, stride
    for i in range(kh):
        for j in range(kw):
            yield xp[:, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw, :]


def _out_hw(x, kernel_size, stride, padding):
    return tuple((x.shape[1 + a] + 2 * padding[a] - kernel_size[a]) // stride[a] + 1 for a in (0, 1))


def _max_pool_impl(x, *, kernel_size, stride, padding):
    xf = up(x)
    lowest = -np.inf if dtypes.is_float(x.dtype) else np.iinfo(x.dtype).min
    pads = ((0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0))
    xp = np.pad(xf, pads, constant_values=np.asarray(lowest, xf.dtype))
    oh, ow = _out_hw(x, kernel_size, stride, padding)
    out = None
    for tap in _windows(xp, kernel_size, stride, oh, ow):
        out = tap.copy() if out is None else np.maximum(out, tap)
    return out.astype(x.dtype)


def _avg_pool_impl(x, *, kernel_size, stride, padding, count_include_pad):
    xf = up(x).astype(np.float32)
    pads = ((0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0))
    xp = np.pad(xf, pads)
    oh, ow = _out_hw(x, kernel_size, stride, padding)
    total = np.zeros((x.shape[0], oh, ow, x.shape[3]), np.float32)
    for tap in _windows(xp, kernel_size, stride, oh, ow):
        total += tap
    if count_include_pad:
        return (total / np.float32(kernel_size[0] * kernel_size[1])).astype(x.dtype)
    ones = np.pad(np.ones((1, x.shape[1], x.shape[2], 1), np.float32), pads)
    count = np.zeros((1, oh, ow, 1), np.float32)
    for tap in _windows(ones, kernel_size, stride, oh, ow):
        count += tap
    return (total / count).astype(x.dtype)


max_pool2d_p = Primitive(
    "max_pool2d", lambda x, **p: _pool_abstract("max_pool2d", x, **p), _max_pool_impl)
avg_pool2d_p = Primitive(
    "avg_pool2d",
    lambda x, count_include_pad, **p: _pool_abstract("avg_pool2d", x, **p), _avg_pool_impl)


def _pool_params(op, x, kernel_size, stride, padding):
    check_rank(op, aval(x), 4, "input (NHWC)")
    kernel_size = tuple2(kernel_size, op, "kernel_size")
    stride = kernel_size if stride is None else tuple2(stride, op, "stride")
    padding = tuple2(padding, op, "padding")
    if any(k < 1 for k in kernel_size):
        raise ValueError(f"{op}: kernel_size must be positive, got {kernel_size}")
    if any(s < 1 for s in stride):
        raise ValueError(f"{op}: stride must be positive, got {stride}")
    if any(p < 0 or 2 * p > k for p, k in zip(padding, kernel_size)):
        raise ValueError(f"{op}: padding {padding} must be non-negative and at most half the "
                         f"kernel_size {kernel_size} (input {shape_str(aval(x).shape)})")
    return dict(kernel_size=kernel_size, stride=stride, padding=padding)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """torch.nn.functional.max_pool2d on NHWC input `[N, H, W, C]` (padding counts as -inf)."""
    x = as_array(x, "max_pool2d")
    if aval(x).dtype == dtypes.bool_:
        raise TypeError(f"max_pool2d: boolean input {aval(x)} is not supported")
    params = _pool_params("max_pool2d", x, kernel_size, stride, padding)
    return max_pool2d_p.bind(x, **params)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """torch.nn.functional.avg_pool2d on NHWC input `[N, H, W, C]`; with count_include_pad the
    divisor is always kernel_size[0] * kernel_size[1], else the number of real inputs."""
    (x,) = promote("avg_pool2d", x, to_float=True)
    params = _pool_params("avg_pool2d", x, kernel_size, stride, padding)
    return avg_pool2d_p.bind(x, count_include_pad=bool(count_include_pad), **params)


def global_avg_pool2d(x, keepdims: bool = False):
    """Mean over H and W of NHWC input: `[N, C]`, or `[N, 1, 1, C]` with keepdims."""
    (x,) = promote("global_avg_pool2d", x, to_float=True)
    check_rank("global_avg_pool2d", aval(x), 4, "input (NHWC)")
    from .reduction import mean
    return mean(x, axis=(1, 2), keepdims=keepdims)


__all__ = ["max_pool2d", "avg_pool2d", "global_avg_pool2d"]
