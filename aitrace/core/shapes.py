"""Shapes are tuples of ints and sympy expressions over `Dim` symbols."""
from __future__ import annotations


import numbers

import sympy


class Dim(sympy.Symbol):
    """A symbolic dimension: a positive integer sympy symbol with optional bounds.

    ``Dim("batch", min=1, max=256)`` can stand in a shape anywhere an int can; arithmetic on it
    gives sympy expressions (``2*batch``). Dims compare equal by name and bounds: two Dims of one
    name and other bounds are different symbols (else sympy's expression cache could hand back
    ``2*batch`` holding the other one, and its bounds).
    """

    def __new__(cls, name: str, min: int = 1, max: int | None = None):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"Dim name must be an identifier, got {name!r}")
        if min < 1 or (max is not None and max < min):
            raise ValueError(f"Dim {name!r}: need 1 <= min <= max, got min={min}, max={max}")
        # Bypass sympy's symbol cache: two Dims of one name may carry different bounds objects.
        obj = sympy.Symbol.__xnew__(cls, name, integer=True, positive=True)
        obj.min, obj.max = int(min), (None if max is None else int(max))
        return obj

    def _hashable_content(self):
        return super()._hashable_content() + (self.min, self.max)

    def __reduce__(self):
        return (Dim, (self.name, self.min, self.max))

    def bounds_str(self) -> str:
        return f"[{self.min}, {'inf' if self.max is None else self.max}]"


def dim(d):
    """Canonical form of one dimension: a Python int or a (non-constant) sympy expression."""
    if isinstance(d, sympy.Basic):
        d = sympy.sympify(d)
        if d.is_number:
            if not d.is_integer:
                raise ValueError(f"dimension {d} is not an integer")
            d = int(d)
        elif not d.is_integer and not d.free_symbols:
            raise ValueError(f"dimension {d} is not an integer")
        else:
            return d
    if isinstance(d, bool) or not isinstance(d, numbers.Integral):
        raise TypeError(f"dimension must be an int or a Dim expression, got {d!r}")
    if d < 0:
        raise ValueError(f"dimension must be non-negative, got {d}")
    return int(d)


def shape(s) -> tuple:
    if isinstance(s, (numbers.Integral, sympy.Basic)):
        s = (s,)
    return tuple(dim(d) for d in s)


def is_static(d) -> bool:
    return isinstance(d, int)


def equal(a, b) -> bool:
    """Provably equal dims (symbolic: the difference expands to zero)."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def prod(dims):
    p = 1
    for d in dims:
        p = p * d
    return dim(sympy.expand(p)) if isinstance(p, sympy.Basic) else p


def broadcast(*shapes, op: str = "broadcast") -> tuple:
    """numpy broadcasting over symbolic shapes; raises ValueError naming the op and the shapes."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        d_out = 1
        for s in shapes:
            j = i - (ndim - len(s))
            if j < 0:
                continue
            d = s[j]
            if equal(d, 1):
                continue
            if equal(d_out, 1):
                d_out = d
            elif not equal(d_out, d):
                raise ValueError(f"{op}: shapes {', '.join(shape_str(s) for s in shapes)} "
                                 f"are not broadcast-compatible (axis {i - ndim}: {d_out} vs {d})")
        out.append(d_out)
    return tuple(out)


def shape_str(s) -> str:
    return "[" + ",".join(str(d).replace(" ", "") for d in s) + "]"


def symbols(s) -> set:
    out = set()
    for d in s:
        if isinstance(d, sympy.Basic):
            out |= d.free_symbols
    return out


def evaluate(d, env: dict):
    """A dim with its symbols bound to ints by `env` (symbol -> int)."""
    if isinstance(d, int):
        return d
    v = d.xreplace({k: sympy.Integer(x) for k, x in env.items()})
    if not v.is_number:
        raise ValueError(f"dimension {d} has unbound symbols {sorted(map(str, v.free_symbols))}")
    return int(v)


def floordiv(a, b):
    """Floor division of dims (conv/pool output sizes)."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return dim(sympy.floor(sympy.sympify(a) / b))


def ceildiv(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return -(-a // b)
    return dim(sympy.ceiling(sympy.sympify(a) / b))


def normalize_axis(axis: int, ndim: int, op: str) -> int:
    if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
        raise TypeError(f"{op}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for rank {ndim}")
    return int(axis) % ndim


def normalize_axes(axis, ndim: int, op: str) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    out = tuple(sorted(normalize_axis(a, ndim, op) for a in axes))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return out


