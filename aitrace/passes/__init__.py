"""Graph -> Graph rewrites, run as one ordered pipeline.

Order (each constraint has its reason beside it):
  1. simplify (constant folding incl. batch norm into conv weights, CSE, identities, then DCE):
     first, so later passes see neither dead nor foldable work.
  2. fuse_elementwise: last, so it groups the final elementwise chains.
"""
from __future__ import annotations

from ..core.ir import Graph
from .fuse_elementwise import fuse_elementwise
from .simplify import simplify

DEFAULT_PIPELINE = (simplify, fuse_elementwise)


def run_pipeline(graph: Graph, passes=None) -> Graph:
    """Apply `passes` (default: DEFAULT_PIPELINE; `()` turns them all off) in order."""
    for p in DEFAULT_PIPELINE if passes is None else passes:
        graph = p(graph)
    return graph
