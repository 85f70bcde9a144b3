"""CUTLASS 3.x sm90a GEMMs (TMA + warp-specialized wgmma, built with the CollectiveBuilders) for
`matmul` and `fused_gemm[base=matmul]`, their epilogues as CUTLASS epilogue visitor trees.

    gemm_kernel(name, eqn, config) -> GemmKernel(name, definition, params, operands, ...)

`definition` is C++ text for nvcc (-std=c++17 -O3 -DNDEBUG --expt-relaxed-constexpr
-gencode=arch=compute_90a,code=sm_90a -I<cutlass include>): a namespace with the kernel types and
one host function `static cudaError_t <name>(...)` that launches it on a stream (parameters below).
Several definitions can share a translation unit (the common prelude is include-guarded).

The epilogue sub-Graph `{ lambda ; acc extra... . let eqns in (out) }` becomes the EVT:
  acc                         -> Sm90AccFetch (the fp32 accumulators)
  extra y-shaped [.., M, N]   -> Sm90SrcFetch (the first: CUTLASS's C operand, loaded by TMA)
                                 or Sm90AuxLoad (the others; TMA too)
  extra row-broadcast [.., N] -> Sm90RowBroadcast (a bias)
  extra of one element        -> Sm90ScalarBroadcast (read through its pointer)
  each elementwise eqn        -> Sm90Compute whose functor is the eqn's C expression from the shared
                                 emitter (cemit.elementwise_expr), Literals inlined, in fp32 (gelu,
                                 gelu_tanh, sigmoid, silu: cheaper forms from the template's
                                 prelude, ex2/rcp approximations, |error| ~2e-7); the root
                                 converts to D's type (round to nearest). A cast inside the chain
                                 does not round (values stay fp32), as on the cpu backend.
An eqn is one node when the epilogue is a tree (every intermediate value read once; an
accumulator/C/scalar leaf may repeat). Otherwise (a DAG, e.g. `y * sigmoid(y)` with y = acc + bias)
the whole epilogue is one Sm90Compute node over the leaves: the same arithmetic, no recomputation.

Launch parameters, in order (pointers are device pointers, strides in elements):
  const void* A, const void* B, const void* x0, ..., void* D,     (x_j: the eqn's extra operands)
  int M, int N, int K, int batch,
  int64_t lda, int64_t ldb, int64_t ldd,
  int64_t batch_stride_a, int64_t batch_stride_b, int64_t batch_stride_d,
  int64_t ld_x<j>, int64_t batch_stride_x<j>   (for each y-shaped extra j, in order),
  bool pdl, cudaStream_t stream, void* workspace, size_t workspace_bytes, size_t* workspace_needed
(pdl: launch it as a programmatic dependent launch, see ait/cuda.h: only where no operand the
consumer warps read directly, a row or scalar, is written by the kernel before it: the kernel
waits for its predecessor in its TMA producer warps alone.)
A is [M, K] with row stride lda (K contiguous). B is [K, N] with row stride ldb (N contiguous,
as the IR holds it: CUTLASS LayoutB = RowMajor), or with `b_major="k"` B^T stored [N, K] with
row stride ldb (ColumnMajor). D [M, N] row stride ldd. The batch is CUTLASS's L mode (a batch
stride of 0 broadcasts an operand). `gemm_geometry` works these values out for an eqn.
With workspace_needed non-null the function only stores the workspace bytes this problem needs
there (pointers may be null) and launches nothing. The data-parallel persistent configs need none;
stream-K and split-K ones (decomposition "streamk", "splitk<N>": CUTLASS's stream-K tile
scheduler, which spreads the K loop of few output tiles over the SMs and reduces the partial
tiles through the workspace) do, and the launch refuses a smaller one (cudaErrorInvalidValue).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field

import jinja2
import numpy as np

from ...core import dtypes, shapes
from ...core.ir import Literal, Var
from ..cemit import Dialect, elementwise_expr

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")

CUTLASS_TYPES = {dtypes.float16: "cutlass::half_t", dtypes.bfloat16: "cutlass::bfloat16_t",
                 dtypes.float32: "float"}
IN_DTYPES = (dtypes.float16, dtypes.bfloat16)
OUT_DTYPES = (dtypes.float16, dtypes.bfloat16, dtypes.float32)
# Elementwise primitives an epilogue may hold (computed in fp32; comparisons give 0/1).
EPILOGUE_OPS = frozenset({
    "add", "sub", "mul", "div", "maximum", "minimum", "neg", "abs", "exp", "log", "sqrt", "rsqrt",
    "tanh", "erf", "sigmoid", "relu", "silu", "gelu", "gelu_tanh", "cast", "pow", "where",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_not", "logical_and", "logical_or"})
NVCC_FLAGS = ("-std=c++17", "-O3", "-DNDEBUG", "--expt-relaxed-constexpr",
              "-gencode=arch=compute_90a,code=sm_90a")


class EpilogueDialect(Dialect):
    """Device math for the epilogue functors (fp32 libdevice functions; the activations in
    _ACTIVATIONS have cheaper forms in the template)."""
    name = "cuda"
    math = {"exp": "expf", "log": "logf", "sqrt": "sqrtf", "tanh": "tanhf", "erf": "erff",
            "one_plus_erf": "ait_cuda_gemm::one_plus_erf", "abs": "fabsf", "pow": "powf",
            "max": "fmaxf", "min": "fminf"}


DIALECT = EpilogueDialect()
# Activations with a cheaper device form in the template's prelude (ex2/rcp approximations).
_ACTIVATIONS = ("gelu", "gelu_tanh", "sigmoid", "silu")


@dataclass(frozen=True)
class GemmConfig:
    """One kernel configuration: CTA tile (M, N, K), cluster shape, kernel schedule, the
    persistent tile scheduler's swizzle and raster order (host-side arguments), and how the
    problem is cut over the SMs: "dp" (whole output tiles), "streamk" or "splitk<N>" (the K
    loop too; cooperative schedule only, needs a workspace)."""
    tile: tuple = (128, 256, 64)
    cluster: tuple = (2, 1, 1)
    schedule: str = "cooperative"  # or "pingpong"
    swizzle: int = 1               # 1, 2, 4 or 8
    raster: str = "heuristic"      # or "m", "n"
    decomposition: str = "dp"      # or "streamk", "splitk2", "splitk4", ...

    @property
    def name(self) -> str:
        t, c = self.tile, self.cluster
        return (f"{self.schedule}_{t[0]}x{t[1]}x{t[2]}_c{c[0]}x{c[1]}x{c[2]}"
                + (f"_s{self.swizzle}" if self.swizzle != 1 else "")
                + (f"_r{self.raster}" if self.raster != "heuristic" else "")
                + (f"_{self.decomposition}" if self.decomposition != "dp" else ""))

    @property
    def splits(self) -> int:
        """K splits of a split-K config (1 otherwise)."""
        m = re.fullmatch(r"splitk(\d+)", self.decomposition)
        return int(m.group(1)) if m else 1

    @property
    def needs_workspace(self) -> bool:
        return self.decomposition != "dp"

    def __str__(self):
        return self.name

    @classmethod
    def parse(cls, name: str) -> "GemmConfig":
        """The config a `name` spells, e.g. cooperative_128x256x64_c2x1x1_s4_rn_streamk."""
        m = re.fullmatch(r"(cooperative|pingpong)_(\d+)x(\d+)x(\d+)_c(\d)x(\d)x(\d)(?:_s(\d+))?(?:_r(m|n))?"
                         r"(?:_(streamk|splitk\d+))?", name)
        if not m:
            raise ValueError(f"not a GEMM config name: {name!r}")
        g = m.groups()
        return cls(tuple(map(int, g[1:4])), tuple(map(int, g[4:7])), g[0], int(g[7] or 1), g[8] or "heuristic",
                   g[9] or "dp")


# Candidates for the profiler; the first is the default (large GEMMs).
CONFIGS = (
    GemmConfig((128, 256, 64), (2, 1, 1), "cooperative"),
    GemmConfig((128, 256, 64), (1, 1, 1), "cooperative"),
    GemmConfig((128, 128, 64), (2, 1, 1), "cooperative"),
    GemmConfig((128, 128, 64), (1, 1, 1), "cooperative"),
    GemmConfig((128, 128, 64), (2, 1, 1), "pingpong"),
    GemmConfig((64, 128, 64), (1, 1, 1), "pingpong"),
    GemmConfig((128, 64, 64), (1, 1, 1), "cooperative"),   # N <= 64 (a stem's 64 channels)
)
# Also timed where 64x128 tiles would fill under half the SMs: two and four times their CTAs,
# e.g. for BERT/ViT bs1's N=768 GEMMs, which 64x128 tiles spread over 12 of the 132 SMs
# (torch.compile's cuBLAS picks 16-24 x 64 tiles there).
FEW_TILE_CONFIGS = (GemmConfig((64, 64, 64), (1, 1, 1), "pingpong"), GemmConfig((64, 32, 64), (1, 1, 1), "pingpong"))
# (Stream-K and split-K configs lost every batch-1 problem they were timed on, on the H100; they stay
# nameable, e.g. "cooperative_128x64x64_c1x1x1_splitk4", but the profiler does not try them.)
DEFAULT_CONFIG = CONFIGS[0]

_RASTER = {"heuristic": "Heuristic", "m": "AlongM", "n": "AlongN"}
_SCHEDULES = {
    "cooperative": ("cutlass::gemm::KernelTmaWarpSpecializedCooperative",
                    "cutlass::epilogue::TmaWarpSpecializedCooperative"),
    "pingpong": ("cutlass::gemm::KernelTmaWarpSpecializedPingpong",
                 "cutlass::epilogue::TmaWarpSpecialized"),
}


@dataclass
class Operand:
    """An extra (epilogue) operand of a fused_gemm: x<index> in the launch parameters."""
    index: int
    kind: str          # "full" (y-shaped), "row" ([.., N] broadcast over rows), "scalar"
    dtype: np.dtype
    node: str = ""     # the EVT leaf: SrcFetch, AuxLoad, RowBroadcast, ScalarBroadcast


@dataclass
class GemmKernel:
    name: str                 # the host launch function
    definition: str           # C++ (CUDA) text
    params: list              # the launch function's parameters, "type name"
    operands: list            # Operand per extra operand, in parameter order
    config: GemmConfig
    b_major: str
    evt: str = ""             # the EVT as a readable expression
    info: dict = field(default_factory=dict)

    def __iter__(self):       # `definition, name = gemm_kernel(...)`
        return iter((self.definition, self.name))


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False)


def operand_kind(v, out_shape) -> str:
    """How an epilogue operand is addressed by (row, column) of the output (fuse_epilogue's rule)."""
    s = v.aval.shape
    if len(s) == len(out_shape) and all(shapes.equal(a, b) for a, b in zip(s, out_shape)) \
            and not all(shapes.equal(d, 1) for d in s):
        return "full"
    if all(shapes.equal(d, 1) for d in s):
        return "scalar"
    if all(shapes.equal(d, 1) for d in s[:-1]) and shapes.equal(s[-1], out_shape[-1]):
        return "row"
    raise NotImplementedError(f"epilogue operand {v.aval} is neither y-shaped nor a row broadcast of "
                              f"{shapes.shape_str(out_shape)}")


def unsupported_reason(eqn) -> str | None:
    """None where gemm_kernel can take the eqn, else why not (the backend then uses another kernel).
    Static N/K are checked for TMA's 16-byte alignment; symbolic ones are checked at run time."""
    if eqn.prim.name == "fused_gemm":
        if eqn.params["base"] != "matmul":
            return f"base {eqn.params['base']} (only matmul)"
    elif eqn.prim.name != "matmul":
        return f"primitive {eqn.prim.name}"
    a, b = eqn.invars[:2]
    (out,) = eqn.outvars
    if a.aval.dtype not in IN_DTYPES or b.aval.dtype != a.aval.dtype:
        return f"operand dtypes {a.aval.dtype}, {b.aval.dtype} (fp16/bf16 only)"
    if out.aval.dtype not in OUT_DTYPES:
        return f"output dtype {out.aval.dtype}"
    n, k = out.aval.shape[-1], a.aval.shape[-1]
    if isinstance(k, int) and k % 8:
        return f"K={k} is not a multiple of 8 (16-byte TMA rows)"
    if isinstance(n, int) and n % 8:
        return f"N={n} is not a multiple of 8 (16-byte TMA rows)"
    if eqn.prim.name == "fused_gemm":
        return epilogue_unsupported_reason(eqn.params["epilogue"], out.aval.shape)
    return None


def epilogue_unsupported_reason(g, out_shape) -> str | None:
    """None where the epilogue sub-Graph g of an output of `out_shape` can be an EVT, else why not."""
    for v in g.invars[1:]:
        if v.aval.dtype not in OUT_DTYPES:
            return f"epilogue operand dtype {v.aval.dtype}"
        try:
            operand_kind(v, out_shape)
        except NotImplementedError as e:
            return str(e)
    for se in g.eqns:
        if se.prim.name not in EPILOGUE_OPS:
            return f"epilogue op {se.prim.name}"
        for v in [*se.invars, *se.outvars]:
            if not (dtypes.is_float(v.aval.dtype) or v.aval.dtype == dtypes.bool_):
                return f"epilogue value of dtype {v.aval.dtype} in {se.prim.name}"
    if len(g.outvars) != 1 or not isinstance(g.outvars[0], Var):
        return "epilogue must have one Var output"
    return None


# ---------------------------------------------------------------------------------------------
# The epilogue visitor tree

class _EVT:
    """Builds node declarations, functors and the argument initializer from the epilogue."""

    def __init__(self, graph, operands):
        self.g, self.ops = graph, operands
        self.functors, self.decls, self.leaf_types = [], [], {}
        self.producer = {o: e for e in graph.eqns for o in e.outvars}
        self.uses: dict = {}
        for e in graph.eqns:
            for a in e.invars:
                if isinstance(a, Var):
                    self.uses[a] = self.uses.get(a, 0) + 1
        for v in graph.outvars:
            self.uses[v] = self.uses.get(v, 0) + 1
        self.leaf_index = {v: i for i, v in enumerate(graph.invars)}  # 0: acc, j+1: x_j

    # leaves ------------------------------------------------------------------------------
    def _leaf(self, v) -> tuple[str, str]:
        """(type name, argument initializer) of an epilogue input."""
        i = self.leaf_index[v]
        if i == 0:
            self.leaf_types.setdefault("EpiAcc", "using EpiAcc = fusion::Sm90AccFetch;")
            return "EpiAcc", "{}"
        op = self.ops[i - 1]
        j, t = op.index, CUTLASS_TYPES[op.dtype]
        name = f"EpiX{j}"
        ptr = f"static_cast<{t} const*>(x{j})"
        if op.node == "SrcFetch":
            decl = f"using {name} = fusion::Sm90SrcFetch<ElementC>;"
            arg = "{}"
        elif op.node == "AuxLoad":
            decl = (f"using {name}Desc = cutlass::epilogue::collective::detail::AuxLoadDescriptor<\n"
                    f"    EpilogueDescriptor, cutlass::layout::RowMajor, {t}>;\n"
                    f"using {name} = fusion::Sm90AuxLoad<{name}Desc::Stages, typename {name}Desc::EpilogueTile,\n"
                    f"    {t}, typename {name}Desc::Stride, typename {name}Desc::SmemLayoutAtom,\n"
                    f"    typename {name}Desc::CopyOpS2R>;")
            arg = f"{{{ptr}, {t}(0), cute::make_stride(ld_x{j}, cute::Int<1>{{}}, batch_stride_x{j})}}"
        elif op.node == "RowBroadcast":
            decl = (f"using {name} = fusion::Sm90RowBroadcast<0, TileShape, {t}, ElementCompute,\n"
                    f"    Stride<_0, _1, _0>>;")
            arg = f"{{{ptr}, {t}(0), {{}}}}"
        else:  # ScalarBroadcast
            decl = f"using {name} = fusion::Sm90ScalarBroadcast<{t}, Stride<_0, _0, _0>>;"
            arg = f"{{{{{t}(0)}}, {{{ptr}}}, {{}}}}"
        self.leaf_types.setdefault(name, decl)
        return name, arg

    def _is_tree(self) -> bool:
        for v, n in self.uses.items():
            if n <= 1:
                continue
            if v in self.producer:
                return False  # an intermediate read twice: a DAG
            i = self.leaf_index.get(v)
            if i and self.ops[i - 1].node in ("AuxLoad", "RowBroadcast"):
                return False  # would load (and stage in smem) the operand twice
        return True

    # compute nodes -----------------------------------------------------------------------
    def _functor(self, eqns, inputs, result, comment) -> str:
        """A functor computing `eqns` from `inputs` (its arguments, fp32) and returning `result`."""
        name = f"EpiF{len(self.functors)}"
        local = {v: f"a{i}" for i, v in enumerate(inputs)}
        body = []
        for e in eqns:
            args = [local[a] if isinstance(a, Var) else DIALECT.literal(a.value, a.aval.dtype) for a in e.invars]
            if e.prim.name in _ACTIVATIONS:
                expr = f"ait_cuda_gemm::{e.prim.name}({args[0]})"
            else:
                expr = elementwise_expr(DIALECT, e.prim.name, args, e.outvars[0].aval.dtype, dict(e.params))
            local[e.outvars[0]] = f"t{len(body)}"
            body.append(f"const float t{len(body)} = {expr};")
        body.append(f"return {local[result]};")
        params = ", ".join(f"float a{i}" for i in range(len(inputs)))
        self.functors.append(dict(name=name, params=params, body=body, comment=comment))
        return name

    def _compute(self, fn, out_type, children) -> tuple[str, str]:
        """(type, argument initializer) of Sm90EVT<Sm90Compute<fn>, children...>."""
        name = f"EpiN{len(self.decls)}"
        types, args = zip(*[(c[0], c[1]) for c in children])
        self.decls.append(f"using {name} = fusion::Sm90EVT<fusion::Sm90Compute<{fn}, {out_type}, ElementCompute, RN>,\n"
                          f"    {', '.join(types)}>;")
        return name, "{" + ", ".join([*args, "{}"]) + "}"

    def _desc(self, v) -> str:
        i = self.leaf_index[v]
        return "acc" if i == 0 else f"{self.ops[i - 1].node}(x{self.ops[i - 1].index})"

    def _tree(self, v, root: bool):
        """(type, args, readable) of the node computing v."""
        if v in self.leaf_index:
            t, a = self._leaf(v)
            if not root:
                return t, a, self._desc(v)
            n, args = self._compute(self._functor([], [v], v, "identity"), "ElementD", [(t, a)])
            return n, args, self._desc(v)
        e = self.producer[v]
        var_in = [a for a in e.invars if isinstance(a, Var)]
        kids = {a: self._tree(a, False) for a in var_in}
        fn = self._functor([e], var_in, v, _describe(e))
        n, args = self._compute(fn, "ElementD" if root else "ElementCompute", [kids[a] for a in var_in])
        inner = ", ".join(kids[a][2] if isinstance(a, Var) else _lit(a) for a in e.invars)
        return n, args, f"{e.prim.name}({inner})"

    def build(self):
        """(root type, root argument initializer, readable description)."""
        out = self.g.outvars[0]
        if self._is_tree():
            return self._tree(out, True)
        leaves = [v for v in self.g.invars if v in self.uses]
        kids = [(*self._leaf(v), self._desc(v)) for v in leaves]
        ops = " -> ".join(e.prim.name for e in self.g.eqns)
        fn = self._functor(list(self.g.eqns), leaves, out, "the whole epilogue: " + ops)
        root, args = self._compute(fn, "ElementD", kids)
        return root, args, "fused(" + ", ".join(k[2] for k in kids) + ": " + ops + ")"


def _describe(e) -> str:
    ins = ["x" if isinstance(a, Var) else _lit(a) for a in e.invars]
    return f"{e.prim.name}({', '.join(ins)})"


def _lit(a: Literal) -> str:
    return repr(float(a.value)) if dtypes.is_float(a.aval.dtype) else repr(a.value.item())


def epilogue_operands(graph, out_shape) -> tuple[list, object]:
    """The Operand (and EVT leaf) of each extra input of the epilogue graph, and the dtype of
    CUTLASS's C operand (the first y-shaped extra; None where there is none)."""
    operands, element_c = [], None
    for j, v in enumerate(graph.invars[1:]):
        kind = operand_kind(v, out_shape)
        node = {"row": "RowBroadcast", "scalar": "ScalarBroadcast"}.get(kind)
        if kind == "full":
            node = "SrcFetch" if element_c is None else "AuxLoad"
            element_c = element_c or v.aval.dtype
        operands.append(Operand(j, kind, v.aval.dtype, node))
    return operands, element_c


def _identity_epilogue(out):
    from ...core.ir import Graph
    return Graph([out], [], [], [], [out])


# ---------------------------------------------------------------------------------------------

def gemm_kernel(name: str, eqn, config: GemmConfig | None = None, b_major: str = "n") -> GemmKernel:
    """The CUTLASS kernel and its host launch function `name` for a matmul or fused_gemm eqn.

    b_major: "n" takes B as the IR holds it ([K, N], N contiguous); "k" takes B^T ([N, K], K
    contiguous), for a backend that stores a constant weight transposed."""
    config = config or DEFAULT_CONFIG
    why = unsupported_reason(eqn)
    if why is not None:
        raise NotImplementedError(f"cuda gemm: {why}")
    if config.schedule not in _SCHEDULES:
        raise ValueError(f"unknown schedule {config.schedule!r}")
    if config.swizzle not in (1, 2, 4, 8) or config.raster not in _RASTER:
        raise ValueError(f"bad scheduler options in {config}")
    if config.decomposition != "dp" and (config.schedule != "cooperative" or
                                         not re.fullmatch(r"streamk|splitk([2-9]|[1-9]\d+)", config.decomposition)):
        raise ValueError(f"{config}: stream-K / split-K need the cooperative schedule "
                         "(decomposition 'streamk' or 'splitk<N>', N >= 2)")
    if b_major not in ("n", "k"):
        raise ValueError(f"b_major must be 'n' or 'k', got {b_major!r}")
    a, b = eqn.invars[:2]
    (out,) = eqn.outvars
    ta, td = a.aval.dtype, out.aval.dtype
    if eqn.prim.name == "fused_gemm":
        graph = eqn.params["epilogue"]
    else:
        graph = _identity_epilogue(out)
    operands, element_c = epilogue_operands(graph, out.aval.shape)
    evt = _EVT(graph, operands)
    root, evt_args, evt_desc = evt.build()
    node_decls = list(evt.leaf_types.values()) + evt.decls
    src = next((o for o in operands if o.node == "SrcFetch"), None)

    params = ["const void* A", "const void* B", *[f"const void* x{o.index}" for o in operands], "void* D",
              "int M", "int N", "int K", "int batch", "int64_t lda", "int64_t ldb", "int64_t ldd",
              "int64_t batch_stride_a", "int64_t batch_stride_b", "int64_t batch_stride_d"]
    for o in operands:
        if o.kind == "full":
            params += [f"int64_t ld_x{o.index}", f"int64_t batch_stride_x{o.index}"]
    params += ["bool pdl", "cudaStream_t stream", "void* workspace", "size_t workspace_bytes", "size_t* workspace_needed"]

    kernel_schedule, epilogue_schedule = _SCHEDULES[config.schedule]
    summary = (f"{dtypes.short_name(ta)}[M,K] @ {dtypes.short_name(ta)}"
               f"{'[K,N]' if b_major == 'n' else '[N,K]^T'} -> {dtypes.short_name(td)}[M,N]")
    definition = _env().get_template("gemm_sm90.cu.j2").render(
        name=name, ns=f"{name}_cutlass", summary=summary, config=config.name, epilogue_desc=evt_desc,
        ta=CUTLASS_TYPES[ta], tb=CUTLASS_TYPES[b.aval.dtype], td=CUTLASS_TYPES[td],
        tc=CUTLASS_TYPES[element_c] if element_c is not None else "void",
        align_c="128 / cutlass::sizeof_bits<ElementC>::value" if element_c is not None else "AlignmentD",
        layout_b="cutlass::layout::RowMajor" if b_major == "n" else "cutlass::layout::ColumnMajor",
        layout_b_comment=("B [K, N] (N contiguous), row stride ldb" if b_major == "n"
                          else "B^T [N, K] (K contiguous), row stride ldb"),
        stride_b=("cute::make_stride(cute::Int<1>{}, ldb, batch_stride_b)" if b_major == "n"
                  else "cute::make_stride(ldb, cute::Int<1>{}, batch_stride_b)"),
        stride_c=(f"cute::make_stride(ld_x{src.index}, cute::Int<1>{{}}, batch_stride_x{src.index})" if src
                  else "cute::make_stride(ldd, cute::Int<1>{}, batch_stride_d)"),
        ptr_c=f"static_cast<ElementC const*>(x{src.index})" if src else "nullptr",
        a_bytes=ta.itemsize, tile=config.tile, cluster=config.cluster, swizzle=config.swizzle,
        raster=_RASTER[config.raster],
        tile_scheduler="cutlass::gemm::StreamKScheduler" if config.needs_workspace else "void",
        decomposition={"dp": None, "streamk": "StreamK"}.get(config.decomposition, "SplitK"), splits=config.splits,
        kernel_schedule=kernel_schedule, epilogue_schedule=epilogue_schedule,
        functors=evt.functors, node_decls=node_decls, root=root, evt_args=evt_args, params=params,
        gdc=config.decomposition == "dp")
    return GemmKernel(name, definition, params, operands, config, b_major, evt_desc,
                      info=dict(summary=summary, nodes=len(evt.decls), functors=len(evt.functors)))


def content_name(prefix: str, definition: str) -> str:
    """A CUTLASS kernel's name: `prefix` and a hash of its definition under a placeholder name.
    Identical kernels share one definition, translation unit and cached object, in a model, across
    models and in the profiler."""
    return prefix + hashlib.sha256(definition.encode()).hexdigest()[:12]


def named_kernel(make, eqn, config, b_major: str = "n"):
    """`make(name, eqn, config, b_major)` (gemm_kernel here or in gemm_sm80.py) under the name a
    model gives it (content_name)."""
    probe = make("k", eqn, config, b_major=b_major)
    return make(content_name("cutlass_gemm_", probe.definition), eqn, config, b_major=b_major)


# ---------------------------------------------------------------------------------------------
# Geometry: M, N, K, batch and the strides of the launch parameters, for an eqn's operands

@dataclass
class GemmGeometry:
    """Dims and element strides (ints or sympy expressions) in launch-parameter order, and the
    layout of B they describe (pass it to gemm_kernel)."""
    M: object
    N: object
    K: object
    batch: object
    lda: object
    ldb: object
    ldd: object
    batch_stride_a: object
    batch_stride_b: object
    batch_stride_d: object
    extra: list       # (ld, batch_stride) per y-shaped extra operand, in order
    b_major: str      # "n": B rows [K, N] N-contiguous; "k": B^T rows [N, K] K-contiguous
    folded: bool      # the batch dims were folded into M (B shared by the whole batch)

    def args(self) -> list:
        out = [self.M, self.N, self.K, self.batch, self.lda, self.ldb, self.ldd,
               self.batch_stride_a, self.batch_stride_b, self.batch_stride_d]
        for ld, bs in self.extra:
            out += [ld, bs]
        return out


def contiguous_strides(shape) -> list:
    st, acc = [], 1
    for d in reversed(shape):
        st.append(acc)
        acc = shapes.prod([acc, d])
    return st[::-1]


def _collapse(strides, sizes, broadcast_ok: bool):
    """The one stride of dims that nest (stride[d] = stride[d+1] * size[d+1], size-1 dims
    ignored), 0 where all are broadcast (if allowed), else None."""
    pairs = [(st, sz) for st, sz in zip(strides, sizes) if not shapes.equal(sz, 1)]
    if not pairs:
        return 0
    if all(shapes.equal(st, 0) for st, _ in pairs):
        return 0 if broadcast_ok else None
    for (s0, _), (s1, z1) in zip(pairs, pairs[1:]):
        if not shapes.equal(s0, s1 * z1):
            return None
    return pairs[-1][0]


def gemm_geometry(eqn, strides=None) -> GemmGeometry | None:
    """Launch dims/strides of a matmul/fused_gemm eqn. `strides(var)` gives the element strides
    of an operand's view (default: contiguous); the epilogue's y-shaped operands are taken
    contiguous. B's layout follows its strides: N contiguous -> b_major "n", K contiguous (a
    constant stored transposed) -> "k". Batch dims fold into M where B is shared by the whole
    batch and A and D are row-stacked; else they flatten into one L mode with one stride per
    operand (0 where broadcast). None where A or D has no unit column stride, or no single L
    stride describes an operand: the caller then loops over the outer batch dims or copies."""
    from ..lowering import operand_strides
    a, b = eqn.invars[:2]
    (out,) = eqn.outvars
    get = strides or (lambda v: contiguous_strides(v.aval.shape))
    sa, sb, sd = list(get(a)), list(get(b)), list(get(out))
    ob = out.aval.shape[:-2]
    M, N, K = out.aval.shape[-2], out.aval.shape[-1], a.aval.shape[-1]
    if not shapes.equal(sa[-1], 1) or not shapes.equal(sd[-1], 1):
        return None
    if shapes.equal(sb[-1], 1):
        b_major, ldb = "n", sb[-2]
    elif shapes.equal(sb[-2], 1):
        b_major, ldb = "k", sb[-1]
    else:
        return None
    lda, ldd = sa[-2], sd[-2]
    ab = operand_strides(sa[:-2], a.aval.shape[:-2], ob)
    bb = operand_strides(sb[:-2], b.aval.shape[:-2], ob)
    db = sd[:-2]
    n_full = 0
    if eqn.prim.name == "fused_gemm":
        n_full = sum(operand_kind(v, out.aval.shape) == "full" for v in eqn.params["epilogue"].invars[1:])
    if (_collapse(bb, ob, True) == 0 and _collapse(ab + [lda], [*ob, M], False) is not None
            and _collapse(db + [ldd], [*ob, M], False) is not None):
        return GemmGeometry(shapes.prod([*ob, M]), N, K, 1, lda, ldb, ldd, 0, 0, 0,
                            [(N, 0)] * n_full, b_major, True)
    bs = [_collapse(ab, ob, True), _collapse(bb, ob, True), _collapse(db, ob, False)]
    if any(s is None for s in bs):
        return None
    return GemmGeometry(M, N, K, shapes.prod(ob), lda, ldb, ldd, *bs,
                        [(N, shapes.prod([M, N]))] * n_full, b_major, False)


# ---------------------------------------------------------------------------------------------
# Toolchain helpers

def cutlass_include_dir() -> str | None:
    """CUTLASS's headers from the nvidia-cutlass wheel (`cutlass_library/source/include`)."""
    env = os.environ.get("AITRACE_CUTLASS_INCLUDE")
    if env:
        return env if os.path.isdir(env) else None
    try:
        import cutlass_library
    except ImportError:
        return None
    d = os.path.join(os.path.dirname(cutlass_library.__file__), "source", "include")
    return d if os.path.isfile(os.path.join(d, "cutlass", "cutlass.h")) else None


def cutlass_util_include_dir(include_dir=None) -> str | None:
    """CUTLASS's tools/util/include beside its include/ (the sm90 conv mainloop includes
    cutlass/util/packed_stride.hpp from there), or None."""
    inc = include_dir or cutlass_include_dir()
    if inc is None:
        return None
    d = os.path.join(os.path.dirname(os.path.abspath(inc)), "tools", "util", "include")
    return d if os.path.isfile(os.path.join(d, "cutlass", "util", "packed_stride.hpp")) else None


def nvcc_command(sources, output, include_dir=None, extra=()) -> list:
    inc = include_dir or cutlass_include_dir()
    if inc is None:
        raise FileNotFoundError("CUTLASS headers not found: pip install nvidia-cutlass "
                                "(or set AITRACE_CUTLASS_INCLUDE)")
    util = cutlass_util_include_dir(inc)
    return ["nvcc", *NVCC_FLAGS, f"-I{inc}", *([f"-I{util}"] if util else []), *extra, *sources, "-o", output]
