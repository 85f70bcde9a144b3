"""CUTLASS 3.x sm90a convolutions (implicit GEMM: TMA im2col loads + warp-specialized wgmma, built
with the conv CollectiveBuilder) for `conv2d` and `fused_gemm[base=conv2d]`, fprop, NHWC, with
the fused epilogue as the same epilogue visitor tree as the GEMMs of gemm.py (`_EVT`).

    conv_kernel(name, eqn, config) -> ConvKernel(name, definition, params, operands, ...)

`definition` is C++ for nvcc (gemm.NVCC_FLAGS): a namespace with the kernel types and one host
function `static cudaError_t <name>(...)` launching it on a stream, with these parameters:
  const void* activation, const void* filter, const void* x0, ..., void* D,
  int N, int H, int W, int C, int O, int KH, int KW, int P, int Q,
  int pad_top, int pad_bottom, int pad_left, int pad_right,
  int stride_h, int stride_w, int dilation_h, int dilation_w,
  int64_t ldd, int64_t ld_x<j> (for each y-shaped extra j, in order),
  bool pdl, cudaStream_t stream, void* workspace, size_t workspace_bytes
(pdl: a programmatic dependent launch of the kernel, wrapped to wait for its predecessor first)
activation [N, H, W, C] and filter [O, KH, KW, C] contiguous; D [N, P, Q, O] and the y-shaped
extras [N, P, Q, O] with row (pixel) strides ldd / ld_x<j>. The implicit GEMM has M = N*P*Q,
N = O, K = KH*KW*C. The function returns cudaErrorInvalidValue where CUTLASS cannot take the
sizes at run time (TMA im2col's limits on padding and filter extent, unaligned strides); the
caller then runs another kernel. `launch_dims` gives the int arguments for an eqn.

CUTLASS 3's sm90 convolution has one kernel schedule (KernelImplicitTmaWarpSpecializedSm90: one
producer and one consumer warp group, not persistent), so a config is a tile and a cluster.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...core import dtypes
from .gemm import (CUTLASS_TYPES, IN_DTYPES, OUT_DTYPES, _EVT, _env, _identity_epilogue, content_name,
                   epilogue_operands, epilogue_unsupported_reason)
from .profiler import SMS, ctas


@dataclass(frozen=True)
class ConvConfig:
    """CTA tile (M pixels, N output channels, K input channels per step) and cluster shape."""
    tile: tuple = (128, 128, 64)
    cluster: tuple = (1, 1, 1)

    @property
    def name(self) -> str:
        t, c = self.tile, self.cluster
        return f"conv_{t[0]}x{t[1]}x{t[2]}_c{c[0]}x{c[1]}x{c[2]}"

    def __str__(self):
        return self.name


CONFIGS = (ConvConfig((128, 128, 64)), ConvConfig((128, 64, 64)), ConvConfig((64, 64, 64)),
           ConvConfig((64, 32, 64)))


def default_config(pixels, out_channels) -> ConvConfig:
    """The largest tile of CONFIGS whose CTAs fill at least half the SMs, else the smallest:
    the kernel is not persistent and has no split-K, so at batch 1 (784 pixels x 128 channels: 7
    CTAs of 128x128) small tiles are the only way to spread the K loop over the GPU. 128x128 is
    skipped where O <= 64 (half of it would be padding); symbolic sizes take the big tiles."""
    if not isinstance(out_channels, int):
        return CONFIGS[0]
    big = CONFIGS[1:] if out_channels <= 64 else CONFIGS
    if not isinstance(pixels, int):
        return big[0]
    return next((c for c in big if ctas(pixels, out_channels, *c.tile[:2]) >= SMS // 2), CONFIGS[-1])


@dataclass
class ConvKernel:
    name: str                 # the host launch function
    definition: str           # C++ (CUDA) text
    params: list              # the launch function's parameters, "type name"
    operands: list            # gemm.Operand per extra operand, in parameter order
    config: ConvConfig
    evt: str = ""             # the EVT as a readable expression
    info: dict = field(default_factory=dict)

    def __iter__(self):       # `definition, name = conv_kernel(...)`
        return iter((self.definition, self.name))


def conv_params(eqn) -> dict:
    """stride, padding ((top, bottom), (left, right)), dilation, groups of a conv2d or
    fused_gemm[base=conv2d] eqn."""
    return dict(eqn.params["base_params"]) if eqn.prim.name == "fused_gemm" else dict(eqn.params)


def unsupported_reason(eqn) -> str | None:
    """None where conv_kernel can take the eqn, else why not (the backend then uses the direct
    kernel). Static C/O are checked for TMA's 16-byte alignment; symbolic ones at run time."""
    if eqn.prim.name == "fused_gemm":
        if eqn.params["base"] != "conv2d":
            return f"base {eqn.params['base']} (only conv2d)"
    elif eqn.prim.name != "conv2d":
        return f"primitive {eqn.prim.name}"
    x, w = eqn.invars[:2]
    (out,) = eqn.outvars
    p = conv_params(eqn)
    if p["groups"] != 1:
        return f"groups={p['groups']} (only 1)"
    if x.aval.dtype not in IN_DTYPES or w.aval.dtype != x.aval.dtype:
        return f"operand dtypes {x.aval.dtype}, {w.aval.dtype} (fp16/bf16 only)"
    if out.aval.dtype not in OUT_DTYPES:
        return f"output dtype {out.aval.dtype}"
    c, o = x.aval.shape[-1], w.aval.shape[0]
    if isinstance(c, int) and c % 8:
        return f"C={c} is not a multiple of 8 (16-byte TMA rows)"
    if isinstance(o, int) and o % 8:
        return f"O={o} is not a multiple of 8 (16-byte TMA rows)"
    if eqn.prim.name == "fused_gemm":
        return epilogue_unsupported_reason(eqn.params["epilogue"], out.aval.shape)
    return None


class _ConvEVT(_EVT):
    """gemm.py's EVT, but with y-shaped operands past the first (C) read by Sm90AuxLoad's direct
    (no TMA, Stages 0) form: its TMA form cannot take a convolution's problem shape (static L).
    It addresses the pixels as rows (M = N*P*Q, row stride ld_x<j>)."""

    def _leaf(self, v):
        i = self.leaf_index[v]
        if not i or self.ops[i - 1].node != "AuxLoad":
            return super()._leaf(v)
        j, t = self.ops[i - 1].index, CUTLASS_TYPES[self.ops[i - 1].dtype]
        name = f"EpiX{j}"
        self.leaf_types.setdefault(name, f"using {name} = fusion::Sm90AuxLoad<0, EpilogueTile, {t},\n"
                                         f"    cutlass::gemm::TagToStrideC_t<cutlass::layout::RowMajor>, void, void>;")
        stride = f"cute::make_stride(ld_x{j}, cute::Int<1>{{}}, int64_t(0))"
        return name, f"{{static_cast<{t} const*>(x{j}), {t}(0), {stride}}}"


def _pixel_stride(ld: str) -> str:
    return f"pixel_stride({ld}, Q, P)"


def conv_kernel(name: str, eqn, config: ConvConfig | None = None) -> ConvKernel:
    """The CUTLASS convolution and its host launch function `name` for a conv2d or
    fused_gemm[base=conv2d] eqn."""
    why = unsupported_reason(eqn)
    if why is not None:
        raise NotImplementedError(f"cuda conv: {why}")
    x, w = eqn.invars[:2]
    (out,) = eqn.outvars
    n, p, q = out.aval.shape[:3]
    pixels = n * p * q if all(isinstance(d, int) for d in (n, p, q)) else None
    config = config or default_config(pixels, w.aval.shape[0])
    if config.tile[0] not in (64, 128) or config.tile[1] % 16 or not 16 <= config.tile[1] <= 256:
        raise ValueError(f"bad tile in {config} (M 64 or 128, N a multiple of 16 up to 256)")
    tx, td = x.aval.dtype, out.aval.dtype
    graph = eqn.params["epilogue"] if eqn.prim.name == "fused_gemm" else _identity_epilogue(out)
    operands, element_c = epilogue_operands(graph, out.aval.shape)
    evt = _ConvEVT(graph, operands)
    root, evt_args, evt_desc = evt.build()
    src = next((o for o in operands if o.node == "SrcFetch"), None)

    params = ["const void* activation", "const void* filter", *[f"const void* x{o.index}" for o in operands],
              "void* D", *[f"int {d}" for d in ("N", "H", "W", "C", "O", "KH", "KW", "P", "Q", "pad_top",
                                                  "pad_bottom", "pad_left", "pad_right", "stride_h", "stride_w",
                                                  "dilation_h", "dilation_w")],
              "int64_t ldd", *[f"int64_t ld_x{o.index}" for o in operands if o.kind == "full"],
              "bool pdl", "cudaStream_t stream", "void* workspace", "size_t workspace_bytes"]
    s = dtypes.short_name
    summary = f"conv2d fprop {s(tx)}[N,H,W,C] * {s(tx)}[O,KH,KW,C] -> {s(td)}[N,P,Q,O]"
    definition = _env().get_template("conv_sm90.cu.j2").render(
        name=name, ns=f"{name}_cutlass", summary=summary, config=config.name, epilogue_desc=evt_desc,
        ta=CUTLASS_TYPES[tx], tb=CUTLASS_TYPES[w.aval.dtype], td=CUTLASS_TYPES[td],
        tc=CUTLASS_TYPES[element_c] if element_c is not None else "void",
        align_c="128 / cutlass::sizeof_bits<ElementC>::value" if element_c is not None else "AlignmentD",
        stride_c=_pixel_stride(f"ld_x{src.index}" if src else "ldd"),
        ptr_c=f"static_cast<ElementC const*>(x{src.index})" if src else "nullptr",
        a_bytes=tx.itemsize, tile=config.tile, cluster=config.cluster,
        functors=evt.functors, node_decls=list(evt.leaf_types.values()) + evt.decls, root=root,
        evt_args=evt_args, params=params)
    return ConvKernel(name, definition, params, operands, config, evt_desc,
                      info=dict(summary=summary, nodes=len(evt.decls), functors=len(evt.functors)))


def launch_dims(eqn, ldd=None) -> list:
    """The int arguments of the launch function, from N to ld_x<j> (ints or sympy expressions):
    the output's row stride `ldd` defaults to O (contiguous), the y-shaped extras are contiguous."""
    x, w = eqn.invars[:2]
    (out,) = eqn.outvars
    p = conv_params(eqn)
    (pt, pb), (pl, pr) = p["padding"]
    N, H, W, C = x.aval.shape
    O, KH, KW = w.aval.shape[:3]
    P, Q = out.aval.shape[1:3]
    n_full = 0
    if eqn.prim.name == "fused_gemm":
        n_full = sum(o.kind == "full" for o in epilogue_operands(eqn.params["epilogue"], out.aval.shape)[0])
    return [N, H, W, C, O, KH, KW, P, Q, pt, pb, pl, pr, *p["stride"], *p["dilation"],
            O if ldd is None else ldd, *[O] * n_full]


def cutlass_conv(ctx, e, kname=None):
    """(shared definition, launch expression) of the CUTLASS convolution for e in a lowering
    context, or None where it does not apply (not sm_90a, no CUTLASS headers, unsupported_reason).
    Identical kernels (same dtypes, epilogue structure, tile) are defined once per model."""
    from .gemm import cutlass_include_dir, cutlass_util_include_dir
    if ctx.dialect.arch != "sm_90a" or cutlass_include_dir() is None or cutlass_util_include_dir() is None:
        return None
    if unsupported_reason(e) is not None:
        return None
    return define_conv(ctx, e, conv_kernel, "cutlass_conv_")


def define_conv(ctx, e, make_kernel, prefix: str):
    """(definition, launch expression) of the kernel `make_kernel(name, e, config)` builds for e,
    named by its text's hash; the definition is empty where the model already has it."""
    from ...passes.fuse_memory import rows_uniform
    y = e.outvars[0]
    probe = make_kernel("k", e)
    name = content_name(prefix, probe.definition)
    defined = ctx.__dict__.setdefault("cutlass_defined", set())
    definition = "" if name in defined else make_kernel(name, e, probe.config).definition + "\n"
    defined.add(name)
    ptrs = [ctx.name(v) for v in e.invars] + [ctx.name(y)]
    dims = [ctx.dim(d) for d in launch_dims(e, rows_uniform(y.aval.shape, ctx.strides(y)))]
    # every thread of the sm90 kernel waits first (conv_sm90.cu.j2), so any epilogue operand is safe
    pdl = ["ait::gpu::pdl_enabled()"] if "bool pdl" in probe.params else []
    return definition, f"{name}({', '.join(ptrs + dims + pdl + ['stream', 'nullptr', '0'])})"
