"""CUDA lowerings that launch the shared kernels of include/ait/cuda.h and cuda_ops.h: layout
copies, reductions, argmax, softmax, layer norm, pooling, gather, pad, conv patches, batch norm.
Each computes sizes and strides on the host and launches once. (Attention: attention.py.)"""
from __future__ import annotations

from ...core import shapes
from ..cpu.calls import REDUCTIONS, _split, _strides, legalize_reduce
from ..lowering import Kernel, any_view, copy_source, legalizer, lowering

legalizer("cuda", *REDUCTIONS)(legalize_reduce)  # non-adjacent axes: one transpose first, as on the cpu


def _kernel(ctx, kname, e, lines) -> Kernel:
    body = "".join(f"  {line}\n" for line in lines)
    definition = (f"{ctx.signature(kname, e)} {{\n{ctx.symbol_preamble()}{body}}}\n")
    return Kernel(kname, definition, ctx.call(kname, e) + f"\n    AIT_LAUNCHED(\"{kname}\");")


def _copy(ctx, src, ss, dst, ds, shape, t) -> list[str]:
    if not shape:
        return [f"cudaMemcpyAsync({dst}, {src}, sizeof({t}), cudaMemcpyDeviceToDevice, stream);"]
    arr = lambda xs: ", ".join(ctx.dim(x) for x in xs)  # noqa: E731
    return ["{",
            f"  const int64_t shape[] = {{{arr(shape)}}}, ss[] = {{{arr(ss)}}}, ds[] = {{{arr(ds)}}};",
            f"  ait::gpu::copy_strided<{t}>({src}, ss, {dst}, ds, shape, {len(shape)}, stream);",
            "}"]


@lowering("cuda", "transpose", "broadcast_to", "slice", "flip", reads=any_view, writes=any_view)
def lower_copy(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    src, ss = copy_source(ctx, e)
    return _kernel(ctx, kname, e, _copy(ctx, src, ss, ctx.name(y), ctx.strides(y), y.aval.shape, ctx.storage(x)))


@lowering("cuda", "reshape", reads=any_view)
def lower_reshape(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    return _kernel(ctx, kname, e, _copy(ctx, ctx.name(x), ctx.strides(x), ctx.name(y), _strides(x.aval.shape),
                                        x.aval.shape, ctx.storage(x)))


@lowering("cuda", "concatenate", reads=any_view, writes=any_view)
def lower_concatenate(ctx, e, kname):
    (y,), axis = e.outvars, e.params["axis"]
    lines, off, dst_st = [], 0, ctx.strides(y)
    for x in e.invars:
        if ctx.view(x).root is not ctx.view(y).root:
            lines += _copy(ctx, ctx.name(x), ctx.strides(x), f"{ctx.name(y)} + {ctx.dim(off * dst_st[axis])}",
                           dst_st, x.aval.shape, ctx.storage(y))
        off = off + x.aval.shape[axis]
    return _kernel(ctx, kname, e, lines)


@lowering("cuda", *REDUCTIONS)
def lower_reduce(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    axes = e.params["axes"]
    first, last = (axes[0], axes[-1] + 1) if axes else (0, 0)
    o, n, i = _split(x.aval.shape, first, last, ctx)
    op = REDUCTIONS.index(e.prim.name)
    return _kernel(ctx, kname, e, [f"ait::gpu::reduce<{ctx.storage(x)}, {ctx.storage(y)}>({ctx.name(x)}, "
                                   f"{ctx.name(y)}, {o}, {n}, {i}, {op}, stream);"])


@lowering("cuda", "argmax")
def lower_argmax(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    ax = e.params["axis"]
    o, n, i = _split(x.aval.shape, ax, ax + 1, ctx)
    return _ops_kernel(ctx, kname, e, [f"ait::gpu::argmax<{ctx.storage(x)}>({ctx.name(x)}, {ctx.name(y)}, "
                                       f"{o}, {n}, {i}, stream);"])


def rows_vectorizable(n: str, pointers: list[str]) -> str:
    """The host condition of a row kernel's 16-byte vector path (see ait/cuda_ops.h)."""
    return f"ait::gpu::rows_vectorizable({n}, {{{', '.join(pointers)}}})"


@lowering("cuda", "softmax")
def lower_softmax(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    ax = e.params["axis"]
    if ax != x.aval.ndim - 1:  # a non-last axis: a thread walks each column of it
        o, n, i = _split(x.aval.shape, ax, ax + 1, ctx)
        return _ops_kernel(ctx, kname, e, [f"ait::gpu::softmax_axis<{ctx.storage(x)}>({ctx.name(x)}, {ctx.name(y)}, "
                                           f"{o}, {n}, {i}, stream);"])
    rows, n, t = ctx.dim(shapes.prod(x.aval.shape[:-1])), ctx.dim(x.aval.shape[-1]), ctx.storage(x)
    vec = rows_vectorizable(n, [ctx.name(x), ctx.name(y)])
    return _ops_kernel(ctx, kname, e, [f"ait::gpu::softmax_rows(ait::gpu::PlainRow<{t}>{{{ctx.name(x)}, {n}}}, "
                                       f"{ctx.name(y)}, {rows}, {n}, {vec}, stream);"])



def layer_norm_affine(ctx, params, x, affine) -> tuple[str, str, str, str]:
    """(weight type, weight pointer, bias pointer, preload) of a layer norm of x whose weight and
    bias (as params has them) are the operands `affine`; nullptr where absent. preload ("true" or
    "false"): both are constants, so the kernel may read them before waiting on the one before."""
    it = iter(affine)
    w = ctx.name(next(it)) if params["has_weight"] else "nullptr"
    b = ctx.name(next(it)) if params["has_bias"] else "nullptr"
    wt = ctx.storage(affine[0]) if affine else ctx.storage(x)
    preload = "true" if all(ctx.const_root(v) is not None for v in affine) else "false"
    return wt, f"static_cast<const {wt}*>({w})", f"static_cast<const {wt}*>({b})", preload


@lowering("cuda", "layer_norm")
def lower_layer_norm(ctx, e, kname):
    x, (y,) = e.invars[0], e.outvars
    wt, w, b, preload = layer_norm_affine(ctx, e.params, x, e.invars[1:])
    rows, n, t = ctx.dim(shapes.prod(x.aval.shape[:-1])), ctx.dim(x.aval.shape[-1]), ctx.storage(x)
    vec = rows_vectorizable(n, [ctx.name(x), ctx.name(y)])
    return _ops_kernel(ctx, kname, e, [f"ait::gpu::layer_norm_rows<{t}, {wt}>(ait::gpu::PlainRow<{t}>"
                                       f"{{{ctx.name(x)}, {n}}}, {w}, {b}, {ctx.name(y)}, {rows}, {n}, "
                                       f"{e.params['eps']!r}f, {vec}, stream, {preload});"])


def _ops_kernel(ctx, kname, e, lines) -> Kernel:
    k = _kernel(ctx, kname, e, lines)
    k.includes = ("ait/cuda_ops.h",)
    return k


@lowering("cuda", "max_pool2d", "avg_pool2d")
def lower_pool(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    N, H, W, C = map(ctx.dim, x.aval.shape)
    OH, OW = ctx.dim(y.aval.shape[1]), ctx.dim(y.aval.shape[2])
    (kh, kw), (sh, sw) = e.params["kernel_size"], e.params["stride"]
    pt, pl = e.params["padding"]
    is_max = int(e.prim.name == "max_pool2d")
    cip = "true" if e.params.get("count_include_pad", False) else "false"
    return _ops_kernel(ctx, kname, e, [f"ait::gpu::pool2d<{ctx.storage(x)}>({ctx.name(x)}, {ctx.name(y)}, {N}, {H}, {W}, "
                                       f"{C}, {kh}, {kw}, {sh}, {sw}, {pt}, {pl}, {OH}, {OW}, {is_max}, {cip}, stream);"])


@lowering("cuda", "take")
def lower_take(ctx, e, kname):
    (t_, i_), (y,) = e.invars, e.outvars
    ax = e.params["axis"]
    o, n, inner = _split(t_.aval.shape, ax, ax + 1, ctx)
    return _ops_kernel(ctx, kname, e, [f"ait::gpu::take<{ctx.storage(t_)}, {ctx.storage(i_)}>({ctx.name(t_)}, "
                                       f"{ctx.name(i_)}, {ctx.name(y)}, {o}, {n}, {inner}, {ctx.dim(i_.aval.size)}, stream);"])


@lowering("cuda", "pad", reads=any_view)  # (an NCHW -> NHWC transpose before a stem's pad: no copy)
def lower_pad(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    pw, t = e.params["pad_width"], ctx.storage(x)
    arr = lambda xs: ", ".join(ctx.dim(v) for v in xs) or "0"  # noqa: E731
    value = ctx.dialect.literal(e.params["value"], x.aval.dtype)
    return _ops_kernel(ctx, kname, e, [
        f"const int64_t shape[] = {{{arr(x.aval.shape)}}}, strides[] = {{{arr(ctx.strides(x))}}}, "
        f"lo[] = {{{arr([p[0] for p in pw])}}}, hi[] = {{{arr([p[1] for p in pw])}}};",
        f"ait::gpu::pad_constant<{t}>({ctx.name(x)}, strides, {ctx.name(y)}, shape, lo, hi, {x.aval.ndim}, "
        f"{t}({value}), stream);"])


@lowering("cuda", "conv2d_patches", reads=any_view)  # (an NCHW -> NHWC transpose before a stem: no copy)
def lower_conv2d_patches(ctx, e, kname):
    (x,), (y,) = e.invars, e.outvars
    pr = e.params
    geo = [*x.aval.shape[1:], *pr["kernel_size"], *y.aval.shape[1:3], *pr["stride"], pr["padding"][0][0],
           pr["padding"][1][0], *pr["dilation"]]
    return _ops_kernel(ctx, kname, e, [
        f"ait::gpu::conv2d_patches<{ctx.storage(x)}>({ctx.name(x)}, {ctx.name(y)}, {ctx.dim(x.aval.shape[0])}, "
        f"ait::gpu::PatchGeometry{{{', '.join(ctx.dim(d) for d in geo)}, "
        f"{{{', '.join(ctx.dim(d) for d in ctx.strides(x))}}}}}, stream);"])


@lowering("cuda", "batch_norm")
def lower_batch_norm(ctx, e, kname):
    x, mean, var = e.invars[:3]
    (y,) = e.outvars
    it = iter(e.invars[3:])
    w = ctx.name(next(it)) if e.params["has_weight"] else "nullptr"
    b = ctx.name(next(it)) if e.params["has_bias"] else "nullptr"
    p = ctx.storage(mean)
    rows, c = ctx.dim(shapes.prod(x.aval.shape[:-1])), ctx.dim(x.aval.shape[-1])
    return _ops_kernel(ctx, kname, e, [f"ait::gpu::batch_norm<{ctx.storage(x)}, {p}>({ctx.name(x)}, {ctx.name(mean)}, "
                                       f"{ctx.name(var)}, static_cast<const {p}*>({w}), static_cast<const {p}*>({b}), "
                                       f"{ctx.name(y)}, {rows}, {c}, {e.params['eps']!r}f, stream);"])
