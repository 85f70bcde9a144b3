"""CPU lowering of fused_norm: a softmax (last axis) or layer norm whose input is computed by an
elementwise prologue in the same kernel. Each row (OpenMP over rows): the prologue runs per
element into a per-thread fp32 row buffer, storing any extra outputs it has on the way, then
ait/norm.h's row routine normalizes the buffer and stores y once. As in every fused loop, the
prologue's values (x included) stay fp32: only what is stored is rounded to its dtype."""
from __future__ import annotations

from ...core import shapes
from ..lowering import Kernel, broadcast_strides, lowering
from .elementwise import statements


def _operand_pointer(ctx, j: int, v, name: str, shape, coords: set) -> tuple[str, str]:
    """(pointer declaration at row r, index in the row) of prologue operand v read at `shape`'s
    indices; adds to `coords` the outer axes whose coordinate the offset needs."""
    if len(v.aval.shape) == len(shape) and all(shapes.equal(a, b) for a, b in zip(v.aval.shape, shape)):
        return f"const {ctx.storage(v)}* __restrict p{j} = {name} + r * n_cols;", "i"
    st = broadcast_strides(v.aval.shape, shape)
    terms = [f"x{d} * {ctx.dim(st[d])}" for d in range(len(shape) - 1) if st[d] != 0]
    coords.update(d for d in range(len(shape) - 1) if st[d] != 0)
    idx = "i" if st[-1] != 0 else "0"
    what = "a scalar" if not v.aval.shape else f"{v.aval} broadcast"
    return f"const {ctx.storage(v)}* __restrict p{j} = {name} + {' + '.join(terms) or '0'};  // {what}", idx


def _decode(ctx, shape, coords: set) -> list[str]:
    """Outer coordinates x<d> of row r that the operand offsets use (row-major over shape[:-1])."""
    if not coords:
        return []
    lines, last = ["int64_t rest = r;"], min(coords)
    for d in reversed(range(last, len(shape) - 1)):
        size = ctx.dim(shape[d])
        if d in coords:
            lines.append(f"const int64_t x{d} = rest % {size};")
        if d > last:
            lines.append(f"rest /= {size};")
    return lines


@lowering("cpu", "fused_norm")
def lower_fused_norm(ctx, e, kname: str) -> Kernel:
    g, base = e.params["prologue"], e.params["base"]
    bp = dict(e.params["base_params"])
    x, n_pro = g.outvars[0], len(g.invars)
    (y, *extra), shape = e.outvars, x.aval.shape
    coords, ptrs, body, locals_ = set(), [], [], {}
    for j, (v, outer) in enumerate(zip(g.invars, e.invars)):
        decl, idx = _operand_pointer(ctx, j, v, ctx.name(outer), shape, coords)
        ptrs.append(decl)
        locals_[v] = f"a{j}"
        body.append(f"const {ctx.compute(v)} a{j} = ait::load<{ctx.compute(v)}>(p{j}[{idx}]);")
    body += statements(ctx, g.eqns, locals_)
    for j, (v, outer) in enumerate(zip(g.outvars[1:], extra)):
        ptrs.append(f"{ctx.storage(outer)}* __restrict q{j} = {ctx.name(outer)} + r * n_cols;  // also an output")
        body.append(f"q{j}[i] = ait::store<{ctx.storage(outer)}, {ctx.compute(v)}>({locals_[v]});")
    # x stays fp32 (not rounded to its dtype first: that costs two scalar conversions an element)
    body.append(f"row[i] = {locals_[x]};")
    ty = ctx.storage(y)
    pre = [f"const int64_t n_rows = {ctx.dim(shapes.prod(shape[:-1]))}, n_cols = {ctx.dim(shape[-1])};"]
    if base == "softmax":
        finish = f"ait::softmax_row_f32<{ty}>(row, {ctx.name(y)} + r * n_cols, n_cols);"
    else:
        affine = iter(e.invars[n_pro:])
        wn = ctx.name(next(affine)) if bp["has_weight"] else "nullptr"
        bn = ctx.name(next(affine)) if bp["has_bias"] else "nullptr"
        wt = ctx.storage(e.invars[n_pro]) if len(e.invars) > n_pro else ty
        pre.append(f"const std::vector<float> wb = ait::affine_f32<{wt}>({wn}, {bn}, n_cols);  // weight, bias as fp32")
        finish = (f"ait::layer_norm_row_f32<{ty}>(row, {ctx.name(y)} + r * n_cols, n_cols, {bp['eps']!r}f, "
                  f"wb.data(), wb.data() + n_cols);")
    ops = " -> ".join(se.prim.name for se in g.eqns) or "copy"
    lines = [*pre,
             f"// each row: the prologue ({ops}) into an fp32 row, then {base} of it",
             "#pragma omp parallel if (n_rows * n_cols >= ait::detail::kParallelMin / 4 && n_rows > 1)",
             "{",
             "  std::vector<float> buf(static_cast<size_t>(n_cols));",
             "  float* __restrict row = buf.data();",
             "  #pragma omp for schedule(static)",
             "  for (int64_t r = 0; r < n_rows; ++r) {",
             *("    " + s for s in _decode(ctx, shape, coords) + ptrs),
             "    #pragma omp simd",
             "    for (int64_t i = 0; i < n_cols; ++i) {",
             *("      " + s for s in body),
             "    }",
             f"    {finish}",
             "  }",
             "}"]
    definition = ctx.render("call.cpp.j2", signature=ctx.signature(kname, e), lines=lines)
    return Kernel(kname, definition, ctx.call(kname, e), includes=("ait/norm.h",),
                  comment=f"{ctx.eqn_text(e)}  [prologue: {ops}]")
