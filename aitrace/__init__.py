"""aitrace: trace pure functions over abstract tensors, compile them into native inference code."""
from . import backends, nn, ops  # noqa: F401
from .core.dtypes import bfloat16, bool_, float16, float32, int32, int64  # noqa: F401
from .core.ir import Graph, ShapeDtype, typecheck  # noqa: F401
from .core.jit import jit  # noqa: F401
from .core.pytree import register_pytree_node  # noqa: F401
from .core.shapes import Dim  # noqa: F401
from .core.tracing import trace  # noqa: F401
from .core.visualize import visualize  # noqa: F401
from .ops import *  # noqa: F401,F403

__version__ = "0.1.0"
