"""CPU lowering of matmul: batched, broadcasting GEMM through ait/gemm.h (fp32 accumulate)."""
from __future__ import annotations

from ...core import dtypes, shapes
from ..lowering import Kernel, broadcast_strides, lowering, split_inner


@lowering("cpu", "matmul")
def lower_matmul(ctx, e, kname: str) -> Kernel:
    a, b = e.invars
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
        b_batch_stride=inner_st_b, integer=not dtypes.is_float(c.aval.dtype))
    return Kernel(kname, definition, ctx.call(kname, e), includes=("ait/precompiled.h",))
