"""CPU lowering of the GEMM family: matmul (batched, broadcasting) through ait/gemm.h with fp32
accumulation, and fused_gemm (a matmul or conv2d with an elementwise epilogue applied to the
accumulators by a generated functor)."""
from __future__ import annotations

from ...core import dtypes, shapes
from ..lowering import Kernel, broadcast_strides, lowering, split_inner
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
    body.append(f"out[row * N + j] = ait::store<{ctx.storage(out)}, {ctx.compute(out)}>({locals_[g.outvars[0]]});")
    struct = ctx.render("epilogue.cpp.j2", kname=kname, tc=ctx.storage(out), operands=operands, body=body,
                        ops=" -> ".join(se.prim.name for se in g.eqns))
    ptrs = ", ".join([ctx.name(out)] + [ctx.name(v) for v in e.invars[2:]])
    return struct, lambda row0, M: f"{kname}_epilogue{{{ptrs}, {ctx.dim(n_cols)}, {row0}, {M}}}"


@lowering("cpu", "fused_gemm")
def lower_fused_gemm(ctx, e, kname: str) -> Kernel:
    struct, make = epilogue_functor(ctx, kname, e)
    if e.params["base"] == "conv2d":
        k = conv2d_call(ctx, e, kname, dict(e.params["base_params"]), make("0", "0"))
    else:
        k = lower_matmul(ctx, e, kname, epilogue=make)
    k.definition = struct + k.definition
    return k


@lowering("cpu", "matmul")
def lower_matmul(ctx, e, kname: str, epilogue=None) -> Kernel:
    a, b = e.invars[:2]
    (c,) = e.outvars
    out_batch = c.aval.shape[:-2]
    M, K, N = a.aval.shape[-2], a.aval.shape[-1], b.aval.shape[-1]
    a_batch, b_batch = a.aval.shape[:-2], b.aval.shape[:-2]
    k = split_inner(out_batch, [a_batch, b_batch])
    sa = [s * M * K for s in broadcast_strides(a_batch, out_batch)] if out_batch else []
    sb = [s * K * N for s in broadcast_strides(b_batch, out_batch)] if out_batch else []

    def offset(st):
        return " + ".join(f"x{d} * {ctx.dim(st[d])}" for d in range(k) if st[d] != 0) or "0"

    inner_st_a = ctx.dim(M * K) if any(x != 0 for x in sa[k:]) else "0"
    inner_st_b = ctx.dim(K * N) if any(x != 0 for x in sb[k:]) else "0"
    definition = ctx.render(
        "matmul.cpp.j2", signature=ctx.signature(kname, e), M=ctx.dim(M), N=ctx.dim(N), K=ctx.dim(K),
        outer=ctx.dim(shapes.prod(out_batch[:k])), outer_desc=str(shapes.prod(out_batch[:k])),
        inner_batch=ctx.dim(shapes.prod(out_batch[k:])),
        outer_dims=[dict(axis=d, size=ctx.dim(out_batch[d])) for d in reversed(range(k))],
        ta=ctx.storage(a), tb=ctx.storage(b), tc=ctx.storage(c), a=ctx.name(a), b=ctx.name(b),
        c=ctx.name(c), a_offset=offset(sa), b_offset=offset(sb), a_batch_stride=inner_st_a,
        b_batch_stride=inner_st_b, integer=not dtypes.is_float(c.aval.dtype),
        epilogue=epilogue("o * inner_batch * M", "M") if epilogue else f"ait::StoreEpilogue<{ctx.storage(c)}>{{c, M * N, N}}")
    return Kernel(kname, definition, ctx.call(kname, e), includes=("ait/precompiled.h",))
