"""Rewriting equations by tracing: a rule maps an eqn to a Python function of its operands
(written with the ops, like any user code); that function's trace replaces the eqn in place."""
from __future__ import annotations

from typing import Callable

from ..core.ir import Eqn, Graph, Var
from ..core.tracing import trace_to_graph


def rewrite_eqns(graph: Graph, rule: Callable[[Eqn], Callable | None]) -> Graph:
    """`rule(eqn)` returns None to keep the eqn, or `fn(*operands) -> output(s)` to replace it."""
    subst: dict = {}
    eqns, constvars, consts = [], list(graph.constvars), list(graph.consts)

    def read(a):
        return subst.get(a, a) if isinstance(a, Var) else a

    changed = False
    for e in graph.eqns:
        invars = [read(a) for a in e.invars]
        fn = rule(e)
        if fn is None:
            eqns.append(Eqn(e.prim, invars, e.outvars, e.params))
            continue
        changed = True
        sub, _ = trace_to_graph(fn, [a.aval for a in invars])
        inner = dict(zip(sub.invars, invars))
        constvars += sub.constvars
        consts += sub.consts
        if len(sub.outvars) != len(e.outvars):
            raise ValueError(f"rewrite of {e.prim.name} gave {len(sub.outvars)} outputs, "
                             f"expected {len(e.outvars)}")
        for old, new in zip(e.outvars, sub.outvars):
            if new.aval != old.aval:
                raise TypeError(f"rewrite of {e.prim.name} changed {old.aval} into {new.aval}")
            # keep the old Var as the result (sub-graphs of fused eqns may name it), unless the
            # replacement returns an existing value as it is
            if any(new in se.outvars for se in sub.eqns):
                inner[new] = old
            else:
                subst[old] = inner.get(new, new)
        for se in sub.eqns:
            eqns.append(Eqn(se.prim, [inner.get(a, a) if isinstance(a, Var) else a for a in se.invars],
                            [inner.get(v, v) for v in se.outvars], se.params))
    if not changed:
        return graph
    outvars = [read(v) for v in graph.outvars]
    return Graph(graph.invars, constvars, consts, eqns, outvars)
