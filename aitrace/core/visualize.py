"""`ait.visualize(fn, *args)`: the graph before and after the pass pipeline, as HTML.

Each equation is a row; a fused kernel is a box around the equations it absorbed, so what the
passes did is visible at a glance (in a notebook through `_repr_html_`, or `.save("g.html")`)."""
from __future__ import annotations

import html

from .ir import Graph, GraphPrinter

STYLE = """<style>
.ait-g{font-family:monospace;font-size:12px;display:inline-block;vertical-align:top;margin:0 16px}
.ait-e{padding:1px 4px;white-space:pre}
.ait-k{border:2px solid #c47f00;border-radius:6px;margin:4px 0;padding:2px 4px;background:#fff8e6}
.ait-k>.ait-t{color:#c47f00;font-weight:bold}
.ait-io{color:#555}
</style>"""


def graph_html(g: Graph, title: str = "") -> str:
    p = GraphPrinter()
    consts = " ".join(p.binder(v) for v in g.constvars)
    ins = " ".join(p.binder(v) for v in g.invars)
    rows = [f'<div class="ait-io">constants: {html.escape(consts) or "-"}</div>',
            f'<div class="ait-io">inputs: {html.escape(ins)}</div>']

    def eqn_row(e) -> str:
        outs = " ".join(p.binder(v) for v in e.outvars)
        args = " ".join(p.name(a) for a in e.invars)
        sub = next((v for v in e.params.values() if isinstance(v, Graph)), None)
        if sub is not None:
            inner = "".join(eqn_row(se) for se in sub.eqns)
            return (f'<div class="ait-k"><div class="ait-t">{html.escape(e.prim.name)} '
                    f'({len(sub.eqns)} ops) -> {html.escape(outs)}</div>{inner}</div>')
        params = " ".join(f"{k}={p.param(v, 0)}" for k, v in e.params.items())
        text = f"{outs} = {e.prim.name}{f'[{params}]' if params else ''} {args}"
        return f'<div class="ait-e">{html.escape(text)}</div>'
    rows += [eqn_row(e) for e in g.eqns]
    rows.append(f'<div class="ait-io">outputs: {html.escape(" ".join(p.name(v) for v in g.outvars))}</div>')
    kernels = len(g.eqns)
    head = f"<b>{html.escape(title)}</b> ({kernels} equations)" if title else ""
    return f'<div class="ait-g">{head}{"".join(rows)}</div>'


class Visualization:
    def __init__(self, before: Graph, after: Graph):
        self.before, self.after = before, after

    def _repr_html_(self) -> str:
        return STYLE + graph_html(self.before, "before passes") + graph_html(self.after, "after passes")

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            f.write(f"<!doctype html><html><head><meta charset='utf-8'>{STYLE}</head><body>"
                    f"{graph_html(self.before, 'before passes')}{graph_html(self.after, 'after passes')}"
                    f"</body></html>")


def visualize(fn, *args, passes=None) -> Visualization:
    """The traced graph of `fn(*args)` and the same graph after `passes` (default pipeline)."""
    from ..passes import run_pipeline
    from .tracing import trace_to_graph
    before, _ = trace_to_graph(fn, args)
    return Visualization(before, run_pipeline(before, passes))
