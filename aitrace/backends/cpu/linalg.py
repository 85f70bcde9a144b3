"""CPU lowering of the GEMM family: matmul (batched, broadcasting) through ait/gemm.h with fp32
accumulation, and fused_gemm (a matmul or conv2d with an elementwise epilogue applied to the
accumulators by a generated functor)."""
from __future__ import annotations

from ...core import dtypes
from ...passes.fuse_memory import rows_uniform
from ..lowering import Kernel, gemm_launch, gemm_reads, lowering, rows_apart
from .calls import conv2d_call
from .elementwise import statements


def epilogue_functor(ctx, kname: str, e):
    """(struct definition, constructor taking row0 and M) of a fused_gemm's epilogue."""
    g = e.params["epilogue"]
    y, extra = g.invars[0], g.invars[1:]
    (out,) = e.outvars
    n_cols = out.aval.shape[-1]
    locals_ = {y: "acc[t]"}
    body, operands = [], []
    for j, v in enumerate(extra):
        full = v.aval.shape == out.aval.shape
        idx = "row * N + j" if full else ("j" if v.aval.shape and v.aval.shape[-1] != 1 else "0")
        operands.append(dict(type=ctx.storage(v), name=f"p{j}"))
        locals_[v] = f"a{j}"
        body.append(f"const {ctx.compute(v)} a{j} = ait::load<{ctx.compute(v)}>(p{j}[{idx}]);")
    body += statements(ctx, g.eqns, locals_)
    body.append(f"out[row * ldo + j] = ait::store<{ctx.storage(out)}, {ctx.compute(out)}>({locals_[g.outvars[0]]});")
    struct = ctx.render("epilogue.cpp.j2", kname=kname, tc=ctx.storage(out), operands=operands, body=body,
                        ops=" -> ".join(se.prim.name for se in g.eqns))
    ptrs = ", ".join([ctx.name(out)] + [ctx.name(v) for v in e.invars[2:]])
    ldo = ctx.dim(rows_uniform(out.aval.shape, ctx.strides(out)))
    return struct, lambda row0, M: f"{kname}_epilogue{{{ptrs}, {ctx.dim(n_cols)}, {ldo}, {row0}, {M}}}"


@lowering("cpu", "fused_gemm", reads=gemm_reads, writes=rows_apart)
def lower_fused_gemm(ctx, e, kname: str) -> Kernel:
    struct, make = epilogue_functor(ctx, kname, e)
    if e.params["base"] == "conv2d":
        k = conv2d_call(ctx, e, kname, dict(e.params["base_params"]), make("0", "0"))
    else:
        k = lower_matmul(ctx, e, kname, epilogue=make)
    k.definition = struct + k.definition
    return k


@lowering("cpu", "matmul", reads=gemm_reads, writes=rows_apart)
def lower_matmul(ctx, e, kname: str, epilogue=None) -> Kernel:
    a, b = e.invars[:2]
    (c,) = e.outvars
    definition = ctx.render(
        "matmul.cpp.j2", signature=ctx.signature(kname, e), **gemm_launch(ctx, e),
        ta=ctx.storage(a), tb=ctx.storage(b), tc=ctx.storage(c), a=ctx.name(a), b=ctx.name(b),
        c=ctx.name(c), integer=not dtypes.is_float(c.aval.dtype),
        epilogue=epilogue("o * inner_batch * M", "M") if epilogue else f"ait::StoreEpilogue<{ctx.storage(c)}>{{c, M * ldc, ldc}}")
    return Kernel(kname, definition, ctx.call(kname, e), includes=("ait/precompiled.h",))
