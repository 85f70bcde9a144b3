"""CUDA lowering of fused_norm: a softmax (last axis) or layer norm whose input is computed by an
elementwise prologue in the same kernel. The prologue becomes a device functor giving row r's
value at column i in fp32, x(r, i, first), or at the 8 columns from i through 16-byte vector
loads, x(r, i, vals, first) (storing the extra outputs, e.g. a pre-LN residual sum, when
`first`); ait/cuda_ops.h's row kernels call it once per element while loading the row into their
shared-memory cache, then normalize from there (a warp or a block per row)."""
from __future__ import annotations

from ...core import shapes
from ...core.ir import unique_vars
from ..cpu.elementwise import statements
from ..cpu.prologue import _decode, _operand_pointer
from ..lowering import Kernel, lowering
from .calls import layer_norm_affine, rows_vectorizable

VEC = 8  # columns a vector chunk: kRowVec of ait/cuda_ops.h


def row_functor(ctx, e, name: str) -> tuple[str, str, list[str]]:
    """(struct definition, its construction on the host, the pointers its vector form moves as
    16-byte vectors) of e's prologue as a row functor: x(r, i, first) and x(r, i, v[8], first)."""
    g = e.params["prologue"]
    x, n_pro = g.outvars[0], len(g.invars)
    extra, shape = e.outvars[1:], x.aval.shape
    coords, ptrs, scalar, pre, per_elem, vectors, locals_ = set(), [], [], [], [], [], {}
    for j, (v, outer) in enumerate(zip(g.invars, e.invars)):
        decl, idx = _operand_pointer(ctx, j, v, ctx.name(outer), shape, coords)
        ptrs.append(decl)
        locals_[v] = f"a{j}"
        load = f"const {ctx.compute(v)} a{j} = ait::gpu::load<{ctx.compute(v)}>"
        scalar.append(f"{load}(p{j}[{idx}]);")
        if idx == "0":  # one value for the whole row
            pre.append(f"{load}(p{j}[0]);")
        elif _whole_vectors(v):
            vectors.append(ctx.name(outer))
            pre += [f"alignas(16) {ctx.storage(v)} b{j}[{VEC}];", f"ait::gpu::vload(b{j}, p{j} + i);"]
            per_elem.append(f"{load}(b{j}[u]);")
        else:  # 8 elements short of 16 bytes (bool): one at a time
            per_elem.append(f"{load}(p{j}[i + u]);")
    body = statements(ctx, g.eqns, locals_)
    scalar_stores, elem_stores, vec_stores = [], [], []
    for j, (v, outer) in enumerate(zip(g.outvars[1:], extra)):
        value = f"ait::gpu::store<{ctx.storage(outer)}, {ctx.compute(v)}>({locals_[v]})"
        scalar_stores.append(f"{ctx.name(outer)}[r * n_cols + i] = {value};")
        if _whole_vectors(outer):
            pre.append(f"alignas(16) {ctx.storage(outer)} c{j}[{VEC}];")
            elem_stores.append(f"c{j}[u] = {value};")
            vec_stores.append(f"ait::gpu::vstore({ctx.name(outer)} + r * n_cols + i, c{j});")
            vectors.append(ctx.name(outer))
        else:
            elem_stores.append(f"if (first) {ctx.name(outer)}[r * n_cols + i + u] = {value};")
    members = [f"const {ctx.storage(v)}* {ctx.name(v)};" for v in unique_vars(e.invars[:n_pro])]
    members += [f"{ctx.storage(v)}* {ctx.name(v)};  // also an output" for v in extra]
    members += ["int64_t n_cols;"] + [f"int64_t {ctx.dim(s)};" for s in ctx.symbols]
    inits = [ctx.name(v) for v in unique_vars(e.invars[:n_pro])] + [ctx.name(v) for v in extra]
    inits += ["n_cols"] + [ctx.dim(s) for s in ctx.symbols]
    ops = " -> ".join(se.prim.name for se in g.eqns) or "copy"
    head = [*_decode(ctx, shape, coords), *ptrs]
    one = [*head, *scalar, *body, *_first(scalar_stores), f"return float({locals_[x]});"]
    vec = [*head, *pre, "#pragma unroll", f"for (int u = 0; u < {VEC}; ++u) {{",
           *("  " + s for s in [*per_elem, *body, *elem_stores, f"vals[u] = float({locals_[x]});"]),
           "}", *_first(vec_stores)]
    struct = (f"// the prologue of {name}: {ops}, at row r, column i of its {x.aval} (and at the {VEC} from i)\n"
              f"struct {name}_row {{\n" + "".join(f"  {m}\n" for m in members) +
              _method("float operator()(int64_t r, int64_t i, bool first) const", one, bool(scalar_stores)) +
              _method(f"void operator()(int64_t r, int64_t i, float (&vals)[{VEC}], bool first) const", vec,
                      bool(scalar_stores)) + "};\n\n")
    return struct, f"const {name}_row row{{{', '.join(inits)}}};", vectors


def _whole_vectors(v) -> bool:
    return v.aval.dtype.itemsize * VEC % 16 == 0


def _first(stores: list[str]) -> list[str]:
    return ["if (first) {", *("  " + s for s in stores), "}"] if stores else []


def _method(signature: str, lines: list[str], uses_first: bool) -> str:
    lines = lines if uses_first else ["(void)first;", *lines]
    return f"  __device__ __forceinline__ {signature} {{\n" + "".join(f"    {s}\n" for s in lines) + "  }\n"


@lowering("cuda", "fused_norm")
def lower_fused_norm(ctx, e, kname: str) -> Kernel:
    g, base, bp = e.params["prologue"], e.params["base"], dict(e.params["base_params"])
    x, y, n_pro = g.outvars[0], e.outvars[0], len(g.invars)
    shape, ty = x.aval.shape, ctx.storage(y)
    struct, make, vectors = row_functor(ctx, e, kname)
    lines = [f"const int64_t n_rows = {ctx.dim(shapes.prod(shape[:-1]))}, n_cols = {ctx.dim(shape[-1])};", make,
             f"const bool vec = {rows_vectorizable('n_cols', vectors + [ctx.name(y)])};"]
    if base == "softmax":
        lines.append(f"ait::gpu::softmax_rows(row, {ctx.name(y)}, n_rows, n_cols, vec, stream);")
    else:
        wt, w, b, preload = layer_norm_affine(ctx, bp, x, e.invars[n_pro:])
        lines.append(f"ait::gpu::layer_norm_rows<{ty}, {wt}>(row, {w}, {b}, {ctx.name(y)}, n_rows, n_cols, "
                     f"{bp['eps']!r}f, vec, stream, {preload});")
    body = "".join(f"  {line}\n" for line in lines)
    definition = f"{struct}{ctx.signature(kname, e)} {{\n{ctx.symbol_preamble()}{body}}}\n"
    ops = " -> ".join(se.prim.name for se in g.eqns) or "copy"
    return Kernel(kname, definition, ctx.call(kname, e) + f"\n    AIT_LAUNCHED(\"{kname}\");",
                  includes=("ait/cuda_ops.h",), comment=f"{ctx.eqn_text(e)}  [prologue: {ops}]")
