"""CUTLASS 2.x sm80 GEMMs (mma.sync tensor cores, cp.async multistage main loop) for `matmul` and
`fused_gemm[base=matmul]` on Ampere and Ada (sm_80, sm_86, sm_89; the compute_80 PTX also runs on
Hopper), their epilogues as CUTLASS's sm80 epilogue visitor trees.

    gemm_kernel(name, eqn, config=None, b_major="n") -> gemm.GemmKernel

The contract is gemm.py's: the same launch parameters (see its docstring; `gemm_geometry`
computes them), the same host function `static cudaError_t <name>(...)` returning
cudaErrorInvalidValue where the kernel cannot take the sizes, the same shapes and dtypes taken
(`unsupported_reason`). The workspace is unused (batched mode; no split-k). Differences:
  * the kernel is cutlass::gemm::kernel::DefaultGemmWithVisitor (GemmUniversal's main loop with an
    epilogue that walks the output tile through the visitor tree), run in batched mode (L = batch);
  * every y-shaped extra operand is a VisitorAuxLoad (no C operand); row broadcasts are
    VisitorRowBroadcast, one-element operands VisitorScalarBroadcast, and D is written by the
    tree's root, a VisitorAuxStore;
  * its prelude is include/ait/cutlass_sm80.h (CUTLASS's headers, the activations, the
    alignment check), which the kernel's translation unit includes.
The EVT's structure and functors (tree or one fused node for a DAG) are gemm.py's, built by the
same walk over the epilogue graph with sm80 node types.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...core import dtypes
from .gemm import CUTLASS_TYPES, _EVT, GemmKernel, Operand, _env, _identity_epilogue, operand_kind
from .gemm import unsupported_reason as _unsupported_sm90

ARCHS = ("sm_80", "sm_86", "sm_87", "sm_89")  # targets these kernels compile for


@dataclass(frozen=True)
class Sm80Config:
    """CTA tile (M, N, K), warp tile, main-loop stages and the CTA swizzle (log2 of the group
    of CTAs walked column-wise, for L2 reuse). The instruction is mma.sync m16n8k16."""
    tile: tuple = (128, 128, 32)
    warp: tuple = (64, 64, 32)
    stages: int = 4
    swizzle: int = 8

    @property
    def name(self) -> str:
        t, w = self.tile, self.warp
        return f"{t[0]}x{t[1]}x{t[2]}_w{w[0]}x{w[1]}x{w[2]}_s{self.stages}"

    def __str__(self):
        return self.name


# Candidates for the profiler; the first is the default. Shared memory per CTA stays within
# sm_86/sm_89's 100 KB (A100 has 164 KB).
CONFIGS = (
    Sm80Config((128, 128, 32), (64, 64, 32), 4),
    Sm80Config((128, 256, 32), (64, 64, 32), 3),
    Sm80Config((64, 128, 32), (32, 64, 32), 5),
    Sm80Config((64, 64, 32), (32, 32, 32), 6),
)
DEFAULT_CONFIG = CONFIGS[0]


def supports(arch: str) -> bool:
    return arch in ARCHS


def unsupported_reason(eqn) -> str | None:
    """None where gemm_kernel takes the eqn: the sm90 kernels' rule (fp16/bf16 operands, K and N
    multiples of 8 where static, elementwise epilogues), which is also cp.async's 16 bytes."""
    return _unsupported_sm90(eqn)


class _Sm80EVT(_EVT):
    """gemm.py's EVT walk with the sm80 visitor nodes (cutlass::epilogue::threadblock)."""

    def _leaf(self, v) -> tuple[str, str]:
        i = self.leaf_index[v]
        if i == 0:
            self.leaf_types.setdefault("EpiAcc", "using EpiAcc = tb::VisitorAccFetch;")
            return "EpiAcc", "{}"
        op = self.ops[i - 1]
        j, t = op.index, CUTLASS_TYPES[op.dtype]
        name, ptr = f"EpiX{j}", f"static_cast<{t} const*>(x{j})"
        if op.node == "AuxLoad":
            decl = f"using {name} = tb::VisitorAuxLoad<OutputTileThreadMap, {t}, StrideMNL>;"
            arg = f"{{const_cast<{t}*>({ptr}), {t}(0), {{ld_x{j}, cute::_1{{}}, batch_stride_x{j}}}}}"
        elif op.node == "RowBroadcast":
            decl = (f"using {name} = tb::VisitorRowBroadcast<OutputTileThreadMap, {t},\n"
                    f"    cute::Stride<cute::_0, cute::_1, cute::_0>>;")
            arg = f"{{{ptr}, {t}(0), {{}}}}"
        else:  # ScalarBroadcast
            decl = f"using {name} = tb::VisitorScalarBroadcast<{t}, cute::Stride<cute::_0, cute::_0, cute::_0>>;"
            arg = f"{{{{{t}(0)}}, {{{ptr}}}, {{}}}}"
        self.leaf_types.setdefault(name, decl)
        return name, arg

    def _compute(self, fn, out_type, children) -> tuple[str, str]:
        name = f"EpiN{len(self.decls)}"
        types, args = zip(*[(c[0], c[1]) for c in children])
        self.decls.append(f"using {name} = tb::Sm80EVT<tb::VisitorCompute<{fn}, {out_type}, ElementCompute, RN>,\n"
                          f"    {', '.join(types)}>;")
        return name, "{" + ", ".join([*args, "{}"]) + "}"


def _check(o: Operand) -> str:
    """The C++ alignment check of an extra operand (loaded AlignmentD elements at a time)."""
    t = CUTLASS_TYPES[o.dtype]
    if o.kind == "full":
        return f"!ait_cuda_gemm::aligned<{t}>(x{o.index}, AlignmentD, ld_x{o.index}, batch_stride_x{o.index})"
    return f"!ait_cuda_gemm::aligned<{t}>(x{o.index}, AlignmentD, 0, 0)"


def epilogue_evt(eqn, config) -> tuple:
    """(operands, the _Sm80EVT, its (root, args, description)) of a fused_gemm's epilogue (a
    plain store for a bare op), after checking that config's warp tile divides its CTA tile.
    Every y-shaped extra operand is an aux load. Shared by the sm80 GEMMs and convolutions."""
    if any(t % w for t, w in zip(config.tile, config.warp)):
        raise ValueError(f"warp tile {config.warp} does not divide the CTA tile {config.tile}")
    (out,) = eqn.outvars
    graph = eqn.params["epilogue"] if eqn.prim.name == "fused_gemm" else _identity_epilogue(out)
    operands = []
    for j, v in enumerate(graph.invars[1:]):
        kind = operand_kind(v, out.aval.shape)
        node = {"row": "RowBroadcast", "scalar": "ScalarBroadcast", "full": "AuxLoad"}[kind]
        operands.append(Operand(j, kind, v.aval.dtype, node))
    evt = _Sm80EVT(graph, operands)
    return operands, evt, evt.build()


def gemm_kernel(name: str, eqn, config: Sm80Config | None = None, b_major: str = "n") -> GemmKernel:
    """The CUTLASS 2.x kernel and its host launch function `name` for a matmul or fused_gemm eqn.
    b_major as in gemm.gemm_kernel: "n" B [K, N] (N contiguous), "k" B^T [N, K] (K contiguous)."""
    config = config or DEFAULT_CONFIG
    why = unsupported_reason(eqn)
    if why is not None:
        raise NotImplementedError(f"cuda gemm (sm80): {why}")
    if b_major not in ("n", "k"):
        raise ValueError(f"b_major must be 'n' or 'k', got {b_major!r}")
    a, b = eqn.invars[:2]
    (out,) = eqn.outvars
    ta, td = a.aval.dtype, out.aval.dtype
    operands, evt, (root, evt_args, evt_desc) = epilogue_evt(eqn, config)

    params = ["const void* A", "const void* B", *[f"const void* x{o.index}" for o in operands], "void* D",
              "int M", "int N", "int K", "int batch", "int64_t lda", "int64_t ldb", "int64_t ldd",
              "int64_t batch_stride_a", "int64_t batch_stride_b", "int64_t batch_stride_d"]
    for o in operands:
        if o.kind == "full":
            params += [f"int64_t ld_x{o.index}", f"int64_t batch_stride_x{o.index}"]
    params += ["cudaStream_t stream", "void* workspace", "size_t workspace_bytes"]

    summary = (f"{dtypes.short_name(ta)}[M,K] @ {dtypes.short_name(ta)}"
               f"{'[K,N]' if b_major == 'n' else '[N,K]^T'} -> {dtypes.short_name(td)}[M,N]")
    definition = _env().get_template("gemm_sm80.cu.j2").render(
        name=name, ns=f"{name}_cutlass", summary=summary, config=config, epilogue_desc=evt_desc,
        element_a=CUTLASS_TYPES[ta], element_b=CUTLASS_TYPES[b.aval.dtype], element_d=CUTLASS_TYPES[td],
        align_ab=16 // ta.itemsize, align_d=16 // td.itemsize,
        layout_b="cutlass::layout::RowMajor" if b_major == "n" else "cutlass::layout::ColumnMajor",
        layout_b_comment=("B [K, N] (N contiguous), row stride ldb" if b_major == "n"
                          else "B^T [N, K] (K contiguous), row stride ldb"),
        functors=evt.functors, node_decls=list(evt.leaf_types.values()) + evt.decls, root=root,
        evt_args=evt_args, checks=[_check(o) for o in operands if o.kind != "scalar"], params=params)
    return GemmKernel(name, definition, params, operands, config, b_major, evt_desc,
                      info=dict(summary=summary, nodes=len(evt.decls), functors=len(evt.functors)))
