"""GEMM/conv epilogue fusion: the elementwise work right after a matmul or conv2d (bias,
activation, residual add, scale, cast) moves into the GEMM's epilogue, which applies it to the
fp32 accumulators as each output tile is finished: the product never makes a round trip
through memory.

    y = matmul a b ; z = fused_elementwise[g] y c ...   ==>   z = fused_gemm[base=matmul, epilogue=g] a b c ...

Conditions: y has no other use, the elementwise kernel has one output of y's shape, and each
other operand is y-shaped or broadcasts along rows only (its shape is 1 except in the last dim),
so the epilogue addresses it by (row, column) of the output seen as a matrix.
"""
from __future__ import annotations

from ..core import dtypes, shapes
from ..core.interpreter import eval_graph
from ..core.ir import PRIMITIVES, Eqn, Graph, Primitive, Var, unique_vars
from .fuse_elementwise import ELEMENTWISE

BASES = ("matmul", "conv2d")


def _abstract(*avals, base, base_params, epilogue):
    return [v.aval for v in epilogue.outvars]


def _impl(a, b, *extra, base, base_params, epilogue):
    y = PRIMITIVES[base].impl(a, b, **dict(base_params))
    return eval_graph(epilogue, [y, *extra])


fused_gemm_p = Primitive("fused_gemm", _abstract, _impl, multiple_results=True)


def epilogue_operand_ok(v, out_shape) -> bool:
    s = v.aval.shape
    if len(s) == len(out_shape) and all(shapes.equal(x, y) for x, y in zip(s, out_shape)):
        return True
    return all(shapes.equal(d, 1) for d in s[:-1]) and (not s or shapes.equal(s[-1], 1) or
                                                          shapes.equal(s[-1], out_shape[-1]))


def fuse_epilogue(graph: Graph) -> Graph:
    uses: dict = {}
    for e in graph.eqns:
        for a in e.invars:
            if isinstance(a, Var):
                uses.setdefault(a, []).append(e)
    outs = {v for v in graph.outvars if isinstance(v, Var)}
    fused_into: dict = {}   # id(consumer eqn) -> replacement eqn
    dropped = set()
    for e in graph.eqns:
        if e.prim.name not in BASES:
            continue
        (y,) = e.outvars
        consumers = uses.get(y, [])
        if y in outs or len(consumers) != 1 or not dtypes.is_float(y.aval.dtype):
            continue
        c = consumers[0]
        if id(c) in fused_into:  # already the epilogue of another GEMM (e.g. x@w1 + z@w2)
            continue
        if c.prim.name == "fused_elementwise":
            sub = c.params["graph"]
        elif c.prim.name in ELEMENTWISE:
            sub = Graph(unique_vars(c.invars), [], [], [c], c.outvars)
        else:
            continue
        if len(sub.outvars) != 1 or sub.outvars[0].aval.shape != y.aval.shape:
            continue
        extra = [v for v in sub.invars if v is not y]
        if not all(epilogue_operand_ok(v, y.aval.shape) for v in extra):
            continue
        epilogue = Graph([y, *extra], [], [], sub.eqns, sub.outvars)
        fused_into[id(c)] = Eqn(fused_gemm_p, [*e.invars, *extra], list(c.outvars),
                                {"base": e.prim.name, "base_params": tuple(sorted(e.params.items())),
                                 "epilogue": epilogue})
        dropped.add(id(e))
    eqns = [fused_into.get(id(e), e) for e in graph.eqns if id(e) not in dropped]
    return Graph(graph.invars, graph.constvars, graph.consts, eqns, graph.outvars)
