"""Vertical fusion of elementwise chains: connected elementwise equations with one output shape
become one `fused_elementwise` equation holding them as a sub-Graph, so a backend emits one loop
that reads each input once and writes only what is used outside.

Grouping follows data flow, not program order: a group stays open across unrelated equations
(a matmul between two halves of a chain does not split it) and is closed once anything outside
it reads one of its values, because the fused equation is placed where its last member was.
Afterwards a small group whose shape broadcasts to a consumer group's shape and whose values
only that group reads (e.g. `rsqrt(var + eps)` of shape [B, S, 1] feeding a [B, S, 768] chain)
is recomputed inside the consumer's loop when its ops are cheap: one kernel and no buffer,
for a few extra arithmetic ops per element.

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
# Cheap enough to recompute per element of a larger (broadcast) loop.
CHEAP = frozenset({"neg", "abs", "relu", "cast", "add", "sub", "mul", "div", "maximum", "minimum",
                   "rsqrt", "sqrt", "logical_not", "logical_and", "logical_or", "eq", "ne", "lt",
                   "le", "gt", "ge", "where"})


def _abstract(*avals, graph):
    return [v.aval for v in graph.outvars]


def _impl(*args, graph):
    return eval_graph(graph, args)


fused_elementwise_p = Primitive("fused_elementwise", _abstract, _impl, multiple_results=True)


def _same_shape(a, b) -> bool:
    return len(a) == len(b) and all(shapes.equal(x, y) for x, y in zip(a, b))


def _broadcasts_to(small, big) -> bool:
    if len(small) > len(big):
        return False
    return all(shapes.equal(s, 1) or shapes.equal(s, b) for s, b in zip(small[::-1], big[::-1]))


class _Group:
    def __init__(self, shape):
        self.shape, self.eqns, self.open = shape, [], True
        self.absorbed_into = None


def fuse_elementwise(graph: Graph) -> Graph:
    owner: dict = {}        # Var -> _Group defining it
    group_of: dict = {}     # id(eqn) -> _Group
    groups: list[_Group] = []

    def live(g):
        while g.absorbed_into is not None:
            g = g.absorbed_into
        return g

    for e in graph.eqns:
        read = {live(owner[a]) for a in e.invars if isinstance(a, Var) and a in owner}
        if e.prim.name not in ELEMENTWISE:
            for g in read:
                g.open = False
            continue
        shape = e.outvars[0].aval.shape
        joinable = [g for g in read if g.open and _same_shape(g.shape, shape)]
        for g in read - set(joinable):
            g.open = False
        if joinable:
            target = joinable[0]
            for g in joinable[1:]:  # e connects two open chains: one kernel (placed last)
                target.eqns.extend(g.eqns)
                g.eqns, g.absorbed_into = [], target
        else:
            target = _Group(shape)
            groups.append(target)
        target.eqns.append(e)
        for v in e.outvars:
            owner[v] = target
    groups = [g for g in groups if g.eqns]
    _absorb_broadcast_producers(graph, groups, owner, live)
    for g in groups:
        g = live(g)
        for e in g.eqns:
            group_of[id(e)] = g
    return _rebuild(graph, group_of)


def _absorb_broadcast_producers(graph, groups, owner, live) -> None:
    """Recompute a small cheap group inside the one larger group that reads all its values."""
    graph_outs = {v for v in graph.outvars if isinstance(v, Var)}
    readers: dict = {}
    for e in graph.eqns:
        for a in e.invars:
            if isinstance(a, Var):
                readers.setdefault(a, []).append(e)
    changed = True
    while changed:
        changed = False
        for p in groups:
            if p.absorbed_into is not None or not p.eqns:
                continue
            if not all(e.prim.name in CHEAP for e in p.eqns):
                continue
            values = [v for e in p.eqns for v in e.outvars]
            if any(v in graph_outs for v in values):
                continue
            outside = [r for v in values for r in readers.get(v, [])
                       if r not in p.eqns and r.outvars[0] not in owner]
            consumers = {live(owner[r.outvars[0]]) for v in values for r in readers.get(v, [])
                         if r not in p.eqns and r.outvars[0] in owner} - {p}
            if outside or len(consumers) != 1:
                continue
            (g,) = consumers
            if _same_shape(p.shape, g.shape) or not _broadcasts_to(p.shape, g.shape):
                continue
            g.eqns[:0] = p.eqns
            p.eqns, p.absorbed_into = [], g
            changed = True


def _rebuild(graph: Graph, group_of: dict) -> Graph:
    last_index: dict = {}
    position = {id(e): i for i, e in enumerate(graph.eqns)}
    for i, e in enumerate(graph.eqns):
        if id(e) in group_of:
            last_index[id(group_of[id(e)])] = i
    used_after: dict = {}
    for i, e in enumerate(graph.eqns):
        for a in e.invars:
            if isinstance(a, Var):
                used_after.setdefault(a, []).append(e)
    graph_outs = {v for v in graph.outvars if isinstance(v, Var)}
    eqns = []
    for i, e in enumerate(graph.eqns):
        g = group_of.get(id(e))
        if g is None:
            eqns.append(e)
            continue
        if last_index[id(g)] != i:
            continue
        if len(g.eqns) == 1:
            eqns.append(g.eqns[0])
            continue
        members = {id(m) for m in g.eqns}
        order = sorted(g.eqns, key=lambda m: position[id(m)])
        defined = {v for m in order for v in m.outvars}
        inputs = []
        for m in order:
            for a in m.invars:
                if isinstance(a, Var) and a not in defined and a not in inputs:
                    inputs.append(a)
        outputs = [v for m in order for v in m.outvars
                   if v in graph_outs or any(id(r) not in members for r in used_after.get(v, []))]
        sub = Graph(inputs, [], [], order, outputs)
        eqns.append(Eqn(fused_elementwise_p, inputs, outputs, {"graph": sub}))
    return Graph(graph.invars, graph.constvars, graph.consts, eqns, graph.outvars)
