"""CUDA lowering of elementwise chains (one op or a fused_elementwise): one grid-stride kernel over
the output elements, every operand and result addressed through its strides (broadcast: 0), the
chain's statements written once for all backends by the shared emitter."""
from __future__ import annotations

from ...core import shapes
from ...core.ir import Eqn, Var, unique_vars
from ..cemit import ELEMENTWISE
from ..cpu.elementwise import statements
from ..lowering import Kernel, any_view, flat_suffix, lowering, operand_strides


def _index(ctx, unit) -> str:
    return "0" if unit == 0 else ("i" if unit == 1 else f"i * ({ctx.dim(unit)})")


def chain_kernel(ctx, kname: str, eqns: list[Eqn], inputs: list[Var], outputs: list[Var], ops: str) -> Kernel:
    out_shape = outputs[0].aval.shape
    in_st = [operand_strides(ctx.strides(v), v.aval.shape, out_shape) for v in inputs]
    out_st = [list(ctx.strides(v)) for v in outputs]
    k, units = flat_suffix(out_shape, in_st + out_st)

    def offset(st, unit):
        terms = [f"x{d} * {ctx.dim(st[d])}" for d in range(k) if st[d] != 0]
        return " + ".join(terms + [_index(ctx, unit)])
    locals_, body = {}, []
    for j, v in enumerate(inputs):
        locals_[v] = f"a{j}"
        body.append(f"const {ctx.compute(v)} a{j} = ait::gpu::load<{ctx.compute(v)}>({ctx.name(v)}[{offset(in_st[j], units[j])}]);")
    body += statements(ctx, eqns, locals_)
    for j, v in enumerate(outputs):
        body.append(f"{ctx.name(v)}[{offset(out_st[j], units[len(inputs) + j])}] = "
                    f"ait::gpu::store<{ctx.storage(v)}, {ctx.compute(v)}>({locals_[v]});")
    params = [f"const {ctx.storage(v)}* __restrict__ {ctx.name(v)}" for v in inputs]
    params += [f"{ctx.storage(v)}* __restrict__ {ctx.name(v)}" for v in outputs]
    host = [p.replace("__restrict__", "__restrict") for p in params]
    signature = f"static void {kname}({', '.join(host + ctx.dialect.host_params)})"
    definition = ctx.render("elementwise.cu.j2", kname=kname, ops=ops, params=params, symbols=ctx.symbols,
                            inner=ctx.dim(shapes.prod(out_shape[k:])), total=ctx.dim(shapes.prod(out_shape)),
                            outer_dims=[dict(axis=d, size=ctx.dim(out_shape[d])) for d in reversed(range(k))],
                            body=body, signature=signature, args=[ctx.name(v) for v in inputs + outputs])
    call = (f"{kname}({', '.join([ctx.name(v) for v in inputs + outputs] + ctx.dialect.host_args)});"
            f"\n    AIT_LAUNCHED(\"{kname}\");")
    return Kernel(kname, definition, call)


@lowering("cuda", *sorted(ELEMENTWISE), reads=any_view, writes=any_view)
def lower_elementwise(ctx, e: Eqn, kname: str) -> Kernel:
    return chain_kernel(ctx, kname, [e], unique_vars(e.invars), list(e.outvars), e.prim.name)


@lowering("cuda", "fused_elementwise", reads=any_view, writes=any_view)
def lower_fused_elementwise(ctx, e: Eqn, kname: str) -> Kernel:
    sub = e.params["graph"]
    return chain_kernel(ctx, kname, sub.eqns, list(e.invars), list(e.outvars),
                        " -> ".join(se.prim.name for se in sub.eqns))
