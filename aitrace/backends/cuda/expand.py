"""Fused forms the cuda backend has no kernel for yet, expanded back into forms it has:
`fused_b2b_gemm` into two GEMMs with their epilogues. (The expansion goes once a dedicated kernel
exists; `fused_norm` and `grouped` have theirs: prologue.py, grouped.py.)"""
from __future__ import annotations

from ...core.ir import PRIMITIVES
from ...passes.fuse_b2b import split_operands
from ...passes.fuse_epilogue import fused_gemm_p
from ..lowering import legalizer


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
