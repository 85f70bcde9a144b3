"""Back-to-back GEMM fusion: GEMM -> elementwise -> GEMM through a small middle dimension becomes
one kernel, which keeps each block of rows of the middle tensor in fp32 on chip (a thread's
cache on the CPU) between the two products: the middle never goes to memory.

    m = fused_gemm[base=matmul, epilogue=g1] x w1 e1...      (or m = matmul x w1)
    y = fused_gemm[base=matmul, epilogue=g2] m w2 e2...      (or y = matmul m w2)
  ==>
    y = fused_b2b_gemm[first_epilogue=g1, second_epilogue=g2, n_first_extra=len(e1)] x w1 e1... w2 e2...

Operands, in order: x [..., M, K] (batch dims allowed: its rows are flattened), w1 [K, N1],
the first epilogue's extra operands e1..., w2 [N1, N2], the second epilogue's extra operands e2....
`n_first_extra` tells where e1 ends. Each epilogue is a sub-Graph as fused_gemm's (invars: the
product, then its extras; its extras are product-shaped or broadcast along rows only), or None
where the GEMM had none. The middle (g1's output, or x @ w1) is computed in fp32 and is not
rounded to its storage dtype, as fused_gemm keeps its product in fp32 for its epilogue.

Runs after fuse_epilogue (it matches fused_gemm). Conditions:
  * the first eqn is `matmul`, or `fused_gemm` with base matmul, of float dtype, whose right
    operand (w1) is 2-D with a static N1 <= MAX_MIDDLE ("small middle");
  * its single output m is not a graph output and its only use is as the LEFT operand of one
    second eqn, `matmul` or `fused_gemm`(base matmul), whose right operand (w2) is 2-D [N1, N2];
  * each eqn is used at most once (in a chain of GEMMs the first pair, in order, fuses).
"""
from __future__ import annotations

from ..core import dtypes
from ..core.interpreter import eval_graph
from ..core.ir import Eqn, Graph, Primitive, Var
from ..ops.linalg import matmul_p

MAX_MIDDLE = 256  # widest middle (N1) a block of rows keeps on chip


def split_operands(operands, n_first_extra: int):
    """(x, w1, first extras, w2, second extras) of a fused_b2b_gemm's operands."""
    x, w1, *rest = operands
    return x, w1, list(rest[:n_first_extra]), rest[n_first_extra], list(rest[n_first_extra + 1:])


def _abstract(*avals, first_epilogue, second_epilogue, n_first_extra):
    x, w1, _, w2, _ = split_operands(avals, n_first_extra)
    mid = first_epilogue.outvars[0].aval if first_epilogue is not None else matmul_p.abstract_eval(x, w1)
    y = matmul_p.abstract_eval(mid, w2)
    return second_epilogue.outvars[0].aval if second_epilogue is not None else y


def _impl(*args, first_epilogue, second_epilogue, n_first_extra):
    x, w1, e1, w2, e2 = split_operands(args, n_first_extra)
    mid = matmul_p.impl(x, w1)
    if first_epilogue is not None:
        (mid,) = eval_graph(first_epilogue, [mid, *e1])
    y = matmul_p.impl(mid, w2)
    if second_epilogue is not None:
        (y,) = eval_graph(second_epilogue, [y, *e2])
    return y


fused_b2b_gemm_p = Primitive("fused_b2b_gemm", _abstract, _impl)


def _gemm_parts(e: Eqn):
    """(left, right, epilogue or None, extras) of a matmul / fused_gemm(base=matmul); else None."""
    if e.prim.name == "matmul":
        return e.invars[0], e.invars[1], None, []
    if e.prim.name == "fused_gemm" and e.params["base"] == "matmul" and len(e.outvars) == 1:
        return e.invars[0], e.invars[1], e.params["epilogue"], list(e.invars[2:])
    return None


def _float(v) -> bool:
    return dtypes.is_float(v.aval.dtype)


def fuse_b2b(graph: Graph) -> Graph:
    uses: dict = {}
    for e in graph.eqns:
        for pos, a in enumerate(e.invars):
            if isinstance(a, Var):
                uses.setdefault(a, []).append((e, pos))
    outs = {v for v in graph.outvars if isinstance(v, Var)}
    replaced: dict = {}   # id(second eqn) -> fused eqn
    taken = set()         # ids of eqns already part of a fused pair
    for e in graph.eqns:
        first = _gemm_parts(e)
        if first is None or id(e) in taken:
            continue
        x, w1, g1, e1 = first
        (m,) = e.outvars
        if m in outs or w1.aval.ndim != 2 or not isinstance(w1.aval.shape[1], int) \
                or w1.aval.shape[1] > MAX_MIDDLE or not (_float(x) and _float(m)):
            continue
        consumers = uses.get(m, [])
        if len(consumers) != 1 or consumers[0][1] != 0:
            continue
        c = consumers[0][0]
        second = _gemm_parts(c)
        if second is None or id(c) in taken:
            continue
        _, w2, g2, e2 = second
        if w2.aval.ndim != 2 or not _float(c.outvars[0]):
            continue
        replaced[id(c)] = Eqn(fused_b2b_gemm_p, [x, w1, *e1, w2, *e2], list(c.outvars),
                              {"first_epilogue": g1, "second_epilogue": g2, "n_first_extra": len(e1)})
        taken.update((id(e), id(c)))
    if not replaced:
        return graph
    eqns = [replaced.get(id(e), e) for e in graph.eqns if id(e) not in taken or id(e) in replaced]
    return Graph(graph.invars, graph.constvars, graph.consts, eqns, graph.outvars)

