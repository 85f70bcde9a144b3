"""CPU lowerings that call the hand-written kernels of include/ait/ (reductions, normalization,
pooling, convolution, attention, layout): each computes sizes and strides and makes one call."""
from __future__ import annotations

from ...core import shapes
from ...ops.layout import reshape, transpose
from ...passes.fuse_memory import rows_uniform
from ..lowering import (Kernel, any_view, attention_args, attention_reads, attention_writes, copy_source,
                        legalizer, lowering, rows_apart)


def _kernel(ctx, kname, e, lines, header, extra_param="", extra_arg="") -> Kernel:
    definition = ctx.render("call.cpp.j2", signature=ctx.signature(kname, e, extra_param), lines=lines)
    return Kernel(kname, definition, ctx.call(kname, e, extra_arg), includes=(f"ait/{header}",))


def _split(shape, first: int, last: int, ctx):
    """(outer, n, inner) C expressions viewing `shape` as [prod(:first), prod(first:last), prod(last:)]."""
    return (ctx.dim(shapes.prod(shape[:first])), ctx.dim(shapes.prod(shape[first:last])),
            ctx.dim(shapes.prod(shape[last:])))


def _strides(shape) -> list:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc = acc * d
    return out[::-1]


# ---------------------------------------------------------------- reductions
REDUCTIONS = ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min")


def _adjacent(axes) -> bool:
    return not axes or list(axes) == list(range(axes[0], axes[-1] + 1))


@legalizer("cpu", *REDUCTIONS)
def legalize_reduce(e):
    """Reduced axes that are not adjacent: move them last (one transpose), then reduce."""
    axes, keepdims = e.params["axes"], e.params["keepdims"]
    if _adjacent(axes):
        return None
    x_shape = e.invars[0].aval.shape
    kept = [d for d in range(len(x_shape)) if d not in axes]

    def fn(x):
        y = e.prim.bind(transpose(x, kept + list(axes)), axes=tuple(range(len(kept), len(x_shape))),
                        keepdims=False)
        return reshape(y, e.outvars[0].aval.shape) if keepdims else y
    return fn


@lowering("cpu", *REDUCTIONS)
def lower_reduce(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    axes = e.params["axes"]
    first, last = (axes[0], axes[-1] + 1) if axes else (0, 0)
    o, n, i = _split(x.aval.shape, first, last, ctx)
    return _kernel(ctx, kname, e, [f"ait::{e.prim.name}<{ctx.storage(x)}, {ctx.storage(y)}>({ctx.name(x)}, "
                                   f"{ctx.name(y)}, {o}, {n}, {i});"], "reduce.h")


@lowering("cpu", "argmax", "softmax")
def lower_axis_op(ctx, e, kname):
    """One axis of x as the middle of an [outer, n, inner] view: argmax (reduce.h), softmax (norm.h)."""
    (x,), (y,) = e.invars, e.outvars
    ax = e.params["axis"]
    o, n, i = _split(x.aval.shape, ax, ax + 1, ctx)
    header = "reduce.h" if e.prim.name == "argmax" else "norm.h"
    return _kernel(ctx, kname, e, [f"ait::{e.prim.name}<{ctx.storage(x)}>({ctx.name(x)}, {ctx.name(y)}, "
                                   f"{o}, {n}, {i});"], header)


def _optional(ctx, e, names, start):
    """Pointers for optional operands (nullptr where absent), in `names` order."""
    it, out = iter(e.invars[start:]), []
    for flag in names:
        out.append(ctx.name(next(it)) if e.params[flag] else "nullptr")
    return out


@lowering("cpu", "layer_norm")
def lower_layer_norm(ctx, e, kname):
    x, (y,) = e.invars[0], e.outvars
    w, b = _optional(ctx, e, ("has_weight", "has_bias"), 1)
    wt = ctx.storage(e.invars[1]) if len(e.invars) > 1 else ctx.storage(x)
    rows, n = ctx.dim(shapes.prod(x.aval.shape[:-1])), ctx.dim(x.aval.shape[-1])
    return _kernel(ctx, kname, e, [f"ait::layer_norm<{ctx.storage(x)}, {wt}>({ctx.name(x)}, {w}, {b}, "
                                   f"{ctx.name(y)}, {rows}, {n}, {e.params['eps']!r}f);"], "norm.h")


@lowering("cpu", "batch_norm")
def lower_batch_norm(ctx, e, kname):
    x, mean, var = e.invars[:3]
    (y,) = e.outvars
    w, b = _optional(ctx, e, ("has_weight", "has_bias"), 3)
    rows, c = ctx.dim(shapes.prod(x.aval.shape[:-1])), ctx.dim(x.aval.shape[-1])
    return _kernel(ctx, kname, e, [f"ait::batch_norm<{ctx.storage(x)}, {ctx.storage(mean)}>({ctx.name(x)}, "
                                   f"{ctx.name(mean)}, {ctx.name(var)}, {w}, {b}, {ctx.name(y)}, {rows}, "
                                   f"{c}, {e.params['eps']!r}f);"], "norm.h")


# ---------------------------------------------------------------- pooling and convolution
@lowering("cpu", "max_pool2d", "avg_pool2d")
def lower_pool(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    N, H, W, C = map(ctx.dim, x.aval.shape)
    OH, OW = ctx.dim(y.aval.shape[1]), ctx.dim(y.aval.shape[2])
    (kh, kw), (sh, sw) = e.params["kernel_size"], e.params["stride"]
    pt, pl = e.params["padding"]
    extra = f", {'true' if e.params['count_include_pad'] else 'false'}" if e.prim.name == "avg_pool2d" else ""
    return _kernel(ctx, kname, e, [f"ait::{e.prim.name}<{ctx.storage(x)}>({ctx.name(x)}, {ctx.name(y)}, {N}, {H}, "
                                   f"{W}, {C}, {kh}, {kw}, {sh}, {sw}, {pt}, {pl}, {OH}, {OW}{extra});"], "pool.h")


@lowering("cpu", "conv2d", writes=rows_apart)
def lower_conv2d(ctx, e, kname):
    y = e.outvars[0]
    ldc = ctx.dim(rows_uniform(y.aval.shape, ctx.strides(y)))
    store = f"ait::StoreEpilogue<{ctx.storage(y)}>{{{ctx.name(y)}, 0, {ldc}}}"
    return conv2d_call(ctx, e, kname, e.params, store)


def conv2d_call(ctx, e, kname, params, epilogue: str) -> Kernel:
    """conv2d of e's first two operands; `epilogue` constructs the functor storing the result."""
    x, w = e.invars[:2]
    N, H, W, C = map(ctx.dim, x.aval.shape)
    O, KH, KW = map(ctx.dim, w.aval.shape[:3])
    (sh, sw), ((pt, pb), (pl, pr)) = params["stride"], params["padding"]
    dh, dw = params["dilation"]
    # a model constant keeps its address and values while the model lives: its Winograd
    # transform may be cached (ait/winograd.h)
    const_weight = "true" if w in ctx.graph.constvars else "false"
    conv = (f"{N}, {H}, {W}, {C}, {O}, {KH}, {KW}, {sh}, {sw}, {pt}, {pb}, {pl}, {pr}, {dh}, {dw}, "
            f"{params['groups']}")
    root = ctx.const_root(w)
    static = all(isinstance(d, int) for d in (*x.aval.shape, *w.aval.shape))
    if root is None or params["groups"] != 1 or not static:
        return _kernel(ctx, kname, e, [f"ait::conv2d_erased<{ctx.storage(x)}>({ctx.name(x)}, {ctx.name(w)}, {conv}, "
                                       f"{epilogue}, {const_weight});"], "precompiled.h")
    # a constant weight the GEMM paths read is packed once at create (null where the conv
    # takes another path, see ait::conv2d_takes_packed_weight); the original stays for those
    oh, ow = e.outvars[0].aval.shape[1:3]
    pack = ctx.render("pack_conv_weight.cpp.j2", kname=kname, t=ctx.storage(w), index=root[0],
                      offset=ctx.dim(root[1]), O=O, KH=KH, KW=KW, C=C,
                      path_args=f"{N}, {C}, {O}, {KH}, {KW}, {oh}, {ow}, {sh}, {sw}, {pt}, {pb}, {pl}, {pr}, {dh}, {dw}, 1")
    packed = ctx.prepare(f"{kname}_pack_w(m->consts)")
    k = _kernel(ctx, kname, e, [f"ait::conv2d_erased<{ctx.storage(x)}>({ctx.name(x)}, {ctx.name(w)}, {conv}, "
                                f"{epilogue}, {const_weight}, static_cast<const float*>(packed_w));"], "precompiled.h",
                "const void* packed_w", packed)
    k.definition = pack + k.definition
    return k


# ---------------------------------------------------------------- attention
@lowering("cpu", "attention", reads=attention_reads, writes=attention_writes)
def lower_attention(ctx, e, kname):
    """q/k/v/out through [B, H, S, D] element strides (D contiguous): head splits and merges
    planned as views by fuse_memory cost no copy."""
    args, mt = attention_args(ctx, e)
    return _kernel(ctx, kname, e, [f"ait::attention<{ctx.storage(e.invars[0])}, {mt}>({', '.join(args)});"],
                   "precompiled.h")


# ---------------------------------------------------------------- layout
def _copy(ctx, src: str, src_strides, dst: str, dst_strides, shape, t: str, tag: str) -> list[str]:
    nd = len(shape)
    if nd == 0:
        return [f"{dst}[0] = {src}[0];"]
    arr = lambda xs: ", ".join(ctx.dim(x) for x in xs)  # noqa: E731
    return [f"{{  // {tag}",
            f"  const int64_t shape[] = {{{arr(shape)}}}, ss[] = {{{arr(src_strides)}}}, ds[] = {{{arr(dst_strides)}}};",
            f"  ait::copy_strided<{t}>({src}, ss, {dst}, ds, shape, {nd});",
            "}"]


@lowering("cpu", "transpose", "broadcast_to", "slice", "flip", reads=any_view, writes=any_view)
def lower_copy(ctx, e, kname):
    """A layout op that fuse_memory did not turn into a view: one strided copy."""
    (x,), (y,) = e.invars, e.outvars
    src, ss = copy_source(ctx, e)
    return _kernel(ctx, kname, e, _copy(ctx, src, ss, ctx.name(y), ctx.strides(y), y.aval.shape, ctx.storage(x),
                                        e.prim.name), "layout.h")


@lowering("cpu", "reshape", reads=any_view)
def lower_reshape(ctx, e, kname):
    """A reshape of a strided view that no strides can express: the input in row-major order."""
    (x,), (y,) = e.invars, e.outvars
    xs = x.aval.shape
    return _kernel(ctx, kname, e, _copy(ctx, ctx.name(x), ctx.strides(x), ctx.name(y), _strides(xs), xs,
                                        ctx.storage(x), "reshape"), "layout.h")


@lowering("cpu", "concatenate", reads=any_view, writes=any_view)
def lower_concatenate(ctx, e, kname):
    """Copies the inputs that were not computed in place into their slots."""
    (y,), axis = e.outvars, e.params["axis"]
    lines, off = [], 0
    dst_st = ctx.strides(y)
    for x in e.invars:
        xs = x.aval.shape
        if ctx.view(x).root is not ctx.view(y).root:
            lines += _copy(ctx, ctx.name(x), ctx.strides(x), f"{ctx.name(y)} + {ctx.dim(off * dst_st[axis])}",
                           dst_st, xs, ctx.storage(y), f"input at offset {off} on axis {axis}")
        off = off + xs[axis]
    return _kernel(ctx, kname, e, lines, "layout.h")


@lowering("cpu", "pad")
def lower_pad(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    pw, t = e.params["pad_width"], ctx.storage(x)
    arr = lambda xs: ", ".join(ctx.dim(v) for v in xs) or "0"  # noqa: E731
    value = ctx.dialect.literal(e.params["value"], x.aval.dtype)
    return _kernel(ctx, kname, e, [
        f"const int64_t shape[] = {{{arr(x.aval.shape)}}}, lo[] = {{{arr([p[0] for p in pw])}}}, "
        f"hi[] = {{{arr([p[1] for p in pw])}}};",
        f"ait::pad_constant<{t}>({ctx.name(x)}, {ctx.name(y)}, shape, lo, hi, {x.aval.ndim}, "
        f"ait::store<{t}, {ctx.dialect.compute(x.aval.dtype)}>({value}));"], "layout.h")


@lowering("cpu", "conv2d_patches")
def lower_conv2d_patches(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    pr = e.params
    dims = [*x.aval.shape, *pr["kernel_size"], *y.aval.shape[1:3], *pr["stride"], pr["padding"][0][0],
            pr["padding"][1][0], *pr["dilation"]]
    return _kernel(ctx, kname, e, [f"ait::conv2d_patches<{ctx.storage(x)}>({ctx.name(x)}, {ctx.name(y)}, "
                                   f"{', '.join(ctx.dim(d) for d in dims)});"], "layout.h")


@lowering("cpu", "take")
def lower_take(ctx, e, kname):
    (t_, i_), (y,) = e.invars, e.outvars
    ax = e.params["axis"]
    o, n, inner = _split(t_.aval.shape, ax, ax + 1, ctx)
    return _kernel(ctx, kname, e, [f"ait::take<{ctx.storage(t_)}, {ctx.storage(i_)}>({ctx.name(t_)}, {ctx.name(i_)}, "
                                   f"{ctx.name(y)}, {o}, {n}, {inner}, {ctx.dim(i_.aval.size)});"], "layout.h")
