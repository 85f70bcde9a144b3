"""Horizontal fusion: side-by-side kernels that could run as one.

(a) Shared-input GEMMs. matmuls of one left operand x [..., K] by constant matrices W_i [K, N_i]
    (what `linear` traces to once simplify has folded the transposed weight), or conv2ds of one
    input with constant weights and one geometry (groups=1), become ONE product against the
    concatenated weight, then `slice`s on the last axis give each original result, so consumers
    are unchanged. Where members' results feed only `add`s of constant row vectors (biases), one
    add of the concatenated bias (zeros for members without one) follows the fused product
    instead, so fuse_epilogue can still take the bias into the GEMM:

        y1 = matmul x w1 ; z1 = add y1 b1 ; y2 = matmul x w2 ; z2 = add y2 b2
    ==> y = matmul x [w1|w2] ; z = add y [b1|b2] ; z1 = slice z [.., 0:N1] ; z2 = slice z [.., N1:]

    The fused eqns stand where the first member stood: every member reads only x and constants.

(b) Grouped kernels. Mutually independent matmuls (any shapes) or layer_norms become one
    `grouped` eqn whose sub-Graph holds the members, so a backend runs them in one launch (CPU:
    one thread per member when that beats running them one after another). A matmul member takes
    along the elementwise chain that fuse_epilogue would have fused into it (it is fused here, as
    fuse_elementwise + fuse_epilogue would do: the later passes do not look inside `grouped`).
    A set is grouped when no member reads a value another produces and every operand is defined
    before the first use of any member's result (then no path leads from one member to another);
    the grouped eqn stands right after its last operand's definition. Candidates join the first
    open group of their kind that stays valid, in program order; groups are placed one at a time.

Run after simplify (which folds `linear`'s transposed weight into a constant) and before
fuse_elementwise / fuse_epilogue.
"""
from __future__ import annotations

import numpy as np

from ..core import shapes
from ..core.interpreter import eval_graph
from ..core.ir import Eqn, Graph, Primitive, ShapeDtype, Var, unique_vars
from ..ops.elementwise import BINARY_PRIMS
from ..ops.layout import slice_p
from ..ops.linalg import matmul_p
from .fuse_elementwise import ELEMENTWISE, fuse_elementwise
from .fuse_epilogue import epilogue_operand_ok, fuse_epilogue

GROUP_KINDS = {"matmul": "gemm", "layer_norm": "layer_norm"}  # primitive -> kind grouped together
MAX_OPEN = 8  # open groups per kind a candidate may join (bounds the scan on long graphs)


def _abstract(*avals, graph):
    return [v.aval for v in graph.outvars]


def _impl(*args, graph):
    return eval_graph(graph, args)


grouped_p = Primitive("grouped", _abstract, _impl, multiple_results=True)


def fuse_horizontal(graph: Graph) -> Graph:
    return group_independent(concat_shared_input(graph))


def _uses(graph: Graph) -> dict:
    uses: dict = {}
    for e in graph.eqns:
        for a in unique_vars(e.invars):
            uses.setdefault(a, []).append(e)
    return uses


def _same_shape(a, b) -> bool:
    return len(a) == len(b) and all(shapes.equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------ (a) shared-input GEMMs
def _shared_key(e: Eqn, consts: dict):
    """Members of one shared-input group have equal keys (None: not a candidate)."""
    if e.prim.name not in ("matmul", "conv2d") or len(e.invars) != 2:
        return None
    x, w = e.invars
    if not isinstance(x, Var) or not isinstance(w, Var) or w not in consts or x in consts:
        return None
    if e.prim.name == "matmul":
        return ("matmul", x) if w.aval.ndim == 2 else None
    if e.params["groups"] != 1:
        return None
    return ("conv2d", x, tuple(w.aval.shape[1:]), tuple(sorted(e.params.items())))


def _bias_add(y: Var, uses: dict, outs: set, consts: dict):
    """(add eqn, bias as [N]) when y's only use is `y + b` with b a constant row vector."""
    users = uses.get(y, [])
    if y in outs or len(users) != 1 or users[0].prim.name != "add":
        return None
    add = users[0]
    other = [a for a in add.invars if a is not y]
    if len(other) != 1 or len(add.invars) != 2 or other[0] not in consts:
        return None
    b, n = other[0], y.aval.shape[-1]
    s = b.aval.shape
    if (b.aval.dtype != y.aval.dtype or add.outvars[0].aval != y.aval or not s or len(s) > len(y.aval.shape)
            or any(d != 1 for d in s[:-1]) or s[-1] != n):
        return None
    return add, np.asarray(consts[b]).reshape(n)


def concat_shared_input(graph: Graph) -> Graph:
    consts = dict(zip(graph.constvars, graph.consts))
    uses, outs = _uses(graph), {v for v in graph.outvars if isinstance(v, Var)}
    groups: dict = {}
    for e in graph.eqns:
        key = _shared_key(e, consts)
        if key is not None:
            groups.setdefault(key, []).append(e)
    constvars, new_consts = list(graph.constvars), list(graph.consts)
    at: dict = {}        # id(first member) -> the eqns replacing the group
    dropped: set = set()
    for members in groups.values():
        if len(members) < 2:
            continue
        x, w0 = members[0].invars
        is_mm = members[0].prim is matmul_p
        ws = [np.asarray(consts[m.invars[1]]) for m in members]
        wcat = np.concatenate(ws, axis=1 if is_mm else 0)
        sizes = [m.outvars[0].aval.shape[-1] for m in members]
        wvar = Var(ShapeDtype(wcat.shape, w0.aval.dtype))
        constvars.append(wvar)
        new_consts.append(wcat)
        y0 = members[0].outvars[0].aval
        cat = Var(ShapeDtype(y0.shape[:-1] + (sum(sizes),), y0.dtype))
        new = [Eqn(members[0].prim, [x, wvar], [cat], members[0].params)]
        biases = [_bias_add(m.outvars[0], uses, outs, consts) for m in members]
        results = [m.outvars[0] for m in members]
        if any(b is not None for b in biases):
            bcat = np.concatenate([b[1] if b is not None else np.zeros(n, y0.dtype)
                                   for b, n in zip(biases, sizes)]).astype(y0.dtype)
            bvar = Var(ShapeDtype(bcat.shape, y0.dtype))
            constvars.append(bvar)
            new_consts.append(bcat)
            biased = Var(cat.aval)
            new.append(Eqn(BINARY_PRIMS["add"], [cat, bvar], [biased], {}))
            cat = biased
            for i, b in enumerate(biases):
                if b is not None:
                    dropped.add(id(b[0]))
                    results[i] = b[0].outvars[0]
        off, nd = 0, len(y0.shape)
        for r, n in zip(results, sizes):
            new.append(Eqn(slice_p, [cat], [r], {"start": (0,) * (nd - 1) + (off,),
                                                 "limit": tuple(y0.shape[:-1]) + (off + n,),
                                                 "step": (1,) * nd}))
            off += n
        at[id(members[0])] = new
        dropped.update(id(m) for m in members)
    if not at:
        return graph
    eqns = []
    for e in graph.eqns:
        eqns.extend(at.get(id(e), []))
        if id(e) not in dropped:
            eqns.append(e)
    return _drop_unused_consts(Graph(graph.invars, constvars, new_consts, eqns, graph.outvars))


def _drop_unused_consts(g: Graph) -> Graph:
    used = {a for e in g.eqns for a in e.invars} | {v for v in g.outvars if isinstance(v, Var)}
    kept = [(v, c) for v, c in zip(g.constvars, g.consts) if v in used]
    return Graph(g.invars, [v for v, _ in kept], [c for _, c in kept], g.eqns, g.outvars)


# ------------------------------------------------------------------ (b) grouped kernels
class _Member:
    """One candidate: its eqns (a base eqn and an absorbed elementwise chain), the eqn the
    group will hold, and where its operands are ready / its result first needed."""

    def __init__(self, eqns, held: Eqn, ready: int, first_use: int):
        self.eqns, self.held, self.ready, self.first_use = eqns, held, ready, first_use
        self.operands = set(unique_vars(held.invars))
        self.produced = {v for e in eqns for v in e.outvars}


def _epilogue_chain(e: Eqn, uses: dict, outs: set) -> list:
    """The elementwise eqns after a matmul that fuse_epilogue could fuse into it: each the single
    use of the previous result, of its shape, other operands row vectors or full-shaped."""
    chain, y = [], e.outvars[0]
    while y not in outs and len(uses.get(y, [])) == 1:
        c = uses[y][0]
        if (c.prim.name not in ELEMENTWISE or len(c.outvars) != 1 or sum(a is y for a in c.invars) != 1
                or not _same_shape(c.outvars[0].aval.shape, y.aval.shape)
                or not all(epilogue_operand_ok(a, y.aval.shape) for a in unique_vars(c.invars) if a is not y)):
            break
        chain.append(c)
        y = c.outvars[0]
    return chain


def _member(e: Eqn, uses: dict, outs: set, defined_at: dict, index: dict):
    if any(not isinstance(a, Var) for a in e.invars):
        return None
    eqns, held = [e], e
    if e.prim.name == "matmul":
        chain = _epilogue_chain(e, uses, outs)
        if chain:
            sub = Graph(unique_vars(e.invars + [a for c in chain for a in c.invars if a is not e.outvars[0]]),
                        [], [], [e, *chain], chain[-1].outvars)
            fused = fuse_epilogue(fuse_elementwise(sub)).eqns
            if len(fused) == 1:
                eqns, held = [e, *chain], fused[0]
    produced = {v for x in eqns for v in x.outvars}
    inside = {id(x) for x in eqns}
    ready = max((defined_at.get(a, -1) for x in eqns for a in x.invars
                 if isinstance(a, Var) and a not in produced), default=-1)
    first_use = min((index[id(c)] for v in held.outvars for c in uses.get(v, []) if id(c) not in inside),
                    default=len(index))
    return _Member(eqns, held, ready, first_use)


class _Group:
    def __init__(self, m: _Member):
        self.members, self.ready, self.first_use = [m], m.ready, m.first_use
        self.operands, self.produced = set(m.operands), set(m.produced)

    def admits(self, m: _Member) -> bool:
        return (max(self.ready, m.ready) < min(self.first_use, m.first_use)
                and not (m.operands & self.produced) and not (m.produced & self.operands))

    def add(self, m: _Member) -> None:
        self.members.append(m)
        self.ready, self.first_use = max(self.ready, m.ready), min(self.first_use, m.first_use)
        self.operands |= m.operands
        self.produced |= m.produced


def group_independent(graph: Graph) -> Graph:
    # One group at a time, each on the graph the previous one left: two groups placed at once
    # could need each other (a LN feeding a matmul of the other group, and the reverse).
    while (members := _first_group(graph)) is not None:
        graph = _apply(graph, members)
    return graph


def _first_group(graph: Graph):
    """The members of the first group of two or more that the greedy scan forms, or None."""
    uses, outs = _uses(graph), {v for v in graph.outvars if isinstance(v, Var)}
    index = {id(e): i for i, e in enumerate(graph.eqns)}
    defined_at = {v: i for i, e in enumerate(graph.eqns) for v in e.outvars}
    open_groups: dict = {}   # kind -> the most recent groups, which a candidate may still join
    formed = []
    for e in graph.eqns:
        kind = GROUP_KINDS.get(e.prim.name)
        m = _member(e, uses, outs, defined_at, index) if kind else None
        if m is None:
            continue
        groups = open_groups.setdefault(kind, [])
        g = next((g for g in groups if g.admits(m)), None)
        if g is None:
            groups.append(_Group(m))
            del groups[:-MAX_OPEN]
        else:
            g.add(m)
            if len(g.members) == 2:
                formed.append(g)
    return min(formed, key=lambda g: index[id(g.members[0].eqns[0])]).members if formed else None


def _apply(graph: Graph, members: list) -> Graph:
    """The grouped eqn replaces the members' eqns, right after its last operand's definition."""
    held = [m.held for m in members]
    produced = {v for h in held for v in h.outvars}
    ins = [a for a in unique_vars([a for h in held for a in h.invars]) if a not in produced]
    results = [v for h in held for v in h.outvars]
    new = Eqn(grouped_p, ins, results, {"graph": Graph(ins, [], [], held, results)})
    slot = max(m.ready for m in members) + 1
    dropped = {id(x) for m in members for x in m.eqns}
    eqns = []
    for i, e in enumerate(graph.eqns):
        if i == slot:
            eqns.append(new)
        if id(e) not in dropped:
            eqns.append(e)
    if slot >= len(graph.eqns):
        eqns.append(new)
    return Graph(graph.invars, graph.constvars, graph.consts, eqns, graph.outvars)
