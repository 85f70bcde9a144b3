"""The memory plan: intermediates share one arena by liveness, never overlapping while live."""
import numpy as np
import sympy

import aitrace as ait
from aitrace.core.tracing import trace_to_graph
from aitrace.passes.memory_plan import nbytes, plan_memory


def mlp(x, ws):
    for w in ws:
        x = ait.relu(x @ w)
    return ait.softmax(x)


def _check_no_overlap(graph, plan, sizes=None):
    """Every pair of buffers live at the same time occupies disjoint byte ranges."""
    def val(e):
        return plan.arena_bytes_at(sizes) if e is plan.arena_bytes else int(
            sympy.sympify(e).xreplace({s: sizes.get(s, 256) for s in sympy.sympify(e).free_symbols})
            if sizes else sympy.sympify(e))
    live = {}
    for i, e in enumerate(graph.eqns):
        for v in e.outvars:
            r = plan.root.get(v, v)
            if r in plan.offsets:
                live.setdefault(r, [i, i])
        for a in e.invars:
            r = plan.root.get(a, a)
            if r in live:
                live[r][1] = i
    items = list(live.items())
    for j, (a, (s1, e1)) in enumerate(items):
        for b, (s2, e2) in items[j + 1:]:
            if s1 <= e2 and s2 <= e1:  # lifetimes overlap
                a0, a1 = val(plan.offsets[a]), val(plan.offsets[a]) + val(nbytes(a))
                b0, b1 = val(plan.offsets[b]), val(plan.offsets[b]) + val(nbytes(b))
                assert a1 <= b0 or b1 <= a0, (a, b)
    return live


def test_buffers_are_reused_and_never_overlap_while_live():
    ws = [np.ones((64, 64), np.float32)] * 6
    g, _ = trace_to_graph(lambda x: mlp(x, ws), (ait.ShapeDtype((32, 64), ait.float32),))
    plan = plan_memory(g)
    live = _check_no_overlap(g, plan)
    total = sum(nbytes(r) for r in live)
    assert len(live) >= 10  # 6 matmuls and 6 relus minus the output
    assert plan.num_slots == 2 and plan.arena_bytes == 2 * 32 * 64 * 4 < total


def test_symbolic_plan_is_an_expression_valid_at_every_size():
    B = ait.Dim("B", max=512)
    ws = [np.ones((64, 128), np.float32), np.ones((128, 64), np.float32)] * 2
    g, _ = trace_to_graph(lambda x: mlp(x, ws), (ait.ShapeDtype((B, 64), ait.float32),))
    plan = plan_memory(g)
    assert B in sympy.sympify(plan.arena_bytes).free_symbols
    for n in (1, 7, 512):
        _check_no_overlap(g, plan, {B: n})
        assert plan.arena_bytes_at({B: n}) >= 128 * n * 4


def test_lowered_reports_arena_bytes():
    ws = [np.ones((64, 64), np.float32)] * 3
    low = ait.jit(lambda x: mlp(x, ws), backend="cpu", passes=()).lower(np.ones((8, 64), np.float32))
    assert low.arena_bytes == 2 * 8 * 64 * 4
    assert ait.jit(lambda x: x + 1, backend="reference").lower(np.ones(3, np.float32)).arena_bytes is None


def test_reshape_views_share_storage():
    g, _ = trace_to_graph(lambda x: ait.exp(ait.exp(x).reshape(4, 8)).reshape(32),
                          (ait.ShapeDtype((32,), ait.float32),))
    plan = plan_memory(g)
    reshaped = g.eqns[1].outvars[0]
    assert plan.root[reshaped] is g.eqns[0].outvars[0]
    assert plan.num_slots == 2  # the second exp may not write over its own input
