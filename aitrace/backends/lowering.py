"""What every native backend's code generator shares: the lowering registry, the kernel record
a lowering returns, and loop geometry (broadcast strides, collapsed dims) computed once."""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

from ..core import shapes

# backend name -> primitive name -> lowering(ctx, eqn) -> Kernel
LOWERINGS: dict[str, dict[str, Callable]] = {}
# backend name -> primitive name -> (reads, writes): which strided views its kernel takes
# (see passes.fuse_memory); a lowering registered without them reads and writes contiguous only.
STRIDED: dict[str, dict[str, tuple]] = {}


def lowering(backend: str, *prims: str, reads: Callable | None = None, writes: Callable | None = None):
    """Register a lowering of the named primitives for one backend. `reads(eqn, i, view)` /
    `writes(eqn, j, view)` say whether its kernel can read operand i / write result j through a
    strided `fuse_memory.View` (the codegen then passes it `ctx.strides(...)`)."""
    def deco(fn):
        for p in prims:
            LOWERINGS.setdefault(backend, {})[p] = fn
            STRIDED.setdefault(backend, {})[p] = (reads, writes)
        return fn
    return deco


def view_support(backend: str):
    """(reads, writes) over every primitive of a backend, contiguous views always accepted."""
    from ..passes.fuse_memory import is_contiguous
    table = STRIDED.get(backend, {})

    def reads(e, i, view):
        fn = table.get(e.prim.name, (None, None))[0]
        return is_contiguous(e.invars[i].aval.shape, view.strides) or (fn is not None and fn(e, i, view))

    def writes(e, j, view):
        fn = table.get(e.prim.name, (None, None))[1]
        return is_contiguous(e.outvars[j].aval.shape, view.strides) or (fn is not None and fn(e, j, view))
    return reads, writes


def any_view(e, i, view) -> bool:
    """For kernels that address every operand through arbitrary strides."""
    return True


def operand_strides(view_strides, in_shape, out_shape) -> list:
    """Element strides of an operand (a view with `view_strides` over `in_shape`) read at
    out_shape's indices under numpy broadcasting: 0 on broadcast axes."""
    nd, pad = len(out_shape), len(out_shape) - len(in_shape)
    out = [0] * nd
    for d in range(pad, nd):
        if not shapes.equal(in_shape[d - pad], 1) or shapes.equal(out_shape[d], 1):
            out[d] = view_strides[d - pad] if not shapes.equal(in_shape[d - pad], 1) else 0
    return out


def flat_suffix(out_shape, stride_lists):
    """(k, unit) with [k, n) the longest suffix of axes over which every operand's address is
    unit[x] * (row-major position in that suffix): the suffix is one flat loop and operand x
    moves unit[x] elements per step (0: broadcast, 1: contiguous)."""
    nd = len(out_shape)
    units = []
    for st in stride_lists:
        last = next((d for d in reversed(range(nd)) if not shapes.equal(out_shape[d], 1)), None)
        units.append(st[last] if last is not None else 0)
    k, inner = nd, 1
    while k > 0:
        d = k - 1
        if not shapes.equal(out_shape[d], 1) and not all(
                shapes.equal(st[d], u * inner) for st, u in zip(stride_lists, units)):
            break
        inner = inner * out_shape[d]
        k = d
    return k, units


# backend name -> primitive name -> [legalize(eqn) -> None or a replacement function (see
# passes.rewrite)]: forms a backend's kernels do not take (or serve badly) are rewritten into
# ones they do. The first legalizer that returns a function wins.
LEGALIZERS: dict[str, dict[str, list[Callable]]] = {}


def legalizer(backend: str, *prims: str):
    def deco(fn):
        for p in prims:
            LEGALIZERS.setdefault(backend, {}).setdefault(p, []).append(fn)
        return fn
    return deco


def _first_rewrite(fns, e):
    for fn in fns:
        out = fn(e)
        if out is not None:
            return out
    return None


def legalize(graph, backend: str):
    """The graph with the backend's legalizers applied; what a rewrite computes from constants
    alone (a weight re-laid out or padded) is folded at build time."""
    from ..passes.rewrite import rewrite_eqns
    from ..passes.simplify import fold_constants
    table = LEGALIZERS.get(backend, {})
    out = rewrite_eqns(graph, lambda e: _first_rewrite(table.get(e.prim.name, ()), e))
    return graph if out is graph else fold_constants(out)


def load_lowerings(package: str, path) -> None:
    """Import every module of a backend package: each registers its own lowerings."""
    for m in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{m.name}")


@dataclass
class Kernel:
    """One generated function: its C++ definition and the call the run function makes."""
    name: str
    definition: str
    call: str
    includes: tuple = ()
    comment: str = ""
    info: dict = field(default_factory=dict)


def broadcast_strides(in_shape, out_shape) -> list:
    """Element strides of a row-major operand read at out_shape's indices (0 where broadcast)."""
    nd = len(out_shape)
    in_shape = (1,) * (nd - len(in_shape)) + tuple(in_shape)
    strides, acc = [0] * nd, 1
    for d in reversed(range(nd)):
        if not shapes.equal(in_shape[d], 1) or shapes.equal(out_shape[d], 1):
            strides[d] = acc if not shapes.equal(in_shape[d], 1) else 0
        acc = acc * in_shape[d]
    return strides


# ---------------------------------------------------------------- geometry shared by the C-like backends
def unit_last(shape, strides) -> bool:
    """The last axis is contiguous (or of size 1)."""
    return shapes.equal(shape[-1], 1) or shapes.equal(strides[-1], 1)


def attention_reads(e, i, view) -> bool:
    return i < 3 and unit_last(e.invars[i].aval.shape, view.strides)


def attention_writes(e, j, view) -> bool:
    return unit_last(e.outvars[j].aval.shape, view.strides)


def gemm_reads(e, i, view) -> bool:
    """A and B of a matmul through any strides; epilogue operands and conv inputs contiguous."""
    return i < 2 and (e.prim.name == "matmul" or e.params["base"] == "matmul")


def rows_apart(e, j, view) -> bool:
    """Output rows any distance apart (a slot of a concatenation), columns contiguous."""
    from ..passes.fuse_memory import rows_uniform
    return rows_uniform(e.outvars[j].aval.shape, view.strides) is not None


def attention_args(ctx, e) -> tuple[list[str], str]:
    """(arguments after the template parameters, mask storage type) of an attention call:
    q, k, v, out, B, H, Sq, Sk, D, Dv, scale, causal, mask kind, mask, 4 mask strides and
    (batch, head, seq) strides of q, k, v and out, as both backends' kernels take them."""
    q, k, v = e.invars[:3]
    (o,) = e.outvars
    B, H, Sq, D = q.aval.shape
    Sk, Dv = k.aval.shape[2], v.aval.shape[3]
    kind = {None: 0, "bool": 1, "additive": 2}[e.params["mask_kind"]]
    if kind:
        m = e.invars[3]
        ms = [ctx.dim(s) for s in broadcast_strides(m.aval.shape, (B, H, Sq, Sk))]
        mask, mt = ctx.name(m), ctx.storage(m)
    else:
        ms, mask, mt = ["0"] * 4, "nullptr", ctx.storage(q)

    def st(atom):
        return [ctx.dim(s) for s in ctx.strides(atom)[:3]]
    return ([ctx.name(q), ctx.name(k), ctx.name(v), ctx.name(o), *map(ctx.dim, (B, H, Sq, Sk, D, Dv)),
             f"{e.params['scale']!r}f", "true" if e.params["causal"] else "false", str(kind),
             f"static_cast<const {mt}*>({mask})", *ms, *st(q), *st(k), *st(v), *st(o)], mt)


def copy_source(ctx, e):
    """(source pointer expression, source strides) reading a transpose / broadcast_to / slice /
    flip operand in the order of the result's elements: the layout op as one strided copy."""
    (x,), (y,) = e.invars, e.outvars
    xs, ys = x.aval.shape, y.aval.shape
    src_st, src = ctx.strides(x), ctx.name(x)
    if e.prim.name == "transpose":
        return src, [src_st[p] for p in e.params["perm"]]
    if e.prim.name == "broadcast_to":
        return src, operand_strides(src_st, xs, ys)
    if e.prim.name == "slice":
        off = 0
        for s, a in zip(src_st, e.params["start"]):
            off = off + s * a
        return f"{src} + {ctx.dim(off)}", [s * k for s, k in zip(src_st, e.params["step"])]
    ss, off = list(src_st), 0   # flip: walk the flipped axes backwards from their last element
    for a in e.params["axes"]:
        ss[a] = -src_st[a]
        off = off + src_st[a] * (xs[a] - 1)
    return f"{src} + {ctx.dim(off)}", ss


def gemm_launch(ctx, e, fold_batch: bool = False) -> dict:
    """C expressions of a batched matmul's launch, as both backends' GEMM calls take it: the
    output's batch axes [0, k) loop outside (coordinates x<d>, operand offsets a_offset /
    b_offset), the last batch axis is the GEMM's own batch (strides a_bs / b_bs), rows and
    columns of A and B through any strides (a_rs, a_cs, b_rs, b_cs), output rows ldc apart.
    fold_batch: where B is the same for every entry of that batch and A's rows run on from one
    entry to the next, the batch becomes rows (one GEMM of batch*M rows: B is read once)."""
    from ..passes.fuse_memory import rows_uniform
    a, b = e.invars[:2]
    (c,) = e.outvars
    out_batch = c.aval.shape[:-2]
    sa, sb = ctx.strides(a), ctx.strides(b)
    ab = operand_strides(sa[:-2], a.aval.shape[:-2], out_batch)
    bb = operand_strides(sb[:-2], b.aval.shape[:-2], out_batch)
    k = max(len(out_batch) - 1, 0)

    def offset(st):
        return " + ".join(f"x{d} * {ctx.dim(st[d])}" for d in range(k) if st[d] != 0) or "0"
    M, inner = a.aval.shape[-2], out_batch[-1] if out_batch else 1
    if fold_batch and out_batch and shapes.equal(bb[-1], 0) and shapes.equal(ab[-1], sa[-2] * M):
        M, inner, ab, bb = shapes.prod([inner, M]), 1, ab[:-1] + [0], bb  # output rows are uniform (rows_apart)
    return dict(M=ctx.dim(M), N=ctx.dim(b.aval.shape[-1]), K=ctx.dim(a.aval.shape[-1]),
                outer=ctx.dim(shapes.prod(out_batch[:k])), outer_desc=str(shapes.prod(out_batch[:k])),
                inner_batch=ctx.dim(inner),
                ldc=ctx.dim(rows_uniform(c.aval.shape, ctx.strides(c))),
                outer_dims=[dict(axis=d, size=ctx.dim(out_batch[d])) for d in reversed(range(k))],
                a_offset=offset(ab), b_offset=offset(bb),
                a_bs=ctx.dim(ab[-1]) if out_batch else "0", a_rs=ctx.dim(sa[-2]), a_cs=ctx.dim(sa[-1]),
                b_bs=ctx.dim(bb[-1]) if out_batch else "0", b_rs=ctx.dim(sb[-2]), b_cs=ctx.dim(sb[-1]))
