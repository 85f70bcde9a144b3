"""simplify: constant folding (batch norm into the preceding conv's weights included), common
subexpressions, algebraic identities, then dead code. One sweep in program order; each rule sees
operands already simplified, so chains (transpose of transpose of ...) collapse in one pass."""
from __future__ import annotations

import numpy as np

from ..core import shapes
from ..core.interpreter import substitute
from ..core.ir import Eqn, Graph, Literal, ShapeDtype, Var, dce


class _Builder:
    def __init__(self, graph: Graph):
        self.subst: dict = {}
        self.consts = dict(zip(graph.constvars, graph.consts))
        self.constvars = list(graph.constvars)
        self.eqns: list[Eqn] = []
        self.defined_by: dict = {}  # Var -> the kept eqn that defines it
        self.seen: dict = {}

    def read(self, a):
        while isinstance(a, Var) and a in self.subst:
            a = self.subst[a]
        return a

    def value(self, a):
        """The constant value of an atom, or None."""
        if isinstance(a, Literal):
            return np.asarray(a.value)
        return self.consts.get(a)

    def const(self, value, like: Var) -> Var:
        v = Var(like.aval)
        self.consts[v] = np.asarray(value, like.aval.dtype).reshape(like.aval.shape)
        self.constvars.append(v)
        return v

    def emit(self, e: Eqn) -> None:
        self.eqns.append(e)
        self.defined_by.update((v, e) for v in e.outvars)

    def producer(self, a):
        return self.defined_by.get(a)


def _is_scalar(b: _Builder, a, x) -> bool:
    v = b.value(a)
    return v is not None and v.size == 1 and bool(np.all(v == x))


def _identity(b: _Builder, e: Eqn):
    """The atom this eqn is equal to, if an algebraic identity applies."""
    name, ins, out = e.prim.name, e.invars, e.outvars[0]
    same = lambda a: isinstance(a, Var) and a.aval == out.aval  # noqa: E731 (no broadcast, no cast)
    if name in ("mul", "div") and _is_scalar(b, ins[1], 1) and same(ins[0]):
        return ins[0]
    if name == "mul" and _is_scalar(b, ins[0], 1) and same(ins[1]):
        return ins[1]
    if name in ("add", "sub") and _is_scalar(b, ins[1], 0) and same(ins[0]):
        return ins[0]
    if name == "add" and _is_scalar(b, ins[0], 0) and same(ins[1]):
        return ins[1]
    if name in ("reshape", "cast", "broadcast_to") and same(ins[0]):
        return ins[0]
    if name == "transpose" and e.params["perm"] == tuple(range(len(e.params["perm"]))):
        return ins[0]
    if name == "concatenate":
        return _reassembled(b, e)
    return None


def _reassembled(b: _Builder, e: Eqn):
    """concatenate of slices that tile one value in order (a split undone) is that value."""
    axis, src, at = e.params["axis"], None, 0
    for a in e.invars:
        p = b.producer(a) if isinstance(a, Var) else None
        if p is None or p.prim.name != "slice" or (src is not None and p.invars[0] is not src):
            return None
        src = p.invars[0]
        full = all(d == axis or (shapes.equal(st, 0) and shapes.equal(li, n) and sp == 1)
                   for d, (st, li, sp, n) in enumerate(zip(p.params["start"], p.params["limit"],
                                                           p.params["step"], src.aval.shape)))
        if not full or p.params["step"][axis] != 1 or not shapes.equal(p.params["start"][axis], at):
            return None
        at = p.params["limit"][axis]
    return src if src is not None and src.aval == e.outvars[0].aval else None


def _merge_layout(b: _Builder, e: Eqn):
    """transpose of transpose -> one transpose; reshape of reshape -> one reshape."""
    src = b.producer(e.invars[0]) if isinstance(e.invars[0], Var) else None
    if src is None or src.prim is not e.prim or e.prim.name not in ("transpose", "reshape"):
        return e
    if e.prim.name == "transpose":
        inner, outer = src.params["perm"], e.params["perm"]
        return Eqn(e.prim, src.invars, e.outvars, {"perm": tuple(inner[p] for p in outer)})
    return Eqn(e.prim, src.invars, e.outvars, e.params)


def _fold_batch_norm(b: _Builder, e: Eqn):
    """conv2d(x, W) [+ c] -> batch_norm(., constants)  ==>  conv2d(x, W * s) + (c*s + beta - mean*s)."""
    if e.prim.name != "batch_norm" or not isinstance(e.invars[0], Var):
        return None
    vals = [b.value(a) for a in e.invars[1:]]
    if any(v is None for v in vals):
        return None
    mean, var, *rest = [np.asarray(v, np.float64) for v in vals]
    flags = [e.params["has_weight"], e.params["has_bias"]]
    w = rest.pop(0) if flags[0] else 1.0
    beta = rest.pop(0) if flags[1] else 0.0
    scale = w / np.sqrt(var + e.params["eps"])
    shift = beta - mean * scale
    y = e.invars[0]
    add = b.producer(y)
    bias = None
    if add is not None and add.prim.name == "add" and b.value(add.invars[1]) is not None:
        bias, y = np.asarray(b.value(add.invars[1]), np.float64), add.invars[0]
    conv = b.producer(y)
    if conv is None or conv.prim.name != "conv2d" or b.value(conv.invars[1]) is None:
        return None
    if (bias is not None and bias.shape not in ((), (1,), scale.shape)) or y.aval.dtype != e.outvars[0].aval.dtype:
        return None
    wv = np.asarray(b.value(conv.invars[1]), np.float64)
    new_w = b.const((wv * scale[:, None, None, None]), conv.invars[1])
    new_y = Var(y.aval)
    b.emit(Eqn(conv.prim, [conv.invars[0], new_w], [new_y], conv.params))
    total = shift + (bias * scale if bias is not None else 0.0)
    c = Var(ShapeDtype((scale.shape[0],), e.outvars[0].aval.dtype))
    b.consts[c] = np.asarray(total, c.aval.dtype)
    b.constvars.append(c)
    from ..ops.elementwise import BINARY_PRIMS
    b.emit(Eqn(BINARY_PRIMS["add"], [new_y, c], e.outvars, {}))
    return True


def _fold(b: _Builder, e: Eqn) -> bool:
    """Evaluates an eqn of constants (static shapes, no sub-graph) into constants."""
    vals = [b.value(a) for a in e.invars]
    static = all(isinstance(d, int) for v in e.outvars for d in v.aval.shape)
    if not (e.invars and static and all(v is not None for v in vals) and "graph" not in e.params):
        return False
    outs = e.prim.impl(*vals, **{k: substitute(v, {}) for k, v in e.params.items()})
    outs = outs if e.prim.multiple_results else (outs,)
    if not all(np.shape(o) == tuple(v.aval.shape) for o, v in zip(outs, e.outvars)):
        return False
    for o, v in zip(outs, e.outvars):
        b.subst[v] = b.const(o, v)
    return True


def fold_constants(graph: Graph) -> Graph:
    """Constant folding alone (for graphs past fusion, such as a backend's legalized one: the
    other rules of simplify are for unfused graphs); the graph itself where nothing folds."""
    b = _Builder(graph)
    folded = False
    for e in graph.eqns:
        e = Eqn(e.prim, [b.read(a) for a in e.invars], e.outvars, e.params)
        if _fold(b, e):
            folded = True
        else:
            b.emit(e)
    if not folded:
        return graph
    outvars = [b.read(v) for v in graph.outvars]
    return dce(Graph(graph.invars, b.constvars, [b.consts[v] for v in b.constvars], b.eqns, outvars))


def simplify(graph: Graph) -> Graph:
    b = _Builder(graph)
    for e in graph.eqns:
        e = Eqn(e.prim, [b.read(a) for a in e.invars], e.outvars, e.params)
        if _fold(b, e):
            continue
        e = _merge_layout(b, e)
        same = _identity(b, e)
        if same is not None:
            b.subst[e.outvars[0]] = same
            continue
        if _fold_batch_norm(b, e):
            continue
        try:
            key = (e.prim, tuple(a if isinstance(a, Var) else ("lit", a.value.item(), a.aval.dtype)
                                 for a in e.invars), tuple(sorted(e.params.items())))
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in b.seen:
            for old, new in zip(e.outvars, b.seen[key]):
                b.subst[old] = new
            continue
        if key is not None:
            b.seen[key] = e.outvars
        b.emit(e)
    outvars = [b.read(v) for v in graph.outvars]
    return dce(Graph(graph.invars, b.constvars, [b.consts[v] for v in b.constvars], b.eqns, outvars))
