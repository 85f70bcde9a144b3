"""Layout and memory primitives: reshape, transpose, broadcast_to, slice, flip, concatenate,
pad, take (gather); split, squeeze, expand_dims and indexing are built from them."""
from __future__ import annotations

import numbers

import numpy as np
import sympy

from ..core import dtypes, shapes
from ..core.ir import Primitive, ShapeDtype
from ..core.shapes import shape_str
from ..core.tracing import Tracer
from ._common import aval, as_array, promote


# ---------------------------------------------------------------- reshape / transpose / broadcast
def _reshape_abstract(a, new_sizes):
    if not shapes.equal(shapes.prod(a.shape), shapes.prod(new_sizes)):
        raise ValueError(f"reshape: cannot reshape {shape_str(a.shape)} into {shape_str(new_sizes)}")
    return ShapeDtype(new_sizes, a.dtype)


reshape_p = Primitive("reshape", _reshape_abstract,
                      lambda x, new_sizes: np.reshape(x, new_sizes))


def _resolve_shape(old, new, op="reshape"):
    new = [d if (isinstance(d, numbers.Integral) and d == -1) else shapes.dim(d) for d in new]
    holes = [i for i, d in enumerate(new) if isinstance(d, numbers.Integral) and d == -1]
    if len(holes) > 1:
        raise ValueError(f"{op}: only one -1 allowed in {tuple(new)}")
    if holes:
        known = shapes.prod(d for i, d in enumerate(new) if i != holes[0])
        total = shapes.prod(old)
        q = sympy.simplify(sympy.sympify(total) / known) if not shapes.equal(known, 0) else None
        if q is None or not (q.is_integer or (q.is_number and q == int(q))):
            raise ValueError(f"{op}: cannot reshape {shape_str(old)} into "
                             f"{shape_str(tuple(new))} (size not divisible)")
        new[holes[0]] = shapes.dim(q)
    return tuple(new)


def reshape(x, shape):
    """numpy.reshape: one -1 allowed, symbolic sizes allowed (`(2*B, -1)`)."""
    x = as_array(x, "reshape")
    shape = (shape,) if isinstance(shape, (numbers.Integral, sympy.Basic)) else tuple(shape)
    new = _resolve_shape(aval(x).shape, shape)
    if aval(x).shape == new:
        return x
    return reshape_p.bind(x, new_sizes=new)


def _transpose_abstract(a, perm):
    if sorted(perm) != list(range(a.ndim)):
        raise ValueError(f"transpose: axes {perm} are not a permutation of {a.ndim} axes "
                         f"(operand {shape_str(a.shape)})")
    return ShapeDtype(tuple(a.shape[p] for p in perm), a.dtype)


transpose_p = Primitive("transpose", _transpose_abstract,
                        lambda x, perm: np.ascontiguousarray(np.transpose(x, perm)))


def transpose(x, axes=None):
    """numpy.transpose: reverse the axes by default."""
    x = as_array(x, "transpose")
    nd = aval(x).ndim
    perm = tuple(range(nd))[::-1] if axes is None else tuple(
        shapes.normalize_axis(a, nd, "transpose") for a in axes)
    if perm == tuple(range(nd)):
        _transpose_abstract(aval(x), perm)
        return x
    return transpose_p.bind(x, perm=perm)


def _broadcast_abstract(a, shape):
    out = shapes.broadcast(a.shape, shape, op="broadcast_to")
    if len(out) != len(shape) or not all(shapes.equal(o, s) for o, s in zip(out, shape)):
        raise ValueError(f"broadcast_to: cannot broadcast {shape_str(a.shape)} to {shape_str(shape)}")
    return ShapeDtype(shape, a.dtype)


broadcast_to_p = Primitive("broadcast_to", _broadcast_abstract,
                           lambda x, shape: np.ascontiguousarray(np.broadcast_to(x, shape)))


def broadcast_to(x, shape):
    x = as_array(x, "broadcast_to")
    shape = shapes.shape(shape)
    if aval(x).shape == shape:
        return x
    return broadcast_to_p.bind(x, shape=shape)


def expand_dims(x, axis: int):
    a = aval(x)
    axis = shapes.normalize_axis(axis, a.ndim + 1, "expand_dims")
    return reshape(x, a.shape[:axis] + (1,) + a.shape[axis:])


def squeeze(x, axis=None):
    a = aval(x)
    axes = [i for i, d in enumerate(a.shape) if d == 1] if axis is None else \
        shapes.normalize_axes(axis, a.ndim, "squeeze")
    for i in axes:
        if a.shape[i] != 1:
            raise ValueError(f"squeeze: axis {i} of {shape_str(a.shape)} has size {a.shape[i]}, not 1")
    return reshape(x, tuple(d for i, d in enumerate(a.shape) if i not in axes))


# ---------------------------------------------------------------- slice / flip
def _slice_abstract(a, start, limit, step):
    if not len(start) == len(limit) == len(step) == a.ndim:
        raise ValueError(f"slice: {len(start)} bounds for operand {shape_str(a.shape)}")
    out = []
    for s, l, st in zip(start, limit, step):
        n = l - s
        out.append(max(0, -(-n // st)) if isinstance(n, int) else shapes.ceildiv(n, st))
    return ShapeDtype(tuple(out), a.dtype)


slice_p = Primitive("slice", _slice_abstract, lambda x, start, limit, step: np.ascontiguousarray(
    x[tuple(slice(s, l, st) for s, l, st in zip(start, limit, step))]))
flip_p = Primitive("flip", lambda a, axes: a, lambda x, axes: np.ascontiguousarray(np.flip(x, axes)))


def slice_axis(x, axis: int, start, limit, step: int = 1):
    """x[..., start:limit:step, ...] on one axis (start/limit already normalized, step > 0)."""
    a = aval(x)
    st, li, sp = [0] * a.ndim, list(a.shape), [1] * a.ndim
    st[axis], li[axis], sp[axis] = start, limit, step
    if st == [0] * a.ndim and all(shapes.equal(l, d) for l, d in zip(li, a.shape)) and step == 1:
        return x
    return slice_p.bind(x, start=tuple(st), limit=tuple(li), step=tuple(sp))


def _norm_slice(s: slice, n, axis: int):
    """(start, limit, step, flip) for a Python slice on a dim of size n."""
    step = 1 if s.step is None else s.step
    if not all(v is None or (isinstance(v, numbers.Integral) or isinstance(v, sympy.Basic))
               for v in (s.start, s.stop, s.step)):
        raise TypeError(f"slice bounds must be ints, got {s}")
    if step == 0:
        raise ValueError("slice step cannot be zero")
    if isinstance(n, int):
        start, stop, step = s.indices(n)
        if step > 0:
            return start, max(start, stop), step, False
        # walk the flipped axis forward instead: element j of the axis is n-1-j after the flip
        count, first = len(range(start, stop, step)), n - 1 - start
        return first, first + (count - 1) * -step + 1 if count else first, -step, True
    if step < 0:
        raise ValueError(f"negative slice step on symbolic axis {axis} (size {n}) is not supported")

    def bound(v, default):
        if v is None:
            return default
        return n + v if isinstance(v, numbers.Integral) and v < 0 else v
    return bound(s.start, 0), bound(s.stop, n), step, False


def getitem(x, idx):
    """numpy basic indexing (ints, slices with steps, None, ...) and one integer-array index."""
    a = aval(x)
    idx = idx if isinstance(idx, tuple) else (idx,)
    ellipses = [k for k, i in enumerate(idx) if i is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if n_real > a.ndim:
        raise IndexError(f"too many indices ({n_real}) for array of shape {shape_str(a.shape)}")
    # numpy: with an array index, integers are advanced indices too; if the advanced indices
    # are not adjacent in the index (a slice, None or ... between them), their dims go first.
    adv = [k for k, i in enumerate(idx) if isinstance(i, (Tracer, np.ndarray, list))]
    if adv:
        adv += [k for k, i in enumerate(idx)
                if isinstance(i, numbers.Integral) and not isinstance(i, bool)]
    to_front = bool(adv) and max(adv) - min(adv) + 1 != len(adv)
    fill = (slice(None),) * (a.ndim - n_real)
    idx = idx[:ellipses[0]] + fill + idx[ellipses[0] + 1:] if ellipses else idx + fill
    y, axis, out_shape, gather = x, 0, [], None
    for i in idx:
        if i is None:
            out_shape.append(1)
            continue
        n = aval(y).shape[axis]
        if isinstance(i, slice):
            start, limit, step, flipped = _norm_slice(i, n, axis)
            if flipped:
                y = flip_p.bind(y, axes=(axis,))
            y = slice_axis(y, axis, start, limit, step)
            out_shape.append(aval(y).shape[axis])
        elif isinstance(i, numbers.Integral) and not isinstance(i, bool):
            if isinstance(n, int) and not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
            j = n + i if i < 0 else i
            y = slice_axis(y, axis, j, j + 1)  # the size-1 axis goes away in the final reshape
        elif isinstance(i, (Tracer, np.ndarray, list)):
            i = _as_indices(i, "index")
            if not dtypes.is_int(aval(i).dtype):
                raise IndexError(f"array index must be integer, got {aval(i)} (boolean masks give "
                                 f"data-dependent shapes and are not supported)")
            if isinstance(i, np.ndarray) and isinstance(n, int) and i.size and (
                    i.min() < -n or i.max() >= n):  # a constant index is checked as numpy does
                bad = i.min() if i.min() < -n else i.max()
                raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {n}")
            if gather is not None:
                raise IndexError("only one integer-array index is supported")
            gather = (axis, len(out_shape), i)
            out_shape.append(None)
        else:
            raise IndexError(f"unsupported index {i!r}")
        axis += 1
    if gather is not None:
        g_axis, pos, i = gather
        y = take(y, i, axis=g_axis)
        k = aval(i).ndim
        if to_front:
            rest = [d for d in range(aval(y).ndim) if not g_axis <= d < g_axis + k]
            y = transpose(y, tuple(range(g_axis, g_axis + k)) + tuple(rest))
            out_shape[pos:pos + 1] = []
            out_shape[:0] = aval(i).shape
        else:
            out_shape[pos:pos + 1] = aval(i).shape
    return reshape(y, tuple(out_shape))


def _as_indices(i, op: str):
    """An index operand as an array; lists as numpy would read them (`[]` is an empty int index)."""
    if isinstance(i, (list, tuple)):
        i = np.asarray(i)
        i = i.astype(np.int64) if i.size == 0 else i
    return as_array(i, op)


# ---------------------------------------------------------------- concatenate / pad / take
def _concat_abstract(*avals, axis):
    a0 = avals[0]
    for a in avals[1:]:
        if a.dtype != a0.dtype or a.ndim != a0.ndim or not all(
                shapes.equal(d, e) for k, (d, e) in enumerate(zip(a.shape, a0.shape)) if k != axis):
            raise ValueError(f"concatenate: shapes {', '.join(str(b) for b in avals)} differ "
                             f"outside axis {axis}")
    size = shapes.dim(sympy.expand(sum(sympy.sympify(a.shape[axis]) for a in avals)))
    return ShapeDtype(a0.shape[:axis] + (size,) + a0.shape[axis + 1:], a0.dtype)


concatenate_p = Primitive("concatenate", _concat_abstract,
                          lambda *xs, axis: np.concatenate(xs, axis=axis))


def concatenate(xs, axis: int = 0):
    """numpy.concatenate of a sequence of arrays along an existing axis."""
    xs = list(xs)
    if not xs:
        raise ValueError("concatenate: need at least one array")
    xs = promote("concatenate", *xs)
    if any(aval(x).ndim == 0 for x in xs):
        raise ValueError("concatenate: zero-dimensional arrays cannot be concatenated, got shapes "
                         + ", ".join(shape_str(aval(x).shape) for x in xs))
    axis = shapes.normalize_axis(axis, aval(xs[0]).ndim, "concatenate")
    if len(xs) == 1:
        return xs[0]
    return concatenate_p.bind(*xs, axis=axis)


def split(x, split_size_or_sizes, axis: int = 0):
    """torch.split: chunks of one size (the last may be smaller) or the given sizes."""
    a = aval(x)
    axis = shapes.normalize_axis(axis, a.ndim, "split")
    n = a.shape[axis]
    if isinstance(split_size_or_sizes, numbers.Integral):
        size = int(split_size_or_sizes)
        if size <= 0:
            raise ValueError(f"split: split size must be positive, got {size}")
        if not isinstance(n, int):
            raise ValueError(f"split: equal chunks of symbolic axis {axis} (size {n}) need explicit sizes")
        sizes = [min(size, n - s) for s in range(0, n, size)]
    else:
        sizes = list(split_size_or_sizes)
        if any(isinstance(s, numbers.Integral) and s < 0 for s in sizes):
            raise ValueError(f"split: sizes {sizes} must be non-negative")
        if not shapes.equal(sum(sizes), n):
            raise ValueError(f"split: sizes {sizes} do not sum to axis {axis} of {shape_str(a.shape)}")
    out, start = [], 0
    for s in sizes:
        out.append(slice_axis(x, axis, start, start + s))
        start = start + s
    return tuple(out)


def _pad_abstract(a, pad_width, value):
    if len(pad_width) != a.ndim:
        raise ValueError(f"pad: pad_width has {len(pad_width)} entries for operand {shape_str(a.shape)}")
    return ShapeDtype(tuple(d + lo + hi for d, (lo, hi) in zip(a.shape, pad_width)), a.dtype)


pad_p = Primitive("pad", _pad_abstract,
                  lambda x, pad_width, value: np.pad(x, pad_width, constant_values=value))


def pad(x, pad_width, value=0):
    """numpy.pad in constant mode: pad_width an int, a (before, after) pair or one pair per axis."""
    x = as_array(x, "pad")
    nd = aval(x).ndim
    try:  # as numpy: n, (n,), (before, after), ((before, after),) or one pair per axis
        pw = [(int(lo), int(hi)) for lo, hi in np.broadcast_to(np.asarray(pad_width, dtype=object),
                                                              (nd, 2))]
    except (ValueError, TypeError):
        raise ValueError(f"pad: pad_width {pad_width!r} does not fit rank {nd}") from None
    if any(v < 0 for p in pw for v in p):
        raise ValueError(f"pad: negative pad widths {pad_width!r}")
    return pad_p.bind(x, pad_width=tuple(pw), value=float(value) if dtypes.is_float(aval(x).dtype) else int(value))


def _take_abstract(t, i, axis):
    if not dtypes.is_int(i.dtype):
        raise TypeError(f"take: indices must be int32 or int64, got {i}")
    return ShapeDtype(t.shape[:axis] + i.shape + t.shape[axis + 1:], t.dtype)


def _take_impl(t, i, axis):
    n = t.shape[axis]
    i = np.clip(np.where(i < 0, i + n, i), 0, n - 1)  # kernels clamp out-of-range indices
    return np.take(t, i, axis=axis)


take_p = Primitive("take", _take_abstract, _take_impl)


def take(table, indices, axis: int = 0):
    """numpy.take along one axis (negative indices wrap; out-of-range ones are clamped)."""
    table, indices = as_array(table, "take"), _as_indices(indices, "take")
    axis = shapes.normalize_axis(axis, aval(table).ndim, "take")
    return take_p.bind(table, indices, axis=axis)


Tracer.reshape = lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 and not isinstance(
    shape[0], (numbers.Integral, sympy.Basic)) else shape)
Tracer.transpose = lambda self, *axes: transpose(self, (axes[0] if len(axes) == 1 and not isinstance(
    axes[0], numbers.Integral) else axes) or None)
Tracer.T = property(lambda self: transpose(self))
Tracer.__getitem__ = getitem

__all__ = ["reshape", "transpose", "broadcast_to", "expand_dims", "squeeze", "concatenate",
           "split", "pad", "take"]
