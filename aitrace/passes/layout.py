"""Layout: transposes sink through elementwise ops and reductions until they meet their inverse
and cancel, so a model written around NCHW tensors (each channels-last conv wrapped in
transposes, as PyTorch-style layers are) converts its input once to NHWC and stays there.

    t = transpose[perm=P] x ; y = relu t ; z = transpose[perm=P^-1] y
      ==>  y' = relu x ; (y = transpose[perm=P] y') ; z = y'

An elementwise eqn sinks a transpose when every operand of full rank is the single-use result of
a transpose with the same perm (constants are transposed at compile time, scalars and literals
need nothing); a reduction sinks it by reducing the transposed axes of the source. The
transposes that remain feed matmuls and attention, where fuse_memory turns them into operand
strides.
"""
from __future__ import annotations

import numpy as np

from ..core.ir import Eqn, Graph, Literal, ShapeDtype, Var, dce
from ..ops.layout import transpose_p
from .fuse_elementwise import ELEMENTWISE

REDUCTIONS = frozenset({"reduce_sum", "reduce_mean", "reduce_max", "reduce_min"})


def _compose(p1, p2) -> tuple:
    """transpose(transpose(x, p1), p2) == transpose(x, _compose(p1, p2))."""
    return tuple(p1[j] for j in p2)


def _inverse(p) -> tuple:
    inv = [0] * len(p)
    for i, j in enumerate(p):
        inv[j] = i
    return tuple(inv)


def layout(graph: Graph) -> Graph:
    uses: dict = {}
    for e in graph.eqns:
        for a in e.invars:
            if isinstance(a, Var):
                uses[a] = uses.get(a, 0) + 1
    for v in graph.outvars:
        if isinstance(v, Var):
            uses[v] = uses.get(v, 0) + 1
    consts = dict(zip(graph.constvars, graph.consts))
    constvars, constvals = list(graph.constvars), list(graph.consts)
    sub: dict = {}            # original Var -> Var now holding its value
    transposed: dict = {}     # Var -> (source Var, perm): the Var is transpose(source, perm)
    eqns: list = []

    def emit_transpose(src, perm, out=None):
        if perm == tuple(range(len(perm))):
            return src
        out = out or Var(ShapeDtype(tuple(src.aval.shape[p] for p in perm), src.aval.dtype))
        eqns.append(Eqn(transpose_p, [src], [out], {"perm": perm}))
        transposed[out] = (src, perm)
        return out

    def const_transposed(v, perm, rank):
        """v (a constant broadcastable to rank) laid out for the untransposed op."""
        value = np.asarray(consts[v])
        value = value.reshape((1,) * (rank - value.ndim) + value.shape)
        new = Var(ShapeDtype(tuple(np.transpose(value, _inverse(perm)).shape), v.aval.dtype))
        constvars.append(new)
        constvals.append(np.ascontiguousarray(np.transpose(value, _inverse(perm))))
        consts[new] = constvals[-1]
        return new

    for e in graph.eqns:
        ins = [sub.get(a, a) if isinstance(a, Var) else a for a in e.invars]
        name = e.prim.name
        if name == "transpose" and ins[0] in transposed:
            src, p1 = transposed[ins[0]]
            uses[ins[0]] -= 1  # read no more: the composed transpose reads src
            uses[src] = uses.get(src, 0) + 1
            _bind(sub, uses, e.outvars[0], emit_transpose(src, _compose(p1, e.params["perm"])))
            continue
        if name in ELEMENTWISE and _sink_elementwise(e, ins, transposed, uses, consts):
            rank = e.outvars[0].aval.ndim
            perm = next(transposed[a][1] for a in ins if isinstance(a, Var) and a in transposed
                        and a.aval.ndim == rank)
            new_ins = []
            for a in ins:
                if isinstance(a, Literal) or a.aval.ndim == 0:
                    new_ins.append(a)
                elif a in transposed and a.aval.ndim == rank:
                    new_ins.append(transposed[a][0])
                else:
                    new_ins.append(const_transposed(a, perm, rank))
            inner = [Var(ShapeDtype(tuple(v.aval.shape[i] for i in _inverse(perm)), v.aval.dtype))
                     for v in e.outvars]
            eqns.append(Eqn(e.prim, new_ins, inner, e.params))
            for v, w in zip(e.outvars, inner):
                _bind(sub, uses, v, emit_transpose(w, perm))
            continue
        if name in REDUCTIONS and ins[0] in transposed and uses.get(ins[0], 0) == 1:
            src, perm = transposed[ins[0]]
            axes, keep = e.params["axes"], e.params["keepdims"]
            src_axes = tuple(sorted(perm[a] for a in axes))
            (y,) = e.outvars
            if keep:
                inner_shape = tuple(1 if i in src_axes else d for i, d in enumerate(src.aval.shape))
                r = Var(ShapeDtype(inner_shape, y.aval.dtype))
                eqns.append(Eqn(e.prim, [src], [r], {**e.params, "axes": src_axes}))
                _bind(sub, uses, y, emit_transpose(r, perm))
            else:
                kept = [perm[k] for k in range(len(perm)) if k not in axes]  # src axes, in y's order
                order = sorted(kept)
                r = Var(ShapeDtype(tuple(src.aval.shape[i] for i in order), y.aval.dtype))
                eqns.append(Eqn(e.prim, [src], [r], {**e.params, "axes": src_axes}))
                _bind(sub, uses, y, emit_transpose(r, tuple(order.index(k) for k in kept)))
            continue
        out = Eqn(e.prim, ins, e.outvars, e.params)
        eqns.append(out)
        if name == "transpose":
            transposed[e.outvars[0]] = (ins[0], e.params["perm"])
    outvars = [sub.get(v, v) if isinstance(v, Var) else v for v in graph.outvars]
    return dce(Graph(graph.invars, constvars, constvals, eqns, outvars))


def _bind(sub, uses, old, new) -> None:
    """`old` (a Var of the input graph) is now held by `new`, with old's readers."""
    sub[old] = new
    if new is not old:
        uses[new] = uses.get(new, 0) + uses.get(old, 0)


def _sink_elementwise(e, ins, transposed, uses, consts) -> bool:
    rank = e.outvars[0].aval.ndim
    perms = set()
    for a in ins:
        if isinstance(a, Literal) or a.aval.ndim == 0:
            continue
        if a in transposed and a.aval.ndim == rank and uses.get(a, 0) == 1:
            perms.add(transposed[a][1])
        elif a not in consts:
            return False
    return len(perms) == 1
