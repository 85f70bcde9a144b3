"""CUDA lowering of the GEMM family and convolution: matmul (batched, broadcasting, strided
operands), conv2d (NHWC) and fused_gemm (either with an elementwise epilogue). fp16/bf16 GEMMs
whose shapes CUTLASS takes go through the sm90 CUTLASS kernels of gemm.py (where its headers are
installed and the target is sm_90a); everything else, and a CUTLASS launch that refuses its
sizes at run time (unaligned dynamic dims), through the SIMT kernels of ait/cuda_ops.h with the
epilogue as a generated device functor."""
from __future__ import annotations

from ...core import shapes
from ...passes.fuse_memory import rows_uniform
from ..cpu.elementwise import statements
from ..lowering import Kernel, gemm_launch, gemm_reads, lowering, rows_apart


def epilogue_functor(ctx, kname: str, e):
    """(struct definition, constructor taking row0 and M) of a fused_gemm's epilogue, on the device."""
    g = e.params["epilogue"]
    y, extra = g.invars[0], g.invars[1:]
    (out,) = e.outvars
    locals_ = {y: "acc"}
    body, members = [], []
    for j, v in enumerate(extra):
        full = v.aval.shape == out.aval.shape
        idx = "row * N + j" if full else ("j" if v.aval.shape and v.aval.shape[-1] != 1 else "0")
        members.append(f"const {ctx.storage(v)}* p{j};")
        locals_[v] = f"a{j}"
        body.append(f"const {ctx.compute(v)} a{j} = ait::gpu::load<{ctx.compute(v)}>(p{j}[{idx}]);")
    body += statements(ctx, g.eqns, locals_)
    body.append(f"out[row * ldo + j] = ait::gpu::store<{ctx.storage(out)}, {ctx.compute(out)}>({locals_[g.outvars[0]]});")
    ops = " -> ".join(se.prim.name for se in g.eqns)
    lines = "\n".join(f"    {b}" for b in body)
    struct = (f"// GEMM epilogue of {kname}: {ops}, per output element\n"
              f"struct {kname}_epilogue {{\n  {ctx.storage(out)}* out;\n"
              + "".join(f"  {m}\n" for m in members)
              + "  int64_t N, ldo, row0, M;\n"
              "  __device__ __forceinline__ void operator()(int64_t b, int64_t i, int64_t j, float acc) const {\n"
              "    const int64_t row = row0 + b * M + i;\n"
              f"{lines}\n  }}\n}};\n\n")
    ptrs = ", ".join([ctx.name(out)] + [ctx.name(v) for v in e.invars[2:]])
    ldo = ctx.dim(rows_uniform(out.aval.shape, ctx.strides(out)))
    n_cols = ctx.dim(out.aval.shape[-1])
    return struct, lambda row0, M: f"{kname}_epilogue{{{ptrs}, {n_cols}, {ldo}, {row0}, {M}}}"


def pdl_arg(ctx, e, waits: bool) -> str:
    """The `pdl` argument of an sm90 GEMM launch: a programmatic dependent launch (unless
    AITRACE_PDL=0 turns PDL off, ait/cuda.h) when the kernel `waits` for its predecessor (only
    data-parallel configs are built to, gemm.py) and no row or scalar epilogue operand, which the
    consumer warps read without that wait, is computed at run time."""
    from .gemm import operand_kind
    shape = e.outvars[0].aval.shape
    if not waits or any(
            operand_kind(v, shape) != "full" and ctx.const_root(v) is None for v in e.invars[2:]):
        return "false"
    return "ait::gpu::pdl_enabled()"


def _cutlass(ctx, e, kname):
    """(shared definition, launch expression) of the CUTLASS kernel for e, or None where it does
    not apply: CUTLASS 3 sm90a kernels (gemm.py) on sm_90a, CUTLASS 2.x sm80 ones (gemm_sm80.py)
    on sm_8x. Identical kernels (same dtypes, layout, epilogue structure) are defined once."""
    from . import gemm, gemm_sm80
    from .gemm import cutlass_include_dir, gemm_geometry, named_kernel
    from .profiler import gemm_choices
    arch = ctx.dialect.arch
    kernels = gemm if arch == "sm_90a" else gemm_sm80 if gemm_sm80.supports(arch) else None
    if kernels is None or cutlass_include_dir() is None:
        return None
    gemm_kernel = kernels.gemm_kernel
    if e.prim.name == "fused_gemm" and e.params["base"] != "matmul" or kernels.unsupported_reason(e) is not None:
        return None
    geo = gemm_geometry(e, ctx.strides)
    if geo is None:
        return None
    # sm90: the profiled (or remembered, or heuristic) config, one per rows bucket when dynamic
    choices = gemm_choices(e, geo, arch, ctx.symbols) if kernels is gemm else [(None, None)]
    defined = ctx.__dict__.setdefault("cutlass_defined", set())
    definition, names = "", []
    for _, config in choices:
        k = named_kernel(gemm_kernel, e, config, geo.b_major)
        if k.name not in defined:
            definition += k.definition + "\n"
            defined.add(k.name)
        names.append(k.name)
    ptrs = [ctx.name(a) for a in e.invars[:2]] + [ctx.name(v) for v in e.invars[2:]] + [ctx.name(e.outvars[0])]
    dims = [ctx.dim(d) for d in geo.args()]
    sm90 = kernels is gemm  # (its launch also answers workspace queries)

    def call(name, config):
        pdl = [pdl_arg(ctx, e, (config or gemm.DEFAULT_CONFIG).decomposition == "dp")] if sm90 else []
        return f"{name}({', '.join(ptrs + dims + pdl + tail)})"
    tail = ["stream", "workspace", "workspace_bytes"] + (["nullptr"] if sm90 else [])
    launch = call(names[-1], choices[-1][1])
    rows = ctx.dim(shapes.prod([geo.M, geo.batch]))
    for (bound, config), name in reversed(list(zip(choices[:-1], names[:-1]))):
        launch = launch if launch.startswith(name + "(") else f"({rows} <= {bound} ? {call(name, config)} : {launch})"
    # the workspace of stream-K / split-K configs, asked of the kernel before the run
    queries = [f"{name}({', '.join(['nullptr'] * len(ptrs) + dims)}, false, nullptr, nullptr, 0, &need)"
               for (_, config), name in zip(choices, names) if config is not None and config.needs_workspace]
    ctx.workspace_queries.extend(q for q in queries if q not in ctx.workspace_queries)
    return definition, launch


def _cutlass_first(ctx, e, kname, cutlass=None):
    """(definition, lines) that try the CUTLASS kernel (`cutlass(ctx, e, kname)`, default the
    GEMM's) first and return when it ran; the SIMT lines after them run where CUTLASS refuses
    the sizes (cudaErrorInvalidValue)."""
    c = (cutlass or _cutlass)(ctx, e, kname)
    if c is None:
        return "", []
    definition, launch = c
    return definition, [f"const cudaError_t cutlass_status = {launch};",
                        "if (cutlass_status == cudaSuccess) return;",
                        "if (cutlass_status != cudaErrorInvalidValue)  // else: sizes CUTLASS does not take",
                        f"  throw std::runtime_error(std::string(\"{kname} (CUTLASS): \") + cudaGetErrorString(cutlass_status));"]


def _kernel(ctx, kname, e, lines, prefix="") -> Kernel:
    body = "".join(f"  {line}\n" for line in lines)
    definition = f"{prefix}{ctx.signature(kname, e)} {{\n{ctx.symbol_preamble()}{body}}}\n"
    return Kernel(kname, definition, ctx.call(kname, e) + f"\n    AIT_LAUNCHED(\"{kname}\");",
                  includes=("ait/cuda_ops.h",))  # (a CUTLASS kernel includes its headers in its own unit)


@lowering("cuda", "matmul", reads=gemm_reads, writes=rows_apart)
def lower_matmul(ctx, e, kname: str) -> Kernel:
    definition, first = _cutlass_first(ctx, e, kname)
    return simt_matmul(ctx, e, kname, prefix=definition, first_lines=first)


def simt_matmul(ctx, e, kname: str, epilogue=None, prefix: str = "", first_lines=()) -> Kernel:
    a, b = e.invars[:2]
    (c,) = e.outvars
    g = gemm_launch(ctx, e)
    lines = [*first_lines,
             f"const int64_t M = {g['M']}, N = {g['N']}, K = {g['K']}, ldc = {g['ldc']}, inner_batch = {g['inner_batch']};",
             "(void)ldc;",
             f"for (int64_t o = 0; o < {g['outer']}; ++o) {{", "  int64_t r = o; (void)r;"]
    for d in g["outer_dims"]:
        lines.append(f"  const int64_t x{d['axis']} = r % {d['size']}; r /= {d['size']};")
    epi = epilogue("o * inner_batch * M", "M") if epilogue else \
        f"ait::gpu::StoreEpi<{ctx.storage(c)}>{{{ctx.name(c)} + o * inner_batch * M * ldc, M * ldc, ldc}}"
    lines += [f"  ait::gpu::gemm_simt(inner_batch, M, N, K, {ctx.name(a)} + {g['a_offset']}, "
              f"{g['a_bs']}, {g['a_rs']}, {g['a_cs']}, {ctx.name(b)} + {g['b_offset']}, "
              f"{g['b_bs']}, {g['b_rs']}, {g['b_cs']}, {epi}, stream);", "}"]
    return _kernel(ctx, kname, e, lines, prefix)


def conv2d_call(ctx, e, kname, params, epilogue: str, prefix: str = "") -> Kernel:
    """The direct conv2d kernel, after the CUTLASS convolution where it applies: conv.py's sm90a
    one, or conv_sm80.py's CUTLASS 2.x one on sm_8x."""
    from . import conv, conv_sm80, gemm_sm80
    cutlass_conv = conv_sm80.cutlass_conv if gemm_sm80.supports(ctx.dialect.arch) else conv.cutlass_conv
    definition, first = _cutlass_first(ctx, e, kname, cutlass=cutlass_conv)
    x, w = e.invars[:2]
    N, H, W, C = map(ctx.dim, x.aval.shape)
    O, KH, KW = map(ctx.dim, w.aval.shape[:3])
    (sh, sw), ((pt, pb), (pl, pr)) = params["stride"], params["padding"]
    dh, dw = params["dilation"]
    return _kernel(ctx, kname, e, [*first, f"ait::gpu::conv2d({ctx.name(x)}, {ctx.name(w)}, {N}, {H}, {W}, {C}, {O}, {KH}, {KW}, "
                                   f"{sh}, {sw}, {pt}, {pb}, {pl}, {pr}, {dh}, {dw}, {params['groups']}, {epilogue}, stream);"],
                   definition + prefix)


@lowering("cuda", "conv2d", writes=rows_apart)
def lower_conv2d(ctx, e, kname):
    y = e.outvars[0]
    ldc = ctx.dim(rows_uniform(y.aval.shape, ctx.strides(y)))
    return conv2d_call(ctx, e, kname, e.params, f"ait::gpu::StoreEpi<{ctx.storage(y)}>{{{ctx.name(y)}, 0, {ldc}}}")


@lowering("cuda", "fused_gemm", reads=gemm_reads, writes=rows_apart)
def lower_fused_gemm(ctx, e, kname: str) -> Kernel:
    struct, make = epilogue_functor(ctx, kname, e)
    if e.params["base"] == "conv2d":
        return conv2d_call(ctx, e, kname, dict(e.params["base_params"]), make("0", "0"), prefix=struct)
    definition, first = _cutlass_first(ctx, e, kname)
    return simt_matmul(ctx, e, kname, epilogue=make, prefix=definition + struct, first_lines=first)
