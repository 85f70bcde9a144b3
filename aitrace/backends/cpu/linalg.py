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


# ait::gemm streams B itself (no packing) when M or N is at most this (gemm.h's kThin)
THIN = 4


def packable_b(ctx, e, launch) -> bool:
    """B is one constant matrix for the whole call (a constant or a view of one, the same for
    every batch entry, static K and N): it can be packed once at create."""
    a, b = e.invars[:2]
    k, n = a.aval.shape[-1], b.aval.shape[-1]
    return (dtypes.is_float(e.outvars[0].aval.dtype) and ctx.const_root(b) is not None
            and isinstance(k, int) and isinstance(n, int) and k > 0 and launch["b_offset"] == "0"
            and (launch["b_bs"] == "0" or launch["inner_batch"] == "1"))


@lowering("cpu", "matmul", reads=gemm_reads, writes=rows_apart)
def lower_matmul(ctx, e, kname: str, epilogue=None) -> Kernel:
    a, b = e.invars[:2]
    (c,) = e.outvars
    launch = gemm_launch(ctx, e, fold_batch=True)
    packed = packable_b(ctx, e, launch)
    info = {}
    definition = ctx.render(
        "matmul.cpp.j2", signature=ctx.signature(kname, e, "const void* packed_b" if packed else ""), **launch,
        ta=ctx.storage(a), tb=ctx.storage(b), tc=ctx.storage(c), a=ctx.name(a), b=ctx.name(b),
        c=ctx.name(c), integer=not dtypes.is_float(c.aval.dtype), packed=packed,
        epilogue=epilogue("o * inner_batch * M", "M") if epilogue else f"ait::StoreEpilogue<{ctx.storage(c)}>{{c, M * ldc, ldc}}")
    extra = ""
    if packed:
        index, offset = ctx.const_root(b)
        definition = ctx.render("pack_b.cpp.j2", kname=kname, tb=ctx.storage(b), index=index,
                                offset=ctx.dim(offset), K=launch["K"], N=launch["N"],
                                b_rs=launch["b_rs"], b_cs=launch["b_cs"]) + definition
        extra = ctx.prepare(f"{kname}_pack_b(m->consts)")
        m, n = a.aval.shape[-2], b.aval.shape[-1]   # (the rows of one batch entry: the fewest)
        if isinstance(m, int) and m > THIN and n > THIN:  # never the thin path: B itself is not read
            info["reads_only_prepared"] = {index}
    return Kernel(kname, definition, ctx.call(kname, e, extra), includes=("ait/precompiled.h",), info=info)
