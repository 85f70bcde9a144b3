"""Vertical fusion of elementwise chains: a maximal run of consecutive elementwise equations
with one output shape becomes one `fused_elementwise` equation holding them as a sub-Graph, so
a backend emits one loop that reads each input once and writes only what is used outside.

The sub-Graph reuses the outer Vars (its invars are the fused eqn's operands, its outvars its
results), so the printed IR names a value the same inside and outside the fused kernel.
"""
from __future__ import annotations

from ..core import shapes
from ..core.interpreter import eval_graph
from ..core.ir import Eqn, Graph, Primitive, Var

# Primitives a fused loop evaluates pointwise (names as the ops define them).
ELEMENTWISE = frozenset({
    "neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "erf", "sigmoid", "relu", "silu", "gelu",
    "gelu_tanh", "logical_not", "cast", "add", "sub", "mul", "div", "maximum", "minimum", "pow",
    "logical_and", "logical_or", "eq", "ne", "lt", "le", "gt", "ge", "where"})


def _abstract(*avals, graph):
    return [v.aval for v in graph.outvars]


def _impl(*args, graph):
    return eval_graph(graph, args)


fused_elementwise_p = Primitive("fused_elementwise", _abstract, _impl, multiple_results=True)


def _same_shape(a, b) -> bool:
    return len(a) == len(b) and all(shapes.equal(x, y) for x, y in zip(a, b))


def fuse_elementwise(graph: Graph) -> Graph:
    runs, run = [], []
    for e in graph.eqns:
        if e.prim.name in ELEMENTWISE and (not run or _same_shape(e.outvars[0].aval.shape,
                                                                   run[0].outvars[0].aval.shape)):
            run.append(e)
            continue
        runs.append(run)
        run = [e] if e.prim.name in ELEMENTWISE else []
        if not run:
            runs.append([e])
    runs.append(run)
    used_later: dict = {}
    for i, e in enumerate(graph.eqns):
        for a in e.invars:
            if isinstance(a, Var):
                used_later[a] = i
    index = {id(e): i for i, e in enumerate(graph.eqns)}
    graph_outs = {v for v in graph.outvars if isinstance(v, Var)}
    eqns = []
    for run in runs:
        if len(run) < 2:
            eqns.extend(run)
            continue
        last = index[id(run[-1])]
        defined = {v for e in run for v in e.outvars}
        inputs = []
        for e in run:
            for a in e.invars:
                if isinstance(a, Var) and a not in defined and a not in inputs:
                    inputs.append(a)
        outputs = [v for e in run for v in e.outvars if v in graph_outs or used_later.get(v, -1) > last]
        sub = Graph(inputs, [], [], run, outputs)
        eqns.append(Eqn(fused_elementwise_p, inputs, outputs, {"graph": sub}))
    return Graph(graph.invars, graph.constvars, graph.consts, eqns, graph.outvars)


