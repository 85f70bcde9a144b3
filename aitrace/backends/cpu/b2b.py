"""CPU lowering of fused_b2b_gemm (passes/fuse_b2b.py): one kernel computes

    y = epi2(epi1(x @ w1) @ w2)       x [rows, K] (batch dims flattened), w1 [K, N1], w2 [N1, N2]

through ait::b2b_gemm (include/ait/b2b.h): blocks of rows run in an OpenMP loop; each block's
[rows, N1] middle tile is computed into a thread-local fp32 buffer, gets the first epilogue in
place, and is multiplied by w2 at once, the second epilogue applied as y is stored. Both
epilogues are generated functors over the fp32 values, with the epilogue operands addressed by
(global row, column) as fused_gemm's are.
"""
from __future__ import annotations

from ...core import shapes
from ...passes.fuse_b2b import split_operands
from ..lowering import Kernel, lowering
from .elementwise import statements


def _operand_loads(ctx, extras, out_shape, n_cols: str):
    """Struct members and loads of an epilogue's extra operands (product-shaped: by row and
    column; broadcast along rows: by column; a single element: at 0)."""
    members, loads, locals_ = [], [], {}
    for j, v in enumerate(extras):
        s = v.aval.shape
        full = len(s) == len(out_shape) and all(shapes.equal(a, b) for a, b in zip(s, out_shape))
        idx = f"row * {n_cols} + j" if full else ("j" if s and not shapes.equal(s[-1], 1) else "0")
        members.append(f"  const {ctx.storage(v)}* p{j};")
        loads.append(f"const {ctx.compute(v)} a{j} = ait::load<{ctx.compute(v)}>(p{j}[{idx}]);")
        locals_[v] = f"a{j}"
    return members, loads, locals_


def _functor(ctx, name: str, which: str, g, out_shape, n_cols: str, out=None) -> str:
    """The C++ functor of one epilogue sub-Graph `g`: in place on a middle row (out None) or
    storing a row segment of the output `out`."""
    y, extras = g.invars[0], g.invars[1:]
    members, body, locals_ = _operand_loads(ctx, extras, out_shape, n_cols)
    locals_[y] = "acc[t]"
    body += statements(ctx, g.eqns, locals_)
    result = locals_[g.outvars[0]]
    ops = " -> ".join(e.prim.name for e in g.eqns)
    if out is None:
        head = [f"// {which} epilogue ({ops}): in place on each fp32 row of the middle tile",
                f"struct {name} {{", *members, "  int64_t N;",
                "  void operator()(int64_t row, float* acc, int64_t n) const {"]
        body.append(f"acc[t] = float({result});")
    else:
        head = [f"// {which} epilogue ({ops}): on each finished fp32 row segment of the output",
                f"struct {name} {{", f"  {ctx.storage(out)}* out;", *members, "  int64_t N;",
                "  void operator()(int64_t row, int64_t j0, const float* acc, int64_t n) const {"]
        body.append(f"out[row * N + j] = ait::store<{ctx.storage(out)}, {ctx.compute(out)}>({result});")
    lines = head + ["    (void)row;", "    #pragma omp simd", "    for (int64_t t = 0; t < n; ++t) {",
                    f"      const int64_t j = {'t' if out is None else 'j0 + t'};", "      (void)j;"]
    lines += [f"      {s}" for s in body] + ["    }", "  }", "};", ""]
    return "\n".join(lines)


@lowering("cpu", "fused_b2b_gemm")
def lower_fused_b2b_gemm(ctx, e, kname: str) -> Kernel:
    p = e.params
    x, w1, e1, w2, e2 = split_operands(e.invars, p["n_first_extra"])
    (y,) = e.outvars
    rows, K = shapes.prod(x.aval.shape[:-1]), x.aval.shape[-1]
    N1, N2 = w1.aval.shape[1], w2.aval.shape[1]
    mid_shape = tuple(x.aval.shape[:-1]) + (N1,)
    structs, mid_epi, out_epi = [], "ait::B2BKeep{}", f"ait::B2BStore<{ctx.storage(y)}>{{{ctx.name(y)}, N2}}"
    if p["first_epilogue"] is not None:
        structs.append(_functor(ctx, f"{kname}_mid", "first", p["first_epilogue"], mid_shape, "N"))
        mid_epi = f"{kname}_mid{{{''.join(ctx.name(v) + ', ' for v in e1)}N1}}"
    if p["second_epilogue"] is not None:
        structs.append(_functor(ctx, f"{kname}_out", "second", p["second_epilogue"], y.aval.shape, "N", out=y))
        out_epi = f"{kname}_out{{{ctx.name(y)}, {''.join(ctx.name(v) + ', ' for v in e2)}N2}}"
    body = [
        f"{ctx.signature(kname, e)} {{",
        ctx.symbol_preamble().rstrip("\n"),
        f"  // {ctx.name(y)}[rows, N2] = epi2(epi1({ctx.name(x)}[rows, K] @ {ctx.name(w1)}[K, N1]) @ "
        f"{ctx.name(w2)}[N1, N2]); rows: {rows}",
        "  // each block of rows keeps its [rows, N1] middle tile in a thread-local fp32 buffer",
        f"  const int64_t rows = {ctx.dim(rows)}, K = {ctx.dim(K)}, N1 = {ctx.dim(N1)}, N2 = {ctx.dim(N2)};",
        f"  ait::b2b_gemm(rows, K, N1, N2, {ctx.name(x)}, K, {ctx.name(w1)}, {ctx.name(w2)},",
        f"                {mid_epi},",
        f"                {out_epi});",
        "}",
    ]
    definition = "".join(s + "\n" for s in structs) + "\n".join(line for line in body if line) + "\n"
    return Kernel(kname, definition, ctx.call(kname, e), includes=("ait/b2b.h",))
