"""Graph -> one translation unit (C++ for the cpu backend, CUDA C++ for cuda): the kernels from
the backend's registered lowerings, the buffer pointers of the memory plan and views, and the C
ABI from the backend's model template. What differs between backends is the Dialect (types,
math), the templates folder and the lowerings; this file is shared."""
from __future__ import annotations

from pathlib import Path

import jinja2
import numpy as np

from ..core import shapes
from ..core.ir import Eqn, Graph, GraphPrinter, Literal, Var, unique_vars
from ..passes.fuse_memory import View, contiguous_strides, plan_views
from ..passes.memory_plan import plan_memory
from .base import Source
from .cemit import ELEMENTWISE, Dialect, dim_expr
from .lowering import LOWERINGS, Kernel, legalize, view_support


def templates(folder) -> jinja2.Environment:
    """The jinja2 environment of one backend's templates folder."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(folder)), trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)
DL_CODES = {"f16": (2, 16), "bf16": (4, 16), "f32": (2, 32), "i32": (0, 32), "i64": (0, 64), "bool": (6, 8)}


class Ctx:
    """What a lowering sees: C names and types of values, dims as C expressions, templates."""

    def __init__(self, backend: str, graph: Graph, dialect: Dialect, env: jinja2.Environment):
        self.backend, self.graph, self.dialect, self.env = backend, graph, dialect, env
        self.printer = GraphPrinter()
        self.graph_text = self.printer.graph(graph)
        self.symbols = sorted({s for v in graph.invars for s in shapes.symbols(v.aval.shape)}, key=str)
        self.includes: set[str] = set()
        self.views: dict = {}   # Var -> fuse_memory.View, set by generate
        self.prepared: list[str] = []   # create-time expressions, see prepare()
        self.workspace_queries: list[str] = []  # C expressions setting `need` (cuda: stream-K GEMMs)

    def view(self, atom) -> View:
        return self.views.get(atom) or View(atom, 0, contiguous_strides(atom.aval.shape))

    def strides(self, atom) -> tuple:
        """Element strides of a value as planned by fuse_memory (row-major unless a view)."""
        return self.view(atom).strides

    def name(self, atom) -> str:
        return "v_" + self.printer.name(atom)

    def storage(self, atom) -> str:
        return self.dialect.storage(atom.aval.dtype)

    def compute(self, atom) -> str:
        return self.dialect.compute(atom.aval.dtype)

    def dim(self, d) -> str:
        return dim_expr(d)

    def eqn_text(self, e: Eqn) -> str:
        outs = " ".join(self.printer.binder(v) for v in e.outvars)
        params = " ".join(f"{k}={self.printer.param(v, 0)}" for k, v in e.params.items()
                          if not hasattr(v, "eqns"))
        args = " ".join(self.printer.name(a) for a in e.invars)
        return f"{outs} = {e.prim.name}{f'[{params}]' if params else ''} {args}".replace("\n", " ")

    def symbol_preamble(self) -> str:
        """Declarations of the dynamic dims inside a kernel (which receives `dims`)."""
        return "".join(f"  const int64_t {dim_expr(s)} = dims[{i}]; (void){dim_expr(s)};\n"
                       for i, s in enumerate(self.symbols))

    def const_root(self, atom):
        """(index among the constants, element offset) where atom is a constant or a view of
        one, else None."""
        v = self.view(atom)
        if v.root in self.graph.constvars:
            return self.graph.constvars.index(v.root), v.offset
        return None

    def const_reads(self, pairs) -> tuple[set, set]:
        """(constants the kernels read only in a prepared form, constants read as they are) over
        (Kernel, eqn) pairs: a kernel's info["reads_only_prepared"] names the former."""
        only, other = set(), set()
        for k, e in pairs:
            for a in e.invars:
                root = self.const_root(a)
                if root is not None:
                    (only if root[0] in k.info.get("reads_only_prepared", ()) else other).add(root[0])
        return only, other

    def prepare(self, expr: str) -> str:
        """Register a derived constant computed once at create: `expr` is a C++ expression of
        `m->consts` (the constants' pointers, a std::vector<void*>) giving a std::malloc'ed
        buffer the model owns. Returns the C expression of that buffer in the run function,
        `prepared[i]` (a kernel that calls others passes its `void* const* prepared` on)."""
        self.prepared.append(expr)
        return f"prepared[{len(self.prepared) - 1}]"

    def render(self, template: str, **kw) -> str:
        return self.env.get_template(template).render(ctx=self, **kw)

    def signature(self, kname: str, e: Eqn, extra_params: str = "") -> str:
        """`static void kname(const T* __restrict in..., T* __restrict out..., dims)`."""
        ps = [f"const {self.storage(a)}* __restrict {self.name(a)}" for a in unique_vars(e.invars)]
        ps += [f"{self.storage(v)}* __restrict {self.name(v)}" for v in e.outvars]
        return f"static void {kname}({', '.join(ps + ([extra_params] if extra_params else []) + self.dialect.host_params)})"

    def call(self, kname: str, e: Eqn, extra_args: str = "") -> str:
        args = [self.name(a) for a in unique_vars(e.invars)] + [self.name(v) for v in e.outvars]
        return f"{kname}({', '.join(args + ([extra_args] if extra_args else []) + self.dialect.host_args)});"


def _input_checks(ctx: Ctx) -> list[str]:
    lines, bound = [], set()
    for group, atoms in (("argument", ctx.graph.invars), ("output", ctx.graph.outvars)):
        arr = "in" if group == "argument" else "out"
        for i, v in enumerate(atoms):
            code, bits = DL_CODES[str(v.aval).split("[")[0]]
            exp = str(v.aval)
            lines.append(f'if (ait::check_tensor({arr}[{i}], "{group}", {i}, {code}, {bits}, {v.aval.ndim}, "{exp}", '
                         f'{ctx.dialect.device_type})) return 1;')
            for axis, d in enumerate(v.aval.shape):
                if not isinstance(d, int) and d.is_Symbol and d not in bound:
                    bound.add(d)
                    lo, hi = getattr(d, "min", 1), getattr(d, "max", None)
                    c = dim_expr(d)
                    cond = f"{c} < {lo}" + (f" || {c} > {hi}" if hi is not None else "")
                    lines.append(f"const int64_t {c} = {arr}[{i}].shape[{axis}];")
                    lines.append(f'if ({cond}) return ait::fail("{group} {i}: size %lld on axis {axis} is '
                                 f'outside the bounds [{lo}, {hi if hi is not None else "inf"}] of Dim {d}", '
                                 f'(long long){c});')
                elif isinstance(d, int) or d.free_symbols <= bound:
                    lines.append(f'if (ait::check_dim({arr}[{i}], "{group}", {i}, {axis}, {dim_expr(d)}, '
                                 f'"{exp}")) return 1;')
    return lines


def _materialize_literals(graph: Graph) -> Graph:
    """Literal operands of kernels that take pointers become 0-d constants (elementwise loops
    inline literals, so theirs stay)."""
    consts, constvars, eqns = list(graph.consts), list(graph.constvars), []
    for e in graph.eqns:
        if e.prim.name in ELEMENTWISE or e.prim.name == "fused_elementwise" or \
                not any(isinstance(a, Literal) for a in e.invars):
            eqns.append(e)
            continue
        invars = []
        for a in e.invars:
            if isinstance(a, Literal):
                v = Var(a.aval)
                constvars.append(v)
                consts.append(np.asarray(a.value, a.aval.dtype))
                a = v
            invars.append(a)
        eqns.append(Eqn(e.prim, invars, e.outvars, e.params))
    return Graph(graph.invars, constvars, consts, eqns, graph.outvars)


def generate(graph: Graph, backend: str, env: jinja2.Environment, dialect: Dialect | None = None,
             memory_fusion: bool = True, model_template: str = "model.cpp.j2", **template_args) -> Source:
    graph = _materialize_literals(legalize(graph, backend))
    ctx = Ctx(backend, graph, dialect or Dialect(), env)
    mv = plan_views(graph, *view_support(backend), enabled=memory_fusion)
    ctx.views = mv.views
    plan = plan_memory(graph, root=mv.root())
    table = LOWERINGS.get(backend, {})
    pointers, views, kernels, copies = [], [], [], []
    lowered = []  # (Kernel, eqn)
    for i, v in enumerate(graph.invars):
        pointers.append(f"const {ctx.storage(v)}* {ctx.name(v)} = ait::tensor_data<const {ctx.storage(v)}>(in[{i}]);")
    for i, v in enumerate(graph.constvars):
        pointers.append(f"const {ctx.storage(v)}* {ctx.name(v)} = static_cast<const {ctx.storage(v)}*>(ctx->model->consts[{i}]);")
    # an output computed by a kernel is written in place; one that is an input, a constant, a
    # view or a repeat of another output is copied at the end
    written = {}
    for i, v in enumerate(graph.outvars):
        if v in written or v in graph.invars or v in graph.constvars or ctx.view(v).root is not v:
            copies.append(f"AIT_COPY_OUT(ait::tensor_data<void>(out[{i}]), {ctx.name(v)}, "
                          f"size_t({dim_expr(v.aval.size)}) * sizeof({ctx.storage(v)}));")
        else:
            written[v] = i
    for i, e in enumerate(graph.eqns):
        for v in e.outvars:
            root, t = ctx.view(v).root, ctx.storage(v)
            if v in written:
                pointers.append(f"{t}* {ctx.name(v)} = ait::tensor_data<{t}>(out[{written[v]}]);")
            elif root is v:
                pointers.append(f"{t}* {ctx.name(v)} = reinterpret_cast<{t}*>(arena + {dim_expr(plan.offsets[v])});")
            else:  # a view: declared after every buffer, since its buffer may be defined later
                const = "const " if root in graph.invars or root in graph.constvars else ""
                views.append(f"{const}{t}* {ctx.name(v)} = {ctx.name(root)} + {dim_expr(ctx.view(v).offset)};"
                             f"  // view of {ctx.printer.name(root)}")
        if id(e) in mv.free:
            continue
        if e.prim.name not in table:
            raise NotImplementedError(f"the {backend} backend has no lowering for {e.prim.name!r} "
                                      f"(in: {ctx.eqn_text(e)})")
        k: Kernel = table[e.prim.name](ctx, e, f"k{i}_{e.prim.name}")
        k.comment = k.comment or ctx.eqn_text(e)
        ctx.includes.update(k.includes)
        kernels.append(k)
        lowered.append((k, e))
    # a constant read at run time only in the form prepared at create is freed after that;
    # one that is an output is copied out at the end, so it stays
    droppable, kept = ctx.const_reads(lowered)
    kept |= {r[0] for r in map(ctx.const_root, graph.outvars) if r is not None}
    pointers += views
    text = ctx.render(model_template, backend=backend, **template_args, graph_text=ctx.graph_text, kernels=kernels,
                      includes=sorted(ctx.includes), inputs=graph.invars, outputs=graph.outvars,
                      checks=_input_checks(ctx), dim_values=[dim_expr(s) for s in ctx.symbols],
                      arena_bytes=dim_expr(plan.arena_bytes), pointers=pointers, copies=copies,
                      const_bytes=[str(np.asarray(c).nbytes) for c in graph.consts],
                      prepared=ctx.prepared, dropped=sorted(droppable - kept), workspace_queries=ctx.workspace_queries)
    return Source(graph, text, info={"arena_bytes": plan.arena_bytes, "plan": plan, "views": mv,
                                     "kernels": [k.name for k in kernels],
                                     "kernel_eqns": [k.comment for k in kernels]})


def literal(ctx: Ctx, lit: Literal) -> str:
    return ctx.dialect.literal(lit.value, lit.aval.dtype)
