"""Helpers shared by the op modules: operand promotion and fp32 compute for the references."""
from __future__ import annotations

import numpy as np

from ..core import dtypes, shapes
from ..core.ir import ShapeDtype
from ..core.tracing import Tracer, is_array, to_numpy

LOW_PRECISION = (dtypes.float16, dtypes.bfloat16)


def aval(x) -> ShapeDtype:
    """Abstract value of an operand (Tracer, array or Python scalar)."""
    if isinstance(x, Tracer):
        return x.aval
    if isinstance(x, (bool, int, float)):
        return ShapeDtype((), dtypes.result_type(x))
    return ShapeDtype(tuple(np.shape(x)), dtypes.dtype(x.dtype))


def dtype_key(x):
    """What `dtypes.result_type` sees: Python scalars stay weak."""
    return x if isinstance(x, (bool, int, float)) else aval(x).dtype


def as_array(x, op: str):
    if isinstance(x, (Tracer, bool, int, float)):
        return x
    if is_array(x):
        return to_numpy(x)
    raise TypeError(f"{op}: expected an array or a Python scalar, got {type(x).__name__}")


def convert(x, dtype):
    """`x` as an operand of `dtype`: scalars become typed numpy scalars, arrays are cast."""
    if isinstance(x, (bool, int, float)):
        return np.asarray(x, dtype=dtype)[()]
    if aval(x).dtype == dtype:
        return x
    from .elementwise import cast
    return cast(x, dtype)


def promote(op: str, *xs, to_float: bool = False):
    """Operands converted to their common dtype (float32 for int/bool when `to_float`)."""
    xs = [as_array(x, op) for x in xs]
    dt = dtypes.result_type(*map(dtype_key, xs))
    if to_float and not dtypes.is_float(dt):
        dt = dtypes.float32
    return [convert(x, dt) for x in xs]


def compute_dtype(d) -> np.dtype:
    """Dtype the numpy reference computes in: fp32 for fp16/bf16, as the kernels accumulate."""
    return np.dtype(np.float32) if d in LOW_PRECISION else d


def up(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype in LOW_PRECISION else x


def same_dtype(op: str, *avals) -> np.dtype:
    dts = {a.dtype for a in avals}
    if len(dts) != 1:
        raise TypeError(f"{op}: operands must share a dtype, got "
                        + ", ".join(str(a) for a in avals))
    return dts.pop()


def check_rank(op: str, a: ShapeDtype, ndim: int, what: str = "input"):
    if a.ndim != ndim:
        raise ValueError(f"{op}: {what} must have rank {ndim}, got shape {shapes.shape_str(a.shape)}")


def tuple2(v, op: str, name: str) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in t):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    return t


