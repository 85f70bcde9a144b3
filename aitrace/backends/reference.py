"""The `reference` backend: the graph evaluated by the numpy interpreter. It exists everywhere
and is the oracle the tests compare every other backend against."""
from __future__ import annotations

import numpy as np

from ..core.interpreter import eval_graph
from ..core.ir import Graph
from ..core.tracing import to_numpy
from ..runtime.interop import like
from .base import Backend, Source, register


@register
class ReferenceBackend(Backend):
    name = "reference"

    def lower(self, graph: Graph, **options) -> Source:
        return Source(graph, text=None)

    def build(self, source: Source) -> None:
        return None

    def load(self, source: Source, path=None):
        graph = source.graph

        def run(*arrays):
            args = [to_numpy(a, f"argument {i}") for i, a in enumerate(arrays)]
            held = args + graph.consts
            # outputs are fresh arrays, as a native backend's are: never views of an input or a
            # constant, which the caller could otherwise change through them
            outs = [y.copy() if any(np.may_share_memory(y, h) for h in held) else y
                    for y in eval_graph(graph, args)]
            return [like(arrays[0], y) if arrays else y for y in outs]
        return run
