"""CUDA lowering of attention. fp16/bf16 with q, k and v of head dim 64 or 128 run FlashAttention-2
on tensor cores (ait/flash_attention.cuh; mask kind and causal are template arguments, so each
call site compiles only its own variant); fp32 and other head dims run the warp-per-query-row
kernel of ait/cuda.h, as does a flash call whose operands turn out unaligned at run time."""
from __future__ import annotations

from ...core import dtypes, shapes
from ..lowering import attention_args, attention_reads, attention_writes, lowering
from .calls import _kernel

FLASH_HEAD_DIMS = (64, 128)
MASK_KINDS = {None: 0, "bool": 1, "additive": 2}


def flash_head_dim(e) -> int | None:
    """The head dim the flash kernel is instantiated for, or None where it does not apply."""
    q, v = e.invars[0], e.invars[2]
    d, dv = q.aval.shape[3], v.aval.shape[3]
    if q.aval.dtype not in (dtypes.float16, dtypes.bfloat16) or not shapes.is_static(d):
        return None
    return int(d) if int(d) in FLASH_HEAD_DIMS and shapes.equal(d, dv) else None


@lowering("cuda", "attention", reads=attention_reads, writes=attention_writes)
def lower_attention(ctx, e, kname):
    q, v = e.invars[0], e.invars[2]
    args, mt = attention_args(ctx, e)
    t, hd = ctx.storage(q), flash_head_dim(e)
    if hd is not None:
        causal = "true" if e.params["causal"] else "false"
        k = _kernel(ctx, kname, e, [f"ait::gpu::flash_attention<{t}, {mt}, {hd}, {MASK_KINDS[e.params['mask_kind']]}, "
                                    f"{causal}>({', '.join(args)}, stream);"])
        k.includes = ("ait/flash_attention.cuh",)
        return k
    D, Dv, rows = q.aval.shape[3], v.aval.shape[3], shapes.prod(q.aval.shape[:3])
    return _kernel(ctx, kname, e, [
        f"if ({ctx.dim(D)} > 256 || {ctx.dim(Dv)} > 256) throw std::runtime_error(\"attention: head dim > 256\");",
        f"ait::gpu::launch(ait::gpu::attention_kernel<{t}, {mt}>, ait::gpu::blocks_for({ctx.dim(rows)} * 32, 128), "
        f"128, 0, stream, {', '.join(args)});"])
