"""Norm prologue fusion: the elementwise work that produces the input of a softmax (over the
last axis) or a layer norm (scale, additive mask, residual add, cast) moves into the norm
kernel, which evaluates it for one row at a time into an fp32 row buffer and normalizes that:
the pre-norm tensor never makes a round trip through memory.

    x = fused_elementwise[g] a m ... ; y = softmax[axis=-1] x
        ==>   y = fused_norm[base=softmax, base_params=((axis,-1),), prologue=g'] a m ...

    h = add a b ; y = layer_norm[...] h w c ; ... h ...        (a pre-LN residual stream)
        ==>   y h = fused_norm[base=layer_norm, base_params=(...), prologue=g'] a b w c

The prologue Graph g' has the producer's operands as invars (x-shaped or broadcasting onto x:
a [B,1,1,S] mask onto [B,H,S,S] scores, a scalar) and outvars [x, *extra]: extra are the
producer's results still read by other eqns or returned (h above); the fused eqn returns
[y, *extra]. Its operands are the prologue's, then the norm's others (weight, bias).

Conditions: x is produced by an elementwise eqn or a fused_elementwise eqn whose results all
have x's shape, that producer is not already fused into another norm, the norm's weight and
bias are not among its results, and the fused eqn has a place in the order: at the norm when
every other reader of the producer's results comes after it, else at the producer when the
norm's other operands are inputs or constants.
"""
from __future__ import annotations

from ..core import shapes
from ..core.interpreter import eval_graph
from ..core.ir import PRIMITIVES, Eqn, Graph, Primitive, Var, dce, out_avals, unique_vars
from .fuse_elementwise import ELEMENTWISE

BASES = ("softmax", "layer_norm")


def _abstract(*avals, base, base_params, prologue):
    n = len(prologue.invars)
    if len(avals) < n or list(avals[:n]) != [v.aval for v in prologue.invars]:
        raise TypeError(f"fused_norm: operands {[str(a) for a in avals[:n]]} do not match the "
                        f"prologue's invars {[str(v.aval) for v in prologue.invars]}")
    x = prologue.outvars[0].aval
    y = out_avals(PRIMITIVES[base], [x, *avals[n:]], dict(base_params))[0]
    return [y, *(v.aval for v in prologue.outvars[1:])]


def _impl(*args, base, base_params, prologue):
    n = len(prologue.invars)
    x, *extra = eval_graph(prologue, args[:n])
    return [PRIMITIVES[base].impl(x, *args[n:], **dict(base_params)), *extra]


fused_norm_p = Primitive("fused_norm", _abstract, _impl, multiple_results=True)


def _same_shape(a, b) -> bool:
    return len(a) == len(b) and all(shapes.equal(x, y) for x, y in zip(a, b))


def _is_base(e: Eqn) -> bool:
    if e.prim.name == "softmax":
        return e.params["axis"] == e.invars[0].aval.ndim - 1
    return e.prim.name == "layer_norm"


def _producer_graph(p: Eqn) -> Graph | None:
    """The elementwise work of p as a Graph (its operands in, its results out), or None."""
    if p.prim.name == "fused_elementwise":
        return p.params["graph"]
    if p.prim.name in ELEMENTWISE:
        return Graph(unique_vars(p.invars), [], [], [p], p.outvars)
    return None


def fuse_prologue(graph: Graph) -> Graph:
    producer = {v: (i, e) for i, e in enumerate(graph.eqns) for v in e.outvars}
    readers: dict = {}   # Var -> indices of the eqns reading it
    for i, e in enumerate(graph.eqns):
        for a in unique_vars(e.invars):
            readers.setdefault(a, []).append(i)
    outs = {v for v in graph.outvars if isinstance(v, Var)}
    replaced: dict = {}   # eqn index -> its replacement (None: dropped)
    for i, e in enumerate(graph.eqns):
        if not _is_base(e) or not isinstance(e.invars[0], Var) or e.invars[0] not in producer:
            continue
        x, rest = e.invars[0], e.invars[1:]
        j, p = producer[x]
        sub = _producer_graph(p)
        if j in replaced or sub is None or not all(_same_shape(v.aval.shape, x.aval.shape) for v in p.outvars):
            continue
        if any(a in p.outvars for a in rest):
            continue
        others = [k for v in p.outvars for k in readers.get(v, []) if k != i]
        if all(k > i for k in others):
            at = i
        elif all(a not in producer for a in rest):  # weight, bias: inputs or constants
            at = j
        else:
            continue
        extra = [v for v in p.outvars if v in outs or any(k != i for k in readers.get(v, []))]
        prologue = dce(Graph(sub.invars, [], [], sub.eqns, [x, *extra]))
        live = {a for pe in prologue.eqns for a in pe.invars} | set(prologue.outvars)
        prologue.invars = [v for v in prologue.invars if v in live]
        fused = Eqn(fused_norm_p, [*prologue.invars, *rest], [*e.outvars, *extra],
                    {"base": e.prim.name, "base_params": tuple(sorted(e.params.items())),
                     "prologue": prologue})
        replaced[i], replaced[j] = None, None
        replaced[at] = fused
    eqns = [replaced.get(i, e) for i, e in enumerate(graph.eqns)]
    return Graph(graph.invars, graph.constvars, graph.consts, [e for e in eqns if e is not None],
                 graph.outvars)
