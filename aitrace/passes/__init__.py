"""Graph -> Graph rewrites, run as one ordered pipeline.

Order (each constraint has its reason beside it):
  1. dce: drop what no output needs before any pass spends time on it.
"""
from __future__ import annotations

from ..core.ir import Graph, dce

DEFAULT_PIPELINE = (dce,)


def run_pipeline(graph: Graph, passes=None) -> Graph:
    """Apply `passes` (default: DEFAULT_PIPELINE; `()` turns them all off) in order."""
    for p in DEFAULT_PIPELINE if passes is None else passes:
        graph = p(graph)
    return graph
