"""Graph -> Graph rewrites, run as one ordered pipeline.

Order (each constraint has its reason beside it):
  1. dce: drop what no output needs before any pass spends time on it.
  2. fuse_elementwise: last, so it groups the final elementwise chains.
"""
from __future__ import annotations

from ..core.ir import Graph, dce
from .fuse_elementwise import fuse_elementwise

DEFAULT_PIPELINE = (dce, fuse_elementwise)


def run_pipeline(graph: Graph, passes=None) -> Graph:
    """Apply `passes` (default: DEFAULT_PIPELINE; `()` turns them all off) in order."""
    for p in DEFAULT_PIPELINE if passes is None else passes:
        graph = p(graph)
    return graph
