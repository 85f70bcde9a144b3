"""matmul (numpy semantics, batched with broadcasting) and linear (torch's F.linear)."""
from __future__ import annotations

import numpy as np

from ..core import shapes
from ..core.ir import Primitive, ShapeDtype
from ..core.shapes import shape_str
from ..core.tracing import Tracer
from ._common import aval, compute_dtype, promote, up


def _matmul_abstract(a, b):
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: operands must have rank >= 2, got {shape_str(a.shape)} "
                         f"and {shape_str(b.shape)}")
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: operands must share a dtype, got {a} and {b}")
    if not shapes.equal(a.shape[-1], b.shape[-2]):
        raise ValueError(f"matmul: contraction dims differ: {shape_str(a.shape)} @ "
                         f"{shape_str(b.shape)} ({a.shape[-1]} vs {b.shape[-2]})")
    try:
        batch = shapes.broadcast(a.shape[:-2], b.shape[:-2], op="matmul")
    except ValueError:
        raise ValueError(f"matmul: batch dims of {shape_str(a.shape)} and {shape_str(b.shape)} "
                         f"do not broadcast") from None
    return ShapeDtype(batch + (a.shape[-2], b.shape[-1]), a.dtype)


def _matmul_impl(a, b):
    acc = np.float32 if compute_dtype(a.dtype) == np.float32 else a.dtype
    return np.matmul(up(a).astype(acc), up(b).astype(acc)).astype(a.dtype)


matmul_p = Primitive("matmul", _matmul_abstract, _matmul_impl)


def matmul(a, b):
    """numpy.matmul: 1-D operands are promoted to matrices and the added axis removed;
    leading (batch) dims broadcast. fp16/bf16 accumulate in fp32."""
    from .layout import reshape
    a, b = promote("matmul", a, b)
    sa, sb = aval(a).shape, aval(b).shape
    if not sa or not sb:
        raise ValueError(f"matmul: operands must not be scalars, got {shape_str(sa)} and {shape_str(sb)}")
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if not shapes.equal(sa[-1], k_b):  # checked here to name the shapes as given (1-D too)
        raise ValueError(f"matmul: contraction dims differ: {shape_str(sa)} @ {shape_str(sb)} "
                         f"({sa[-1]} vs {k_b})")
    a2 = reshape(a, (1,) + sa) if len(sa) == 1 else a
    b2 = reshape(b, sb + (1,)) if len(sb) == 1 else b
    out = matmul_p.bind(a2, b2)
    so = aval(out).shape
    if len(sb) == 1:
        so = so[:-1]
    if len(sa) == 1:
        so = so[:-2] + so[-1:] if len(sb) != 1 else so[:-1]
    return reshape(out, so) if so != aval(out).shape else out


def linear(x, weight, bias=None):
    """torch.nn.functional.linear: x @ weight.T + bias, weight [out_features, in_features]."""
    from .layout import transpose
    wa = aval(weight)
    if aval(x).ndim == 0:
        raise ValueError("linear: input must have at least one dim, got a scalar")
    if wa.ndim != 2:
        raise ValueError(f"linear: weight must be [out_features, in_features], got {shape_str(wa.shape)}")
    if not shapes.equal(aval(x).shape[-1], wa.shape[1]):
        raise ValueError(f"linear: input {shape_str(aval(x).shape)} has {aval(x).shape[-1]} features, "
                         f"weight {shape_str(wa.shape)} expects {wa.shape[1]}")
    y = matmul(x, transpose(weight))
    if bias is not None:
        ba = aval(bias)
        if ba.ndim != 1 or not shapes.equal(ba.shape[0], wa.shape[0]):
            raise ValueError(f"linear: bias must be [{wa.shape[0]}], got {shape_str(ba.shape)}")
        y = y + bias
    return y


Tracer.__matmul__ = matmul
Tracer.__rmatmul__ = lambda a, b: matmul(b, a)

__all__ = ["matmul", "linear"]
