"""CUDA lowering of elementwise chains (one op or a fused_elementwise): one grid-stride kernel over
the output elements, every operand and result addressed through its strides (broadcast: 0), the
chain's statements written once for all backends by the shared emitter; beside it, where the
operands allow, a kernel moving 16-byte vectors (see _vector_path) that the host function picks
when sizes and alignment do at run time."""
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
    vec = _vector_path(ctx, eqns, inputs, outputs, in_st + out_st, units, offset, out_shape, k)
    params = [f"const {ctx.storage(v)}* __restrict__ {ctx.name(v)}" for v in inputs]
    params += [f"{ctx.storage(v)}* __restrict__ {ctx.name(v)}" for v in outputs]
    host = [p.replace("__restrict__", "__restrict") for p in params]
    signature = f"static void {kname}({', '.join(host + ctx.dialect.host_params)})"
    inner = shapes.prod(out_shape[k:])
    definition = ctx.render("elementwise.cu.j2", kname=kname, ops=ops, params=params, symbols=ctx.symbols,
                            inner=ctx.dim(inner), inner_desc=str(inner), total=ctx.dim(shapes.prod(out_shape)),
                            outer_dims=[dict(axis=d, size=ctx.dim(out_shape[d])) for d in reversed(range(k))],
                            body=body, signature=signature, args=[ctx.name(v) for v in inputs + outputs], vec=vec)
    call = (f"{kname}({', '.join([ctx.name(v) for v in inputs + outputs] + ctx.dialect.host_args)});"
            f"\n    AIT_LAUNCHED(\"{kname}\");")
    return Kernel(kname, definition, call)


def _known(d) -> bool:
    return isinstance(d, int) or getattr(d, "is_Integer", False)


VEC = 8  # elements a thread of the vector path: 16 bytes of fp16/bf16, 32 of fp32


def _vector_path(ctx, eqns, inputs, outputs, strides, units, offset, out_shape, k):
    """The 16-byte vector form of a chain, or None. The output's last axes [k, nd) are one flat
    loop of `inner` elements (flat_suffix) along which every operand is contiguous (unit 1) or
    constant (unit 0: broadcast, e.g. a per-row scalar [M, 1]); the outer axes may broadcast any
    operand (a bias [N] over [M, N]). A thread takes VEC consecutive elements, which lie in one
    row when inner is a multiple of VEC: contiguous operands move as whole vectors, constant ones
    are one scalar load. The host function takes this path when inner is a multiple of VEC and
    every vector address is 16-byte aligned (base pointers, and outer strides where not known)."""
    operands = inputs + outputs
    contiguous = [j for j, u in enumerate(units) if u == 1]
    if any(u not in (0, 1) for u in units) or any(u != 1 for u in units[len(inputs):]) or \
            any(operands[j].aval.dtype.itemsize * VEC % 16 for j in contiguous):
        return None
    inner = shapes.prod(out_shape[k:])
    if _known(inner) and int(inner) % VEC:
        return None
    conditions = [] if _known(inner) else [f"{ctx.dim(inner)} % {VEC} == 0"]
    conditions += [f"ait::gpu::aligned16({ctx.name(operands[j])})" for j in contiguous]
    for j in contiguous:  # an outer stride keeps vectors aligned when a multiple of 16 bytes
        per16 = 16 // operands[j].aval.dtype.itemsize
        for st in (strides[j][d] for d in range(k) if not shapes.equal(out_shape[d], 1)):
            if _known(st):
                if int(st) % per16:
                    return None
            elif f"({ctx.dim(st)}) % {per16} == 0" not in conditions:
                conditions.append(f"({ctx.dim(st)}) % {per16} == 0")
    loads, body, stores, locals_ = [], [], [], {}
    for j, v in enumerate(inputs):
        locals_[v] = f"a{j}"
        if units[j] == 1:
            loads.append(f"alignas(16) {ctx.storage(v)} b{j}[{VEC}];")
            loads.append(f"ait::gpu::vload(b{j}, {ctx.name(v)} + {offset(strides[j], 1)});")
            body.append(f"const {ctx.compute(v)} a{j} = ait::gpu::load<{ctx.compute(v)}>(b{j}[v]);")
        else:
            loads.append(f"const {ctx.compute(v)} a{j} = "
                         f"ait::gpu::load<{ctx.compute(v)}>({ctx.name(v)}[{offset(strides[j], 0)}]);")
    body += statements(ctx, eqns, locals_)
    for j, v in enumerate(outputs):
        loads.append(f"alignas(16) {ctx.storage(v)} c{j}[{VEC}];")
        body.append(f"c{j}[v] = ait::gpu::store<{ctx.storage(v)}, {ctx.compute(v)}>({locals_[v]});")
        stores.append(f"ait::gpu::vstore({ctx.name(v)} + {offset(strides[len(inputs) + j], 1)}, c{j});")
    return dict(width=VEC, loads=loads, body=body, stores=stores, conditions=conditions)


@lowering("cuda", *sorted(ELEMENTWISE), reads=any_view, writes=any_view)
def lower_elementwise(ctx, e: Eqn, kname: str) -> Kernel:
    return chain_kernel(ctx, kname, [e], unique_vars(e.invars), list(e.outvars), e.prim.name)


@lowering("cuda", "fused_elementwise", reads=any_view, writes=any_view)
def lower_fused_elementwise(ctx, e: Eqn, kname: str) -> Kernel:
    sub = e.params["graph"]
    return chain_kernel(ctx, kname, sub.eqns, list(e.invars), list(e.outvars),
                        " -> ".join(se.prim.name for se in sub.eqns))
