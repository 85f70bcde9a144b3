"""Reductions: sum, mean, max, min, argmax (primitives) and var (built from mean/sub/mul).

Primitives take normalized params: `axes` a sorted tuple of distinct non-negative ints (argmax:
one `axis` int) and `keepdims` a bool. They keep the operand's dtype (argmax gives int64); the
user functions convert first: bool sums as int32, mean/var of ints and bools are float32.
reduce_mean is a primitive, not sum times 1/n, because n can be symbolic (a Dim batch).
The numpy references accumulate fp16/bf16 in fp32.
"""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from ..core import dtypes, shapes
from ..core.ir import Primitive, ShapeDtype
from ..core.shapes import shape_str
from ..core.tracing import Tracer
from ._common import aval, promote, up


# ---------------------------------------------------------------- shared checks
def _check_axes(op: str, a: ShapeDtype, axes) -> None:
    if not isinstance(axes, tuple) or not builtins.all(
            isinstance(k, int) and not isinstance(k, bool) for k in axes):
        raise TypeError(f"{op}: axes must be a tuple of ints, got {axes!r}")
    if list(axes) != sorted(set(axes)) or (axes and not 0 <= axes[0] <= axes[-1] < a.ndim):
        raise ValueError(f"{op}: axes {axes} must be sorted, distinct and in [0, {a.ndim}) "
                         f"for operand {shape_str(a.shape)}")


def _check_keepdims(op: str, keepdims) -> None:
    if not isinstance(keepdims, (bool, np.bool_)):
        raise TypeError(f"{op}: keepdims must be a bool, got {keepdims!r}")


def _check_nonempty(op: str, a: ShapeDtype, axes) -> None:
    """max/min/argmax have no identity: reducing a (statically) empty axis is an error."""
    for k in axes:
        if isinstance(a.shape[k], int) and a.shape[k] == 0:
            raise ValueError(f"{op}: cannot reduce axis {k} of size 0 (operand "
                             f"{shape_str(a.shape)}): the reduction has no identity")


def _reduced_shape(shape, axes, keepdims) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _normalize(op: str, a: ShapeDtype, axis) -> tuple:
    """User `axis` (None, int or a sequence of ints, negatives allowed) -> sorted axes tuple."""
    if axis is None:
        return tuple(range(a.ndim))
    if isinstance(axis, bool) or not isinstance(axis, (numbers.Integral, tuple, list)):
        raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {axis!r}")
    items = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    for k in items:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {axis!r}")
        if not -a.ndim <= k < a.ndim:
            raise ValueError(f"{op}: axis {k} is out of range for operand {shape_str(a.shape)} "
                             f"(rank {a.ndim})")
    axes = tuple(sorted(int(k) % a.ndim for k in items))
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: repeated axis in {axis!r} for operand {shape_str(a.shape)}")
    return axes


# ---------------------------------------------------------------- primitives
def _reduce_prim(name, out_dtypes, impl, nonempty=False):
    def abstract_eval(a, *, axes, keepdims):
        _check_axes(name, a, axes)
        _check_keepdims(name, keepdims)
        if a.dtype not in out_dtypes:
            raise TypeError(f"{name}: unsupported operand dtype {a} (expected one of "
                            + ", ".join(dtypes.SHORT_NAMES[d] for d in out_dtypes) + ")")
        if nonempty:
            _check_nonempty(name, a, axes)
        return ShapeDtype(_reduced_shape(a.shape, axes, keepdims), a.dtype)
    return Primitive(name, abstract_eval, impl)


_FLOATS = (dtypes.float32, dtypes.float16, dtypes.bfloat16)
_NUMERIC = _FLOATS + (dtypes.int32, dtypes.int64)


def _sum_impl(x, *, axes, keepdims):
    x = np.asarray(x)
    acc = up(x)
    return np.asarray(np.sum(acc, axis=axes, keepdims=keepdims, dtype=acc.dtype)).astype(x.dtype)


def _mean_impl(x, *, axes, keepdims):
    x = np.asarray(x)
    acc = up(x)
    count = int(np.prod([x.shape[k] for k in axes], dtype=np.int64))
    s = np.sum(acc, axis=axes, keepdims=keepdims, dtype=acc.dtype)
    with np.errstate(all="ignore"):  # an empty axis gives nan, as numpy's mean
        return np.asarray(s / acc.dtype.type(count)).astype(x.dtype)


def _extremum_impl(fn):
    def impl(x, *, axes, keepdims):
        x = np.asarray(x)
        return np.asarray(fn(up(x), axis=axes, keepdims=keepdims)).astype(x.dtype)
    return impl


reduce_sum_p = _reduce_prim("reduce_sum", _NUMERIC, _sum_impl)
reduce_mean_p = _reduce_prim("reduce_mean", _FLOATS, _mean_impl)
reduce_max_p = _reduce_prim("reduce_max", _NUMERIC + (dtypes.bool_,), _extremum_impl(np.max),
                            nonempty=True)
reduce_min_p = _reduce_prim("reduce_min", _NUMERIC + (dtypes.bool_,), _extremum_impl(np.min),
                            nonempty=True)


def _argmax_abstract(a, *, axis, keepdims):
    if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis < a.ndim:
        raise ValueError(f"argmax: axis must be an int in [0, {a.ndim}) for operand "
                         f"{shape_str(a.shape)}, got {axis!r}")
    _check_keepdims("argmax", keepdims)
    _check_nonempty("argmax", a, (axis,))
    return ShapeDtype(_reduced_shape(a.shape, (axis,), keepdims), dtypes.int64)


def _argmax_impl(x, *, axis, keepdims):
    # first index of the maximum (numpy and torch agree on ties)
    return np.asarray(np.argmax(up(np.asarray(x)), axis=axis, keepdims=keepdims)).astype(np.int64)


argmax_p = Primitive("argmax", _argmax_abstract, _argmax_impl)


# ---------------------------------------------------------------- user functions
def _operand(op: str, x, to_float=False):
    (x,) = promote(op, x, to_float=to_float)
    return x


def _reduce(op, prim, x, axis, keepdims):
    a = aval(x)
    axes = _normalize(op, a, axis)
    _check_keepdims(op, keepdims)
    return prim.bind(x, axes=axes, keepdims=bool(keepdims))


def sum(x, axis=None, keepdims=False):
    """numpy.sum over `axis` (None: all; an int or a tuple, negatives allowed). Floats and
    int32/int64 keep their dtype (fp16/bf16 accumulate in fp32); bool sums as int32."""
    x = _operand("sum", x)
    if aval(x).dtype == dtypes.bool_:
        from .elementwise import cast
        x = cast(x, dtypes.int32)
    return _reduce("sum", reduce_sum_p, x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    """numpy.mean; floats keep their dtype, ints and bools give float32."""
    x = _operand("mean", x, to_float=True)
    return _reduce("mean", reduce_mean_p, x, axis, keepdims)


def max(x, axis=None, keepdims=False):
    """numpy.max (amax): the dtype is kept; reducing an empty axis is a ValueError."""
    return _reduce("max", reduce_max_p, _operand("max", x), axis, keepdims)


def min(x, axis=None, keepdims=False):
    """numpy.min (amin): the dtype is kept; reducing an empty axis is a ValueError."""
    return _reduce("min", reduce_min_p, _operand("min", x), axis, keepdims)


def argmax(x, axis=None, keepdims=False):
    """numpy.argmax: int64 index of the first maximum along `axis` (an int), or into the
    flattened array when `axis` is None (then keepdims gives all-ones dims, as numpy)."""
    from .layout import reshape
    x = _operand("argmax", x)
    a = aval(x)
    _check_keepdims("argmax", keepdims)
    if axis is None:
        flat = reshape(x, (a.size,))
        out = argmax_p.bind(flat, axis=0, keepdims=False)
        return reshape(out, (1,) * a.ndim) if keepdims and a.ndim else out
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"argmax: axis must be None or an int, got {axis!r}")
    (k,) = _normalize("argmax", a, axis)
    return argmax_p.bind(x, axis=k, keepdims=bool(keepdims))


def var(x, axis=None, keepdims=False, ddof=0):
    """numpy.var: mean((x - mean(x))**2) * n / (n - ddof) over `axis`; ints and bools give
    float32, fp16/bf16 are computed in fp32 and rounded once. n - ddof <= 0 gives inf/nan."""
    from .elementwise import cast, mul, sub
    if isinstance(ddof, bool) or not isinstance(ddof, numbers.Real):
        raise TypeError(f"var: ddof must be a number, got {ddof!r}")
    x = _operand("var", x, to_float=True)
    a = aval(x)
    axes = _normalize("var", a, axis)
    _check_keepdims("var", keepdims)
    xf = cast(x, dtypes.float32) if a.dtype != dtypes.float32 else x
    m = reduce_mean_p.bind(xf, axes=axes, keepdims=True)
    d = sub(xf, m)
    v = reduce_mean_p.bind(mul(d, d), axes=axes, keepdims=bool(keepdims))
    if ddof != 0:
        n = shapes.prod(a.shape[k] for k in axes)
        if isinstance(n, int):
            v = mul(v, n / (n - ddof) if n - ddof > 0 else float("inf"))
        else:
            # A symbolic count: materialize it as a traced f32 scalar, the sum of ones over the
            # reduced axes of one slice of x (a constant can't have a symbolic shape).
            from .elementwise import div, equal, where
            from .layout import slice_axis
            xs = xf
            for k in range(a.ndim):
                if k not in axes:
                    size = a.shape[k]
                    xs = slice_axis(xs, k, 0, builtins.min(1, size) if isinstance(size, int) else 1)
            ones = where(equal(xs, xs), 1.0, 1.0)
            nt = reduce_sum_p.bind(ones, axes=tuple(range(a.ndim)), keepdims=False)
            v = mul(v, div(nt, sub(nt, float(ddof))))
    return cast(v, a.dtype) if a.dtype != dtypes.float32 else v


def _method(fn):
    def method(self, *args, **kwargs):
        return fn(self, *args, **kwargs)
    method.__name__ = fn.__name__
    method.__doc__ = fn.__doc__
    return method


for _fn in (sum, mean, max, min, argmax, var):
    setattr(Tracer, _fn.__name__, _method(_fn))

__all__ = ["sum", "mean", "max", "min", "argmax", "var"]
