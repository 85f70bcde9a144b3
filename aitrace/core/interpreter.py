"""The reference interpreter: evaluates a Graph with the primitives' numpy implementations."""
from __future__ import annotations

import numpy as np
import sympy

from . import shapes
from .ir import Graph, Literal


def bind_symbols(graph: Graph, args) -> dict:
    """Sizes of the graph's symbolic dims, read off the runtime arguments' shapes."""
    env: dict = {}
    for v, a in zip(graph.invars, args):
        for d, n in zip(v.aval.shape, np.shape(a)):
            if isinstance(d, sympy.Symbol):
                env.setdefault(d, n)
    return env


def substitute(value, env: dict):
    """Params with symbolic dims made concrete for one call."""
    if isinstance(value, sympy.Basic):
        return shapes.evaluate(value, env)
    if isinstance(value, tuple):
        return tuple(substitute(x, env) for x in value)
    return value


def _check_shape(prim: str, got: tuple, shape: tuple, env: dict) -> None:
    """The reference is the oracle: a primitive whose numpy result disagrees with its abstract
    eval is a bug in one of them (dims with symbols no input binds are not checked)."""
    want = [shapes.evaluate(d, env) if isinstance(d, int) or d.free_symbols <= env.keys() else None
            for d in shape]
    if len(got) != len(want) or any(w is not None and w != n for w, n in zip(want, got)):
        at = ", ".join(f"{k}={n}" for k, n in env.items())
        raise TypeError(f"{prim}: the reference gives shape {list(got)} but abstract eval says "
                        f"{shapes.shape_str(shape)}{f' (at {at})' if at else ''}")


def eval_graph(graph: Graph, args, env: dict | None = None) -> list:
    env = bind_symbols(graph, args) if env is None else env
    values = dict(zip(graph.constvars, graph.consts))
    values.update(zip(graph.invars, args))

    def read(a):
        return a.value if isinstance(a, Literal) else values[a]

    for e in graph.eqns:
        params = {k: substitute(v, env) for k, v in e.params.items()} if env else e.params
        out = e.prim.impl(*map(read, e.invars), **params)
        outs = out if e.prim.multiple_results else (out,)
        for v, o in zip(e.outvars, outs):
            o = np.asarray(o, dtype=v.aval.dtype)
            _check_shape(e.prim.name, o.shape, v.aval.shape, env)
            values[v] = o
    return [values[v] for v in graph.outvars]


def replay(graph: Graph, args) -> list:
    """Apply the graph's equations to `args` through `bind`, so that under a trace they are
    recorded again (inlining a sub-graph); with arrays it evaluates like eval_graph."""
    env = dict(zip(graph.invars, args))
    env.update(zip(graph.constvars, graph.consts))

    def read(a):
        return a.value if isinstance(a, Literal) else env[a]
    for e in graph.eqns:
        out = e.prim.bind(*map(read, e.invars), **e.params)
        env.update(zip(e.outvars, out if e.prim.multiple_results else [out]))
    return [read(v) for v in graph.outvars]
