"""CPU lowering of elementwise primitives: one flat, vectorizable loop per kernel, with numpy
broadcasting folded into per-operand offsets. A chain of ops (a fused kernel) is the same loop
with more statements, so one op and a fused chain share this code."""
from __future__ import annotations

from ...core import shapes
from ...core.ir import Eqn, Literal, Var, unique_vars
from ..cemit import ELEMENTWISE, elementwise_expr
from ..lowering import Kernel, any_view, flat_suffix, lowering, operand_strides


def statements(ctx, eqns: list[Eqn], locals_: dict) -> list[str]:
    """One C statement per elementwise eqn, over the locals already named in `locals_`
    (Var -> C name; extended with each result)."""
    lines = []
    for n, e in enumerate(eqns):
        args = [ctx.dialect.literal(a.value, a.aval.dtype) if isinstance(a, Literal) else locals_[a]
                for a in e.invars]
        expr = elementwise_expr(ctx.dialect, e.prim.name, args, e.outvars[0].aval.dtype, e.params)
        locals_[e.outvars[0]] = f"t{n}"
        lines.append(f"const {ctx.compute(e.outvars[0])} t{n} = {expr};  // {e.prim.name}")
    return lines


def _index(ctx, unit) -> str:
    """The element a flat-loop position i reads: broadcast, contiguous or strided."""
    return "0" if unit == 0 else ("i" if unit == 1 else f"i * ({ctx.dim(unit)})")


def chain_kernel(ctx, kname: str, eqns: list[Eqn], inputs: list[Var], outputs: list[Var],
                 comment: str = "") -> Kernel:
    """A kernel computing `eqns` (elementwise, in order) elementwise over the outputs' shape.
    Operands and results may be strided views (ctx.strides); broadcasting is stride 0."""
    out_shape = outputs[0].aval.shape
    in_st = [operand_strides(ctx.strides(v), v.aval.shape, out_shape) for v in inputs]
    out_st = [list(ctx.strides(v)) for v in outputs]
    k, units = flat_suffix(out_shape, in_st + out_st)
    inner, outer_dims = shapes.prod(out_shape[k:]), list(range(k))

    def offset(st):
        return " + ".join(f"x{d} * {ctx.dim(st[d])}" for d in outer_dims if st[d] != 0) or "0"
    locals_, body, operands, outs = {}, [], [], []
    for j, v in enumerate(inputs):
        operands.append(dict(type=ctx.storage(v), local=f"p{j}", name=ctx.name(v), offset=offset(in_st[j])))
        locals_[v] = f"a{j}"
        body.append(f"const {ctx.compute(v)} a{j} = ait::load<{ctx.compute(v)}>(p{j}[{_index(ctx, units[j])}]);")
    body += statements(ctx, eqns, locals_)
    for j, v in enumerate(outputs):
        outs.append(dict(type=ctx.storage(v), local=f"q{j}", name=ctx.name(v), offset=offset(out_st[j])))
        body.append(f"q{j}[{_index(ctx, units[len(inputs) + j])}] = "
                    f"ait::store<{ctx.storage(v)}, {ctx.compute(v)}>({locals_[v]});")
    params = [f"const {ctx.storage(v)}* __restrict {ctx.name(v)}" for v in inputs]
    params += [f"{ctx.storage(v)}* __restrict {ctx.name(v)}" for v in outputs]
    signature = f"static void {kname}({', '.join(params + ['const int64_t* dims'])})"
    definition = ctx.render("elementwise.cpp.j2", signature=signature, inner=ctx.dim(inner),
                            outer=ctx.dim(shapes.prod(out_shape[:k])), inner_desc=str(inner),
                            outer_desc=str(shapes.prod(out_shape[:k])),
                            outer_dims=[dict(axis=d, size=ctx.dim(out_shape[d])) for d in reversed(outer_dims)],
                            operands=operands, outputs=outs, body=body)
    call = f"{kname}({', '.join([ctx.name(v) for v in inputs] + [ctx.name(v) for v in outputs] + ['dims'])});"
    return Kernel(kname, definition, call, comment=comment)


@lowering("cpu", *sorted(ELEMENTWISE - {"gelu_tanh"}), "gelu_tanh", reads=any_view, writes=any_view)
def lower_elementwise(ctx, e: Eqn, kname: str) -> Kernel:
    return chain_kernel(ctx, kname, [e], unique_vars(e.invars), list(e.outvars))


@lowering("cpu", "fused_elementwise", reads=any_view, writes=any_view)
def lower_fused_elementwise(ctx, e: Eqn, kname: str) -> Kernel:
    sub = e.params["graph"]
    ops = " -> ".join(se.prim.name for se in sub.eqns)
    return chain_kernel(ctx, kname, sub.eqns, list(e.invars), list(e.outvars),
                        comment=f"{ctx.eqn_text(e)}  [{ops}]")
