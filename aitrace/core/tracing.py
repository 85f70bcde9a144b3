"""Tracing: run a Python function on Tracers, recording every primitive it binds into a Graph.

Operators and methods of `Tracer` (`+`, `@`, `.reshape`, ...) are attached by the op modules
that define them, so an op and its operator live together.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import dtypes, pytree
from .ir import Eqn, Graph, Literal, Primitive, ShapeDtype, Var, dce, out_avals


class Tracer:
    """A stand-in for an array while a function is traced: an abstract value bound to a Var."""

    __slots__ = ("builder", "_var")
    __array_ufunc__ = None  # make numpy defer to our reflected operators (ndarray + Tracer)
    __hash__ = object.__hash__

    def __init__(self, builder: "GraphBuilder", var: Var):
        self.builder, self._var = builder, var

    aval = property(lambda self: self._var.aval)
    shape = property(lambda self: self._var.aval.shape)
    dtype = property(lambda self: self._var.aval.dtype)
    ndim = property(lambda self: self._var.aval.ndim)
    size = property(lambda self: self._var.aval.size)

    def __repr__(self):
        return f"Tracer<{self.aval}>"

    def __bool__(self):
        raise TypeError("a traced value has no concrete truth value: use ait.where(cond, a, b) "
                        "instead of Python control flow on traced arrays")

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        if not isinstance(self.shape[0], int):
            raise TypeError(f"len() of a traced array with symbolic leading dim {self.shape[0]}")
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __array__(self, *a, **k):
        raise TypeError("a traced value cannot be converted to a numpy array inside ait.trace/jit")

    def _concrete(self, *_):
        raise TypeError(f"a traced value ({self.aval}) has no concrete value: it cannot become a "
                        "Python int/float; pass it through jit's static_argnums to use its value")

    __int__ = __float__ = __index__ = _concrete


def is_array(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic)) or hasattr(x, "__dlpack__") or (
        hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (Tracer, ShapeDtype)))


def to_numpy(x, name: str = "argument") -> np.ndarray:
    """A concrete array as numpy (dtype canonicalized: float64 -> float32)."""
    from ..runtime.interop import to_numpy as interop_to_numpy
    a = interop_to_numpy(x, name)
    canon = dtypes.dtype(a.dtype)
    return a if a.dtype == canon else a.astype(canon)


class GraphBuilder:
    """Collects equations while tracing; arrays met on the way become constvars."""

    def __init__(self):
        self.eqns: list[Eqn] = []
        self.invars: list[Var] = []
        self._consts: dict[int, tuple[Var, np.ndarray, object]] = {}
        self.done = False  # set once the graph is taken: its Tracers must not be used again

    def new_arg(self, aval: ShapeDtype) -> Tracer:
        v = Var(aval)
        self.invars.append(v)
        return Tracer(self, v)

    def to_atom(self, x):
        if isinstance(x, Tracer):
            if x.builder is not self:
                raise ValueError("a Tracer from another trace leaked into this one (was it stored "
                                 "in a global or a closure of an earlier traced call?)")
            return x._var
        if isinstance(x, (bool, int, float)):
            return Literal(x, dtypes.result_type(x))
        if not is_array(x):
            raise TypeError(f"cannot use {type(x).__name__} {x!r} as an array")
        if id(x) in self._consts:
            return self._consts[id(x)][0]
        a = to_numpy(x)
        return Literal(a[()], a.dtype) if a.ndim == 0 else self.const_var(a, x)

    def const_var(self, a: np.ndarray, owner=None) -> Var:
        owner = a if owner is None else owner
        if id(owner) not in self._consts:  # owner kept alive below, so its id stays unique
            self._consts[id(owner)] = (Var(ShapeDtype.of(a)), a, owner)
        return self._consts[id(owner)][0]

    def add(self, prim: Primitive, args, params) -> list[Tracer]:
        if self.done:
            raise ValueError(f"{prim.name}: a Tracer escaped the trace that made it (was it stored "
                             "in a global or a closure of an earlier traced call?)")
        invars = [self.to_atom(a) for a in args]
        outs = [Var(a) for a in out_avals(prim, [a.aval for a in invars], params)]
        self.eqns.append(Eqn(prim, invars, outs, params))
        return [Tracer(self, v) for v in outs]

    def graph(self, outvars) -> Graph:
        self.done = True
        consts = list(self._consts.values())
        return dce(Graph(self.invars, [c[0] for c in consts], [c[1] for c in consts],
                         self.eqns, outvars))


_ACTIVE: list = []  # builders of the traces in progress, innermost last


def _symbolic(params) -> bool:
    """Do the params mention a dynamic dim (e.g. a slice of a constant up to a Dim)?"""
    def sym(v):
        if isinstance(v, (tuple, list)):
            return any(sym(x) for x in v)
        return bool(getattr(v, "free_symbols", None))
    return any(sym(v) for v in params.values())


def bind(prim: Primitive, args, params):
    """Apply a primitive: record it when any operand is traced (or its params depend on the
    dynamic dims of the trace in progress), else evaluate it with numpy."""
    builder = next((a.builder for a in args if isinstance(a, Tracer)), None)
    if builder is None and _ACTIVE and _symbolic(params):
        builder = _ACTIVE[-1]
    if builder is None:
        vals = [to_numpy(a) if is_array(a) else a for a in args]
        # the shape rule runs eagerly too, so eager calls raise the op's error, not numpy's
        out_avals(prim, [ShapeDtype.of(v) if isinstance(v, np.ndarray) else
                         ShapeDtype((), dtypes.result_type(v)) for v in vals], params)
        out = prim.impl(*vals, **params)
        return tuple(out) if prim.multiple_results else out
    outs = builder.add(prim, args, params)
    return tuple(outs) if prim.multiple_results else outs[0]


def abstractify(x, where: str) -> ShapeDtype:
    if isinstance(x, ShapeDtype):
        return x
    if isinstance(x, Tracer):
        raise TypeError(f"{where}: nested tracing is not supported (got a Tracer)")
    if is_array(x):
        try:
            return ShapeDtype(tuple(x.shape), x.dtype)
        except TypeError as e:
            raise TypeError(f"{where}: {e}") from None
    raise TypeError(f"{where} is a {type(x).__name__} ({x!r:.40}); pass arrays or ShapeDtype "
                    f"(Python values go through jit's static_argnums)")


def trace_to_graph(fn: Callable, args, avals=None) -> tuple[Graph, pytree.TreeDef]:
    """Trace `fn(*args)`; `avals` (one per leaf of args) overrides the leaves' abstract values."""
    leaves, in_tree = pytree.flatten(tuple(args))
    if avals is None:
        avals = [abstractify(x, f"argument leaf {i}") for i, x in enumerate(leaves)]
    builder = GraphBuilder()
    tracers = [builder.new_arg(a) for a in avals]
    _ACTIVE.append(builder)
    try:
        out = fn(*pytree.unflatten(in_tree, tracers))
    except BaseException:
        builder.done = True
        raise
    finally:
        _ACTIVE.pop()
    out_leaves, out_tree = pytree.flatten(out)
    outvars = []
    for i, y in enumerate(out_leaves):
        atom = builder.to_atom(y) if isinstance(y, Tracer) or is_array(y) else None
        if atom is None:
            raise TypeError(f"output leaf {i} is a {type(y).__name__}; a traced function must "
                            f"return arrays (nested in tuples, lists, dicts)")
        if isinstance(atom, Literal):  # a constant scalar output becomes a 0-d constvar
            atom = builder.const_var(np.asarray(atom.value))
        outvars.append(atom)
    return builder.graph(outvars), out_tree


def trace(fn: Callable) -> Callable[..., Graph]:
    """`ait.trace(fn)(*args)` -> the Graph of fn at those arguments (arrays or ShapeDtype)."""
    def traced(*args) -> Graph:
        return trace_to_graph(fn, args)[0]
    return traced
