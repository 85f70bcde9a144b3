"""Graph -> Graph rewrites, run as one ordered pipeline.

Order (each constraint has its reason beside it):
  1. simplify (constant folding incl. batch norm into conv weights, CSE, identities, then DCE):
     first, so later passes see neither dead nor foldable work.
  2. layout: sinks transposes through elementwise ops and reductions until they cancel; after
     simplify, so constants it transposes are already folded values.
  3. simplify again: cancelled transposes expose conv -> batch_norm pairs to fold.
  4. fuse_horizontal: GEMMs sharing an input become one over concatenated weights; independent
     GEMMs / layer norms one grouped kernel; before the vertical passes, so the fused GEMM's bias
     add is still a separate eqn it can concatenate, and grouped GEMMs take their epilogues.
  5. simplify again: a concatenation of the fused GEMM's slices in order is the GEMM's output.
  6. fuse_elementwise: groups the final elementwise chains.
  7. fuse_epilogue: after fuse_elementwise, so a whole chain after a GEMM/conv moves into its
     epilogue at once.
  8. fuse_b2b: after fuse_epilogue, so both GEMMs of a pair carry their epilogues already.
  9. fuse_prologue: after the GEMM passes, so only the elementwise work they left (an embedding
     sum, a scale + mask before a softmax) moves into the softmax / layer-norm row kernel.
 10. fuse_memory: last; it leaves the graph as it is and lets the backend plan views (layout
     ops without copies, concatenations written in place) over the final kernels at lowering.
"""
from __future__ import annotations

import os

from ..core.ir import Graph
from .fuse_elementwise import fuse_elementwise
from .fuse_b2b import fuse_b2b
from .fuse_epilogue import fuse_epilogue
from .fuse_horizontal import fuse_horizontal
from .fuse_memory import fuse_memory
from .fuse_prologue import fuse_prologue
from .layout import layout
from .simplify import simplify

DEFAULT_PIPELINE = (simplify, layout, simplify, fuse_horizontal, simplify, fuse_elementwise, fuse_epilogue,
                    fuse_b2b, fuse_prologue, fuse_memory)


def lowering_options(passes=None) -> dict:
    """What the pipeline asks of the backend's lowering (planning passes run there)."""
    return {"memory_fusion": fuse_memory in (DEFAULT_PIPELINE if passes is None else passes)}


def run_pipeline(graph: Graph, passes=None) -> Graph:
    """Apply `passes` (default: DEFAULT_PIPELINE; `()` turns them all off) in order. With
    `AITRACE_DUMP=dir`, the input and each pass's output are written as `dir/NN-name.txt`."""
    dump = os.environ.get("AITRACE_DUMP")
    if dump:
        os.makedirs(dump, exist_ok=True)
        _write(dump, "00-traced", graph)
    for i, p in enumerate(DEFAULT_PIPELINE if passes is None else passes, 1):
        graph = p(graph)
        if dump:
            _write(dump, f"{i:02d}-{getattr(p, '__name__', 'pass')}", graph)
    return graph


def _write(directory: str, name: str, graph: Graph) -> None:
    with open(os.path.join(directory, name + ".txt"), "w") as f:
        f.write(str(graph) + "\n")
