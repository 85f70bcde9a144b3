"""Memory fusion: layout ops become views and concatenations are written in place, so no copy
kernel runs for them where the kernels around them can address memory through strides.

Every value gets a `View`: the buffer it lives in (`root`, a Var that owns storage), an element
offset into it and one element stride per axis. Two kinds of aliasing are planned:

* read views: the output of a `reshape`, `transpose` or `slice` is its input's storage seen
  through other strides (a Q/K/V slice of a fused projection, a head split, a permute feeding a
  matmul or attention), provided every reader of the output can read those strides;
* write views: an input of a `concatenate` is computed straight into its slot of the output,
  and the input of a `transpose` straight into the transposed output (attention writing
  [B, S, H, D] instead of [B, H, S, D]), provided its producer can write those strides.

What a kernel can read or write is the backend's knowledge: `plan_views` asks through
`reads(eqn, i, view)` and `writes(eqn, j, view)`. Like `memory_plan`, this runs inside a backend's
lowering, since the answer depends on its kernels; the IR keeps the layout ops, and the backend
emits nothing for the ones that became views (`MemoryViews.free`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from ..core import shapes
from ..core.ir import Graph, Var

READ_VIEW_PRIMS = frozenset({"reshape", "transpose", "slice"})


def fuse_memory(graph: Graph) -> Graph:
    """The pipeline entry: the graph is unchanged (layout ops stay in the IR, where every
    backend can see them); a backend plans views at lowering (`plan_views`) when this pass is
    in the pipeline, and leaves every value in its own buffer when it is not."""
    return graph


@dataclass(frozen=True)
class View:
    root: Var           # the Var owning the storage
    offset: object      # elements from the root's start (int or sympy)
    strides: tuple      # elements per axis (int or sympy)


def contiguous_strides(shape) -> tuple:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc = acc * d
    return tuple(out[::-1])


def is_contiguous(shape, strides) -> bool:
    """Row-major over the axes that matter (size-1 axes may have any stride)."""
    return all(shapes.equal(d, 1) or shapes.equal(s, c)
               for d, s, c in zip(shape, strides, contiguous_strides(shape)))


def rows_uniform(shape, strides):
    """The row stride when `shape` is [..., N] with unit column stride and all leading axes
    collapsing into rows of one stride (a 2-D [rows, N] view); else None."""
    if not shape or not (shapes.equal(shape[-1], 1) or shapes.equal(strides[-1], 1)):
        return None
    if len(shape) == 1:
        return shape[-1]
    # a size-1 axis is never stepped along, so its stride (any value a view gave it) is free
    lead = [d for d in range(len(shape) - 1) if not shapes.equal(shape[d], 1)]
    for outer, inner in zip(lead, lead[1:]):
        if not shapes.equal(strides[outer], strides[inner] * shape[inner]):
            return None
    return strides[lead[-1]] if lead else strides[-2]


def _ratio(a, b):
    """a / b as a number when it is one (symbolic dims cancel), else None."""
    r = sympy.nsimplify(sympy.simplify(sympy.sympify(a) / sympy.sympify(b)))
    return r if r.is_number else None


def reshape_strides(old_shape, old_strides, new_shape):
    """Strides that view (old_shape, old_strides) as new_shape without moving data, or None
    (numpy's no-copy reshape: each group of merged axes must be contiguous among itself)."""
    if any(shapes.equal(d, 0) for d in (*old_shape, *new_shape)):
        return contiguous_strides(new_shape)  # empty: nothing is addressed
    olds = [(d, s) for d, s in zip(old_shape, old_strides) if not shapes.equal(d, 1)]
    news = [k for k, d in enumerate(new_shape) if not shapes.equal(d, 1)]
    out = [None] * len(new_shape)
    i = j = 0
    while i < len(olds) and j < len(news):
        i2, j2 = i + 1, j + 1
        po, pn = olds[i][0], new_shape[news[j]]
        while not shapes.equal(po, pn):
            r = _ratio(po, pn)
            if r is None:
                return None
            if r < 1:
                if i2 == len(olds):
                    return None
                po, i2 = po * olds[i2][0], i2 + 1
            else:
                if j2 == len(news):
                    return None
                pn, j2 = pn * new_shape[news[j2]], j2 + 1
        for k in range(i, i2 - 1):  # merged old axes must be contiguous relative to each other
            if not shapes.equal(olds[k][1], olds[k + 1][1] * olds[k + 1][0]):
                return None
        stride = olds[i2 - 1][1]
        for k in reversed(news[j:j2]):
            out[k] = stride
            stride = stride * new_shape[k]
        i, j = i2, j2
    if i != len(olds) or j != len(news):
        return None
    inner = 1  # size-1 axes: any stride; pick the row-major one so unit-stride checks pass
    for k in reversed(range(len(new_shape))):
        if out[k] is None:
            out[k] = inner
        inner = out[k] * new_shape[k]
    return tuple(out)


def _read_view(e, src: View):
    (y,) = e.outvars
    x = e.invars[0]
    if e.prim.name == "transpose":
        return View(src.root, src.offset, tuple(src.strides[p] for p in e.params["perm"]))
    if e.prim.name == "slice":
        off = src.offset
        for s, a in zip(src.strides, e.params["start"]):
            off = off + s * a
        return View(src.root, off, tuple(s * k for s, k in zip(src.strides, e.params["step"])))
    st = reshape_strides(x.aval.shape, src.strides, y.aval.shape)
    return View(src.root, src.offset, st) if st is not None else None


@dataclass
class MemoryViews:
    views: dict = field(default_factory=dict)   # Var -> View (every Var of the graph)
    free: set = field(default_factory=set)      # id(eqn) of layout eqns that need no kernel

    def root(self) -> dict:
        return {v: w.root for v, w in self.views.items()}


def plan_views(graph: Graph, reads, writes, enabled: bool = True) -> MemoryViews:
    """`reads(eqn, i, view)` / `writes(eqn, j, view)`: can the kernel of `eqn` read its operand i
    (write its result j) through `view`? With enabled=False every value stays in its own
    contiguous buffer and only reshapes of contiguous values are views (the plain plan)."""
    mv = MemoryViews()
    for v in [*graph.invars, *graph.constvars, *(o for e in graph.eqns for o in e.outvars)]:
        mv.views[v] = View(v, 0, contiguous_strides(v.aval.shape))
    readers: dict = {}
    for e in graph.eqns:
        for i, a in enumerate(e.invars):
            if isinstance(a, Var):
                readers.setdefault(a, []).append((e, i))
    external = set(graph.invars) | set(graph.constvars) | {v for v in graph.outvars if isinstance(v, Var)}
    producer = {v: (e, j) for e in graph.eqns for j, v in enumerate(e.outvars)}

    def readable(v, view) -> bool:
        if v in external and not is_contiguous(v.aval.shape, view.strides):
            return False
        return all(reads(e, i, view) for e, i in readers.get(v, []))

    def write_into(x, view, consumer) -> bool:
        """Let x's producer write x straight into `view` (x then lives there)."""
        if x in external or mv.views[x].root is not x or x not in producer:
            return False
        p, j = producer[x]
        if not all(e is consumer or reads(e, i, view) for e, i in readers.get(x, [])):
            return False
        if p.prim.name == "reshape" and isinstance(p.invars[0], Var):
            # through a reshape (ViT's patch embeddings [1, 14, 14, 768] -> [1, 196, 768] before the
            # class token's concatenation): its input is written into the slot seen in its shape
            st = reshape_strides(x.aval.shape, view.strides, p.invars[0].aval.shape)
            if st is None or not write_into(p.invars[0], View(view.root, view.offset, st), p):
                return False
            mv.free.add(id(p))
        elif p.prim.name in READ_VIEW_PRIMS or not writes(p, j, view):
            return False
        mv.views[x] = view
        return True

    if enabled:
        # write views, last eqn first: a consumer's own placement is settled before its inputs'
        for e in reversed(graph.eqns):
            if e.prim.name == "concatenate":
                y, axis = e.outvars[0], e.params["axis"]
                out, off, placed = mv.views[y], 0, 0
                for x in e.invars:
                    slot = View(out.root, out.offset + off * out.strides[axis], out.strides)
                    if isinstance(x, Var) and e.invars.count(x) == 1:
                        placed += write_into(x, slot, e)
                    off = off + x.aval.shape[axis]
                if placed == len(e.invars):
                    mv.free.add(id(e))
            elif e.prim.name == "transpose" and isinstance(e.invars[0], Var):
                out, perm = mv.views[e.outvars[0]], e.params["perm"]
                inv = [0] * len(perm)
                for k, p in enumerate(perm):
                    inv[p] = k
                if write_into(e.invars[0], View(out.root, out.offset, tuple(out.strides[inv[d]] for d in range(len(perm)))), e):
                    mv.free.add(id(e))
    # read views, first eqn first: a view of a view composes
    for e in graph.eqns:
        if e.prim.name not in READ_VIEW_PRIMS or id(e) in mv.free or not isinstance(e.invars[0], Var):
            continue
        if not enabled and e.prim.name != "reshape":
            continue
        (y,) = e.outvars
        if mv.views[y].root is not y:  # y is written into a concatenation: keep the copy kernel
            continue
        view = _read_view(e, mv.views[e.invars[0]])
        if view is None or (not enabled and not is_contiguous(y.aval.shape, view.strides)):
            continue
        if readable(y, view):
            mv.views[y] = view
            mv.free.add(id(e))
    return mv
