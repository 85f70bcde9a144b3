"""CUTLASS 2.x sm80 implicit-GEMM convolutions (optimized im2col iterators, mma.sync, cp.async
multistage) for `conv2d` and `fused_gemm[base=conv2d]` on Ampere and Ada (gemm_sm80.ARCHS; the
compute_80 PTX also runs on Hopper), fprop, NHWC, groups 1, with the fused epilogue as the sm80
epilogue visitor tree of gemm_sm80.py.

    conv_kernel(name, eqn, config=None) -> conv.ConvKernel

The contract (launch parameters, `launch_dims`, `unsupported_reason`, cudaErrorInvalidValue where
the sizes are refused at run time so that the direct kernel runs) is conv.py's. CUTLASS 4.2 has
no conv kernel taking a visitor epilogue, so ait/cutlass_sm80.h's Conv2dFpropWithVisitor runs
DefaultConv2dFprop's main loop and then EpilogueWithVisitorCallbacks over the output as an
[N*P*Q, O] matrix: any epilogue the GEMMs take (bias, activations, residuals...) fuses here too.
Every y-shaped extra operand is a VisitorAuxLoad (rows = pixels, row stride ld_x<j>).
"""
from __future__ import annotations

from ...core import dtypes
from . import gemm_sm80
from .conv import ConvKernel, unsupported_reason
from .gemm import CUTLASS_TYPES, _env
from .gemm_sm80 import Sm80Config, _check, epilogue_evt

# 128x128 tiles as the GEMMs' default; 128x64 where O <= 64 (half a 128-wide tile would be padding)
CONFIGS = (Sm80Config((128, 128, 32), (64, 64, 32), 4), Sm80Config((128, 64, 32), (64, 32, 32), 4))


def default_config(out_channels) -> Sm80Config:
    return CONFIGS[1] if isinstance(out_channels, int) and out_channels <= 64 else CONFIGS[0]


def conv_kernel(name: str, eqn, config: Sm80Config | None = None) -> ConvKernel:
    """The CUTLASS 2.x convolution and its host launch function `name` for a conv2d or
    fused_gemm[base=conv2d] eqn."""
    why = unsupported_reason(eqn)
    if why is not None:
        raise NotImplementedError(f"cuda conv (sm80): {why}")
    x, w = eqn.invars[:2]
    (out,) = eqn.outvars
    config = config or default_config(w.aval.shape[0])
    tx, td = x.aval.dtype, out.aval.dtype
    operands, evt, (root, evt_args, evt_desc) = epilogue_evt(eqn, config)
    full = [o.index for o in operands if o.kind == "full"]

    params = ["const void* activation", "const void* filter", *[f"const void* x{o.index}" for o in operands],
              "void* D", *[f"int {d}" for d in ("N", "H", "W", "C", "O", "KH", "KW", "P", "Q", "pad_top",
                                                  "pad_bottom", "pad_left", "pad_right", "stride_h", "stride_w",
                                                  "dilation_h", "dilation_w")],
              "int64_t ldd", *[f"int64_t ld_x{j}" for j in full],
              "cudaStream_t stream", "void* workspace", "size_t workspace_bytes"]
    s = dtypes.short_name
    summary = f"conv2d fprop {s(tx)}[N,H,W,C] * {s(tx)}[O,KH,KW,C] -> {s(td)}[N,P,Q,O]"
    checks = [_check(o).replace(f"batch_stride_x{o.index}", "0") for o in operands if o.kind != "scalar"]
    definition = _env().get_template("conv_sm80.cu.j2").render(
        name=name, ns=f"{name}_cutlass", summary=summary, config=config, epilogue_desc=evt_desc,
        element_a=CUTLASS_TYPES[tx], element_b=CUTLASS_TYPES[w.aval.dtype], element_d=CUTLASS_TYPES[td],
        align_ab=16 // tx.itemsize, align_d=16 // td.itemsize,
        functors=evt.functors, node_decls=list(evt.leaf_types.values()) + evt.decls, root=root,
        evt_args=evt_args, checks=checks, full_operands=full, params=params)
    return ConvKernel(name, definition, params, operands, config, evt_desc,
                      info=dict(summary=summary, nodes=len(evt.decls), functors=len(evt.functors)))


def cutlass_conv(ctx, e, kname=None):
    """(shared definition, launch expression) of the CUTLASS 2.x convolution for e in a lowering
    context, or None where it does not apply (not an sm_8x target, no CUTLASS headers,
    unsupported_reason). Identical kernels are defined once per model."""
    from .conv import define_conv
    from .gemm import cutlass_include_dir
    if not gemm_sm80.supports(ctx.dialect.arch) or cutlass_include_dir() is None:
        return None
    if unsupported_reason(e) is not None:
        return None
    return define_conv(ctx, e, conv_kernel, "cutlass_conv_sm80_")
