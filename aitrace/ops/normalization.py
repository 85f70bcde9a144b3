"""Normalizations, one primitive each so later fusion passes see them as units: softmax,
layer_norm (last axis, torch semantics) and batch_norm (inference, channels last).

Floats only; operands share one dtype (the user functions promote as numpy does). The numpy
references compute fp16/bf16 in fp32, statistics included, and round once at the end.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..core import dtypes, shapes
from ..core.ir import Primitive, ShapeDtype
from ..core.shapes import shape_str
from ._common import as_array, aval, promote, up


def _check_float(op: str, a: ShapeDtype, what: str = "input") -> None:
    if not dtypes.is_float(a.dtype):
        raise TypeError(f"{op}: {what} must be floating point (f32, f16 or bf16), got {a}")


def _check_eps(op: str, eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise ValueError(f"{op}: eps must be a non-negative number, got {eps!r}")
    return float(eps)


def _check_vector(op: str, x: ShapeDtype, v: ShapeDtype, what: str) -> None:
    c = x.shape[-1]
    if v.ndim != 1 or not shapes.equal(v.shape[0], c):
        raise ValueError(f"{op}: {what} must have shape [{c}] (the last dim of input "
                         f"{shape_str(x.shape)}), got {shape_str(v.shape)}")


def _check_operands(op: str, x: ShapeDtype, vectors: dict) -> None:
    """x floating point of rank >= 1; every vector [C] of x's dtype."""
    _check_float(op, x)
    if x.ndim < 1:
        raise ValueError(f"{op}: input must have rank >= 1, got shape {shape_str(x.shape)}")
    for what, v in vectors.items():
        _check_vector(op, x, v, what)
        if v.dtype != x.dtype:
            raise TypeError(f"{op}: {what} {v} must have the input's dtype ({x})")


def _optional(names, flags, rest):
    """The optional operands present, by name, in order."""
    it = iter(rest)
    return {n: next(it) for n, f in zip(names, flags) if f}


def _floats(op: str, *xs):
    """Operands promoted to their common dtype, which must be floating point."""
    xs = [as_array(x, op) for x in xs]
    if not dtypes.is_float(aval(xs[0]).dtype):  # an int input is an error, whatever the rest
        raise TypeError(f"{op}: input must be floating point (f32, f16 or bf16), got "
                        f"{aval(xs[0])}")
    xs = promote(op, *xs)
    if not dtypes.is_float(aval(xs[0]).dtype):
        raise TypeError(f"{op}: operands must be floating point (f32, f16 or bf16), got "
                        + ", ".join(str(aval(x)) for x in xs))
    return xs


# ---------------------------------------------------------------- softmax
def _softmax_abstract(x, *, axis):
    _check_float("softmax", x)
    if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis < x.ndim:
        raise ValueError(f"softmax: axis must be an int in [0, {x.ndim}) for input "
                         f"{shape_str(x.shape)}, got {axis!r}")
    return x


def _softmax_impl(x, *, axis):
    x = np.asarray(x)
    xf = up(x)
    if xf.size == 0:
        return xf.astype(x.dtype)
    with np.errstate(all="ignore"):
        e = np.exp(xf - np.max(xf, axis=axis, keepdims=True))
        return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


softmax_p = Primitive("softmax", _softmax_abstract, _softmax_impl)


def softmax(x, axis: int = -1):
    """exp(x - max) / sum(exp(x - max)) along `axis` (numerically stable), as torch.softmax."""
    (x,) = _floats("softmax", x)
    a = aval(x)
    if a.ndim == 0:
        raise ValueError(f"softmax: input must have rank >= 1, got shape {shape_str(a.shape)}")
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"softmax: axis must be an int, got {axis!r}")
    if not -a.ndim <= axis < a.ndim:
        raise ValueError(f"softmax: axis {axis} is out of range for input {shape_str(a.shape)}")
    return softmax_p.bind(x, axis=int(axis) % a.ndim)


# ---------------------------------------------------------------- layer_norm
def _layer_norm_abstract(x, *rest, eps, has_weight, has_bias):
    if len(rest) != int(has_weight) + int(has_bias):
        raise ValueError(f"layer_norm: {len(rest)} affine operands for has_weight={has_weight}, "
                         f"has_bias={has_bias}")
    _check_eps("layer_norm", eps)
    _check_operands("layer_norm", x, _optional(("weight", "bias"), (has_weight, has_bias), rest))
    return x


def _layer_norm_impl(x, *rest, eps, has_weight, has_bias):
    x = np.asarray(x)
    xf = up(x)
    opt = {k: up(v) for k, v in _optional(("weight", "bias"), (has_weight, has_bias), rest).items()}
    with np.errstate(all="ignore"):
        mu = np.mean(xf, axis=-1, keepdims=True)
        d = xf - mu
        var = np.mean(d * d, axis=-1, keepdims=True)  # biased, as torch
        y = d / np.sqrt(var + np.float32(eps))
    return _affine(y, opt).astype(x.dtype)


def _affine(y, opt):
    """y * weight + bias for the affine operands present (fp32)."""
    if "weight" in opt:
        y = y * opt["weight"]
    if "bias" in opt:
        y = y + opt["bias"]
    return y


layer_norm_p = Primitive("layer_norm", _layer_norm_abstract, _layer_norm_impl)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """torch.nn.functional.layer_norm over the last axis: (x - mean) / sqrt(var + eps) * weight
    + bias with the biased variance; weight and bias ([C]) may be None."""
    eps = _check_eps("layer_norm", eps)
    present = [v for v in (weight, bias) if v is not None]
    x, *present = _floats("layer_norm", x, *present)
    return layer_norm_p.bind(x, *present, eps=eps, has_weight=weight is not None,
                             has_bias=bias is not None)


# ---------------------------------------------------------------- batch_norm
def _batch_norm_abstract(x, mean, var, *rest, eps, has_weight, has_bias):
    if len(rest) != int(has_weight) + int(has_bias):
        raise ValueError(f"batch_norm: {len(rest)} affine operands for has_weight={has_weight}, "
                         f"has_bias={has_bias}")
    _check_eps("batch_norm", eps)
    _check_operands("batch_norm", x, {"mean": mean, "var": var,
                                      **_optional(("weight", "bias"), (has_weight, has_bias), rest)})
    return x


def _batch_norm_impl(x, mean, var, *rest, eps, has_weight, has_bias):
    x = np.asarray(x)
    opt = {k: up(v) for k, v in _optional(("weight", "bias"), (has_weight, has_bias), rest).items()}
    with np.errstate(all="ignore"):
        y = (up(x) - up(mean)) / np.sqrt(up(var) + np.float32(eps))
    return _affine(y, opt).astype(x.dtype)


batch_norm_p = Primitive("batch_norm", _batch_norm_abstract, _batch_norm_impl)


def batch_norm(x, mean, var, weight=None, bias=None, eps: float = 1e-5):
    """Inference batch norm with channels LAST: x [..., C], running mean/var, weight and bias
    [C] (weight/bias may be None): (x - mean) / sqrt(var + eps) * weight + bias."""
    eps = _check_eps("batch_norm", eps)
    present = [v for v in (weight, bias) if v is not None]
    x, mean, var, *present = _floats("batch_norm", x, mean, var, *present)
    return batch_norm_p.bind(x, mean, var, *present, eps=eps, has_weight=weight is not None,
                             has_bias=bias is not None)


__all__ = ["softmax", "layer_norm", "batch_norm"]
