"""Fused forms the cuda backend has no kernel for yet, expanded back into forms it has: a
`grouped` eqn into its members, `fused_norm` into its prologue and the norm, `fused_b2b_gemm` into
two GEMMs with their epilogues. (Each expansion goes once a dedicated kernel exists.)"""
from __future__ import annotations

from ...core.interpreter import replay
from ...core.ir import PRIMITIVES
from ...passes.fuse_b2b import split_operands
from ...passes.fuse_epilogue import fused_gemm_p
from ..lowering import legalizer


@legalizer("cuda", "grouped")
def expand_grouped(e):
    return lambda *args: replay(e.params["graph"], args)


@legalizer("cuda", "fused_norm")
def expand_fused_norm(e):
    prologue, base = e.params["prologue"], PRIMITIVES[e.params["base"]]

    def fn(*args):
        n = len(prologue.invars)
        x, *extra = replay(prologue, args[:n])
        return [base.bind(x, *args[n:], **dict(e.params["base_params"])), *extra]
    return fn


@legalizer("cuda", "fused_b2b_gemm")
def expand_b2b(e):
    p = e.params

    def gemm(a, w, extra, epilogue):
        if epilogue is None:
            return PRIMITIVES["matmul"].bind(a, w)
        return fused_gemm_p.bind(a, w, *extra, base="matmul", base_params=(), epilogue=epilogue)[0]

    def fn(*args):
        x, w1, e1, w2, e2 = split_operands(args, p["n_first_extra"])
        return gemm(gemm(x, w1, e1, p["first_epilogue"]), w2, e2, p["second_epilogue"])
    return fn
