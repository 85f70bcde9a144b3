"""The memory plan: every intermediate buffer gets an offset in one arena, reused by liveness.

Sizes may be symbolic (dynamic dims), so slots are chosen greedily at a representative size
(each Dim at its max, or 256 when unbounded) while offsets and the arena size stay sympy
expressions that the generated code evaluates at run time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from ..core.ir import Graph, Var

ALIGN = 64  # bytes: one cache line, and enough for any vector load


@dataclass
class MemoryPlan:
    offsets: dict = field(default_factory=dict)   # Var (root buffer) -> byte offset (int or sympy)
    root: dict = field(default_factory=dict)      # Var -> Var whose storage it views (itself if none)
    arena_bytes: object = 0                        # int or sympy expression
    num_slots: int = 0

    def arena_bytes_at(self, sizes: dict | None = None) -> int:
        """Arena size with the dynamic dims bound (`{Dim: int}`), or at their representative size."""
        return int(_representative(self.arena_bytes, sizes))


def _representative(e, sizes=None):
    if isinstance(e, int):
        return e
    env = {s: (sizes or {}).get(s, getattr(s, "max", None) or 256) for s in e.free_symbols}
    return int(e.xreplace({k: sympy.Integer(v) for k, v in env.items()}))


def nbytes(var: Var):
    n = var.aval.size * var.aval.dtype.itemsize
    if isinstance(n, int):
        return -(-n // ALIGN) * ALIGN
    return sympy.ceiling(n / ALIGN) * ALIGN


def plan_memory(graph: Graph, view_prims=frozenset({"reshape"}), root: dict | None = None) -> MemoryPlan:
    """Assign arena offsets to the graph's intermediates (not inputs, constants or outputs).

    An eqn whose primitive is in `view_prims` defines no storage: its output views its input's.
    `root` (Var -> Var owning its storage, from fuse_memory.plan_views) replaces that rule when
    given: a buffer is live from the first eqn writing any value in it.
    A buffer is free for reuse once the last eqn reading it has run (never by that eqn's own
    outputs: kernels are not assumed safe in place)."""
    plan = MemoryPlan()
    external = set(graph.invars) | set(graph.constvars) | {v for v in graph.outvars if isinstance(v, Var)}
    defined_at, last_use = {}, {}
    for i, e in enumerate(graph.eqns):
        for v in e.outvars:
            if root is not None:
                plan.root[v] = root.get(v, v)
            else:
                src = e.invars[0] if e.prim.name in view_prims and isinstance(e.invars[0], Var) else None
                plan.root[v] = plan.root.get(src, src) if src is not None else v
            defined_at.setdefault(plan.root[v], i)
        for a in e.invars:
            if isinstance(a, Var):
                r = plan.root.get(a, a)
                last_use[r] = max(last_use.get(r, -1), i)
    end = len(graph.eqns)
    for v in graph.outvars:
        if isinstance(v, Var):
            last_use[plan.root.get(v, v)] = end
    slots: list[dict] = []  # {"size": expr, "rep": int, "busy_until": eqn index}
    assignment = {}
    for r in sorted((r for r in defined_at if r not in external), key=lambda r: defined_at[r]):
        size, start = nbytes(r), defined_at[r]
        rep = _representative(size)
        free = [s for s in slots if s["busy_until"] < start]
        # best fit: the smallest free slot that holds it, else the largest (which then grows)
        fits = [s for s in free if s["rep"] >= rep]
        slot = min(fits, key=lambda s: s["rep"]) if fits else (max(free, key=lambda s: s["rep"]) if free else None)
        if slot is None:
            slot = {"size": 0, "rep": 0, "busy_until": -1}
            slots.append(slot)
        if isinstance(size, int) and isinstance(slot["size"], int):
            slot["size"] = max(slot["size"], size)
        elif sympy.expand(slot["size"] - size) != 0:  # symbolic: Max is exact at every size
            slot["size"] = sympy.Max(slot["size"], size)
        slot["rep"] = max(slot["rep"], rep)
        slot["busy_until"] = last_use.get(r, start)
        assignment[r] = slot
    offset = 0
    for s in slots:
        s["offset"] = offset
        offset = offset + s["size"]
    plan.offsets = {r: s["offset"] for r, s in assignment.items()}
    plan.arena_bytes = sympy.simplify(offset) if isinstance(offset, sympy.Basic) else offset
    plan.num_slots = len(slots)
    return plan
