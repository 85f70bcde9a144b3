"""Abstract values, the IR, tracing, pytrees, the reference interpreter and jit."""
from .dtypes import bfloat16, bool_, float16, float32, int32, int64  # noqa: F401
from .ir import Eqn, Graph, Literal, Primitive, ShapeDtype, Var, typecheck  # noqa: F401
from .shapes import Dim  # noqa: F401
from .tracing import Tracer, trace  # noqa: F401
