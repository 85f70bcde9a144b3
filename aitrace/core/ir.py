"""The IR: a small, explicit, jaxpr-like graph.

    graph ::= { lambda constvar:type ... ; invar:type ... . let eqn ... in ( atom ... ) }
    eqn   ::= outvar:type ... = primitive[param=value ...] atom ...
    atom  ::= Var | Literal
    type  ::= dtype[dim, ...]        dim ::= int | sympy expression over Dim symbols

A fused kernel is an ordinary Eqn whose params hold a sub-Graph; it prints nested, so the IR has
one shape before and after fusion.
"""
from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
import sympy

from . import dtypes, shapes


class ShapeDtype:
    """An abstract array: a shape (ints and sympy dims) and a dtype. Also the `aval` of a Var."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = shapes.shape(shape)
        self.dtype = dtypes.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self):
        return shapes.prod(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def __eq__(self, other):
        return (isinstance(other, ShapeDtype) and self.dtype == other.dtype
                and len(self.shape) == len(other.shape)
                and all(shapes.equal(a, b) for a, b in zip(self.shape, other.shape)))

    def __hash__(self):  # expanded, as __eq__ compares: (A+1)*(C+2) and A*C+2*A+C+2 hash alike
        return hash((tuple(d if isinstance(d, int) else sympy.expand(d) for d in self.shape),
                     self.dtype))

    def __str__(self):
        return dtypes.SHORT_NAMES[self.dtype] + shapes.shape_str(self.shape)

    def __repr__(self):
        return f"ShapeDtype({self.shape}, {self.dtype})"

    @classmethod
    def of(cls, x) -> "ShapeDtype":
        """The abstract value of an array-like (anything with .shape and .dtype)."""
        return cls(tuple(x.shape), x.dtype)


class Var:
    """A value defined once in a Graph: an invar, a constvar or an eqn's outvar."""

    __slots__ = ("aval", "_id")
    _ids = itertools.count()

    def __init__(self, aval: ShapeDtype):
        self.aval = aval
        self._id = next(Var._ids)

    def __repr__(self):
        return f"Var<{self.aval}>#{self._id}"


class Literal:
    """A scalar constant inlined into an equation (a Python scalar, typed by its use)."""

    __slots__ = ("value", "aval")

    def __init__(self, value, dtype):
        self.aval = ShapeDtype((), dtype)
        self.value = np.asarray(value, dtype=self.aval.dtype)[()]

    def __repr__(self):
        return f"Literal({self.value!r})"


Atom = Var | Literal


class Primitive:
    """An operation of the IR, defined once.

    `abstract_eval(*avals, **params)` gives the output aval(s); `impl(*arrays, **params)` is the
    numpy reference. Backends register their lowerings for it by name.
    """

    def __init__(self, name: str, abstract_eval: Callable, impl: Callable,
                 multiple_results: bool = False):
        self.name = name
        self.abstract_eval = abstract_eval
        self.impl = impl
        self.multiple_results = multiple_results
        PRIMITIVES[name] = self

    def __repr__(self):
        return self.name

    def bind(self, *args, **params):
        from .tracing import bind
        return bind(self, args, params)


PRIMITIVES: dict[str, Primitive] = {}


class Eqn:
    __slots__ = ("prim", "invars", "outvars", "params")

    def __init__(self, prim: Primitive, invars, outvars, params: dict):
        self.prim, self.invars, self.outvars, self.params = prim, list(invars), list(outvars), params

    def __repr__(self):
        return f"Eqn({self.prim.name}, {len(self.invars)} in, {len(self.outvars)} out)"


class Graph:
    """invars (runtime inputs), constvars with their values (`consts`), eqns, outvars."""

    def __init__(self, invars, constvars, consts, eqns, outvars):
        self.invars, self.constvars, self.consts = list(invars), list(constvars), list(consts)
        self.eqns, self.outvars = list(eqns), list(outvars)

    def __str__(self):
        return GraphPrinter().graph(self)

    __repr__ = __str__

    def _repr_html_(self):
        from .visualize import STYLE, graph_html
        return STYLE + graph_html(self)

    @property
    def in_avals(self):
        return [v.aval for v in self.invars]

    @property
    def out_avals(self):
        return [v.aval for v in self.outvars]


def _var_names():
    for n in itertools.count(1):
        for t in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=n):
            yield "".join(t)


class GraphPrinter:
    def __init__(self):
        self.names: dict[Var, str] = {}
        self.fresh = _var_names()

    def name(self, v) -> str:
        if isinstance(v, Literal):
            return repr(v.value.item())
        if v not in self.names:
            self.names[v] = next(self.fresh)
        return self.names[v]

    def binder(self, v: Var) -> str:
        return f"{self.name(v)}:{v.aval}"

    def param(self, value, indent: int) -> str:
        if isinstance(value, Graph):
            return self.graph(value, indent + 4)
        if isinstance(value, np.dtype):
            return dtypes.SHORT_NAMES.get(value, str(value))
        if isinstance(value, tuple):
            inner = ",".join(self.param(x, indent) for x in value)
            return f"({inner}{',' if len(value) == 1 else ''})"
        return str(value).replace(" ", "")

    def graph(self, g: Graph, indent: int = 0) -> str:
        pad = " " * (indent + 4)
        consts = " ".join(self.binder(v) for v in g.constvars)
        ins = " ".join(self.binder(v) for v in g.invars)
        lines = [f"{{ lambda {consts}{' ' if consts else ''}; {ins}. let"]
        for e in g.eqns:
            outs = " ".join(self.binder(v) for v in e.outvars)
            params = " ".join(f"{k}={self.param(v, indent)}" for k, v in e.params.items())
            args = " ".join(self.name(a) for a in e.invars)
            lines.append(f"{pad}{outs} = {e.prim.name}{f'[{params}]' if params else ''} {args}".rstrip())
        outs = " ".join(self.name(v) for v in g.outvars)
        lines.append(f"{' ' * indent}  in ({outs}) }}")
        return "\n".join(lines)


def out_avals(prim: Primitive, avals, params) -> list:
    res = prim.abstract_eval(*avals, **params)
    return list(res) if prim.multiple_results else [res]


def typecheck(g: Graph) -> None:
    """Every atom defined before use, once; every eqn's outvars match its abstract eval."""
    defined = set()

    def define(v):
        if not isinstance(v, Var):
            raise TypeError(f"binder {v!r} is not a Var")
        if v in defined:
            raise TypeError(f"{v!r} is defined twice")
        defined.add(v)

    for v in [*g.constvars, *g.invars]:
        define(v)
    if len(g.consts) != len(g.constvars):
        raise TypeError("constvars and consts differ in length")
    for c, v in zip(g.consts, g.constvars):
        if ShapeDtype.of(c) != v.aval:
            raise TypeError(f"const of {ShapeDtype.of(c)} bound to {v.aval}")
    for e in g.eqns:
        for a in e.invars:
            if isinstance(a, Var) and a not in defined:
                raise TypeError(f"{e.prim.name}: operand {a!r} used before definition")
        expected = out_avals(e.prim, [a.aval for a in e.invars], e.params)
        got = [v.aval for v in e.outvars]
        if expected != got:
            raise TypeError(f"{e.prim.name}: outvars {[str(a) for a in got]} but abstract eval "
                            f"gives {[str(a) for a in expected]}")
        for v in e.outvars:
            define(v)
        for p in e.params.values():  # a fused kernel's body is checked as a graph of its own
            if isinstance(p, Graph):
                typecheck(p)
    for v in g.outvars:
        if isinstance(v, Var) and v not in defined:
            raise TypeError(f"output {v!r} is not defined")


def unique_vars(atoms) -> list:
    """The Vars among `atoms`, each once, in order (Literals dropped)."""
    return list(dict.fromkeys(a for a in atoms if isinstance(a, Var)))


def used_vars(g: Graph) -> set:
    return {a for e in g.eqns for a in e.invars if isinstance(a, Var)} | \
           {v for v in g.outvars if isinstance(v, Var)}


def dce(g: Graph) -> Graph:
    """Drop equations whose outputs nobody uses, and unused constvars."""
    live = {v for v in g.outvars if isinstance(v, Var)}
    kept = []
    for e in reversed(g.eqns):
        if any(v in live for v in e.outvars):
            kept.append(e)
            live.update(a for a in e.invars if isinstance(a, Var))
    cv = [(v, c) for v, c in zip(g.constvars, g.consts) if v in live]
    return Graph(g.invars, [v for v, _ in cv], [c for _, c in cv], reversed(kept), g.outvars)


